/**
 * Where the robots run: all in the fleet's own process, each in its own child process, or
 * spread round-robin over K shared child processes (shards; K ≥ robots is one process each).
 */
export type Placement = 'in-process' | 'separate' | number;

/** The placement a fleet of n robots actually gets (K shards for K ≥ n is one process each). */
export function resolvePlacement(p: Placement, n: number): Placement {
  if (typeof p !== 'number') return p;
  if (!Number.isInteger(p) || p < 1) throw new RangeError(`shards: a positive integer, got ${p}`);
  return p >= n ? 'separate' : p;
}

/** The placement in words: "in this process", "as separate processes", "in 2 shared processes". */
export function describePlacement(p: Placement, n: number): string {
  const r = resolvePlacement(p, n);
  if (r === 'in-process') return 'in this process';
  if (r === 'separate') return 'as separate processes';
  return `in ${r} shared process${r === 1 ? '' : 'es'} (≤ ${Math.ceil(n / r)} robots each, round-robin)`;
}

/** One OS process hosting robots, with its latest RSS and CPU time (from its robots' statuses). */
export interface ProcessUsage {
  pid: number;
  robots: string[];
  rss: number;
  cpuMs: number;
}
