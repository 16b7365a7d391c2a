import ort from 'onnxruntime-node';
import { decodeFrame, encodeFrame } from '../protocol/tensor-frame.js';
import { PRECISIONS, type Precision } from '../nodes/inference/boundary.js';
import { BUILTIN_MODELS, type BuiltinModel, builtinInputShape, loadModelArg } from '../nodes/inference/bundled-models.js';
import { median } from '../nodes/inference/profiler.js';
import { textLikeImage } from '../nodes/inference/sample-images.js';
import { SessionCache } from '../nodes/inference/sessions.js';
import { ModelSlicer } from '../nodes/inference/slicer.js';
import { type Row, table, writeResults } from './report.js';

/**
 * Per model and cut: head, tail and whole-model medians measured interleaved in the same rounds
 * (so machine noise hits all three alike), the (head + tail) ÷ whole ratio, bytes per precision
 * and the output error each precision causes. One ORT thread, as on a small robot CPU.
 */
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 25);

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

async function main(): Promise<void> {
  const sessions = new SessionCache({ threads: 1 }, 1024);
  const rows: Row[] = [];
  const summary: Row[] = [];
  for (const name of Object.keys(BUILTIN_MODELS) as BuiltinModel[]) {
    const arg = `builtin:${name}`;
    const slicer = await ModelSlicer.open(await loadModelArg(arg), sessions, { inputShapes: builtinInputShape(arg) });
    const { analysis } = slicer;
    const [input] = analysis.index.inputs;
    const dims = analysis.inputShapes[input];
    const feeds = { [input]: new ort.Tensor('float32', textLikeImage(dims[2], dims[3], 7), dims) };
    const output = analysis.index.outputs[0];
    const whole = (await slicer.runWhole(feeds))[output].data as Float32Array;
    const ratios: number[] = [];
    for (const [k, cut] of analysis.cuts.entries()) {
      process.stderr.write(`\r${name}: cut ${k + 1}/${analysis.cuts.length}   `);
      const boundary = await slicer.runHead(cut.id, 'fp32', feeds);
      await slicer.runTail(cut.id, 'fp32', boundary);
      const w: number[] = [];
      const h: number[] = [];
      const t: number[] = [];
      for (let r = 0; r < ROUNDS; r++) {
        w.push(await timed(() => slicer.runWhole(feeds)));
        h.push(await timed(() => slicer.runHead(cut.id, 'fp32', feeds)));
        t.push(await timed(() => slicer.runTail(cut.id, 'fp32', boundary)));
      }
      const errors = {} as Record<Precision, number>;
      for (const p of PRECISIONS) {
        const out = (await slicer.runTail(cut.id, p, decodeFrame(encodeFrame(await slicer.runHead(cut.id, p, feeds)))))[output].data as Float32Array;
        errors[p] = Math.max(...whole.map((v, i) => Math.abs(v - out[i])));
      }
      // Time every cut with the same sessions open (whole model, this cut's head and tail).
      // Left open, earlier cuts' sessions made later heads page-fault on the boundary they
      // return (detector c292 head with 40 more sessions open: 4.3 → 8–13 ms, 120–180 page
      // faults per run instead of 0–50), so ratios drifted up along the list of cuts.
      await slicer.releaseCut(cut.id);
      const ratio = (median(h) + median(t)) / median(w);
      ratios.push(ratio);
      rows.push({
        model: name,
        cut: cut.id,
        tensors: cut.tensors.length,
        'head share': cut.headShare,
        'head ms': median(h),
        'tail ms': median(t),
        'whole ms': median(w),
        '(h+t)/whole': ratio,
        'fp32 KiB': cut.bytes.fp32 / 1024,
        'fp16 KiB': cut.bytes.fp16 / 1024,
        'int8 KiB': cut.bytes.int8 / 1024,
        'fp16 max|Δ|': errors.fp16,
        'int8 max|Δ|': errors.int8,
      });
    }
    process.stderr.write('\n');
    summary.push({
      model: name,
      cuts: analysis.cuts.length,
      'median (h+t)/whole': median(ratios),
      'max (h+t)/whole': Math.max(...ratios),
      'cuts ≤ 1.03': `${ratios.filter((r) => r <= 1.03).length}/${ratios.length}`,
    });
  }
  await sessions.close();
  process.stdout.write(`\nSlicing, 1 ORT thread, medians of ${ROUNDS} interleaved rounds\n\n${table(rows)}\n\n${table(summary)}\n`);
  // Every head run returns its boundary in a fresh ArrayBuffer (onnxruntime-node copies each
  // output); whether glibc hands that memory back to the kernel and faults it in again moves the
  // small models' ratios a lot, so record the malloc settings the run had.
  const malloc = process.env.GLIBC_TUNABLES ?? 'default';
  const path = await writeResults('slicing', { rounds: ROUNDS, threads: 1, malloc, rows, summary });
  process.stdout.write(`\nwrote ${path}\n`);
}

await main();
