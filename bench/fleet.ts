import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { FleetRun, type Placement, resolvePlacement, parseScenario } from '../nodes/apps/fleet/index.js';
import { type Row, table, writeResults } from './report.js';

/**
 * bench:fleet — 10, 25 and 50 robots (each its own libp2p host, SQLite log, simulated lidar and
 * map) on builtin:warehouse, by default spread round-robin over one process per CPU core
 * (BENCH_FLEET_PROCESSES: a number of processes, `separate` or `in-process`): split in two
 * halves, both keep mapping, heal; time until every robot holds the same log state and the same
 * merged map; RSS and CPU per robot (over the processes hosting robots); bytes each robot
 * published (log entries, map tiles, tensors). Workload: a logged split-inference task on the
 * generated CNN every BENCH_FLEET_TASK_EVERY s fleet-wide (default 2; 0 = none), k = 2 executors.
 */
const SIZES = (process.env.BENCH_FLEET_SIZES ?? '10,25,50').split(',').map(Number);
/** Robots move at half real speed: each process hosts many robots' simulations on one event loop. */
const SIM_SPEED = Number(process.env.BENCH_FLEET_SIM_SPEED ?? 0.5);
/**
 * Logged split-inference tasks on the generated CNN (k executors each), one every this many seconds
 * fleet-wide; 0 = none.
 */
const TASK_EVERY = Number(process.env.BENCH_FLEET_TASK_EVERY ?? 2);
const PLACEMENT: Placement = (() => {
  const v = process.env.BENCH_FLEET_PROCESSES ?? String(availableParallelism());
  if (v === 'in-process' || v === 'separate') return v;
  if (/^\d+$/.test(v) && Number(v) >= 1) return Number(v);
  throw new Error(`BENCH_FLEET_PROCESSES: a number of processes, separate or in-process; got '${v}'`);
})();

const placementLabel = (n: number): string => {
  const p = resolvePlacement(PLACEMENT, n);
  return p === 'in-process' ? 'in-process' : p === 'separate' ? `${n} processes` : `${p} shard${p === 1 ? '' : 's'}`;
};

async function one(n: number): Promise<Row & Record<string, number | string>> {
  const half = Array.from({ length: n }, (_, i) => `r${i}`);
  const scenario = parseScenario(`
robots: ${n}
world: builtin:warehouse
seed: 3
duration: 40
sim_speed: ${SIM_SPEED}
workload: { every: ${TASK_EVERY}, f: 1, model: ${TASK_EVERY > 0 ? 'builtin:cnn' : 'none'} }
anchor_every: 0
events:
  - { at: 12, partition: [[${half.slice(0, n / 2).join(', ')}], [${half.slice(n / 2).join(', ')}]] }
  - { at: 26, heal: true }
`);
  const dir = await mkdtemp(join(tmpdir(), `rm-bench-fleet-${n}-`));
  try {
    const run = new FleetRun(scenario, {
      placement: PLACEMENT,
      dataDir: dir,
      log: (l) => process.stderr.write(`  [${n}] ${l}\n`),
    });
    const hosts = resolvePlacement(PLACEMENT, n) !== 'in-process';
    // Sampled at every status poll (from the mesh forming to the final catch-up): the robots'
    // processes through their statuses (each process counted once), and this one.
    let peakRss = 0;
    let peakOwnRss = 0;
    let first: { at: number; cpuMs: Map<number, number>; own: NodeJS.CpuUsage } | undefined;
    let last: typeof first;
    run.on('update', () => {
      const usage = run.processUsage();
      peakRss = Math.max(
        peakRss,
        usage.reduce((a, u) => a + u.rss, 0),
      );
      peakOwnRss = Math.max(peakOwnRss, process.memoryUsage().rss);
      last = { at: performance.now(), cpuMs: new Map(usage.map((u) => [u.pid, u.cpuMs])), own: process.cpuUsage() };
      first ??= last;
    });
    const report = await run.run();
    const statuses = run.robotStatuses();
    const mean = (f: (s: (typeof statuses)[number]) => number): number =>
      statuses.reduce((a, s) => a + f(s), 0) / statuses.length;
    // CPU time of the robots' processes between the first and the last poll, per wall second.
    const span = first && last && last.at > first.at ? (last.at - first.at) / 1000 : NaN;
    const cpuS =
      first && last
        ? [...last.cpuMs].reduce((a, [pid, ms]) => a + (ms - (first!.cpuMs.get(pid) ?? ms)), 0) / 1000
        : NaN;
    const own = first && last ? (last.own.user - first.own.user + last.own.system - first.own.system) / 1e6 : NaN;
    return {
      robots: n,
      placement: placementLabel(n),
      'converged after heal (s)': report.heals[0]?.convergedMs == null ? 'no' : report.heals[0].convergedMs / 1000,
      'goal ≤ 10 s': report.heals[0]?.convergedMs != null && report.heals[0].convergedMs <= 10_000 ? 'met' : 'missed',
      'median robot (s)': report.heals[0]?.medianRobotMs == null ? 'no' : report.heals[0].medianRobotMs / 1000,
      'logs alone (s)': report.heals[0]?.logMs == null ? 'no' : report.heals[0].logMs / 1000,
      'peak RSS per robot (MB)': peakRss / 2 ** 20 / n,
      'goal ≤ 60 MB': peakRss / 2 ** 20 / n <= 60 ? 'met' : 'missed',
      'CPU per robot (% of a core)': (cpuS / span / n) * 100,
      'fleet process RSS (MB)': hosts ? peakOwnRss / 2 ** 20 : 'included',
      'fleet process CPU (% of a core)': hosts ? (own / span) * 100 : 'included',
      'log KB published per robot': mean((s) => s.bytes.logOut) / 1024,
      'tile KB sent per robot': mean((s) => s.bytes.tilesOut) / 1024,
      'tensor KB per robot': mean((s) => s.bytes.tensorsOut) / 1024,
      'tasks (failed)': `${report.inference.tasks} (${report.inference.failed})`,
      'task p50 ms': report.inference.latencyMs.p50,
      'map accuracy': report.map.accuracy,
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const rows: Row[] = [];
  for (const n of SIZES) rows.push(await one(n));
  const where =
    PLACEMENT === 'in-process'
      ? 'robots in one process'
      : PLACEMENT === 'separate'
        ? 'one process per robot'
        : `robots spread round-robin over ${PLACEMENT} process${PLACEMENT === 1 ? '' : 'es'}`;
  console.log(
    `\nbench:fleet — ${where} on builtin:warehouse (simulated at ` +
      `${SIM_SPEED}× real time), partition into halves for 14 s, then heal\n`,
  );
  console.log(table(rows));
  console.log(
    '\nconverged = until the last robot held every log entry any ' +
      'robot had written when the heal came, and the cells of every ' +
      'tile those entries name (robots keep mapping meanwhile: tile ' +
      'versions written after the heal are ongoing sync, not part ' +
      'of catching up), each robot timing itself; median robot = ' +
      'the same for the median robot; logs alone = the entries ' +
      'without the cells; RSS and CPU per robot = the processes ' +
      'hosting robots (each once), peak RSS and CPU time from the mesh ' +
      'forming to the final catch-up, divided by the robots; fleet ' +
      'process = this process (orchestration and polling) when the ' +
      'robots run elsewhere; log bytes = one copy of what each robot ' +
      'published (gossip fan-out and sync replies not counted); ' +
      'tile bytes = map cells each robot served to neighbours that ' +
      'pulled them (tile entries travel in the log); tensor bytes = ' +
      'boundary tensors and results each robot sent as an executor; ' +
      'tasks = logged split inferences on the generated CNN, k = 2.',
  );
  const path = await writeResults('fleet', { sizes: SIZES, simSpeed: SIM_SPEED, processes: PLACEMENT, rows });
  console.log(`\nwrote ${path}`);
}

await main();
