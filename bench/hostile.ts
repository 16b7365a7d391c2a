import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FleetView } from '../nodes/apps/dashboard/index.js';
import { ATTACKS, FleetRun, parseScenario } from '../nodes/apps/fleet/index.js';
import { type Row, table, writeResults } from './report.js';

/**
 * bench:hostile — four honest robots (r0..r3, each in its own process) running logged tasks on the
 * generated CNN (four a second fleet-wide, ~240 per attack window) and mapping, and one member (r4)
 * running every attack of nodes/apps/fleet/attacks.ts in turn, ATTACK_SECONDS each, then a
 * stranger process opening 5 idle TCP connections a second to every robot for a window of its own.
 * Every attack window sits between two rest windows of the same run (r4 idle, no stranger), and
 * its yardstick is their samples pooled: the same run without the attacker, minutes apart at most.
 * Whole runs compared back to back drifted too much on this shared 2-core machine: two attack-free
 * runs differed by up to 1.8× in the same window, and the window before any attack read 2.08.
 * A rest window's first 5 s are left out, so what an attack leaves behind counts against it.
 * A second yardstick is a separate control run, the same fleet, scenario and seed with r4 cut off
 * from the start and no stranger ("without r4").
 * Per window: honest task latency p95 ÷ each yardstick, peak RSS growth of each honest robot
 * within the window, the robots' event-loop delay p99 (the worst robot), member dials (fresh
 * connections between honest robots, every 2 s) that failed; at the end, whether every honest
 * robot holds every entry the honest robots wrote. BENCH_ATTACKS (comma-separated, empty for
 * none) picks attacks. The robots run on loopback, which libp2p exempts from its per-address
 * handshake caps: the stranger loads the robots here; its lock-out is tested across network
 * namespaces (mdns.test).
 */
const ATTACK_SECONDS = Number(process.env.BENCH_ATTACK_SECONDS ?? 60);
const REST_SECONDS = Number(process.env.BENCH_REST_SECONDS ?? 30);
/** Left out of each rest window: the tail of the attack before it. */
const SETTLE_SECONDS = 5;
/** The first seconds load sessions and fill the map: before the first window. */
const WARM_UP_SECONDS = 15;
const HONEST = ['r0', 'r1', 'r2', 'r3'];
const STRANGER = 'stranger-flood';
const CHOSEN = (process.env.BENCH_ATTACKS?.split(',').filter(Boolean) ?? [...ATTACKS]) as (typeof ATTACKS)[number][];

interface Window {
  name: string;
  kind: 'rest' | 'attack';
  from: number;
  to: number;
}
const windows: Window[] = [];
let clock = WARM_UP_SECONDS;
const addWindow = (name: string, kind: Window['kind'], seconds: number): void => {
  windows.push({ name, kind, from: clock + (kind === 'rest' ? SETTLE_SECONDS : 0), to: clock + seconds });
  clock += seconds;
};
addWindow('rest 0', 'rest', REST_SECONDS);
[...CHOSEN, STRANGER].forEach((a, i) => {
  addWindow(a, 'attack', ATTACK_SECONDS);
  addWindow(`rest ${i + 1}`, 'rest', REST_SECONDS);
});
const duration = clock + 5;
const attackWindows = windows.filter((w) => w.kind === 'attack');
const memberAttacks = attackWindows.filter((w) => w.name !== STRANGER);
const strangerWindow = attackWindows.find((w) => w.name === STRANGER)!;
const events = memberAttacks
  .map(
    (w) =>
      `  - { at: ${w.from}, byzantine: { robot: r4, ` +
      `fault: { type: attack, attack: ${w.name}, seconds: ${ATTACK_SECONDS - 2} } } }`,
  )
  .join('\n');
type Run = 'attacked' | 'without r4';
const scenarioText = (run: Run): string => `
robots: 5
world: builtin:small
seed: 11
duration: ${duration}
sim_speed: 2
workload: { every: 0.25, f: 1, model: builtin:cnn }
anchor_every: 30
${run === 'attacked' && events ? `events:\n${events}` : ''}${
  run === 'without r4' ? 'events:\n  - { at: 0, partition: [[r0, r1, r2, r3], [r4]] }' : ''
}
`;

interface Dials {
  at: number;
  ok: number;
  failed: string[];
}

/** One run of the fleet: with the attacker (r4's attacks and the stranger), or a control. */
async function runFleet(kind: Run) {
  const hostile = kind === 'attacked';
  const dir = await mkdtemp(join(tmpdir(), 'rm-bench-hostile-'));
  const views: FleetView[] = [];
  const dials: Dials[] = [];
  const start = Date.now();
  const log = (l: string) => process.stdout.write(`${hostile ? '' : `[${kind}] `}${l}\n`);
  const run = new FleetRun(parseScenario(scenarioText(kind)), { inProcess: false, dataDir: dir, log });
  run.on('update', (v) => views.push(v));
  let stranger: ChildProcess | undefined;
  const ports = (): number[] =>
    HONEST.concat('r4')
      .flatMap((r) => run.statusOf(r)?.addresses ?? [])
      .map((a) => /\/ip4\/127\.0\.0\.1\/tcp\/(\d+)/.exec(a)?.[1])
      .filter((p): p is string => p !== undefined)
      .map(Number);
  const strangerTimers = hostile
    ? [
        setTimeout(() => {
          const flood =
            `const net=require('net');const ports=${JSON.stringify(ports())};const s=[];` +
            `setInterval(()=>{for(const p of ports){const c=net.connect(p,'127.0.0.1');c.on('error',()=>{});` +
            `s.push(c);if(s.length>2000)s.shift().destroy()}},200);`;
          stranger = spawn(process.execPath, ['-e', flood], { stdio: 'ignore' });
        }, strangerWindow.from * 1000),
        setTimeout(() => stranger?.kill('SIGKILL'), strangerWindow.to * 1000),
      ]
    : [];
  const prober = setInterval(() => {
    const r4 = run.statusOf('r4')?.peerId;
    if (ports().length < 5) return; // the fleet is still starting
    for (const r of HONEST)
      run
        .command<{ ok: number; failed: string[] }>(r, { cmd: 'dial-check', skip: r4 ? [r4] : [] }, 10_000)
        .then((d) => dials.push({ at: (Date.now() - start) / 1000, ...d }))
        .catch((err: Error) => dials.push({ at: (Date.now() - start) / 1000, ok: 0, failed: [err.message] }));
  }, 2000);
  // Each attack is measured on its own: at its start the honest robots forgive r4 (what the last
  // attack cost it, and their cut-off), so it reaches them again.
  const forgiving = hostile
    ? memberAttacks.map((w) =>
        setTimeout(
          () => {
            const r4 = run.statusOf('r4')?.peerId;
            // a robot down shows in its figures
            if (r4) for (const r of HONEST) run.command(r, { cmd: 'forgive', peer: r4 }).catch(() => undefined);
          },
          (w.from - 1) * 1000,
        ),
      )
    : [];
  try {
    const report = await run.run();
    return { views, dials, report };
  } finally {
    clearInterval(prober);
    for (const t of [...forgiving, ...strangerTimers]) clearTimeout(t);
    stranger?.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  }
}

const attacked = await runFleet('attacked');
const without = await runFleet('without r4');
const { views, dials, report } = attacked;

const p = (xs: number[], q: number): number => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * (s.length - 1)))];
};
const at = (v: FleetView): number => v.time / 1000;
/** Every latency sample the run showed (each view carries only the newest 500). */
const samplesOf = (vs: FleetView[]): FleetView['latency'] => {
  const seen = new Map<string, FleetView['latency'][number]>();
  for (const v of vs) for (const l of v.latency) seen.set(`${l.robot}@${l.at}`, l);
  return [...seen.values()];
};
const samples = samplesOf(views);
const withoutSamples = samplesOf(without.views);
const inWindow = (t: number, w: { from: number; to: number }): boolean => t >= w.from && t < w.to;
const rssIn = (w: { from: number; to: number }, robot: string): number[] =>
  views
    .filter((v) => inWindow(at(v), w))
    .flatMap((v) => v.robots.filter((r) => r.name === robot && r.rssMb !== undefined).map((r) => r.rssMb!));
const honestIn = (xs: typeof samples, w: Window): number[] =>
  xs.filter((s) => inWindow(s.at / 1000, w) && HONEST.includes(s.robot)).map((s) => s.ms);
const rows: Row[] = windows.map((w, k) => {
  const lat = honestIn(samples, w);
  const withoutP95 = p(honestIn(withoutSamples, w), 0.95);
  // An attack window's rest windows, before and after, pooled; a rest window has none.
  const restP95 =
    w.kind === 'attack' ? p([...honestIn(samples, windows[k - 1]), ...honestIn(samples, windows[k + 1])], 0.95) : 0;
  // Growth during the window: its peak over what the robot held as the window began.
  const growth = HONEST.map((r) => {
    const rss = rssIn(w, r);
    const start = rssIn({ from: w.from, to: w.from + 5 }, r);
    return rss.length && start.length ? Math.max(...rss) - Math.min(...start) : NaN;
  });
  const lags = views
    .filter((v) => inWindow(at(v), w))
    .flatMap((v) =>
      v.robots.filter((r) => HONEST.includes(r.name) && r.loopLagMs !== undefined).map((r) => r.loopLagMs!),
    );
  const d = dials.filter((x) => inWindow(x.at, w));
  return {
    window: w.name,
    tasks: lat.length,
    'task p95 ms': p(lat, 0.95),
    'rests around p95 ms': w.kind === 'attack' ? restP95 : '-',
    'p95 ÷ rests around': w.kind === 'attack' ? p(lat, 0.95) / restP95 : '-',
    'without r4 p95 ms': withoutP95,
    'p95 ÷ without r4': p(lat, 0.95) / withoutP95,
    'RSS growth MB (max robot)': Math.max(...growth.filter((g) => !Number.isNaN(g))),
    'loop lag p99 ms (worst)': p(lags, 0.99),
    'member dials': d.reduce((n, x) => n + x.ok + x.failed.length, 0),
    'dials failed': d.reduce((n, x) => n + x.failed.length, 0),
  };
});
if (process.env.BENCH_SLOW)
  for (const x of samples.filter((y) => y.ms > 1000))
    process.stdout.write(`slow: ${x.robot} at ${(x.at / 1000).toFixed(1)} s ${x.ms.toFixed(0)} ms ${x.plan}\n`);
// Nothing lost: at the end every robot the log does not exclude holds every entry such robots wrote.
const kept =
  report.final.convergedMs === null
    ? 'NOT every honest robot caught up within 60 s'
    : `every robot not excluded (${report.robots.filter((r) => !report.final.leftOut.includes(r)).join(' ')}) ` +
      `holds every entry they wrote (caught up ${report.final.convergedMs} ms after the end)`;
const heading =
  `bench:hostile — r0..r3 honest (tasks on the generated CNN four times a ` +
  `second, mapping), r4 attacking ${ATTACK_SECONDS} s per attack, then ` +
  `a stranger opening 5 idle TCP connections a second to every robot, ${REST_SECONDS} s rests between; ` +
  'one process per robot, loopback';
process.stdout.write(`\n${heading}\n\n${table(rows)}\n\n`);
process.stdout.write(
  `offences reported in r0's log about r4: ` +
    `${report.liars.excludedInLog.includes('r4') ? 'r4 excluded' : 'r4 not excluded'}; ` +
    `tasks failed ${report.inference.failed} of ${report.inference.tasks}; ` +
    `decisions ${JSON.stringify(report.inference.decisions)}\n${kept}\n`,
);
const path = await writeResults('hostile', {
  attackSeconds: ATTACK_SECONDS,
  restSeconds: REST_SECONDS,
  windows,
  controls: {
    'without r4': { final: without.report.final, tasks: without.report.inference },
  },
  rows,
  excluded: report.liars.excludedInLog,
  final: report.final,
  tasks: report.inference,
});
process.stdout.write(`results: ${path}\n`);
