import { EventEmitter } from 'node:events';
import { DTYPES } from '../../protocol/dtypes.js';
import type { RobomeshError } from '../../protocol/errors.js';
import { SchedulerError } from './errors.js';
import { type Tensor, elementCount } from '../../protocol/tensor-frame.js';
import { type Precision, INPUT_CUT, type ModelRegistry, judgeExit, tensorsToFeeds } from '../inference/index.js';
import type { PeerCapability, InferClient, RemoteResult, WorkQueue } from '../mesh/index.js';
import type { LinkEstimator } from './links.js';
import { type Plan, type PeerOffer, rankPlans } from './planner.js';
import type { ChainRunner } from './chain.js';
import type { ChainManifest } from '../../protocol/chain-manifest.js';

export interface InferOptions {
  /** The request must complete within this many ms (default 10 s). */
  deadlineMs?: number;
  precisions?: Precision[];
  /** Only these peers may execute. */
  executors?: string[];
  /** Force a plan kind (benchmarks compare static choices with the scheduler's). */
  force?: { kind: Plan['kind']; cut?: string; precision?: Precision; peer?: string; exit?: boolean };
  /** Leave exits out (benchmarks compare with and without). */
  noExits?: boolean;
}

export interface ExecutorResult {
  executor: string;
  outputs?: Tensor[];
  error?: string;
}

export interface Decision {
  id: number;
  model: string;
  plan: Plan;
  /** Every plan considered, fastest first (the top few). */
  alternatives: Plan[];
  executor: string;
  actualMs: number;
  /** Where the measured time went: head here, the remote call (and the executor's compute in it), a local tail. */
  timings: { headMs?: number; remoteMs?: number; remoteComputeMs?: number; localMs?: number };
  failovers: { peer: string; code: string; message: string }[];
  /** Tensor bytes sent to and received from the executor that answered (absent: none). */
  bytes?: { sent: number; received: number };
  /** The exit the plan ran after its head: whether it answered, and how sure it was. */
  exit?: { cut: string; taken: boolean; confidence: number };
}

export interface InferOutcome {
  outputs: Tensor[];
  decision: Decision;
  /** The executor that answered (one entry). */
  results: ExecutorResult[];
}

export interface SchedulerDeps {
  self: string;
  models: ModelRegistry;
  queue: WorkQueue;
  client: InferClient;
  links: LinkEstimator;
  /** How much slower than unloaded this robot computes now (ComputeLoad). */
  load: { slowdown(): number };
  /** Capability adverts of peers that are connected and in good standing now. */
  peers: () => PeerCapability[];
  /**
   * Chains this robot may run (its `chains` config) and the runner: a model with a chain gets a
   * 'chain' plan beside the others, and is planned even when this robot does not hold it.
   */
  chains?: { runner: ChainRunner; manifests: readonly ChainManifest[] };
}

/** A measured time older than this gives way to the profile or advert (see `observed`). */
const OBSERVED_MAX_AGE_MS = 15_000;

/** Weight of each outcome in an exit's running exit rate. */
const EXIT_RATE_WEIGHT = 0.05;

/** Measured times per key the planned time is the median of. */
const OBSERVED_SAMPLES = 7;

/** Decisions the prediction error is the median over. */
const ERROR_WINDOW = 100;

/** Safety margin for a remote part beyond its prediction before it counts as stalled. */
const STALL_FACTOR = 1.5;
const STALL_MARGIN_MS = 250;

/**
 * Chooses, per request, where to run each part of a model, runs it, and falls back when a peer
 * fails or stalls: the request completes (locally at worst) within its deadline. Every decision
 * is emitted as a 'decision' event with the prediction and the measured outcome.
 */
export class Scheduler extends EventEmitter<{ decision: [Decision] }> {
  private nextId = 1;
  readonly decisions: Decision[] = [];
  /**
   * Measured times that replace the start-up profile and the peers' adverts as requests run
   * (the median of the latest OBSERVED_SAMPLES: under a CPU quota a run takes either its time or
   * that plus the rest of the quota period, and an average sits between the two, where no run
   * ever lands): local head per (model, cut, precision), local whole per model, remote tail compute
   * per (peer, model, cut). Profiles are short and taken cold; live traffic is the truth, while
   * it is fresh: a figure not refreshed for OBSERVED_MAX_AGE_MS gives way to the advert again (a
   * peer once measured slow, then never asked again, would otherwise stay slow for ever).
   */
  private readonly observed = new Map<string, { ms: number; at: number; samples: number[] }>();
  /** The chain each 'chain' plan stands for (plans are short-lived: weakly held). */
  private readonly chainOf = new WeakMap<Plan, ChainManifest>();
  /** |predicted ÷ measured − 1| of the latest decisions that ran as planned. */
  private readonly errors: number[] = [];
  /** Requests whose plan ran an exit, and how many of them it answered. */
  readonly exitCounts = { asked: 0, taken: 0 };
  /** Exit rates as measured here, per exit hash (starting from the rate found when it was fitted). */
  private readonly exitRates = new Map<string, number>();
  /** When a plan was last asked for: a robot that never requests needs no link estimates. */
  lastPlannedAt = 0;

  constructor(private readonly deps: SchedulerDeps) {
    super();
  }

  /** A run that went as planned: `predictedMs` against what it took (logged tasks report theirs here). */
  recordPrediction(predictedMs: number, actualMs: number): void {
    if (!(actualMs > 0) || !(predictedMs >= 0)) return;
    this.errors.push(Math.abs(predictedMs / actualMs - 1));
    if (this.errors.length > ERROR_WINDOW) this.errors.shift();
  }

  /** Median |predicted ÷ measured − 1| over the latest decisions (undefined before the first). */
  predictionError(): number | undefined {
    if (this.errors.length === 0) return undefined;
    const s = [...this.errors].sort((a, b) => a - b);
    const m = s.length >> 1;
    return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
  }

  /** The exit rate to plan with: measured here, else as fitted. */
  exitRate(hash: string, fitted: number): number {
    return this.exitRates.get(hash) ?? fitted;
  }

  plans(model: string, inputs: Tensor[], precisions: Precision[] = ['fp32', 'fp16', 'int8'], withExits = true): Plan[] {
    const chained = this.chainPlans(model, inputs);
    if (!this.deps.models.has(model) && chained.length > 0) return chained;
    const held = this.heldPlans(model, inputs, precisions, withExits);
    return chained.length ? [...held, ...chained].sort((a, b) => a.predictedMs - b.predictedMs) : held;
  }

  /** A 'chain' plan per chain of `model` whose every stage has a holder now. */
  private chainPlans(model: string, inputs: Tensor[]): Plan[] {
    const chains = this.deps.chains;
    if (!chains) return [];
    const inputBytes = inputs.reduce((s, t) => s + t.data.byteLength, 0);
    return chains.manifests.flatMap((manifest) => {
      if (manifest.model !== model) return [];
      const expected = chains.runner.expectedMs(manifest, inputBytes, (peer) => this.deps.links.get(peer));
      if (!expected) return [];
      const breakdown = { headMs: 0, transferMs: 0, rttMs: 0, queueMs: 0, tailMs: expected.ms };
      const plan: Plan = {
        kind: 'chain',
        peer: expected.last,
        precision: manifest.stages[0].outPrecision,
        predictedMs: expected.ms,
        breakdown,
      };
      this.chainOf.set(plan, manifest);
      return [plan];
    });
  }

  private heldPlans(model: string, inputs: Tensor[], precisions: Precision[], withExits: boolean): Plan[] {
    const { models, queue, links } = this.deps;
    this.lastPlannedAt = Date.now();
    const slicer = models.get(model);
    const profile = models.profile(model);
    if (!profile)
      throw new SchedulerError('NOT_PROFILED', `model ${model.slice(0, 12)}… has no profile on this robot yet`);
    const headMs = new Map(profile.cuts.map((c) => [c.id, c.headMs]));
    const tailMs = new Map(profile.cuts.map((c) => [c.id, c.tailMs]));
    // Times as profiled (or observed, brought back to unloaded speed), scaled by how loaded the
    // robot that runs them is now: this one measures its own, peers advertise theirs.
    const selfSlowdown = this.deps.load.slowdown();
    const now = Date.now();
    const seen = (key: string, fallback: number, slowdown = selfSlowdown): number => {
      const o = this.observed.get(key);
      return (o && now - o.at <= OBSERVED_MAX_AGE_MS ? o.ms : fallback) * slowdown;
    };
    const outputBytes = slicer.analysis.index.outputs.reduce((sum, name) => {
      const s = slicer.analysis.shapes.get(name);
      return sum + (s ? elementCount(s.dims) * DTYPES[s.dtype].bytes : 0);
    }, 0);
    const offers: PeerOffer[] = this.deps.peers().flatMap((p) => {
      const m = p.models.find((x) => x.hash === model);
      if (!m) return [];
      const link = links.get(p.robot);
      const slowdown = p.slowdown ?? 1;
      const tailMs = Object.fromEntries(
        Object.entries(m.tailMs).map(([cut, ms]) => [cut, seen(`tail:${p.robot}:${model}:${cut}`, ms, slowdown)]),
      );
      const wholeMs = seen(`tail:${p.robot}:${model}:${INPUT_CUT}`, m.wholeMs, slowdown);
      return [{ peer: p.robot, bandwidth: link.bandwidth, rttMs: link.rttMs, queue: p.queue, wholeMs, tailMs }];
    });
    return rankPlans({
      localWholeMs: seen(`whole:${model}`, profile.wholeMs),
      localQueue: queue.length,
      inputBytes: inputs.reduce((s, t) => s + t.data.byteLength, 0),
      outputBytes,
      cuts: slicer.analysis.cuts
        .filter((c) => headMs.has(c.id))
        .map((c) => ({
          id: c.id,
          bytes: c.bytes,
          headMs: headMs.get(c.id)!,
          headMsAt: Object.fromEntries(
            precisions.map((p) => [p, seen(`head:${model}:${c.id}:${p}`, headMs.get(c.id)!)]),
          ),
          localTailMs: tailMs.has(c.id) ? seen(`localtail:${model}:${c.id}`, tailMs.get(c.id)!) : undefined,
        })),
      peers: offers,
      precisions,
      exits: withExits
        ? models
            .exits(model)
            .filter(({ exit }) => inputs.length === 1 && inputs[0].dims.join() === exit.info.inputShape.join())
            .map(({ exit, exitMs }) => ({
              cut: exit.info.cut,
              hash: exit.hash,
              exitMs: exitMs * selfSlowdown,
              rate: this.exitRate(exit.hash, exit.info.exitRate),
            }))
        : [],
    });
  }

  /** Records a measured time brought back to unloaded speed (÷ the runner's slowdown then). */
  private observe(key: string, ms: number | undefined, slowdown: number): void {
    if (ms === undefined || !(ms >= 0)) return;
    const norm = ms / slowdown;
    const now = Date.now();
    const prev = this.observed.get(key);
    const samples = prev && now - prev.at <= OBSERVED_MAX_AGE_MS ? [...prev.samples, norm] : [norm];
    if (samples.length > OBSERVED_SAMPLES) samples.shift();
    const sorted = [...samples].sort((a, b) => a - b);
    const m = sorted.length >> 1;
    this.observed.set(key, { ms: sorted.length % 2 ? sorted[m] : (sorted[m - 1] + sorted[m]) / 2, at: now, samples });
  }

  private slowdownOf(peer: string | undefined): number {
    if (peer === undefined) return this.deps.load.slowdown();
    return this.deps.peers().find((p) => p.robot === peer)?.slowdown ?? 1;
  }

  async infer(model: string, inputs: Tensor[], options: InferOptions = {}): Promise<InferOutcome> {
    const start = performance.now();
    const deadline = start + (options.deadlineMs ?? 10_000);
    const allowed = options.executors ? new Set(options.executors) : undefined;
    const ranked = this.plans(model, inputs, options.precisions, !options.noExits).filter(
      (p) => !allowed || !p.peer || allowed.has(p.peer),
    );
    const plan = pick(ranked, options.force);
    const chainManifest = this.chainOf.get(plan);
    const failovers: Decision['failovers'] = [];
    const timings: Decision['timings'] = {};
    let exitSeen: Decision['exit'];
    let bytes: Decision['bytes'];
    const finish = (executor: string, outputs: Tensor[], results: ExecutorResult[]): InferOutcome => {
      const decision: Decision = {
        id: this.nextId++,
        model,
        plan,
        alternatives: ranked.slice(0, 5),
        executor,
        actualMs: performance.now() - start,
        timings,
        failovers,
        ...(exitSeen ? { exit: exitSeen } : {}),
        ...(bytes ? { bytes } : {}),
      };
      const peer = executor === this.deps.self ? undefined : executor;
      const self = this.slowdownOf(undefined);
      if (plan.kind === 'local' && !plan.exit) this.observe(`whole:${model}`, timings.localMs, self);
      if (plan.kind === 'local' && plan.exit) this.observe(`localtail:${model}:${plan.cut}`, timings.localMs, self);
      if (timings.headMs !== undefined)
        this.observe(`head:${model}:${plan.cut}:${plan.precision}`, timings.headMs, self);
      if (peer) this.observe(`tail:${peer}:${model}:${plan.cut}`, timings.remoteComputeMs, this.slowdownOf(peer));
      // Only decisions that ran as planned say how good the prediction was (a failover is another plan).
      // An exit's plan predicts a mean; each run is judged by the branch it took.
      const { exitMs, afterExitMs } = plan.breakdown;
      const predicted =
        exitSeen && afterExitMs !== undefined
          ? plan.breakdown.headMs + (exitMs ?? 0) + (exitSeen.taken ? 0 : afterExitMs)
          : plan.predictedMs;
      if (failovers.length === 0 && (plan.kind === 'local' || peer === plan.peer || exitSeen?.taken))
        this.recordPrediction(predicted, decision.actualMs);
      this.decisions.push(decision);
      if (this.decisions.length > 500) this.decisions.shift();
      this.emit('decision', decision);
      return { outputs, decision, results };
    };

    if (plan.kind === 'chain' && chainManifest && this.deps.chains) {
      const signal = AbortSignal.timeout(Math.max(1, Math.ceil(deadline - performance.now())));
      const run = await this.deps.chains.runner.run(chainManifest, inputs, { signal });
      const last = run.stages[run.stages.length - 1].robot;
      for (const s of run.stages)
        for (const f of s.failed) failovers.push({ peer: f.robot, code: f.code, message: f.message });
      timings.remoteMs = run.ms;
      bytes = { sent: run.stages.reduce((n, s) => n + s.sentBytes, 0), received: 0 };
      return finish(last, run.outputs, [{ executor: last, outputs: run.outputs }]);
    }
    if (plan.kind === 'local' && !plan.exit) {
      const t0 = performance.now();
      const outputs = await this.runLocal(model, INPUT_CUT, 'fp32', inputs);
      timings.localMs = performance.now() - t0;
      return finish(this.deps.self, outputs, [{ executor: this.deps.self, outputs }]);
    }
    const cut = plan.cut!;
    const precision = plan.precision;
    const headStart = performance.now();
    let boundary = inputs;
    if (plan.exit) {
      const exit = this.deps.models.exits(model).find((e) => e.exit.hash === plan.exit!.hash)!.exit;
      const ran = await this.deps.queue.run(() =>
        this.deps.models.get(model).runHeadWithExit(exit, precision, tensorsToFeeds(inputs)),
      );
      timings.headMs = performance.now() - headStart;
      const verdict = judgeExit(exit.info, ran.logits);
      exitSeen = { cut, taken: verdict.confident, confidence: verdict.confidence };
      this.exitCounts.asked++;
      if (verdict.confident) this.exitCounts.taken++;
      const rate = this.exitRate(exit.hash, exit.info.exitRate);
      this.exitRates.set(exit.hash, rate + EXIT_RATE_WEIGHT * ((verdict.confident ? 1 : 0) - rate));
      if (verdict.confident)
        return finish(this.deps.self, verdict.outputs, [{ executor: this.deps.self, outputs: verdict.outputs }]);
      boundary = ran.boundary;
      if (plan.kind === 'local') {
        const t0 = performance.now();
        const outputs = await this.runLocal(model, cut, precision, boundary);
        timings.localMs = performance.now() - t0;
        return finish(this.deps.self, outputs, [{ executor: this.deps.self, outputs }]);
      }
    } else if (plan.kind === 'split') {
      boundary = await this.runHead(model, cut, precision, inputs);
      timings.headMs = performance.now() - headStart;
    }
    const localTailMs = this.localTailMs(model, cut);
    const executors = [
      plan.peer!,
      ...ranked
        .filter(
          (p) =>
            p.kind === plan.kind &&
            p.cut === cut &&
            p.precision === precision &&
            p.peer &&
            p.peer !== plan.peer &&
            !p.exit,
        )
        .map((p) => p.peer!),
    ];
    const askRemote = async (peer: string, predicted: Plan | undefined): Promise<RemoteResult> => {
      const remaining = deadline - performance.now() - localTailMs;
      const expected = predicted ? predicted.predictedMs - predicted.breakdown.headMs : remaining;
      const budget = Math.min(remaining, expected * STALL_FACTOR + STALL_MARGIN_MS);
      if (budget <= 0) throw new SchedulerError('DEADLINE', 'no time left for a remote run');
      let result: RemoteResult;
      try {
        result = await this.deps.client.infer(
          peer,
          { model, cut, precision, granularity: 'channel' },
          boundary,
          budget,
        );
      } catch (err) {
        // A stall tells us something too: the link moved less than these bytes in `budget` ms.
        // Without this sample a link that got slower would never be learnt (every slow transfer
        // is abandoned before it completes).
        if ((err as RobomeshError).code === 'DEADLINE') {
          const bytes = boundary.reduce((sum, t) => sum + t.data.byteLength, 0);
          const link = this.deps.links.get(peer);
          if (bytes / budget < link.bandwidth) this.deps.links.recordTransfer(peer, bytes, budget);
        }
        throw err;
      }
      this.deps.links.recordTransfer(
        peer,
        result.sentBytes + result.receivedBytes,
        result.elapsedMs - result.computeMs,
      );
      timings.remoteMs = result.elapsedMs;
      bytes = { sent: result.sentBytes, received: result.receivedBytes };
      timings.remoteComputeMs = result.computeMs;
      return result;
    };
    const predictedFor = (peer: string): Plan | undefined =>
      ranked.find((p) => p.peer === peer && p.cut === cut && p.precision === precision && !p.exit);

    for (const peer of executors) {
      if (deadline - performance.now() <= localTailMs) break;
      // A stand-by peer expected to take longer than finishing here is no failover: after an
      // offload stalled on a link that had just dropped to 1 Mbit/s, the next peer over an equally
      // slow link took 14 s where the local run took 0.15 s.
      const expected = predictedFor(peer);
      if (peer !== plan.peer && (!expected || expected.predictedMs - expected.breakdown.headMs > localTailMs)) continue;
      try {
        const result = await askRemote(peer, expected);
        return finish(peer, result.outputs, [{ executor: peer, outputs: result.outputs }]);
      } catch (err) {
        failovers.push({ peer, code: (err as RobomeshError).code ?? 'ERROR', message: (err as Error).message });
        this.deps.client.forget(peer);
      }
    }
    const t0 = performance.now();
    const outputs = await this.runLocal(model, cut, precision, boundary);
    timings.localMs = performance.now() - t0;
    return finish(this.deps.self, outputs, [{ executor: this.deps.self, outputs }]);
  }

  private localTailMs(model: string, cut: string): number {
    const profile = this.deps.models.profile(model)!;
    return cut === INPUT_CUT ? profile.wholeMs : (profile.cuts.find((c) => c.id === cut)?.tailMs ?? profile.wholeMs);
  }

  private runHead(model: string, cut: string, precision: Precision, inputs: Tensor[]): Promise<Tensor[]> {
    return this.deps.queue.run(() => this.deps.models.get(model).runHead(cut, precision, tensorsToFeeds(inputs)));
  }

  private runLocal(model: string, cut: string, precision: Precision, tensors: Tensor[]): Promise<Tensor[]> {
    return this.deps.queue.run(() => this.deps.models.runFrom(model, cut, precision, 'channel', tensors));
  }
}

function pick(ranked: Plan[], force: InferOptions['force']): Plan {
  if (!force) return ranked[0];
  const match = ranked.find(
    (p) =>
      p.kind === force.kind &&
      (force.cut === undefined || p.cut === force.cut) &&
      (force.precision === undefined || p.precision === force.precision) &&
      (force.peer === undefined || p.peer === force.peer) &&
      (force.exit === undefined || force.exit === (p.exit !== undefined)),
  );
  if (!match) throw new SchedulerError('NO_SUCH_PLAN', `no ${force.kind} plan matches ${JSON.stringify(force)}`);
  return match;
}
