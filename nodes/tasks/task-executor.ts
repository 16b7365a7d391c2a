import type { Hex } from '../../protocol/bytes.js';
import { FrameError } from '../../protocol/errors.js';
import type { InferRequest } from '../../protocol/infer-messages.js';
import type { DecodedEntry } from '../../protocol/log-entry.js';
import { resultFingerprint } from '../../protocol/result-fingerprint.js';
import { type Tensor, decodeFrame, encodeFrame } from '../../protocol/tensor-frame.js';
import type { TaskRef, TaskState } from '../../contracts/tasks.js';
import { type ModelRegistry, BoundaryError } from '../inference/index.js';
import { type Ledger, MissingParentsError } from '../ledger/index.js';
import { fetchBlob, type MeshNode, keyOfPeer, peerOfKey, type TaskGate, type WorkQueue } from '../mesh/index.js';
import { type Logger, type Startable, Timers } from '../util/index.js';
import { type BlobStore, blobDigest } from './blob-store.js';
import { TaskError } from './errors.js';

export interface TaskExecutorComponents {
  ledger: Ledger;
  blobs: BlobStore;
  models: ModelRegistry;
  queue: WorkQueue;
  node: MeshNode;
  /** Brings the log up to date with a peer: a task's entries may arrive before their parents. */
  syncWith(peer: string): Promise<unknown>;
  /** Peers connected now: asked for a task's input after its poster. */
  connectedPeers(): string[];
  logger: Logger;
}

export interface TaskExecutorInit {
  /** How long an assigned executor waits for the poster's push before fetching the input itself. */
  pushGraceMs?: number;
  tickMs?: number;
  fetchTimeoutMs?: number;
  /** After a failed fetch or run, how long before trying that task again. */
  retryMs?: number;
}

/** What an executor computed for a task, and its signed result entry. */
export interface TaskRun {
  outputs: Tensor[];
  /** The outputs as one tensor frame: the bytes whose sha256 the result entry records. */
  frame: Uint8Array;
  entry: Uint8Array;
  computeMs: number;
}

/** Fault injection for tests and scenarios (a lying or stalling executor). Never set in normal operation. */
export interface Misbehaviour {
  /** Rewrites the outputs before they are fingerprinted, logged and sent: a consistent liar. */
  outputs?: (outputs: Tensor[], task: TaskRef) => Tensor[];
  /** Never finishes a task (neither answers nor logs a result). */
  stall?: boolean;
}

const decided = (t: TaskState): boolean => t.status === 'final' || t.status === 'overturned';

/**
 * Runs the logged tasks the log assigns to this robot, and nothing else. Pushed: the poster sends
 * the input over a connection authenticated as itself, with the task's entries (admit, then
 * serve). Pulled: an executor assigned later (a volunteer, a replacement after a partition heals)
 * fetches the committed input by digest from the poster or anyone holding it. Either way it
 * checks the input against the task's digest, runs the tail once, and logs one result entry.
 */
export class TaskExecutor implements Startable, TaskGate<TaskState> {
  misbehave: Misbehaviour | undefined;
  readonly self: Hex;
  /** Tasks this robot may have to run: assigned to it and without its result yet. */
  private readonly watch = new Set<string>();
  private readonly firstSeen = new Map<string, number>();
  private readonly retryAt = new Map<string, number>();
  private readonly runs = new Map<string, Promise<TaskRun>>();
  private readonly unrunnable = new Set<string>();
  private readonly timers = new Timers();
  private readonly stopped = new AbortController();
  private readonly onEntry = (d: DecodedEntry): void => {
    const p = d.entry.payload;
    if (p.type === 'assign' && p.executors.includes(this.self)) this.watch.add(p.task);
  };
  /** Tasks run, by how their input came: pushed by the poster or pulled by digest. */
  readonly counts = { pushed: 0, pulled: 0, refused: 0 };

  constructor(
    private readonly components: TaskExecutorComponents,
    private readonly init: TaskExecutorInit = {},
  ) {
    const self = components.ledger.self;
    if (!self) throw new TaskError('NO_LEDGER', 'a task executor needs a ledger that signs');
    this.self = self;
  }

  start(): void {
    const { ledger, logger: log } = this.components;
    for (const t of ledger.state.tasks.values()) if (t.executors.includes(this.self)) this.watch.add(t.task);
    ledger.on('entry', this.onEntry);
    this.timers.every(
      this.init.tickMs ?? 250,
      () => this.tick(),
      (err) => log.error('task tick failed: %s', err),
    );
  }

  stop(): void {
    this.components.ledger.off('entry', this.onEntry);
    this.timers.clear();
    this.stopped.abort(new Error('robot stopping'));
  }

  /** A pushed task request, before its frame is read: throws a TaskError refusal unless authorised. */
  async admit(peer: string, request: InferRequest, signal: AbortSignal): Promise<TaskState> {
    const { ledger } = this.components;
    if (request.entries?.length) await this.ingestCarried(peer, request.entries, signal);
    const t = request.task ? ledger.state.tasks.get(request.task) : undefined;
    const refuse = (code: ConstructorParameters<typeof TaskError>[0], why: string): never => {
      this.counts.refused++;
      throw new TaskError(code, `task ${request.task}: ${why}`);
    };
    if (!t) return refuse('UNKNOWN_TASK', 'not in this robot\u2019s log');
    if (t.poster !== keyOfPeer(peer)) return refuse('NOT_AUTHORISED', 'only its poster may send its input');
    if (!t.executors.includes(this.self)) return refuse('NOT_ASSIGNED', 'the log does not assign it to this robot');
    if (t.model !== request.model || t.cut !== request.cut || t.precision !== request.precision)
      return refuse(
        'TASK_MISMATCH',
        `the task runs ${t.cut} in ${t.precision}, not ${request.cut} in ${request.precision}`,
      );
    if (request.granularity !== 'channel') return refuse('TASK_MISMATCH', 'tasks quantise per channel');
    if (request.bytes !== t.bytes) return refuse('INPUT_MISMATCH', `the task's input is ${t.bytes} bytes`);
    if (decided(t)) return refuse('TASK_DECIDED', `already ${t.status}`);
    return t;
  }

  /** A pushed task's frame, once read: checked against the commitment, stored, run once. */
  async serve(t: TaskState, frame: Uint8Array): Promise<TaskRun> {
    if (blobDigest(frame) !== t.input) {
      this.counts.refused++;
      throw new TaskError('INPUT_MISMATCH', `task ${t.task}: the frame is not the input its poster committed to`);
    }
    await this.components.blobs.put(frame);
    this.counts.pushed++;
    return this.run(t, frame);
  }

  /**
   * Runs a task on its (checked) input and logs this robot's result once; concurrent calls for one
   * task share the run. A task already answered is computed again (its outputs are not kept) and
   * keeps its first result entry.
   */
  run(t: TaskRef, frame: Uint8Array): Promise<TaskRun> {
    let running = this.runs.get(t.task);
    if (!running) {
      running = this.execute(t, frame).finally(() => this.runs.delete(t.task));
      this.runs.set(t.task, running);
    }
    return running;
  }

  private async execute(t: TaskRef, frame: Uint8Array): Promise<TaskRun> {
    const { models, queue, ledger } = this.components;
    if (this.misbehave?.stall) {
      await new Promise((resolve) => this.stopped.signal.addEventListener('abort', resolve, { once: true }));
      throw new TaskError('TASK_DECIDED', 'stalled until the robot stopped');
    }
    let tensors: Tensor[];
    try {
      tensors = decodeFrame(frame);
    } catch (err) {
      if (!(err instanceof FrameError)) throw err;
      this.unrunnable.add(t.task);
      throw new TaskError('BAD_FRAME', `task ${t.task}: its committed input is no tensor frame: ${err.message}`);
    }
    const t0 = performance.now();
    let outputs: Tensor[];
    try {
      outputs = await queue.run(() => models.runFrom(t.model, t.cut, t.precision, 'channel', tensors));
    } catch (err) {
      if (err instanceof BoundaryError) {
        this.unrunnable.add(t.task);
        throw new TaskError('BAD_FRAME', `task ${t.task}: its committed input does not fit the model: ${err.message}`);
      }
      throw err;
    }
    const computeMs = performance.now() - t0;
    if (this.misbehave?.outputs) outputs = this.misbehave.outputs(outputs, t);
    const bytes = encodeFrame(outputs);
    const mine = ledger.state.tasks.get(t.task)?.results.find((r) => r.author === this.self);
    const entry = mine
      ? ledger.get(mine.id)!
      : ledger.append({ type: 'result', task: t.task, ...resultFingerprint(t.task, outputs, bytes) }).bytes;
    this.watch.delete(t.task);
    return { outputs, frame: bytes, entry, computeMs };
  }

  private async ingestCarried(peer: string, entries: string[], signal: AbortSignal): Promise<void> {
    const { ledger, syncWith } = this.components;
    const list = entries.map((b64) => new Uint8Array(Buffer.from(b64, 'base64')));
    const missing = (): boolean => ledger.ingestNow(list).some((s) => s instanceof MissingParentsError);
    if (!missing()) return;
    const t0 = performance.now();
    // Their parents are the poster's view of the log: it holds them all.
    await Promise.race([
      syncWith(peer),
      new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true })),
    ]);
    const still = missing();
    this.components.logger(
      'task entries from %s missed parents: synced in %d ms%s',
      peer,
      Math.round(performance.now() - t0),
      still ? ', still missing' : '',
    );
  }

  /** Tasks assigned to this robot whose push did not come: fetch the input and run them. */
  private tick(): void {
    const { ledger } = this.components;
    const now = Date.now();
    for (const task of this.watch) {
      const t = ledger.state.tasks.get(task);
      if (!t) continue; // its entry is still on its way
      if (decided(t) || t.results.some((r) => r.author === this.self) || this.unrunnable.has(task)) {
        this.watch.delete(task);
        continue;
      }
      if (this.runs.has(task) || !this.components.models.has(t.model) || (this.retryAt.get(task) ?? 0) > now) continue;
      const first = this.firstSeen.get(task) ?? now;
      this.firstSeen.set(task, first);
      const volunteered = t.assignments.some((a) => a.kind === 'volunteer' && a.by === this.self);
      if (!volunteered && now - first < (this.init.pushGraceMs ?? 1500)) continue;
      const running = this.pull(t).finally(() => this.runs.delete(task));
      this.runs.set(task, running);
      running.then(
        () => this.firstSeen.delete(task),
        (err) => {
          this.retryAt.set(task, Date.now() + (this.init.retryMs ?? 3000));
          this.components.logger('task %s: %s', task, (err as Error).message);
        },
      );
    }
  }

  private async pull(t: TaskState): Promise<TaskRun> {
    const frame = await this.fetchInput(t);
    this.counts.pulled++;
    return this.execute(t, frame);
  }

  /** The task's input from this robot's store, else from its poster, else from any peer that holds it. */
  private async fetchInput(t: TaskState): Promise<Uint8Array> {
    const { blobs, node, connectedPeers } = this.components;
    const held = await blobs.get(t.input);
    if (held) return held;
    const poster = peerOfKey(t.poster);
    const connected = connectedPeers();
    const holders = [...(connected.includes(poster) ? [poster] : []), ...connected.filter((p) => p !== poster)];
    for (const peer of holders) {
      try {
        const bytes = await fetchBlob(node, peer, t.input, {
          maxBytes: t.bytes,
          timeoutMs: this.init.fetchTimeoutMs ?? 30_000,
          signal: this.stopped.signal,
        });
        await blobs.put(bytes);
        return bytes;
      } catch (err) {
        if (this.stopped.signal.aborted) throw err;
        this.components.logger('input of %s not from %s: %s', t.task, peer, (err as Error).message);
      }
    }
    throw new TaskError('INPUT_UNAVAILABLE', `task ${t.task}: no connected peer holds its input`);
  }

  /** Is `error` a refusal that says the requester misbehaved (rather than a race or a stale log)? */
  static isMisbehaviour(error: unknown): boolean {
    return (
      error instanceof TaskError &&
      (error.code === 'NOT_AUTHORISED' || error.code === 'INPUT_MISMATCH' || error.code === 'TASK_MISMATCH')
    );
  }
}
