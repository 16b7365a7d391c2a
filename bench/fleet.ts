import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FleetRun } from '../nodes/fleet/fleet-run.js';
import { parseScenario } from '../nodes/fleet/scenario.js';
import { type Row, table, writeResults } from './report.js';

/**
 * bench:fleet — 10, 25 and 50 robots in one process (each its own libp2p host, SQLite log,
 * simulated lidar and map) on builtin:warehouse: split in two halves, both keep mapping, heal;
 * time until every robot holds the same log state and the same merged map; RSS and CPU per
 * robot; bytes each robot published (log entries, map tiles, tensors). No inference workload:
 * this measures the mesh, the log and the map at scale.
 */
const SIZES = (process.env.BENCH_FLEET_SIZES ?? '10,25,50').split(',').map(Number);
/** Robots move at half real speed: every robot's simulation shares this one event loop. */
const SIM_SPEED = Number(process.env.BENCH_FLEET_SIM_SPEED ?? 0.5);

async function one(n: number): Promise<Row & Record<string, number | string>> {
  const half = Array.from({ length: n }, (_, i) => `r${i}`);
  const scenario = parseScenario(`
robots: ${n}
world: builtin:warehouse
seed: 3
duration: 40
sim_speed: ${SIM_SPEED}
workload: { every: 0, k: 2, model: none }
anchor_every: 0
events:
  - { at: 12, partition: [[${half.slice(0, n / 2).join(', ')}], [${half.slice(n / 2).join(', ')}]] }
  - { at: 26, heal: true }
`);
  const dir = await mkdtemp(join(tmpdir(), `rm-bench-fleet-${n}-`));
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  try {
    const run = new FleetRun(scenario, { inProcess: true, dataDir: dir, log: (l) => process.stderr.write(`  [${n}] ${l}\n`) });
    let peakRss = 0;
    run.on('update', () => void (peakRss = Math.max(peakRss, process.memoryUsage().rss)));
    const report = await run.run();
    const cpu = process.cpuUsage(cpu0);
    const wall = (performance.now() - t0) / 1000;
    const statuses = run.robotStatuses();
    const mean = (f: (s: (typeof statuses)[number]) => number): number => statuses.reduce((a, s) => a + f(s), 0) / statuses.length;
    return {
      robots: n,
      'converged after heal (s)': report.heals[0]?.convergedMs == null ? 'no' : report.heals[0].convergedMs / 1000,
      'goal ≤ 10 s': report.heals[0]?.convergedMs != null && report.heals[0].convergedMs <= 10_000 ? 'met' : 'missed',
      'peak RSS per robot (MB)': peakRss / 2 ** 20 / n,
      'goal ≤ 60 MB': peakRss / 2 ** 20 / n <= 60 ? 'met' : 'missed',
      'CPU per robot (% of a core)': ((cpu.user + cpu.system) / 1e6 / wall / n) * 100,
      'log KB published per robot': mean((s) => s.bytes.logOut) / 1024,
      'tile KB published per robot': mean((s) => s.bytes.tilesOut) / 1024,
      'tensor KB per robot': mean((s) => s.bytes.tensorsOut) / 1024,
      'map accuracy': report.map.accuracy,
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const rows: Row[] = [];
  for (const n of SIZES) rows.push(await one(n));
  console.log(`\nbench:fleet — robots in one process on builtin:warehouse (simulated at ${SIM_SPEED}× real time), partition into halves for 14 s, then heal\n`);
  console.log(table(rows));
  console.log('\nconverged = every robot holds every log entry any robot had written when the heal came, and the cells of every tile its log names (robots keep mapping meanwhile); bytes = one copy of what each robot published (gossip fan-out and sync replies not counted).');
  const path = await writeResults('fleet', { sizes: SIZES, simSpeed: SIM_SPEED, rows });
  console.log(`\nwrote ${path}`);
}

await main();
