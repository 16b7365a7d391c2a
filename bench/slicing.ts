import { spawnSync } from 'node:child_process';
import ort from 'onnxruntime-node';
import { decodeFrame, encodeFrame } from '../protocol/tensor-frame.js';
import { PRECISIONS, type Precision } from '../nodes/inference/boundary.js';
import { BUILTIN_MODELS, type BuiltinModel, builtinInputShape, loadModelArg } from '../nodes/inference/bundled-models.js';
import { node, opset13Model, serializeModel, tensorValueInfo } from '../nodes/inference/onnx-model.js';
import { median } from '../nodes/inference/profiler.js';
import { hasInferenceEnv, inferenceProcessEnv } from '../nodes/inference/runtime-env.js';
import { textLikeImage } from '../nodes/inference/sample-images.js';
import { SessionCache } from '../nodes/inference/sessions.js';
import { ModelSlicer } from '../nodes/inference/slicer.js';
import { type Row, table, writeResults } from './report.js';

/**
 * Per model and cut: head, tail and whole-model medians measured interleaved in the same rounds
 * (so machine noise hits all three alike), the (head + tail) ÷ whole ratio, bytes per precision
 * and the output error each precision causes. One ORT thread, as on a small robot CPU.
 *
 * Runs in the environment an inference process gets (`inferenceProcessEnv`: glibc malloc
 * tunables, see runtime-env.ts): without it the bench re-executes itself with it, so whole
 * model and slices are always measured in one process under one allocator setting.
 * BENCH_MALLOC=default measures with glibc's defaults instead.
 *
 * Per round each part runs twice in a row: '(h+t)/whole' (the goal's figure) takes the first runs,
 * each following another session's run as this bench always measured; 'repeat' takes the second,
 * following a run of the same session, as on a robot that serves one part (its weights and
 * buffers still in cache).
 *
 * Each run is timed twice: wall clock (the goal's figure) and the CPU time the process spent in
 * it (`process.cpuUsage`, less the cost of reading it), which other processes on this shared
 * machine cannot inflate by preempting it. Also measured: the fixed cost of one session.run
 * (a 1-float Identity model); a split pays it twice, so where it exceeds 3 % of the whole
 * model's time a ratio ≤ 1.03 cannot be reached with two ORT runs.
 */
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 25);
/** Runs of each part before timing a cut: ORT settles its arenas over the first two or three. */
const WARMUP = 3;

interface Timing {
  wall: number;
  cpu: number;
}

let cpuReadCost = 0;

function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

async function timed(fn: () => Promise<unknown>): Promise<Timing> {
  const c0 = cpuMs();
  const t0 = performance.now();
  await fn();
  const wall = performance.now() - t0;
  return { wall, cpu: Math.max(0, cpuMs() - c0 - cpuReadCost) };
}

/** Median CPU time of an empty measuring window: subtracted from every CPU timing. */
function calibrateCpuRead(): number {
  const d: number[] = [];
  for (let i = 0; i < 2000; i++) {
    const c0 = cpuMs();
    d.push(cpuMs() - c0);
  }
  return median(d);
}

/** Median wall and CPU ms of one run of a 1-float Identity model: the fixed cost of a run. */
async function fixedRunCost(sessions: SessionCache): Promise<Timing> {
  const bytes = serializeModel(
    opset13Model('robomesh bench', {
      name: 'identity',
      node: [node('Identity', ['x'], ['y'])],
      input: [tensorValueInfo('x', 1, [1])],
      output: [tensorValueInfo('y', 1, [1])],
    }),
  );
  const session = await sessions.get('bench:identity', () => bytes);
  const feeds = { x: new ort.Tensor('float32', Float32Array.of(1), [1]) };
  for (let i = 0; i < 50; i++) await session.run(feeds);
  const runs: Timing[] = [];
  for (let i = 0; i < 2000; i++) runs.push(await timed(() => session.run(feeds)));
  await sessions.release((k) => k === 'bench:identity');
  return { wall: median(runs.map((r) => r.wall)), cpu: median(runs.map((r) => r.cpu)) };
}

async function main(): Promise<void> {
  const sessions = new SessionCache({ threads: 1 }, 1024);
  cpuReadCost = calibrateCpuRead();
  const fixed = await fixedRunCost(sessions);
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
    const cpuRatios: number[] = [];
    const warmRatios: number[] = [];
    const wholeMs: number[] = [];
    const wholeCpu: number[] = [];
    for (const [k, cut] of analysis.cuts.entries()) {
      process.stderr.write(`\r${name}: cut ${k + 1}/${analysis.cuts.length}   `);
      let boundary = await slicer.runHead(cut.id, 'fp32', feeds);
      for (let i = 0; i < WARMUP; i++) {
        await slicer.runWhole(feeds);
        boundary = await slicer.runHead(cut.id, 'fp32', feeds);
        await slicer.runTail(cut.id, 'fp32', boundary);
      }
      // Each part runs twice in a row per round: the first run follows another session (as the
      // bench always measured), the second follows itself, as on a robot serving one part.
      const [w, h, t, w2, h2, t2] = [[], [], [], [], [], []] as Timing[][];
      for (let r = 0; r < ROUNDS; r++) {
        for (const [first, second, run] of [
          [w, w2, () => slicer.runWhole(feeds)],
          [h, h2, () => slicer.runHead(cut.id, 'fp32', feeds)],
          [t, t2, () => slicer.runTail(cut.id, 'fp32', boundary)],
        ] as const) {
          first.push(await timed(run));
          second.push(await timed(run));
        }
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
      const m = (xs: Timing[], key: keyof Timing): number => median(xs.map((x) => x[key]));
      const ratio = (m(h, 'wall') + m(t, 'wall')) / m(w, 'wall');
      const cpuRatio = (m(h, 'cpu') + m(t, 'cpu')) / m(w, 'cpu');
      const warmRatio = (m(h2, 'wall') + m(t2, 'wall')) / m(w2, 'wall');
      ratios.push(ratio);
      cpuRatios.push(cpuRatio);
      warmRatios.push(warmRatio);
      wholeMs.push(m(w, 'wall'));
      wholeCpu.push(m(w, 'cpu'));
      rows.push({
        model: name,
        cut: cut.id,
        tensors: cut.tensors.length,
        'head share': cut.headShare,
        'head ms': m(h, 'wall'),
        'tail ms': m(t, 'wall'),
        'whole ms': m(w, 'wall'),
        '(h+t)/whole': ratio,
        'cpu (h+t)/whole': cpuRatio,
        'repeat (h+t)/whole': warmRatio,
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
      'whole ms': median(wholeMs),
      'median (h+t)/whole': median(ratios),
      'max (h+t)/whole': Math.max(...ratios),
      'cuts ≤ 1.03': `${ratios.filter((r) => r <= 1.03).length}/${ratios.length}`,
      'cpu median': median(cpuRatios),
      'cpu ≤ 1.03': `${cpuRatios.filter((r) => r <= 1.03).length}/${cpuRatios.length}`,
      'repeat median': median(warmRatios),
      'repeat ≤ 1.03': `${warmRatios.filter((r) => r <= 1.03).length}/${warmRatios.length}`,
      // The second session.run a split needs, as a share of the whole model's run.
      'extra run / whole': fixed.wall / median(wholeMs),
      'cpu extra run / whole': fixed.cpu / median(wholeCpu),
    });
  }
  await sessions.close();
  const malloc = process.env.GLIBC_TUNABLES ?? 'default';
  process.stdout.write(
    `\nSlicing, 1 ORT thread, medians of ${ROUNDS} interleaved rounds after ${WARMUP} warm-up runs; malloc: ${malloc}\n` +
      `(h+t)/whole and cpu: each part's first run of a round (after another session ran); repeat: its second run\n` +
      `fixed cost of one session.run (1-float Identity): ${(fixed.wall * 1000).toFixed(1)} µs wall, ${(fixed.cpu * 1000).toFixed(1)} µs CPU\n\n` +
      `${table(rows)}\n\n${table(summary)}\n`,
  );
  const path = await writeResults('slicing', {
    rounds: ROUNDS,
    warmup: WARMUP,
    threads: 1,
    malloc,
    fixedRunMs: fixed,
    rows,
    summary,
  });
  process.stdout.write(`\nwrote ${path}\n`);
}

/**
 * Re-executes this script in the inference process environment when it does not have it yet
 * (glibc reads its tunables only at start); returns false when this process should measure.
 */
function reexecInInferenceEnv(): boolean {
  if (process.env.BENCH_MALLOC === 'default' || hasInferenceEnv()) return false;
  const child = spawnSync(process.execPath, [...process.execArgv, ...process.argv.slice(1)], { stdio: 'inherit', env: inferenceProcessEnv() });
  process.exitCode = child.status ?? 1;
  return true;
}

if (!reexecInInferenceEnv()) await main();
