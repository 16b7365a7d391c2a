/**
 * A service a robot starts and stops (the js-libp2p `Startable` contract): `stop()` undoes exactly
 * what `start()` did — protocol handlers, topic validators, listeners, timers — so a robot that
 * stops leaves nothing behind, and one that failed half-way through starting can stop what it
 * started.
 */
export interface Startable {
  start(): void | Promise<void>;
  stop(): void | Promise<void>;
}

/** Timers a service owns: all cleared by one call in its stop(). */
export class Timers {
  private readonly handles = new Set<NodeJS.Timeout>();

  /** Runs `fn` every `ms` (unref'd: a timer never keeps a process alive); errors go to `onError`. */
  every(ms: number, fn: () => void | Promise<void>, onError: (err: unknown) => void): void {
    const t = setInterval(() => void Promise.resolve().then(fn).catch(onError), ms);
    t.unref();
    this.handles.add(t);
  }

  /** Runs `fn` once after `ms`. */
  after(ms: number, fn: () => void | Promise<void>, onError: (err: unknown) => void): void {
    const t = setTimeout(() => {
      this.handles.delete(t);
      void Promise.resolve().then(fn).catch(onError);
    }, ms);
    t.unref();
    this.handles.add(t);
  }

  clear(): void {
    for (const t of this.handles) clearTimeout(t);
    this.handles.clear();
  }
}
