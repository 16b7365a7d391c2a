import { isExcluded } from '../../contracts/fleet-state.js';
import {
  type TaskDecision,
  type TaskRef,
  type TaskState,
  type TaskStatus,
  fullAssignment,
} from '../../contracts/tasks.js';
import type { Hex } from '../../protocol/bytes.js';
import { RobomeshError } from '../../protocol/errors.js';
import { EntryError, parseEntry } from '../../protocol/log-entry.js';
import { type Tensor, decodeFrame, encodeFrame } from '../../protocol/tensor-frame.js';
import { type Precision, INPUT_CUT, type ModelRegistry, tensorsToFeeds } from '../inference/index.js';
import { type Ledger, MissingParentsError } from '../ledger/index.js';
import { keyOfPeer, type InferClient, type PeerReputation, type WorkQueue } from '../mesh/index.js';
import type { LinkEstimator, Plan, Scheduler } from '../scheduler/index.js';
import { type Logger, type Startable, Timers } from '../util/index.js';
import { type BlobStore, blobDigest } from './blob-store.js';
import { TaskError } from './errors.js';
import { executorsWanted, isDecided, volunteerDelayMs, volunteerPosition } from './policy.js';
import type { TaskExecutor, TaskRun } from './task-executor.js';

const TASK_PRECISIONS: Precision[] = ['fp32', 'fp16'];

export interface TaskRequesterComponents {
  ledger: Ledger;
  blobs: BlobStore;
  models: ModelRegistry;
  queue: WorkQueue;
  scheduler: Scheduler;
  client: InferClient;
  links: LinkEstimator;
  executor: TaskExecutor;
  reputation: PeerReputation;
  /** This robot's PeerId. */
  self: string;
  /** Connected peers in good standing that advertise `model`. */
  capablePeers(model: string): string[];
  syncWith(peer: string): Promise<unknown>;
  logger: Logger;
}

export interface TaskRequesterInit {
  tickMs?: number;
  /** A volunteer waits at least this long after a task last changed before stepping in. */
  volunteerDelayMs?: number;
}

export interface TaskOptions {
  /** Lying executors the task must survive (default 1): 2f + 1 executors, f + 1 agreeing decide. */
  f?: number;
  /** How long to wait for a decision (default 10 s). Undecided tasks go on in the background. */
  deadlineMs?: number;
  /**
   * Boundary precisions the plan may use (default fp32 and fp16). int8 only when asked: on the
   * generated CNN an int8 boundary at its pooled features moved the logits past what result
   * fingerprints tolerate, so the decided answer no longer matched the whole model's.
   */
  precisions?: Precision[];
  /** How long robots wait for a quorum before assigning more executors (default: from the plan). */
  timeoutMs?: number;
  /** Only these peers (PeerIds) may be assigned at first (tests and benchmarks pin executors). */
  peers?: string[];
  /** The task is the last stage of this chain (sha256 of its manifest): recorded in the task entry. */
  chain?: string;
}

export interface ExecutorAttempt {
  /** PeerId, or this robot's own. */
  executor: string;
  ok: boolean;
  code?: string;
  message?: string;
  ms: number;
}

export interface TaskOutcome {
  task: string;
  /** The task's state in this robot's log when the call returned. */
  status: TaskStatus;
  /** Outputs of an executor whose result agrees with the decision (or the provisional answer). */
  outputs?: Tensor[];
  decision?: TaskDecision;
  plan: { kind: Plan['kind']; cut: string; precision: Precision; executors: string[] };
  attempts: ExecutorAttempt[];
  /** Until the call returned with the answer's outputs (or gave up). */
  elapsedMs: number;
  /** Until this robot's log decided the task (final or overturned), when it did before returning. */
  decidedMs?: number;
  /** Assignments this robot added after the first. */
  reassigned: number;
}

/** What the poster keeps about a task of its own while it is undecided. */
interface OwnTask {
  lastAssignAt: number;
  inFlight: number;
  reassigned: number;
  /** Outputs received (or computed here), by executor key. */
  outputs: Map<Hex, Tensor[]>;
  /** Called whenever outputs arrive. */
  waiters: (() => void)[];
  attempts: ExecutorAttempt[];
}

/** Base64 of an entry's bytes, as a request carries it. */
const base64 = (bytes: Uint8Array): string =>
  Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');

let counter = 0;

/**
 * Logged inference tasks from the requester's side, and the stewardship of undecided tasks. A
 * task runs the head here, commits to the boundary tensor's sha256 in the log, assigns 2f + 1
 * executors (this robot among them when fewer peers are reachable) and pushes them the tensor;
 * the task contract decides from their signed results. A task undecided after its timeout gets
 * more executors from its poster, or volunteers when its poster is gone.
 */
export class TaskRequester implements Startable {
  private readonly own = new Map<string, OwnTask>();
  /** Others' undecided tasks, with when this robot last saw each change. */
  private readonly others = new Map<string, { executors: number; results: number; changedAt: number }>();
  private readonly timers = new Timers();
  private readonly onEntry = (d: { entry: { payload: { type: string; task?: string } } }): void => {
    const p = d.entry.payload;
    if (p.type === 'task' && p.task && !this.own.has(p.task))
      this.others.set(p.task, { executors: 0, results: 0, changedAt: Date.now() });
  };
  counts = { tasks: 0, reassignments: 0, volunteered: 0 };

  constructor(
    private readonly components: TaskRequesterComponents,
    private readonly init: TaskRequesterInit = {},
  ) {}

  private get selfKey(): Hex {
    return this.components.executor.self;
  }

  start(): void {
    const { ledger, logger: log } = this.components;
    const now = Date.now();
    // After a restart: own tasks still undecided are stewarded again, others watched.
    for (const t of ledger.state.tasks.values()) {
      if (isDecided(t)) continue;
      if (t.poster === this.selfKey) this.own.set(t.task, newOwn(now));
      else this.others.set(t.task, { executors: t.executors.length, results: t.results.length, changedAt: now });
    }
    ledger.on('entry', this.onEntry);
    this.timers.every(
      this.init.tickMs ?? 250,
      () => this.tick(),
      (err) => log.error('task steward failed: %s', err),
    );
  }

  stop(): void {
    this.components.ledger.off('entry', this.onEntry);
    this.timers.clear();
  }

  /**
   * Posts a task for `inputs` on `model` and waits (up to the deadline) for the log to decide it.
   * Returns the outcome either way: final, overturned, provisional (fewer than 2f + 1 executors
   * reachable) or undecided (stewarding goes on).
   */
  async infer(model: string, inputs: Tensor[], options: TaskOptions = {}): Promise<TaskOutcome> {
    const { ledger, scheduler, models, queue, blobs } = this.components;
    const start = performance.now();
    const f = options.f ?? 1;
    const allowed = options.peers && new Set(options.peers);
    // Members the log excludes cannot be assigned (the contract would ignore the whole assignment).
    const eligible = (peer: string): boolean => {
      const key = keyOfPeer(peer);
      return ledger.state.members.has(key) && !isExcluded(ledger.state, key);
    };
    // A model this robot does not hold (a chain's last stage, say) runs whole on peers that do.
    const held = models.has(model);
    const ranked = (
      held
        ? // Executors answer the task as logged (head, cut, precision): no early exit in between.
          scheduler
            .plans(model, inputs, options.precisions ?? TASK_PRECISIONS, false)
            // A task runs one part on 2f + 1 executors: a chain is run as a chain task instead.
            .filter((p) => p.kind !== 'chain')
        : this.components.capablePeers(model).map(offloadTo)
    ).filter((p) => !p.peer || ((!allowed || allowed.has(p.peer)) && eligible(p.peer)));
    const plan = chooseExecutors(ranked, fullAssignment(f), held);
    if (plan.peers.length === 0 && !plan.withSelf)
      throw new TaskError(
        'NO_EXECUTORS',
        `no eligible peer holds model ${model.slice(0, 12)}…, and this robot does not`,
      );
    const cut = plan.cut;
    const headStart = performance.now();
    const boundary =
      plan.kind === 'split'
        ? await queue.run(() => models.get(model).runHead(cut, plan.precision, tensorsToFeeds(inputs)))
        : inputs;
    const headMs = performance.now() - headStart;
    const frame = encodeFrame(boundary);
    const input = await blobs.put(frame);
    const task = `${this.components.self.slice(-8)}-${Date.now().toString(36)}-${(counter++).toString(36)}`;
    const { peers, withSelf } = plan;
    const executors = [...peers.map(keyOfPeer), ...(withSelf ? [this.selfKey] : [])];
    const predicted = ranked.find((p) => p.peer === peers[0])?.predictedMs ?? ranked[0]?.predictedMs ?? 1000;
    const chain = options.chain === undefined ? {} : { chain: options.chain };
    const timeout = options.timeoutMs ?? Math.round(Math.min(60_000, Math.max(1000, 3 * predicted + 500)));
    const [taskEntry, assignEntry] = ledger.appendBatch([
      { type: 'task', task, model, cut, precision: plan.precision, input, bytes: frame.length, f, timeout, ...chain },
      { type: 'assign', task, executors },
    ]);
    this.counts.tasks++;
    const own = newOwn(Date.now());
    this.own.set(task, own);
    // From the entry, not the fold: a sync in progress defers folding what we append.
    const t: TaskRef = {
      task,
      model,
      cut,
      precision: plan.precision,
      input,
      bytes: frame.length,
      f,
      timeout,
      ...chain,
    };
    const entries = [base64(taskEntry.bytes), base64(assignEntry.bytes)];
    const runs = peers.map((peer) => this.push(t, peer, boundary, entries, own, timeout));
    if (withSelf) runs.push(this.runHere(t, frame, own));
    const deadline = AbortSignal.timeout(options.deadlineMs ?? 10_000);
    const settled = Promise.allSettled(runs);
    // Each executor that answered is a prediction to check: head here, then its part.
    void settled.then(() => {
      for (const a of own.attempts) {
        const predicted = ranked.find(
          (p) => p.peer === a.executor && p.kind === plan.kind && p.cut === cut && p.precision === plan.precision,
        );
        if (a.ok && predicted) scheduler.recordPrediction(predicted.predictedMs, headMs + a.ms);
      }
    });
    let decidedMs: number | undefined;
    const decided = ledger
      .until((s) => isDecided(s.tasks.get(task)), deadline)
      .then(() => (decidedMs = performance.now() - start))
      .catch(() => undefined); // the deadline passed undecided: the outcome below says so
    await Promise.race([settled, decided]);
    // Every reply is in the log now: a provisional answer, or no quorum yet (the steward goes on).
    if (!isDecided(ledger.state.tasks.get(task)) && ledger.state.tasks.get(task)?.status !== 'provisional')
      await decided;
    // The results' small signed entries travel by gossip and often decide the task before the
    // executors' output tensors arrive: wait for the outputs of one that agrees with the answer.
    const answered = (): boolean => {
      const t = ledger.state.tasks.get(task);
      const answer = isDecided(t) ? t!.decision : t?.provisional;
      return !answer || answer.executors.some((x) => own.outputs.has(x));
    };
    if (!answered())
      await Promise.race([settled, new Promise<void>((resolve) => own.waiters.push(() => answered() && resolve()))]);
    return this.outcome(task, plan, own, performance.now() - start, decidedMs);
  }

  private outcome(task: string, plan: ChosenPlan, own: OwnTask, elapsedMs: number, decidedMs?: number): TaskOutcome {
    const t = this.components.ledger.state.tasks.get(task);
    const answer = !t ? undefined : isDecided(t) ? t.decision : t.provisional;
    const by = answer?.executors.find((x) => own.outputs.has(x));
    return {
      task,
      status: t?.status ?? 'assigned',
      outputs: by ? own.outputs.get(by) : undefined,
      decision: answer,
      plan: {
        kind: plan.kind,
        cut: plan.cut,
        precision: plan.precision,
        executors: [...plan.peers, ...(plan.withSelf ? [this.components.self] : [])],
      },
      attempts: [...own.attempts],
      elapsedMs,
      decidedMs,
      reassigned: own.reassigned,
    };
  }

  /** This robot as one of the task's executors (its own run counts as one). */
  private async runHere(t: TaskRef, frame: Uint8Array, own: OwnTask): Promise<void> {
    const t0 = performance.now();
    own.inFlight++;
    try {
      const run: TaskRun = await this.components.executor.run(t, frame);
      own.outputs.set(this.selfKey, run.outputs);
      for (const w of own.waiters) w();
      own.attempts.push({ executor: this.components.self, ok: true, ms: performance.now() - t0 });
    } catch (err) {
      own.attempts.push({ executor: this.components.self, ok: false, ...describe(err), ms: performance.now() - t0 });
    } finally {
      own.inFlight--;
    }
  }

  /**
   * Sends the committed input to one executor and takes its reply only with its signed result
   * entry, whose digest must be the sha256 of the frame received; the entry goes into the log.
   */
  private async push(
    t: TaskRef,
    peer: string,
    boundary: Tensor[],
    entries: string[],
    own: OwnTask,
    budgetMs: number,
  ): Promise<void> {
    const { client, links, reputation, ledger, syncWith } = this.components;
    const t0 = performance.now();
    own.inFlight++;
    try {
      const res = await client.infer(
        peer,
        { model: t.model, cut: t.cut, precision: t.precision, granularity: 'channel', task: t.task, entries },
        boundary,
        budgetMs,
      );
      links.recordTransfer(peer, res.sentBytes + res.receivedBytes, res.elapsedMs - res.computeMs);
      const key = keyOfPeer(peer);
      const why = checkReply(res.entry, key, t.task, blobDigest(res.frame));
      if (why) {
        reputation.penalise(peer, `task ${t.task}: ${why}`);
        throw new TaskError('BAD_FRAME', `${peer}: ${why}`);
      }
      if (ledger.ingestNow([res.entry!]).some((s) => s instanceof MissingParentsError)) {
        await syncWith(peer);
        ledger.ingestNow([res.entry!]);
      }
      own.outputs.set(key, res.outputs);
      for (const w of own.waiters) w();
      own.attempts.push({ executor: peer, ok: true, ms: performance.now() - t0 });
    } catch (err) {
      own.attempts.push({ executor: peer, ok: false, ...describe(err), ms: performance.now() - t0 });
      this.components.logger('task %s on %s failed: %s', t.task, peer, (err as Error).message);
      // An executor that took the work and neither answered in time nor refused: a stall, or it
      // hung up. Cheap for an honest robot that is slow once; five in a row isolate it here.
      const code = err instanceof RobomeshError ? err.code : '';
      if (code === 'DEADLINE' || code === 'UNREACHABLE' || code === 'STREAM_CLOSED')
        reputation.penalise(peer, `task ${t.task}: ${code.toLowerCase()}`, 2);
    } finally {
      own.inFlight--;
    }
  }

  private tick(): void {
    const { ledger } = this.components;
    const now = Date.now();
    for (const [task, own] of this.own) {
      const t = ledger.state.tasks.get(task);
      if (!t || isDecided(t)) {
        if (own.inFlight === 0) this.own.delete(task);
        continue;
      }
      if (own.inFlight > 0 || now - own.lastAssignAt < t.timeout) continue;
      own.lastAssignAt = now;
      void this.extend(t, own).catch((err) => this.components.logger.error('extending %s: %s', task, err));
    }
    for (const [task, seen] of this.others) {
      const t = ledger.state.tasks.get(task);
      if (!t || isDecided(t)) {
        if (t) this.others.delete(task);
        continue;
      }
      if (t.executors.length !== seen.executors || t.results.length !== seen.results)
        this.others.set(task, { executors: t.executors.length, results: t.results.length, changedAt: now });
      this.maybeVolunteer(t, this.others.get(task)!.changedAt, now);
    }
  }

  /** The poster's move on a task undecided past its timeout: more executors, pushed the input. */
  private async extend(t: TaskState, own: OwnTask): Promise<void> {
    const { ledger, blobs, capablePeers, links, models } = this.components;
    const wanted = executorsWanted(ledger.state, t);
    if (wanted === 0) return;
    const eligible = (key: Hex): boolean =>
      ledger.state.members.has(key) && !isExcluded(ledger.state, key) && !t.executors.includes(key);
    const peers = capablePeers(t.model)
      .filter((p) => eligible(keyOfPeer(p)))
      .sort((a, b) => links.get(b).bandwidth - links.get(a).bandwidth)
      .slice(0, wanted);
    const withSelf = peers.length < wanted && eligible(this.selfKey) && models.has(t.model);
    if (peers.length === 0 && !withSelf) return;
    const frame = await blobs.get(t.input);
    if (!frame) return this.components.logger.error('task %s: its input is no longer held here', t.task);
    const assign = ledger.append({
      type: 'assign',
      task: t.task,
      executors: [...peers.map(keyOfPeer), ...(withSelf ? [this.selfKey] : [])],
    });
    own.reassigned++;
    this.counts.reassignments++;
    const current = ledger.state.tasks.get(t.task)!;
    // Assigning may itself complete the count a final decision needs: then nothing to push.
    if (isDecided(current)) return;
    const entries = [base64(ledger.get(t.postedId)!), base64(assign.bytes)];
    const boundary = decodeFrame(frame);
    const runs = peers.map((peer) => this.push(current, peer, boundary, entries, own, t.timeout));
    if (withSelf) runs.push(this.runHere(current, frame, own));
    await Promise.allSettled(runs);
  }

  /** Steps in for a task whose poster stopped stewarding it, in volunteer order. */
  private maybeVolunteer(t: TaskState, changedAt: number, now: number): void {
    const { ledger, models } = this.components;
    if (!models.has(t.model)) return;
    const position = volunteerPosition(ledger.state, t, this.selfKey);
    if (position < 0) return;
    if (now - changedAt < volunteerDelayMs(t, position, this.init.volunteerDelayMs ?? 3000)) return;
    ledger.append({ type: 'assign', task: t.task, executors: [this.selfKey] });
    this.counts.volunteered++;
    this.others.set(t.task, { executors: t.executors.length + 1, results: t.results.length, changedAt: now });
  }
}

interface ChosenPlan {
  kind: Plan['kind'];
  cut: string;
  precision: Precision;
  /** Peers to push to, fastest first (fewer than n when fewer are reachable). */
  peers: string[];
  /** Fewer than n peers: this robot runs it too. */
  withSelf: boolean;
}

/**
 * The (kind, cut, precision) that the most peers (up to n) can run, fastest first among equals:
 * n peers when that many are reachable; else every peer that can, and this robot runs it too.
 */
/** Running a model whole on `peer`, for a model this robot cannot plan (it does not hold it). */
function offloadTo(peer: string): Plan {
  const breakdown = { headMs: 0, transferMs: 0, rttMs: 0, queueMs: 0, tailMs: 0 };
  return { kind: 'offload', peer, cut: INPUT_CUT, precision: 'fp32', predictedMs: 0, breakdown };
}

/** `selfCan`: whether this robot may be one of the executors (it holds the model). */
export function chooseExecutors(ranked: Plan[], n: number, selfCan = true): ChosenPlan {
  const groups = new Map<string, { plan: Plan; peers: string[] }>();
  for (const p of ranked) {
    if (p.kind === 'local' || !p.peer) continue;
    const key = `${p.kind}\0${p.cut}\0${p.precision}`;
    const g = groups.get(key) ?? { plan: p, peers: [] };
    if (!g.peers.includes(p.peer)) g.peers.push(p.peer);
    groups.set(key, g);
  }
  let best: { plan: Plan; peers: string[] } | undefined;
  for (const g of groups.values()) {
    if (!best || Math.min(g.peers.length, n) > Math.min(best.peers.length, n)) best = g;
  }
  if (!best) return { kind: 'local', cut: INPUT_CUT, precision: 'fp32', peers: [], withSelf: selfCan };
  const peers = best.peers.slice(0, n);
  return {
    kind: best.plan.kind,
    cut: best.plan.cut ?? INPUT_CUT,
    precision: best.plan.precision,
    peers,
    withSelf: selfCan && peers.length < n,
  };
}

/** Why a reply's result entry cannot stand for the bytes received, or undefined when it can. */
function checkReply(entry: Uint8Array | undefined, key: Hex, task: string, frameDigest: Hex): string | undefined {
  if (!entry) return 'answered without its signed result';
  let parsed;
  try {
    parsed = parseEntry(entry);
  } catch (err) {
    if (err instanceof EntryError) return `its result entry is malformed: ${err.message}`;
    throw err;
  }
  const p = parsed.entry.payload;
  if (parsed.idHex.length === 0 || Buffer.from(parsed.entry.author).toString('hex') !== key)
    return 'the result entry is not its own';
  if (p.type !== 'result' || p.task !== task) return 'the entry is no result for this task';
  if (p.digest !== frameDigest) return 'sent bytes other than the result it signed';
  return undefined;
}

function describe(err: unknown): { code: string; message: string } {
  return {
    code: err instanceof RobomeshError ? err.code : 'ERROR',
    message: err instanceof Error ? err.message : String(err),
  };
}

const newOwn = (now: number): OwnTask => ({
  lastAssignAt: now,
  inFlight: 0,
  reassigned: 0,
  outputs: new Map(),
  waiters: [],
  attempts: [],
});
