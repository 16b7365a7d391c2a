/**
 * glibc malloc tunables for the processes robomesh starts. glibc reads GLIBC_TUNABLES only at
 * process start, so a spawner passes `withMallocTunables(…)` as the child's env; a process can
 * check itself with `hasMallocTunables` and re-exec if it must. Other allocators (musl,
 * jemalloc) ignore the variable; so does glibc before 2.26.
 */
import { spawnSync } from 'node:child_process';

export type MallocTunables = Readonly<Record<string, number>>;

/**
 * For robot processes. Log sync and the mesh allocate and free megabytes per second in short-lived
 * buffers (SQLite rows, 1 MiB sync replies, noise's 64 KiB frames). With glibc's defaults the
 * heap top is trimmed back to the kernel past 128 KiB free and blocks over 128 KiB are mmap'ed,
 * so that memory is faulted in again on the next burst — at ~13 µs a page fault in this VM,
 * 13,000 faults per robot in bench:ledger's heal. With these (the mmap threshold at 4 MiB then),
 * a heal of 2 × 10,000 entries took 946 instead of 996 ms (median of 8 runs each, interleaved;
 * CPU per robot 801 vs 868 ms).
 * The price: up to 16 MiB of freed heap (plus the 4 MiB pad) stays in each process.
 */
export const ROBOT_MALLOC_TUNABLES: MallocTunables = {
  // Setting any of these ends glibc's adaptive mmap threshold (which rises to 32 MiB as large
  // blocks are freed): fix it there, so a robot's own inference tensors stay on the heap too.
  'glibc.malloc.mmap_threshold': 32 * 2 ** 20,
  'glibc.malloc.trim_threshold': 16 * 2 ** 20,
  'glibc.malloc.top_pad': 4 * 2 ** 20,
};

function parse(value: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  for (const item of (value ?? '').split(':')) {
    const eq = item.indexOf('=');
    if (eq > 0) out.set(item.slice(0, eq), item.slice(eq + 1));
  }
  return out;
}

/**
 * `base` (default: this process's env) with `tunables` merged into GLIBC_TUNABLES; tunables
 * already present there keep their values. Returns a new object.
 */
export function withMallocTunables(tunables: MallocTunables, base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const merged = parse(base.GLIBC_TUNABLES);
  for (const [key, value] of Object.entries(tunables)) if (!merged.has(key)) merged.set(key, String(value));
  return { ...base, GLIBC_TUNABLES: [...merged].map(([k, v]) => `${k}=${v}`).join(':') };
}

/** True when `env` already sets every one of `tunables` (to any value). */
export function hasMallocTunables(tunables: MallocTunables, env: NodeJS.ProcessEnv = process.env): boolean {
  const set = parse(env.GLIBC_TUNABLES);
  return Object.keys(tunables).every((k) => set.has(k));
}

export const robotProcessEnv = (base?: NodeJS.ProcessEnv): NodeJS.ProcessEnv =>
  withMallocTunables(ROBOT_MALLOC_TUNABLES, base);

/**
 * Runs this script again, in a child process whose env has `tunables`, unless this process has
 * them already (or BENCH_MALLOC=default asks for glibc's defaults); the child's exit code becomes
 * ours. Returns true when the child did the work and this process should do nothing more.
 */
export function reexecWithMallocTunables(tunables: MallocTunables): boolean {
  if (process.env.BENCH_MALLOC === 'default' || hasMallocTunables(tunables)) return false;
  const child = spawnSync(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
    stdio: 'inherit',
    env: withMallocTunables(tunables),
  });
  process.exitCode = child.status ?? 1;
  return true;
}
