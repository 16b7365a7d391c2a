import ort from './ort-float16.js';
import { InferenceThread, type RunnableSession } from './thread-sessions.js';

export interface SessionSettings {
  /** Intra-op threads per session; 0 lets ORT decide. Pin it when comparing timings. */
  threads: number;
  /** ORT graph optimisation level (default 'all'); other levels pick other kernels and fusions. */
  optimization?: 'disabled' | 'basic' | 'extended' | 'all';
  /**
   * Run sessions on a worker thread (InferenceThread) so runs leave the event loop free: for
   * robots that serve while they compute (chain stages, pipelined streams). Costs a copy of the
   * feeds and a message each way per run.
   */
  thread?: boolean;
}

export const DEFAULT_SESSION_SETTINGS: SessionSettings = { threads: 0 };

/**
 * ORT sessions keyed by (model hash, cut, precision, part), created once and reused: creating
 * a session costs 10–200 ms, running a small one 0.02 ms. Least recently used sessions beyond
 * `capacity` are released.
 */
export class SessionCache {
  private readonly sessions = new Map<string, Promise<RunnableSession>>();
  private readonly thread: InferenceThread | undefined;
  /** Thread sessions once made, to tell whether one can still run. */
  private readonly watch = new WeakMap<Promise<RunnableSession>, RunnableSession>();

  /** The inference thread, when sessions run on one. */
  get inferenceThread(): InferenceThread | undefined {
    return this.thread;
  }

  constructor(
    private readonly settings: SessionSettings = DEFAULT_SESSION_SETTINGS,
    private readonly capacity = 64,
  ) {
    this.thread = settings.thread ? new InferenceThread() : undefined;
  }

  get(key: string, bytes: () => Uint8Array): Promise<RunnableSession> {
    let session = this.sessions.get(key);
    if (session && this.watch.get(session)?.alive?.() === false) {
      this.sessions.delete(key);
      session = undefined;
    }
    if (session) {
      this.sessions.delete(key);
      this.sessions.set(key, session);
      return session;
    }
    const options: ort.InferenceSession.SessionOptions = {
      graphOptimizationLevel: this.settings.optimization ?? 'all',
      executionMode: 'sequential',
      ...(this.settings.threads > 0 ? { intraOpNumThreads: this.settings.threads, interOpNumThreads: 1 } : {}),
    };
    session = this.thread ? this.thread.create(bytes(), options) : ort.InferenceSession.create(bytes(), options);
    session.catch(() => this.sessions.delete(key));
    const made = session;
    // A session whose inference thread died is dropped at its next get, and made anew.
    void made.then(
      (s) => {
        if (s.alive) this.watch.set(made, s);
      },
      () => undefined,
    );
    this.sessions.set(key, session);
    while (this.sessions.size > this.capacity) {
      const [oldest, evicted] = this.sessions.entries().next().value!;
      this.sessions.delete(oldest);
      // A session that failed to load has nothing to release.
      void evicted.then((s) => s.release()).catch(() => undefined);
    }
    return session;
  }

  get size(): number {
    return this.sessions.size;
  }

  /** Releases the sessions whose key matches (e.g. every part of one cut); returns how many. */
  async release(matches: (key: string) => boolean): Promise<number> {
    const dropped = [...this.sessions].filter(([key]) => matches(key));
    for (const [key] of dropped) this.sessions.delete(key);
    await Promise.allSettled(dropped.map(([, s]) => s.then((x) => x.release())));
    return dropped.length;
  }

  async close(): Promise<void> {
    const all = [...this.sessions.values()];
    this.sessions.clear();
    await Promise.allSettled(all.map((s) => s.then((x) => x.release())));
    await this.thread?.stop();
  }
}
