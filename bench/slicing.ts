import ort from 'onnxruntime-node';
import { type Tensor, decodeFrame, encodeFrame } from '../protocol/tensor-frame.js';
import {
  PRECISIONS,
  type Precision,
  BUILTIN_MODELS,
  type BuiltinModel,
  builtinInputShape,
  loadModelArg,
  node,
  opset13Model,
  serializeModel,
  tensorValueInfo,
  median,
  INFERENCE_MALLOC_TUNABLES,
  textLikeImage,
  SessionCache,
  ModelSlicer,
} from '../nodes/inference/index.js';
import { reexecWithMallocTunables } from '../nodes/util/index.js';
import { type Row, table, writeResults } from './report.js';

/**
 * Per model and cut: head, tail and whole-model times measured interleaved in the same rounds
 * (so machine noise hits all three alike), the (head + tail) ÷ whole ratio, bytes per precision
 * and the output error each precision causes. One ORT thread, as on a small robot CPU; the
 * whole model and the slices get the same session options (SessionCache).
 *
 * Runs in the environment an inference process gets (`inferenceProcessEnv`: glibc malloc
 * tunables, see runtime-env.ts): without it the bench re-executes itself with it, so whole
 * model and slices are always measured in one process under one allocator setting.
 * BENCH_MALLOC=default measures with glibc's defaults instead.
 *
 * Each round runs every part twice in a row, the parts in rotating order (whole, head, tail;
 * head, tail, whole; tail, whole, head; …), so each part's first run always follows another
 * session's run and every part takes every position equally often. Ratios are the median of
 * per-round ratios (each round's head + tail over the same round's whole), which a slow spell
 * of this shared machine moves far less than a ratio of separate medians.
 * - '(h+t)/whole' (the goal's figure, as this bench always measured it): each part's first run
 *   of a round, i.e. right after another session ran (its weights and buffers cache-cold);
 * - 'repeat': the second runs, each following a run of the same session, as on a robot that
 *   serves one part. The difference between the two is the cost of switching sessions, which
 *   a split pays once more than the whole model.
 * Each run is also timed in CPU time (`process.cpuUsage`, less the cost of reading it), which
 * other processes on this shared machine cannot inflate by preempting it.
 *
 * Also measured, to account for the overhead: the fixed cost of one session.run (a 1-float
 * Identity model; a split pays it twice, so where it exceeds 3 % of the whole model's time a
 * ratio ≤ 1.03 cannot be reached with two ORT runs), and per cut the cost of handing the
 * boundary to JS: onnxruntime-node copies every output into a fresh zero-filled ArrayBuffer
 * (no API avoids it, preallocated outputs included), timed here as the same allocation and copy
 * of the boundary tensors in JS ('copy ms').
 *
 * BENCH_ROUNDS: minimum rounds per cut (default 25); BENCH_CUT_MS: time budget per cut that
 * decides how many more rounds small models get (default 3000, at most MAX_ROUNDS).
 */
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 25);
const CUT_MS = Number(process.env.BENCH_CUT_MS ?? 3000);
const MAX_ROUNDS = 400;
/**
 * Runs of each part before timing a cut, and at least WARMUP_MS of them: ORT settles its arenas
 * over the first two or three runs, but the first cut timed after three runs still read 5–15 %
 * slow (detector c237: tail 18.4 ms vs 14.6 ms once warm).
 */
const WARMUP = 3;
const WARMUP_MS = 300;

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

type Part = 'whole' | 'head' | 'tail';
/** Rotated by one each round: no part's first run follows its own last run of the round before. */
const ORDER: Part[] = ['whole', 'head', 'tail'];

/** Rounds for one cut from one timed run of each part: fill CUT_MS, within ROUNDS..MAX_ROUNDS. */
function roundsFor(...once: Timing[]): number {
  const roundMs = 2 * once.reduce((sum, t) => sum + t.wall, 0);
  return Math.min(MAX_ROUNDS, Math.max(ROUNDS, Math.ceil(CUT_MS / roundMs)));
}

/**
 * What onnxruntime-node does with each output after ORT ran: a fresh (zero-filled) ArrayBuffer
 * and a copy into it. Done here with the boundary tensors, to time that share of a split.
 */
function copyBoundary(tensors: Tensor[]): number {
  const t0 = performance.now();
  let keep = 0;
  for (const t of tensors) {
    const src = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    const dst = new Uint8Array(src.byteLength);
    dst.set(src);
    keep += dst[dst.length - 1];
  }
  const ms = performance.now() - t0;
  return keep < 0 ? -ms : ms; // never true: keeps the copies from being optimised away
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
    const copyShares: number[] = [];
    for (const [k, cut] of analysis.cuts.entries()) {
      process.stderr.write(`\r${name}: cut ${k + 1}/${analysis.cuts.length}   `);
      let boundary = await slicer.runHead(cut.id, 'fp32', feeds);
      const parts: Record<Part, () => Promise<unknown>> = {
        whole: () => slicer.runWhole(feeds),
        head: async () => (boundary = await slicer.runHead(cut.id, 'fp32', feeds)),
        tail: () => slicer.runTail(cut.id, 'fp32', boundary),
      };
      const warm0 = performance.now();
      for (let i = 0; i < WARMUP || performance.now() - warm0 < WARMUP_MS; i++)
        for (const run of Object.values(parts)) await run();
      const rounds = roundsFor(await timed(parts.whole), await timed(parts.head), await timed(parts.tail));
      // Each part runs twice in a row per round: the first run follows another session (as the
      // bench always measured), the second follows itself, as on a robot serving one part.
      const first = { whole: [], head: [], tail: [] } as Record<Part, Timing[]>;
      const second = { whole: [], head: [], tail: [] } as Record<Part, Timing[]>;
      const copy: number[] = [];
      for (let r = 0; r < rounds; r++) {
        for (let j = 0; j < ORDER.length; j++) {
          const part = ORDER[(r + j) % ORDER.length];
          first[part].push(await timed(parts[part]));
          second[part].push(await timed(parts[part]));
        }
        copy.push(copyBoundary(boundary));
      }
      const errors = {} as Record<Precision, number>;
      for (const p of PRECISIONS) {
        const out = (await slicer.runTail(cut.id, p, decodeFrame(encodeFrame(await slicer.runHead(cut.id, p, feeds)))))[
          output
        ].data as Float32Array;
        errors[p] = Math.max(...whole.map((v, i) => Math.abs(v - out[i])));
      }
      // Time every cut with the same sessions open (whole model, this cut's head and tail).
      // Left open, earlier cuts' sessions made later heads page-fault on the boundary they
      // return (detector c292 head with 40 more sessions open: 4.3 → 8–13 ms, 120–180 page
      // faults per run instead of 0–50), so ratios drifted up along the list of cuts.
      await slicer.releaseCut(cut.id);
      const m = (xs: Timing[], key: keyof Timing = 'wall'): number => median(xs.map((x) => x[key]));
      // Median of per-round ratios: round r's head + tail over round r's whole.
      const perRound = (runs: Record<Part, Timing[]>, key: keyof Timing): number =>
        median(runs.whole.map((w, r) => (runs.head[r][key] + runs.tail[r][key]) / w[key]));
      const ratio = perRound(first, 'wall');
      const cpuRatio = perRound(first, 'cpu');
      const warmRatio = perRound(second, 'wall');
      ratios.push(ratio);
      cpuRatios.push(cpuRatio);
      warmRatios.push(warmRatio);
      wholeMs.push(m(first.whole));
      wholeCpu.push(m(first.whole, 'cpu'));
      copyShares.push(median(copy) / m(second.whole));
      rows.push({
        model: name,
        cut: cut.id,
        tensors: cut.tensors.length,
        'head share': cut.headShare,
        rounds,
        'head ms': m(first.head),
        'tail ms': m(first.tail),
        'whole ms': m(first.whole),
        '(h+t)/whole': ratio,
        'cpu (h+t)/whole': cpuRatio,
        'repeat (h+t)/whole': warmRatio,
        'copy ms': median(copy),
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
      // Handing the boundary to JS (a copy the whole model does not make), as a share of its run.
      'copy / whole': median(copyShares),
      // The second session.run a split needs, as a share of the whole model's run.
      'extra run / whole': fixed.wall / median(wholeMs),
      'cpu extra run / whole': fixed.cpu / median(wholeCpu),
    });
  }
  await sessions.close();
  const malloc = process.env.GLIBC_TUNABLES ?? 'default';
  process.stdout.write(
    `\nSlicing, 1 ORT thread, ${ROUNDS}–${MAX_ROUNDS} interleaved rounds per cut (budget ` +
      `${CUT_MS} ms) after ≥ ${WARMUP} warm-up runs (≥ ${WARMUP_MS} ms); malloc: ${malloc}\n` +
      `ratios are medians of per-round ratios; (h+t)/whole and cpu: each part's ` +
      `first run of a round (after another session ran); repeat: its second run\n` +
      `copy ms: allocating and copying the boundary in JS, as onnxruntime-node does with every head output\n` +
      `fixed cost of one session.run (1-float Identity): ${(fixed.wall * 1000).toFixed(1)} ` +
      `µs wall, ${(fixed.cpu * 1000).toFixed(1)} µs CPU\n\n` +
      `${table(rows)}\n\n${table(summary)}\n`,
  );
  const path = await writeResults('slicing', {
    rounds: { min: ROUNDS, max: MAX_ROUNDS, cutBudgetMs: CUT_MS },
    warmup: { runs: WARMUP, ms: WARMUP_MS },
    ratio: 'median of per-round ratios',
    threads: 1,
    malloc,
    fixedRunMs: fixed,
    rows,
    summary,
  });
  process.stdout.write(`\nwrote ${path}\n`);
}

if (!reexecWithMallocTunables(INFERENCE_MALLOC_TUNABLES)) await main();
