import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultPlacement, parsePlacement } from '../../nodes/apps/cli/fleet.js';
import type { FleetView } from '../../nodes/apps/dashboard/view.js';
import { type FleetReport, FleetRun, resolvePlacement } from '../../nodes/apps/fleet/index.js';
import { reportMarkdown } from '../../nodes/apps/fleet/report-md.js';
import { ChildRobot, RobotProcess } from '../../nodes/apps/fleet/robot-handle.js';
import type { RobotStatus, RuntimeInit } from '../../nodes/apps/fleet/robot-runtime.js';
import { identityFromSeed } from '../../nodes/mesh/identity.js';
import { robotProcessEnv } from '../../nodes/util/malloc-tunables.js';
import { signerFromSeed } from '../../protocol/ed25519.js';
import { signEntry, toHex } from '../../protocol/log-entry.js';
import { DEFAULT_SCENARIO, ScenarioError, chainHolders, parseScenario } from '../../nodes/apps/fleet/scenario.js';
import { waitFor } from '../helpers/wait.js';

describe('fleet scenarios', () => {
  it('the default scenario parses; mistakes are refused naming the place', () => {
    const s = parseScenario(DEFAULT_SCENARIO);
    assert.equal(s.robots, 4);
    assert.deepEqual(
      s.events.map((e) => Object.keys(e).filter((k) => k !== 'at')[0]),
      ['partition', 'heal', 'shape', 'byzantine'],
    );
    const bad = (text: string, re: RegExp): void =>
      assert.throws(
        () => parseScenario(text),
        (e: ScenarioError) => e instanceof ScenarioError && re.test(e.message),
      );
    bad('robots: 3\nevents: [{ at: 1, partition: [[r0], [r7]] }]', /unknown robot "r7"/);
    bad('robots: 3\nevents: [{ at: 1, byzantine: { robot: r1, fault: lies } }]', /fault type must be one of/);
    bad('robots: 3\nduration: 10\nevents: [{ at: 11, heal: true }]', /after the end/);
    bad('robtos: 3', /unknown key robtos/);
    bad('robots: [', /not YAML/);
    bad(
      'robots: 3\nevents: [{ at: 1, shape: { robots: [r1], links: [[r0, r1]], rate_mbit: 1 } }]',
      /exactly one of robots/,
    );
    bad('robots: 3\nevents: [{ at: 1, shape: { links: [[r0, r0]], rate_mbit: 1 } }]', /two different robots/);
    bad(
      'robots: 3\nevents: [{ at: 1, shape: { links: [[r0, r5]], rate_mbit: 1 } }]',
      /shape.links\[0\]\[1\]: unknown robot "r5"/,
    );
    bad('robots: 3\nevents: [{ at: 1, shape: { between: [[r0, r1]], rate_mbit: 1 } }]', /two or more groups/);
    bad('robots: 3\nevents: [{ at: 1, shape: { robots: [r1] } }]', /rate_mbit: expected a number/);
    assert.deepEqual(s.chain, { stages: 3, precision: 'int8', from: 'r0', fps: 2, replicas: 2 });
    assert.deepEqual(chainHolders(s.chain!, ['r0', 'r1', 'r2', 'r3']), [
      ['r1', 'r2'],
      ['r2', 'r3'],
      ['r3', 'r1'],
    ]);
    bad('robots: 3\nchain: { stages: 1 }', /chain.stages: expected a number ≥ 2/);
    bad('robots: 3\nchain: { stages: 3, replicas: 3 }', /chain.replicas: an integer from 1 to 2/);
    bad('robots: 3\nchain: { precision: int4 }', /chain.precision: fp32, fp16 or int8/);
    bad('robots: 3\nchain: { from: r9 }', /chain.from: unknown robot "r9"/);
    bad('robots: 3\nchain: { stage: 3 }', /unknown key stage/);
    bad('robots: 3\nworkload: { model: none }\nchain: { stages: 3 }', /a chain runs the workload's model/);
  });

  it('link shaping names links three ways, each link once', () => {
    const links = (shape: string): string[] => {
      const e = parseScenario(`robots: 4\nevents: [{ at: 1, shape: ${shape} }]`).events[0];
      assert.ok('shape' in e);
      assert.equal(e.shape.bytesPerSecond, 250_000);
      return e.shape.links.map((l) => l.join('-')).sort();
    };
    assert.deepEqual(links('{ robots: [r1], rate_mbit: 2 }'), ['r1-r0', 'r1-r2', 'r1-r3']);
    assert.deepEqual(links('{ robots: [r1, r2], rate_mbit: 2 }'), ['r1-r0', 'r1-r2', 'r1-r3', 'r2-r0', 'r2-r3']);
    assert.deepEqual(links('{ between: [[r0, r1], [r2]], rate_mbit: 2, delay_ms: 30 }'), ['r0-r2', 'r1-r2']);
    assert.deepEqual(links('{ links: [[r3, r0]], rate_mbit: 2 }'), ['r3-r0']);
    const e = parseScenario(
      'robots: 2\nevents: [{ at: 1, shape: { links: [[r0, r1]], ' +
        'rate_mbit: 2, delay_ms: 30 } }, { at: 2, unshape: true }]',
    ).events;
    assert.ok('shape' in e[0] && e[0].shape.delayMs === 30 && e[0].shape.text.includes('2 Mbit/s, 30 ms'));
    assert.ok('unshape' in e[1]);
  });
});

describe('robomesh fleet: 4 robot processes, a partition, a liar, anchoring and an audit', function () {
  this.timeout(300_000);
  let dir: string;
  let report: FleetReport;
  const views: FleetView[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rm-fleet-'));
    const scenario = parseScenario(`
robots: 4
world: builtin:small
seed: 7
duration: 26
sim_speed: 4
workload: { every: 2, f: 1, model: builtin:cnn }
anchor_every: 5
chain: { stages: 3, fps: 4 }
events:
  - { at: 4, partition: [[r0, r1], [r2, r3]] }
  - { at: 10, heal: true }
  - { at: 11, shape: { links: [[r0, r2]], rate_mbit: 4, delay_ms: 30 } }
  - { at: 13, byzantine: { robot: r3, fault: { type: fake-walls, thickness: 20, from: [1, 4], to: [7, 4] } } }
  - { at: 15, byzantine: { robot: r1, fault: forge } }
  - { at: 18, byzantine: { robot: r3, fault: equivocate } }
`);
    const lines: string[] = [];
    const run = new FleetRun(scenario, { inProcess: false, dataDir: dir, log: (l) => lines.push(l) });
    run.on('update', (v) => views.push(v));
    report = await run.run();
    console.log(
      reportMarkdown(report)
        .split('\n')
        .filter((l) => l.startsWith('|') || l.startsWith('Task') || l.startsWith('Merged'))
        .map((l) => `      ${l}`)
        .join('\n'),
    );
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('the partition shows in the dashboard view, and the logs and maps converge after the heal', () => {
    assert.equal(report.processes, 'separate');
    assert.ok(
      views.some((v) => v.phase.startsWith('partition') && v.links.some((l) => !l.connected)),
      'a view with the partition',
    );
    assert.ok(
      views.some((v) => v.map && v.robots.every((r) => r.pose)),
      'views carry the map and poses',
    );
    assert.equal(report.heals.length, 1);
    assert.notEqual(report.heals[0].convergedMs, null);
  });

  it('the robot drawing fake walls is flagged, then excluded for equivocating; a forged entry is rejected', () => {
    assert.ok(report.liars.flaggedInLog.includes('r3'), `flagged: ${report.liars.flaggedInLog}`);
    assert.deepEqual(report.liars.excludedInLog, ['r3']);
    assert.ok(report.liars.equivocations >= 1);
    assert.ok(report.liars.forgedEntriesRejected >= 1, 'the forged entry was rejected by gossip validation');
    assert.ok(report.map.accuracy > 0.9, `map accuracy ${report.map.accuracy}`);
  });

  it('a shaped link is shaped at both of its ends, and the report shows what the robots measured on it', () => {
    assert.equal(report.links.length, 1);
    assert.equal(report.links[0].shaping, 'links: 4 Mbit/s, 30 ms'.replace('links:', '1 link(s):'));
    const ends = report.links[0].measured.map((m) => `${m.from}>${m.to}@${m.shapedMbit}`).sort();
    assert.deepEqual(ends, ['r0>r2@4', 'r2>r0@4']);
  });

  it('logged inference ran, and one final result is audited end to end against the anchor on the stand-in node', () => {
    assert.ok(report.inference.tasks > 3);
    assert.ok(report.inference.decisions.final >= 1, JSON.stringify(report.inference.decisions));
    assert.ok(report.anchoring.on.includes('stand-in'));
    assert.ok(report.anchoring.anchors >= 1);
    assert.ok(report.audit?.report, `audit: ${JSON.stringify(report.audit)}`);
    assert.equal(report.audit.report.decision.status, 'final');
    assert.equal(report.audit.report.live.checked, true);
  });

  it("r0's camera streams through the chain its peers hold; every frame is counted, and the view shows it", () => {
    const c = report.chain!;
    assert.ok(c, 'the report has the chain');
    assert.deepEqual(c.holders, [
      ['r1', 'r2'],
      ['r2', 'r3'],
      ['r3', 'r1'],
    ]);
    const st = c.stream;
    // 4 frames/s from the start of the 26 s timeline until the robots stop.
    assert.ok(st.offered >= 4 * 24, `offered ${st.offered}`);
    // The partition (4–10 s) cuts r0 off stage 2's holders: those frames fail or are dropped.
    // Before and after it, frames get through.
    assert.ok(st.delivered >= st.offered / 2, JSON.stringify(st));
    assert.ok(st.failed + st.dropped >= 4, JSON.stringify(st));
    // Every frame has one fate: frames still in the chain at the last poll are the only gap.
    const settled = st.delivered + st.dropped + st.failed;
    assert.ok(settled <= st.offered && settled >= st.offered - 4, JSON.stringify(st));
    assert.ok(st.p95Ms >= st.p50Ms && st.p50Ms > 0, JSON.stringify(st));
    // Stage runs went only to robots holding a stage (or standing in), never to r0 itself.
    assert.ok(!('r0' in st.runs), JSON.stringify(st.runs));
    assert.ok(Object.keys(st.runs).length >= 2, JSON.stringify(st.runs));
    assert.ok(
      views.some((v) => (v.robots.find((r) => r.name === 'r0')?.chains?.delivered ?? 0) > 0),
      "the dashboard view shows r0's stream",
    );
    assert.match(reportMarkdown(report), /## Chain \(pipelined stream\)/);
  });
});

describe('robomesh fleet sharded: robots spread over shared processes', function () {
  this.timeout(120_000);
  const dirs: string[] = [];
  const tmp = async (prefix: string): Promise<string> => {
    const d = await mkdtemp(join(tmpdir(), prefix));
    dirs.push(d);
    return d;
  };
  after(() => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));

  it('placement: --processes parses K, separate, in-process; big fleets default to one process per core', () => {
    assert.equal(parsePlacement('2'), 2);
    assert.equal(parsePlacement('separate'), 'separate');
    assert.equal(parsePlacement('in-process'), 'in-process');
    for (const bad of ['0', '-1', '1.5', 'two', ''])
      assert.throws(() => parsePlacement(bad), /expected a number of processes/);
    assert.equal(defaultPlacement(4, 2), 'separate');
    assert.equal(defaultPlacement(12, 8), 'separate');
    assert.equal(defaultPlacement(50, 2), 2);
    assert.equal(defaultPlacement(50, 1), 'in-process');
    assert.equal(resolvePlacement(4, 4), 'separate', 'K ≥ robots is one process each');
    assert.equal(resolvePlacement(2, 4), 2);
  });

  it('4 robots in 2 processes: a partition heals and converges; the report counts each process once', async () => {
    const scenario = parseScenario(`
robots: 4
world: builtin:small
seed: 5
duration: 12
sim_speed: 4
workload: { every: 0, f: 1, model: none }
anchor_every: 0
events:
  - { at: 3, partition: [[r0, r1], [r2, r3]] }
  - { at: 7, heal: true }
`);
    const lines: string[] = [];
    const run = new FleetRun(scenario, {
      placement: 2,
      dataDir: await tmp('rm-fleet-shards-'),
      log: (l) => lines.push(l),
    });
    const report = await run.run();
    assert.equal(report.processes, 'sharded');
    assert.deepEqual(report.placement, [
      ['r0', 'r2'],
      ['r1', 'r3'],
    ]);
    assert.ok(lines[0].includes('in 2 shared processes'), lines[0]);
    assert.equal(report.heals.length, 1);
    assert.notEqual(report.heals[0].convergedMs, null, lines.join('\n'));
    assert.ok(!lines.some((l) => l.includes('gave up')), `every wait ended in time:\n${lines.join('\n')}`);
    const usage = run.processUsage();
    assert.equal(usage.length, 2);
    assert.notEqual(usage[0].pid, usage[1].pid);
    assert.ok(!usage.some((u) => u.pid === process.pid), 'no robot in the fleet process');
    // Per robot = the two processes' RSS over 4 robots (not every status's RSS: each is its process's).
    const { maxRssMb, rssMbPerRobot, cpuSeconds } = report.resources;
    assert.ok(
      rssMbPerRobot * 4 <= maxRssMb * 2 + 1e-6 && rssMbPerRobot * 4 >= maxRssMb - 1e-6,
      JSON.stringify(report.resources),
    );
    assert.ok(Math.abs(cpuSeconds - (usage[0].cpuMs + usage[1].cpuMs) / 1000) < 1e-6);
    assert.ok(reportMarkdown(report).includes('in 2 shared processes of 2, 2 robots'));
  });

  it(
    'robots sharing a process: one stops, the other still answers; the process exits ' +
      'after its last; a killed process fails every pending request with ROBOT_DOWN',
    async () => {
      const dir = await tmp('rm-fleet-proc-');
      const seeds = Array.from({ length: 4 }, (_, i) => new Uint8Array(32).fill(40 + i));
      const ids = await Promise.all(seeds.map((s) => identityFromSeed(s)));
      const keys = ids.map((i) => toHex(i.privateKey.publicKey.raw));
      const genesis = signEntry(
        {
          seq: 1,
          lamport: 1,
          parents: [],
          payload: { type: 'genesis', fleet: 'local', members: keys, admins: [keys[0]] },
        },
        signerFromSeed(seeds[0]),
      );
      const init = (i: number): RuntimeInit => ({
        name: `r${i}`,
        index: i,
        seed: Buffer.from(seeds[i]).toString('hex'),
        fleet: {
          name: 'local',
          members: ids.map((x) => x.peerId.toString()),
          genesis: Buffer.from(genesis.bytes).toString('base64'),
        },
        bootstrap: [],
        dataDir: join(dir, `r${i}`),
        cacheDir: dir,
        sim: { world: 'builtin:small', seed: 1, speed: 1, publishEvery: 5 },
        model: null,
      });
      const a = new RobotProcess('shard a');
      const b = new RobotProcess('shard b');
      const robots = [
        new ChildRobot('r0', a),
        new ChildRobot('r1', a),
        new ChildRobot('r2', b),
        new ChildRobot('r3', b),
      ];
      try {
        await Promise.all(robots.map((r, i) => r.start({ ...init(i), holdUntilGo: i === 1 })));
        assert.equal(robots[0].pid, robots[1].pid);
        assert.notEqual(robots[0].pid, robots[2].pid);
        // Robot processes start with the robot malloc tunables. /proc shows the environment block as
        // glibc left it after parsing the tunables in place (up to the first ':'), so the first one.
        const environ = readFileSync(`/proc/${robots[0].pid}/environ`, 'utf8').split('\0');
        const [first] = robotProcessEnv({}).GLIBC_TUNABLES!.split(':');
        assert.ok(
          environ.includes(`GLIBC_TUNABLES=${first}`),
          `GLIBC_TUNABLES of robot process ${robots[0].pid}: ${environ.filter((v) => v.startsWith('GLIBC')).join()}`,
        );

        // r1 holds still until told to go (the fleet starts the scenario's clock once all are up),
        // while r0 beside it in the same process moves from the start.
        const simTime = async (r: ChildRobot): Promise<number> =>
          (await r.request<RobotStatus>({ cmd: 'status' })).simTime;
        let r0Time = 0;
        await waitFor(async () => (r0Time = await simTime(robots[0])) > 1, 'r0 to move', 20_000);
        assert.equal(await simTime(robots[1]), 0, `r1 stayed still while r0 moved ${r0Time} s`);
        await robots[1].request({ cmd: 'go' });
        await waitFor(async () => (await simTime(robots[1])) > 0, 'r1 to move after go', 20_000);

        // Shard a: r0 stops, r1 lives on in the same process; after r1 the process exits by itself.
        await robots[0].stop();
        assert.equal(a.exit, undefined);
        const s1 = await robots[1].request<RobotStatus>({ cmd: 'status' });
        assert.equal(s1.name, 'r1');
        await assert.rejects(robots[0].request({ cmd: 'status' }), /r0 is not running in this process/);
        await robots[1].stop();
        assert.deepEqual(a.exit, { code: 0, signal: null }, 'exited on its own after its last robot stopped');

        // Shard b killed with requests of both its robots in flight: both fail at once, naming the robot.
        const t0 = Date.now();
        b.kill();
        const pending = [robots[2].request({ cmd: 'status' }), robots[3].request({ cmd: 'status' })];
        for (const [k, p] of pending.entries()) {
          await assert.rejects(
            p,
            (e: Error & { code?: string }) =>
              e.code === 'ROBOT_DOWN' &&
              e.message.startsWith(`r${k + 2} is down: its process (shard b, pid`) &&
              /killed by SIGKILL/.test(e.message),
          );
        }
        assert.ok(Date.now() - t0 < 5000, 'no waiting for the request timeout');
        assert.ok(!robots[2].up && !robots[3].up);
        await assert.rejects(robots[3].request({ cmd: 'status' }), /ROBOT_DOWN|r3 is not running/);
      } finally {
        await Promise.all(robots.map((r) => r.stop()));
        a.kill();
        b.kill();
      }
    },
  );
});
