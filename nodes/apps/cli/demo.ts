import ort from 'onnxruntime-node';
import { decodeFrame, encodeFrameChunks } from '../../../protocol/tensor-frame.js';
import {
  PRECISIONS,
  BUILTIN_MODELS,
  type BuiltinModel,
  builtinInputShape,
  loadModelArg,
  syntheticFeeds,
  median,
  textLikeImage,
  SessionCache,
  ModelSlicer,
} from '../../inference/index.js';

/** Spread picks: the first, middle and last cut, so the table shows early, mid and late splits. */
function spread<T>(items: T[], n: number): T[] {
  if (items.length <= n) return items;
  return [...new Set([0, Math.floor((items.length - 1) / 2), items.length - 1])].map((i) => items[i]);
}

function agreement(a: Float32Array, b: Float32Array): { maxDiff: number; sameDecision: number } {
  let maxDiff = 0;
  let same = 0;
  for (let i = 0; i < a.length; i++) {
    maxDiff = Math.max(maxDiff, Math.abs(a[i] - b[i]));
    if (a[i] > 0.3 === b[i] > 0.3) same++;
  }
  return { maxDiff, sameDecision: same / a.length };
}

/**
 * What exists so far, end to end on this machine: every built-in model sliced, heads run,
 * boundary tensors framed and decoded as they would cross the mesh, tails run, and the result
 * compared with the whole model.
 */
export async function demoCommand(): Promise<void> {
  const sessions = new SessionCache({ threads: 1 });
  const rows: string[][] = [];
  for (const name of Object.keys(BUILTIN_MODELS) as BuiltinModel[]) {
    const arg = `builtin:${name}`;
    const model = await loadModelArg(arg);
    const slicer = await ModelSlicer.open(model, sessions, { inputShapes: builtinInputShape(arg) });
    const { analysis } = slicer;
    process.stderr.write(`${arg}: ${analysis.cuts.length} cuts found\n`);
    const [input] = analysis.index.inputs;
    const dims = analysis.inputShapes[input];
    const feeds =
      name === 'cnn'
        ? syntheticFeeds(model, analysis.index, analysis.inputShapes, 3)
        : { [input]: new ort.Tensor('float32', textLikeImage(dims[2], dims[3], 3), dims) };
    const output = analysis.index.outputs[0];
    const whole = (await slicer.runWhole(feeds))[output].data as Float32Array;
    const wholeTimes: number[] = [];
    for (let i = 0; i < 3; i++) {
      const t0 = performance.now();
      await slicer.runWhole(feeds);
      wholeTimes.push(performance.now() - t0);
    }
    const wholeMs = median(wholeTimes);
    for (const cut of spread(analysis.cuts, 3)) {
      for (const precision of PRECISIONS) {
        // First run builds the sessions; time the second, as a robot would see it.
        await slicer.runTail(cut.id, precision, await slicer.runHead(cut.id, precision, feeds));
        const t0 = performance.now();
        const sent = await slicer.runHead(cut.id, precision, feeds);
        const t1 = performance.now();
        const chunks = encodeFrameChunks(sent);
        const frame = Buffer.concat(chunks);
        const received = decodeFrame(frame);
        const t2 = performance.now();
        const out = (await slicer.runTail(cut.id, precision, received))[output].data as Float32Array;
        const t3 = performance.now();
        const { maxDiff, sameDecision } = agreement(whole, out);
        rows.push([
          name,
          cut.id,
          `${(100 * cut.headShare).toFixed(0)} %`,
          precision,
          (frame.length / 1024).toFixed(1),
          (t1 - t0).toFixed(2),
          (t2 - t1).toFixed(2),
          (t3 - t2).toFixed(2),
          wholeMs.toFixed(2),
          maxDiff.toExponential(1),
          `${(100 * sameDecision).toFixed(2)} %`,
        ]);
      }
    }
  }
  await sessions.close();
  const header = [
    'model',
    'cut',
    'head share',
    'precision',
    'frame KiB',
    'head ms',
    'codec ms',
    'tail ms',
    'whole ms',
    'max |Δ|',
    'same >0.3',
  ];
  const widths = header.map((h, k) => Math.max(h.length, ...rows.map((r) => r[k].length)));
  const line = (r: string[]): string =>
    r.map((v, k) => (k < 2 ? v.padEnd(widths[k]) : v.padStart(widths[k]))).join('  ');
  process.stdout.write(`\nSplit inference on this machine: head → tensor frame → tail vs the whole model\n`);
  process.stdout.write(`${[line(header), ...rows.map(line)].join('\n')}\n`);
  process.stdout.write(
    `\nThe same cuts run between robots in \`robomesh fleet\`; IOTA ` +
      `anchoring, mapping and ROS 2 are not built yet (see README).\n`,
  );
}
