import { readFileSync, readdirSync } from 'node:fs';

/**
 * How much slower this robot computes now than unloaded, read from the kernel: over each
 * interval, (time its threads ran + time they sat runnable in the run queue) ÷ time they ran,
 * summed over every thread of the process (ORT's pool included), from Linux's per-thread
 * schedstat. 1 means nothing else wanted the CPU while we did; 3 means another process took two
 * thirds of it. The median of the last few intervals that ran enough to tell.
 *
 * Why not our own run times against the profile: the profile is taken once, cold and short; on
 * a busy VM it was 2× off either way, an idle robot's first run after a second asleep read 2–40×
 * its profile, and a 5 ms run on a core two busy loops held was not slowed at all (the kernel
 * lets a waking thread run first). The run queue says what the CPU gave us, whatever ran.
 * Elsewhere than Linux there is no schedstat: the slowdown stays 1 (unknown).
 */
export class ComputeLoad {
  private readonly recent: { ratio: number; at: number }[] = [];
  private last: { run: number; wait: number } | undefined;

  constructor(
    /** Intervals that make up the median, newest kept. */
    private readonly window = 5,
    /** Intervals older than this say nothing about now. */
    private readonly maxAgeMs = 10_000,
    /** An interval in which the threads ran less than this (ns) is too idle to tell. */
    private readonly minRunNs = 5e6,
    private readonly read: () => { run: number; wait: number } | undefined = readSchedstat,
  ) {}

  /**
   * Closes an interval: records its slowdown when the process ran enough in it. Returns false
   * when it did not (an idle robot runs a calibration then, so the next interval can tell).
   */
  sample(now = Date.now()): boolean {
    const totals = this.read();
    if (!totals) return true; // nothing to read here: no calibration either
    const prev = this.last;
    this.last = totals;
    if (!prev) return false;
    const run = totals.run - prev.run;
    const wait = Math.max(0, totals.wait - prev.wait);
    if (run < this.minRunNs) return false;
    this.recent.push({ ratio: Math.min(50, (run + wait) / run), at: now });
    if (this.recent.length > this.window) this.recent.shift();
    return true;
  }

  /** The current slowdown (1 when nothing recent was measured). */
  slowdown(now = Date.now()): number {
    const fresh = this.recent.filter((s) => now - s.at <= this.maxAgeMs).map((s) => s.ratio);
    if (fresh.length === 0) return 1;
    fresh.sort((a, b) => a - b);
    const m = fresh.length >> 1;
    return fresh.length % 2 ? fresh[m] : (fresh[m - 1] + fresh[m]) / 2;
  }
}

/** Nanoseconds on CPU and waiting in the run queue, summed over this process's threads. */
export function readSchedstat(): { run: number; wait: number } | undefined {
  let tasks: string[];
  try {
    tasks = readdirSync('/proc/self/task');
  } catch {
    return undefined;
  }
  let run = 0;
  let wait = 0;
  for (const task of tasks) {
    try {
      const [r, w] = readFileSync(`/proc/self/task/${task}/schedstat`, 'utf8').split(' ').map(Number);
      run += r;
      wait += w;
    } catch {
      // the thread ended between the listing and the read
    }
  }
  return { run, wait };
}
