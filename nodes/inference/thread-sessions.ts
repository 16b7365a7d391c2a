import { Worker } from 'node:worker_threads';
import ort from './ort-float16.js';

type TypedData = Float32Array | Uint8Array | Uint16Array | Int32Array | BigInt64Array | Float64Array | Int8Array;
export interface WireTensor {
  name: string;
  type: string;
  dims: number[];
  data: TypedData;
}

export type ThreadRequest =
  | { id: number; op: 'create'; session: number; bytes: Uint8Array; options: ort.InferenceSession.SessionOptions }
  | { id: number; op: 'run'; session: number; feeds: WireTensor[] }
  | { id: number; op: 'release'; session: number };

type WithoutId<T> = T extends unknown ? Omit<T, 'id'> : never;

export interface ThreadReply {
  id: number;
  outputs?: WireTensor[];
  error?: string;
}

/** What the robot's code needs of a session: run it, release it. */
export interface RunnableSession {
  run(feeds: Record<string, ort.Tensor>): Promise<ort.InferenceSession.OnnxValueMapType>;
  release(): Promise<void>;
  /** False once the session is gone with the thread that held it (a cache then makes a new one). */
  alive?(): boolean;
}

/** Restarts of the inference thread allowed per minute before it stays down. */
const MAX_RESTARTS_PER_MINUTE = 5;

/**
 * One worker thread that holds ORT sessions and runs them. onnxruntime-node runs a session on
 * the calling thread, so on the main thread every run stops the robot's network for its whole
 * length: a robot computing a pipeline stage could neither take the next frame off the socket
 * nor pace its answer out. Feeds are copied to the thread (they are often views into a received
 * frame); outputs come back transferred, not copied.
 */
export class InferenceThread {
  private worker!: Worker;
  private readonly pending = new Map<number, { resolve: (r: ThreadReply) => void; reject: (e: Error) => void }>();
  private next = 0;
  private sessions = 0;
  private closed = false;
  /** Bumped at every restart: sessions of an older thread are gone. */
  private generation = 0;
  private readonly restarts: number[] = [];

  constructor() {
    this.spawn();
  }

  /** Runs a new thread. One that dies (not stopped) fails what it had and is replaced, a few times a minute. */
  private spawn(): void {
    const worker = new Worker(new URL('./session-thread.js', import.meta.url));
    this.worker = worker;
    worker.unref();
    worker.on('message', (reply: ThreadReply) => {
      const waiting = this.pending.get(reply.id);
      this.pending.delete(reply.id);
      if (reply.error !== undefined) waiting?.reject(new Error(reply.error));
      else waiting?.resolve(reply);
    });
    let gone = false;
    const died = (why: Error): void => {
      if (gone) return;
      gone = true;
      for (const w of this.pending.values()) w.reject(why);
      this.pending.clear();
      if (this.closed) return;
      const now = Date.now();
      while (this.restarts.length && now - this.restarts[0] > 60_000) this.restarts.shift();
      if (this.restarts.length >= MAX_RESTARTS_PER_MINUTE) {
        this.closed = true;
        return;
      }
      this.restarts.push(now);
      this.generation++;
      this.spawn();
    };
    worker.on('error', died);
    worker.on('exit', (code) => died(new Error(`inference thread exited (${code})`)));
  }

  /** Ends the current thread as a crash would (tests). */
  async crashForTest(): Promise<void> {
    await this.worker.terminate();
  }

  private call(req: WithoutId<ThreadRequest>, transfer: ArrayBuffer[] = []): Promise<ThreadReply> {
    if (this.closed) return Promise.reject(new Error('inference thread stopped'));
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ ...req, id }, transfer);
    });
  }

  async create(bytes: Uint8Array, options: ort.InferenceSession.SessionOptions): Promise<RunnableSession> {
    const session = this.sessions++;
    const generation = this.generation;
    await this.call({ op: 'create', session, bytes, options });
    const alive = (): boolean => !this.closed && generation === this.generation;
    return {
      alive,
      run: async (feeds) => {
        if (!alive()) throw new Error('the inference thread holding this session restarted');
        const wire = Object.entries(feeds).map(([name, t]) => ({
          name,
          type: t.type,
          dims: [...t.dims],
          data: t.data as TypedData,
        }));
        const reply = await this.call({ op: 'run', session, feeds: wire });
        return Object.fromEntries(
          reply.outputs!.map((t) => [t.name, new ort.Tensor(t.type as 'float32', t.data as Float32Array, t.dims)]),
        );
      },
      release: async () => {
        await this.call({ op: 'release', session }).catch(() => undefined);
      },
    };
  }

  async stop(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.worker.terminate();
  }

  get restarted(): number {
    return this.generation;
  }
}
