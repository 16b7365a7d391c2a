import { mergeTile, findLiars } from '../contracts/map-consensus.js';
import { type MapService, gossipMessage, assemble } from '../nodes/mapping/index.js';
import { MappingFleet, type MapQuality, mapQuality } from '../nodes/apps/sim/index.js';
import { type Row, table, writeResults } from './report.js';

/**
 * bench:mapping — 8 robots map builtin:office (simulated lidar, scan-matched odometry) with 0, 1
 * and 2 Byzantine robots drawing fake walls 20 and 180 cells thick across the shared corridor
 * (the seed work's faults). Per scenario, medians over seeds: accuracy on known cells and
 * occupied IoU against the ground truth, side by side with the honest-only map (ratios) and
 * with the liars left in; simulated time until every liar is flagged in the log; payload bytes
 * each robot publishes; merge and liar-check rates; simulation speed.
 */
const SEEDS = (process.env.BENCH_SEEDS ?? '7,11,23').split(',').map(Number);
const LIARS = [
  { robot: 6, walls: [{ from: { x: 2, y: 10 }, to: { x: 18, y: 10 }, thickness: 20 }] },
  { robot: 7, walls: [{ from: { x: 4, y: 10 }, to: { x: 16, y: 10 }, thickness: 180 }] },
];

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

function qualityWithout(s: MapService, excluded: string[], fleet: MappingFleet): MapQuality {
  const byTile = new Map<string, Parameters<typeof mergeTile>[0]>();
  for (const c of s.contributions())
    if (!excluded.includes(c.author)) byTile.set(c.tile, [...(byTile.get(c.tile) ?? []), c]);
  return mapQuality(assemble(new Map([...byTile].map(([t, l]) => [t, mergeTile(l)])), s.grid.frame), fleet.world);
}

interface Run {
  liars: number;
  accuracy: number;
  iou: number;
  coverage: number;
  honestAccuracy: number;
  honestIou: number;
  unfilteredAccuracy: number;
  flaggedAfter: number;
  falseFlags: number;
  bytesPerRobot: number;
  simSpeed: number;
  mergesPerSecond: number;
  checksPerSecond: number;
}

function run(seed: number, liars: number): Run {
  const byzantine = LIARS.slice(0, liars);
  const fleet = new MappingFleet({ seed, robots: 8, byzantine });
  const bytes = new Array<number>(8).fill(0);
  let flaggedAfter = Number.NaN;
  const t0 = performance.now();
  while (!fleet.done) {
    const out = fleet.step();
    if (!out) continue;
    out.forEach((list, i) => list.forEach((p) => (bytes[i] += gossipMessage(p).length)));
    fleet.deliverAll(out);
    for (const s of fleet.services) s.detect();
    fleet.syncLogs();
    const flagged = fleet.services[0].ledger.state.flagged;
    if (Number.isNaN(flaggedAfter) && byzantine.every((b) => flagged.includes(fleet.keys[b.robot])))
      flaggedAfter = fleet.sim.time;
  }
  const wall = (performance.now() - t0) / 1000;
  const s0 = fleet.services[0];
  const liarKeys = byzantine.map((l) => fleet.keys[l.robot]);
  const q = fleet.quality(0);
  const honest = qualityWithout(s0, liarKeys, fleet);
  const unfiltered = qualityWithout(s0, [], fleet);
  const falseFlags = s0.ledger.state.flagged.filter((k) => !byzantine.some((b) => fleet.keys[b.robot] === k)).length;
  let t = performance.now();
  let merges = 0;
  while (performance.now() - t < 1000) {
    s0.computeMerged();
    merges++;
  }
  const mergesPerSecond = merges / ((performance.now() - t) / 1000);
  t = performance.now();
  let checks = 0;
  while (performance.now() - t < 1000) {
    findLiars(s0.contributions());
    checks++;
  }
  return {
    liars,
    accuracy: q.accuracy,
    iou: q.iou,
    coverage: q.coverage,
    honestAccuracy: honest.accuracy,
    honestIou: honest.iou,
    unfilteredAccuracy: unfiltered.accuracy,
    flaggedAfter: liars ? flaggedAfter : 0,
    falseFlags,
    bytesPerRobot: median(bytes),
    simSpeed: fleet.sim.time / wall,
    mergesPerSecond,
    checksPerSecond: checks / ((performance.now() - t) / 1000),
  };
}

async function main(): Promise<void> {
  const runs: Run[] = [];
  for (const liars of [0, 1, 2]) {
    for (const seed of SEEDS) {
      const r = run(seed, liars);
      runs.push(r);
      process.stderr.write(
        `  ${liars} liar(s), seed ${seed}: accuracy ${(r.accuracy * 100).toFixed(2)} ` +
          `%, flagged after ${r.flaggedAfter} s, ${r.simSpeed.toFixed(1)}× real time\n`,
      );
    }
  }
  const rows: Row[] = [0, 1, 2].map((liars) => {
    const rs = runs.filter((r) => r.liars === liars);
    const m = (f: (r: Run) => number): number => median(rs.map(f));
    return {
      liars,
      'accuracy (known cells)': m((r) => r.accuracy),
      'occupied IoU': m((r) => r.iou),
      coverage: m((r) => r.coverage),
      'accuracy ÷ honest-only': m((r) => r.accuracy / r.honestAccuracy),
      'liars kept: accuracy ÷ honest-only': m((r) => r.unfilteredAccuracy / r.honestAccuracy),
      'liars flagged after (sim s)': m((r) => r.flaggedAfter),
      'false flags': m((r) => r.falseFlags),
      'payload KB published per robot': Math.round(m((r) => r.bytesPerRobot) / 1024),
      'full merges / s': m((r) => r.mergesPerSecond),
      'liar checks / s': m((r) => r.checksPerSecond),
      'sim speed (× real time)': m((r) => r.simSpeed),
    };
  });
  console.log(`\nbench:mapping — 8 robots, builtin:office, medians over seeds ${SEEDS.join(', ')}\n`);
  console.log(table(rows));
  console.log(
    '\nhonest-only = the merged map of the honest robots alone (8, 7, 6); payload = signed ' +
      'entry + deflated cells per contribution (gossip overhead and duplicates not counted).',
  );
  const path = await writeResults('mapping', { seeds: SEEDS, rows, runs });
  console.log(`\nwrote ${path}`);
}

await main();
