import type { ChainManifest } from '../../protocol/chain-manifest.js';
import { RobomeshError } from '../../protocol/errors.js';
import type { Tensor } from '../../protocol/tensor-frame.js';
import { INPUT_CUT, type ModelRegistry, median } from '../inference/index.js';
import type { InferClient, PeerCapability, PeerReputation, WorkQueue } from '../mesh/index.js';
import { BoundedQueue } from './bounded-queue.js';

export type ChainErrorCode = 'NO_HOLDER' | 'STAGE_FAILED' | 'CANCELLED';

export class ChainError extends RobomeshError<ChainErrorCode> {
  constructor(code: ChainErrorCode, message: string, options?: ErrorOptions) {
    super(code, message, options);
  }
}

export interface ChainRunnerDeps {
  self: string;
  models: ModelRegistry;
  queue: WorkQueue;
  client: InferClient;
  /** Capability adverts of peers that are connected and in good standing now. */
  peers: () => PeerCapability[];
  reputation: PeerReputation;
}

/** One stage of one request: who ran it, how long it took here, and who failed before it. */
export interface StageRun {
  stage: number;
  robot: string;
  ms: number;
  sentBytes: number;
  failed: { robot: string; code: string; message: string }[];
}

export interface ChainResult {
  outputs: Tensor[];
  stages: StageRun[];
  ms: number;
}

export interface ChainRunOptions {
  /**
   * Per stage attempt; default: 4× the holder's median time here (at least 1 s), or 10 s before
   * it has one, so a holder that stalls costs a frame about one slow run, not ten seconds.
   */
  stageBudgetMs?: number;
  signal?: AbortSignal;
  /** Per stage, the only robots that may run it (benchmarks place stages with it); absent: any holder. */
  pinned?: (readonly string[] | undefined)[];
  /** Called as a stage's frame is handed to a robot (tests kill robots mid-request with it). */
  onStage?: (stage: number, robot: string) => void;
}

/** What became of one frame offered to an open stream. */
export type FrameOutcome =
  | { seq: number; outputs: Tensor[]; runs: StageRun[]; ms: number }
  | { seq: number; dropped: true }
  | { seq: number; failed: string };

/** A stream fed frame by frame (a camera callback): `close` ends it once what was offered is done. */
export interface OpenStream {
  offer(tensors: Tensor[]): Promise<FrameOutcome>;
  close(): Promise<StreamStats>;
}

export interface StreamOptions extends ChainRunOptions {
  /** Called with a frame's seq when the entry queue drops it, or when no holder could finish it. */
  onDropped?: (seq: number) => void;
  onFailed?: (seq: number, why: string) => void;
  /** Frames waiting before each stage, at most (default 2); the entry queue drops oldest-first. */
  maxQueue?: number;
  /**
   * Frames in flight per stage and holder (default 2): a frame's transfer overlaps the previous
   * one's compute, and a stage several robots hold runs on all of them at once.
   */
  window?: number;
}

export interface StreamStats {
  offered: number;
  delivered: number;
  /** Dropped at the entry because the stream outran the chain (oldest first). */
  dropped: number;
  /** Frames no robot holding some stage could finish. */
  failed: number;
  /** Deepest any queue between stages got. */
  maxDepth: number;
  /** Per delivered frame: from being offered to its result, ms. */
  latencies: number[];
  elapsedMs: number;
  /** Stage replacements (a robot failed, another finished the stage). */
  replaced: number;
  /** Per stage: median time of a run as seen here (transfers included), and runs per robot. */
  stages: { medianMs: number; robots: Record<string, number> }[];
}

/** What a robot's chains did since it started (the dashboard shows it). */
export interface ChainCounters {
  /** Frames asked for, by single requests and streams. */
  offered: number;
  delivered: number;
  dropped: number;
  failed: number;
  /** Stage runs that finished on another holder after one failed. */
  replaced: number;
  /** The latest stream's frames per second delivered and p95 latency, ms. */
  lastStream?: { fps: number; p95Ms: number };
}

const OBSERVED_SAMPLES = 7;
/**
 * A time older than this is forgotten: a holder that failed (recorded as very slow) is tried
 * again once that long has passed, as its advert says it is back.
 */
const OBSERVED_MAX_AGE_MS = 30_000;

/** How `got` differs from the tensors a stage must give (undefined: it does not, or nothing is known). */
function mismatch(expected: ChainManifest['stages'][number]['outputs'], got: Tensor[]): string | undefined {
  if (!expected) return undefined;
  if (got.length !== expected.length) return `${got.length} tensors instead of ${expected.length}`;
  for (const e of expected) {
    const t = got.find((x) => x.name === e.name);
    if (!t) return `no '${e.name}'`;
    if (t.dtype !== e.dtype || t.dims.join('x') !== e.dims.join('x'))
      return `'${e.name}' as ${t.dtype} [${t.dims.join(', ')}] instead of ${e.dtype} [${e.dims.join(', ')}]`;
  }
  return undefined;
}
/** Robots a stage is tried on (holders, then stand-ins that may fetch it) before the frame fails. */
const MAX_ATTEMPTS = 4;

/**
 * Runs a model as a chain of stages held by different robots (like Petals' client-routed
 * sequences): the requester sends each boundary to a robot holding the next stage and takes its
 * answer back, so a failed stage is retried on another holder with the tensors still in hand.
 * Holders are ranked by measured time (median of their latest runs here), else their advert.
 */
export class ChainRunner {
  private readonly observed = new Map<string, { ms: number; at: number }[]>();
  /** Stage runs this runner has started and not finished, per robot. */
  private readonly inFlight = new Map<string, number>();
  readonly counters: ChainCounters = { offered: 0, delivered: 0, dropped: 0, failed: 0, replaced: 0 };

  constructor(private readonly deps: ChainRunnerDeps) {}

  /**
   * Robots holding stage `hash`, best first by expected time: measured here (median of the latest
   * runs) or advertised, times the work queued ahead (what this runner has in flight there, or
   * the robot's advertised queue if longer). Frames of a stream spread over several holders so.
   */
  holders(hash: string, exclude: ReadonlySet<string> = new Set()): string[] {
    const { self, models, queue, peers } = this.deps;
    const expected: { robot: string; ms: number }[] = [];
    const ahead = (robot: string, queued: number): number => 1 + Math.max(this.inFlight.get(robot) ?? 0, queued);
    if (models.has(hash) && !exclude.has(self)) {
      const own = this.measured(hash, self) ?? models.profile(hash)?.wholeMs ?? 1;
      expected.push({ robot: self, ms: own * ahead(self, queue.length) });
    }
    for (const p of peers()) {
      const m = p.models.find((x) => x.hash === hash);
      if (!m || exclude.has(p.robot)) continue;
      const ms = (this.measured(hash, p.robot) ?? m.wholeMs * (p.slowdown ?? 1)) * ahead(p.robot, p.queue);
      expected.push({ robot: p.robot, ms });
    }
    return expected.sort((a, b) => a.ms - b.ms).map((e) => e.robot);
  }

  /**
   * When every holder of a stage failed: a peer that may fetch the stage and run it (robots that
   * help run a chain fetch its stages on demand, within their budget), those holding another
   * stage of the same chain first. Others refuse at once with UNKNOWN_MODEL.
   */
  private standIn(manifest: ChainManifest, tried: ReadonlySet<string>): string | undefined {
    const ours = new Set(manifest.stages.map((s) => s.hash));
    const candidates = this.deps.peers().filter((p) => !tried.has(p.robot));
    const related = candidates.find((p) => p.models.some((m) => ours.has(m.hash)));
    return (related ?? candidates[0])?.robot;
  }

  /**
   * What a run of the whole chain is expected to take from here: each stage on its best holder
   * (as `holders` ranks them), plus shipping its input and output to a holder that is not this
   * robot (`bandwidth` in bytes per ms and `rtt` per peer). Undefined when a stage has no holder.
   */
  expectedMs(
    manifest: ChainManifest,
    inputBytes: number,
    link: (peer: string) => { bandwidth: number; rttMs: number },
  ): { ms: number; last: string } | undefined {
    let ms = 0;
    let last = '';
    for (const [k, stage] of manifest.stages.entries()) {
      const ranked = this.holders(stage.hash);
      const robot = ranked[0];
      if (robot === undefined) return undefined;
      ms += this.expectedOn(stage.hash, robot);
      if (robot !== this.deps.self) {
        const { bandwidth, rttMs } = link(robot);
        const bytes = (k === 0 ? inputBytes : manifest.stages[k - 1].outBytes) + stage.outBytes;
        ms += bytes / Math.max(bandwidth, 1e-6) + rttMs;
      }
      last = robot;
    }
    return { ms, last };
  }

  private expectedOn(hash: string, robot: string): number {
    const { self, models, peers } = this.deps;
    const measured = this.measured(hash, robot);
    if (measured !== undefined) return measured;
    if (robot === self) return models.profile(hash)?.wholeMs ?? 1;
    const p = peers().find((x) => x.robot === robot);
    return (p?.models.find((m) => m.hash === hash)?.wholeMs ?? 1) * (p?.slowdown ?? 1);
  }

  private busy(robot: string, delta: number): void {
    const n = (this.inFlight.get(robot) ?? 0) + delta;
    if (n > 0) this.inFlight.set(robot, n);
    else this.inFlight.delete(robot);
  }

  /** Median of the robot's latest times for the stage, forgetting those older than OBSERVED_MAX_AGE_MS. */
  private measured(hash: string, robot: string): number | undefined {
    const now = performance.now();
    const list = this.observed.get(`${hash}:${robot}`)?.filter((o) => now - o.at <= OBSERVED_MAX_AGE_MS);
    if (!list?.length) return undefined;
    return median(list.map((o) => o.ms));
  }

  private record(hash: string, robot: string, ms: number): void {
    const key = `${hash}:${robot}`;
    const list = this.observed.get(key) ?? [];
    list.push({ ms, at: performance.now() });
    if (list.length > OBSERVED_SAMPLES) list.shift();
    this.observed.set(key, list);
  }

  /** Runs stage `k` of `manifest` on `tensors`, on the best holder, replacing any that fails. */
  async runStage(
    manifest: ChainManifest,
    k: number,
    tensors: Tensor[],
    options: ChainRunOptions = {},
  ): Promise<{ outputs: Tensor[]; run: StageRun }> {
    const { self, models, queue, client } = this.deps;
    const { hash } = manifest.stages[k];
    const failed: StageRun['failed'] = [];
    const tried = new Set<string>();
    const allowed = options.pinned?.[k];
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const robot =
        this.holders(hash, tried).find((r) => !allowed || allowed.includes(r)) ??
        (failed.length > 0 && !allowed ? this.standIn(manifest, tried) : undefined);
      if (robot === undefined) break;
      tried.add(robot);
      if (options.signal?.aborted) throw new ChainError('CANCELLED', 'chain request cancelled');
      options.onStage?.(k, robot);
      const t0 = performance.now();
      this.busy(robot, 1);
      try {
        let outputs: Tensor[];
        let sentBytes = 0;
        if (robot === self) {
          outputs = await queue.run(() => models.runFrom(hash, INPUT_CUT, 'fp32', 'channel', tensors));
        } else {
          const task = { model: hash, cut: INPUT_CUT, precision: 'fp32', granularity: 'channel' } as const;
          const known = this.measured(hash, robot);
          const budget =
            options.stageBudgetMs ?? (known === undefined ? 10_000 : Math.min(10_000, Math.max(1000, 4 * known)));
          const result = await client.infer(robot, task, tensors, budget, options.signal);
          outputs = result.outputs;
          sentBytes = result.sentBytes;
        }
        const wrong = mismatch(manifest.stages[k].outputs, outputs);
        if (wrong) {
          if (robot !== self) this.deps.reputation.penalise(robot, `chain stage answer: ${wrong}`, 5, 'malformed');
          throw new ChainError('STAGE_FAILED', `${robot} answered stage ${k + 1} with ${wrong}`);
        }
        const ms = performance.now() - t0;
        this.record(hash, robot, ms);
        return { outputs, run: { stage: k, robot, ms, sentBytes, failed } };
      } catch (err) {
        const code = err instanceof RobomeshError ? err.code : 'INTERNAL';
        if (code === 'CANCELLED') throw new ChainError('CANCELLED', 'chain request cancelled', { cause: err });
        // A robot that failed is not picked first again until it answers well.
        this.record(hash, robot, 10 * (performance.now() - t0 + 1000));
        failed.push({ robot, code, message: (err as Error).message });
        // The tensors themselves were refused: every other robot would refuse them too.
        if (code === 'BAD_TENSORS') break;
      } finally {
        this.busy(robot, -1);
      }
    }
    if (failed.length === 0)
      throw new ChainError('NO_HOLDER', `no robot holds stage ${k + 1} (${hash.slice(0, 12)}…) of this chain`);
    const last = failed[failed.length - 1];
    throw new ChainError(
      'STAGE_FAILED',
      `stage ${k + 1} failed on ${failed.length} robot(s); last: ${last.robot}: ${last.message}`,
    );
  }

  /** One request through every stage in turn. */
  async run(manifest: ChainManifest, inputs: Tensor[], options: ChainRunOptions = {}): Promise<ChainResult> {
    const t0 = performance.now();
    const stages: StageRun[] = [];
    let tensors = inputs;
    this.counters.offered++;
    try {
      for (let k = 0; k < manifest.stages.length; k++) {
        const { outputs, run } = await this.runStage(manifest, k, tensors, options);
        stages.push(run);
        if (run.failed.length > 0) this.counters.replaced++;
        tensors = outputs;
      }
    } catch (err) {
      this.counters.failed++;
      throw err;
    }
    this.counters.delivered++;
    return { outputs: tensors, stages, ms: performance.now() - t0 };
  }

  /** A stream fed one frame at a time (see `stream`); each offer resolves with that frame's fate. */
  open(manifest: ChainManifest, options: StreamOptions = {}): OpenStream {
    const waiting = new Map<number, { t0: number; settle: (o: FrameOutcome) => void }>();
    const pending: Tensor[][] = [];
    let wake: (() => void) | undefined;
    let closed = false;
    let offered = 0;
    async function* source(): AsyncGenerator<Tensor[]> {
      for (;;) {
        while (pending.length > 0) yield pending.shift()!;
        if (closed) return;
        await new Promise<void>((resolve) => (wake = resolve));
      }
    }
    const settle = (seq: number, outcome: FrameOutcome): void => {
      waiting.get(seq)?.settle(outcome);
      waiting.delete(seq);
    };
    const done = this.stream(
      manifest,
      source(),
      (seq, outputs, runs) => settle(seq, { seq, outputs, runs, ms: performance.now() - (waiting.get(seq)?.t0 ?? 0) }),
      {
        ...options,
        onDropped: (seq) => settle(seq, { seq, dropped: true }),
        onFailed: (seq, why) => settle(seq, { seq, failed: why }),
      },
    );
    return {
      offer: (tensors) => {
        if (closed) return Promise.reject(new ChainError('CANCELLED', 'the stream is closed'));
        const seq = offered++;
        const outcome = new Promise<FrameOutcome>((resolve) =>
          waiting.set(seq, { t0: performance.now(), settle: resolve }),
        );
        pending.push(tensors);
        wake?.();
        return outcome;
      },
      close: () => {
        closed = true;
        wake?.();
        return done;
      },
    };
  }

  /**
   * A stream of frames pipelined through the chain: stage k works on frame t while stage k + 1
   * works on frame t − 1. Queues between stages are bounded (a full one holds the stage before
   * it back); the entry queue drops its oldest frame when the source outruns the chain. Results
   * come out in frame order through `onResult`. Resolves when the source ends and all is done.
   */
  async stream(
    manifest: ChainManifest,
    source: AsyncIterable<Tensor[]>,
    onResult: (seq: number, outputs: Tensor[], runs: StageRun[]) => void,
    options: StreamOptions = {},
  ): Promise<StreamStats> {
    const cap = options.maxQueue ?? 2;
    const perHolder = Math.max(1, options.window ?? 2);
    type Frame = { seq: number; t0: number; tensors: Tensor[]; runs: StageRun[] };
    const stats: StreamStats = {
      offered: 0,
      delivered: 0,
      dropped: 0,
      failed: 0,
      maxDepth: 0,
      latencies: [],
      elapsedMs: 0,
      replaced: 0,
      stages: [],
    };
    const times = manifest.stages.map(() => [] as number[]);
    const robots = manifest.stages.map(() => ({}) as Record<string, number>);
    const queues = manifest.stages.map(() => new BoundedQueue<Frame>(cap));
    const started = performance.now();
    const stage = async (k: number): Promise<void> => {
      const allowed = options.pinned?.[k];
      const holding = this.holders(manifest.stages[k].hash).filter((r) => !allowed || allowed.includes(r));
      const window = perHolder * Math.max(1, holding.length);
      const input = queues[k];
      const next = queues[k + 1];
      // Runs started and not yet handed on, in frame order; at most `window` of them. Each is boxed:
      // a promise handed out bare would be adopted by `take`, and a failed frame's undefined would
      // read as the queue's end (the stage stopped handing frames on after its first failure).
      const running = new BoundedQueue<{ run: Promise<Frame | undefined> }>(Math.max(1, window - 1));
      const hand = (async () => {
        for (;;) {
          const pending = await running.take();
          if (pending === undefined) break;
          const frame = await pending.run;
          if (!frame) continue;
          if (next) {
            await next.put(frame);
            stats.maxDepth = Math.max(stats.maxDepth, next.length);
          } else {
            stats.delivered++;
            stats.latencies.push(performance.now() - frame.t0);
            onResult(frame.seq, frame.tensors, frame.runs);
          }
        }
        next?.close();
      })();
      for (;;) {
        const frame = await input.take();
        if (frame === undefined) break;
        const run = this.runStage(manifest, k, frame.tensors, options).then(
          ({ outputs, run: r }): Frame => {
            stats.replaced += r.failed.length > 0 ? 1 : 0;
            times[k].push(r.ms);
            robots[k][r.robot] = (robots[k][r.robot] ?? 0) + 1;
            return { ...frame, tensors: outputs, runs: [...frame.runs, r] };
          },
          (err: Error) => {
            stats.failed++;
            options.onFailed?.(frame.seq, err.message);
            return undefined;
          },
        );
        if (window === 1) await run;
        await running.put({ run });
      }
      running.close();
      await hand;
    };
    const workers = manifest.stages.map((_, k) => stage(k));
    let seq = 0;
    for await (const tensors of source) {
      stats.offered++;
      const dropped = queues[0].offerDroppingOldest({ seq: seq++, t0: performance.now(), tensors, runs: [] });
      if (dropped) {
        stats.dropped++;
        options.onDropped?.(dropped.seq);
      }
      stats.maxDepth = Math.max(stats.maxDepth, queues[0].length);
    }
    queues[0].close();
    await Promise.all(workers);
    stats.elapsedMs = performance.now() - started;
    const c = this.counters;
    c.offered += stats.offered;
    c.delivered += stats.delivered;
    c.dropped += stats.dropped;
    c.failed += stats.failed;
    c.replaced += stats.replaced;
    const sorted = [...stats.latencies].sort((x, y) => x - y);
    c.lastStream = {
      fps: (1000 * stats.delivered) / Math.max(1, stats.elapsedMs),
      p95Ms: sorted[Math.min(sorted.length - 1, Math.floor(0.95 * sorted.length))] ?? NaN,
    };
    stats.stages = times.map((list, k) => ({
      medianMs: list.length ? median(list) : NaN,
      robots: robots[k],
    }));
    return stats;
  }
}
