import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FleetView } from '../nodes/dashboard/view.js';
import { type FleetReport, FleetRun } from '../nodes/fleet/fleet-run.js';
import { reportMarkdown } from '../nodes/fleet/report-md.js';
import { DEFAULT_SCENARIO, ScenarioError, parseScenario } from '../nodes/fleet/scenario.js';

describe('fleet scenarios', () => {
  it('the default scenario parses; mistakes are refused naming the place', () => {
    const s = parseScenario(DEFAULT_SCENARIO);
    assert.equal(s.robots, 4);
    assert.deepEqual(s.events.map((e) => Object.keys(e).filter((k) => k !== 'at')[0]), ['partition', 'heal', 'byzantine']);
    const bad = (text: string, re: RegExp): void => assert.throws(() => parseScenario(text), (e: ScenarioError) => e instanceof ScenarioError && re.test(e.message));
    bad('robots: 3\nevents: [{ at: 1, partition: [[r0], [r7]] }]', /unknown robot "r7"/);
    bad('robots: 3\nevents: [{ at: 1, byzantine: { robot: r1, fault: lies } }]', /fault type must be one of/);
    bad('robots: 3\nduration: 10\nevents: [{ at: 11, heal: true }]', /after the end/);
    bad('robtos: 3', /unknown key robtos/);
    bad('robots: [', /not YAML/);
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
workload: { every: 2, k: 2, model: builtin:cnn }
anchor_every: 5
events:
  - { at: 4, partition: [[r0, r1], [r2, r3]] }
  - { at: 10, heal: true }
  - { at: 13, byzantine: { robot: r3, fault: { type: fake-walls, thickness: 20, from: [1, 4], to: [7, 4] } } }
  - { at: 15, byzantine: { robot: r1, fault: forge } }
  - { at: 18, byzantine: { robot: r3, fault: equivocate } }
`);
    const lines: string[] = [];
    const run = new FleetRun(scenario, { inProcess: false, dataDir: dir, log: (l) => lines.push(l) });
    run.on('update', (v) => views.push(v));
    report = await run.run();
    console.log(reportMarkdown(report).split('\n').filter((l) => l.startsWith('|') || l.startsWith('Task') || l.startsWith('Merged')).map((l) => `      ${l}`).join('\n'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('the partition shows in the dashboard view, and the logs and maps converge after the heal', () => {
    assert.equal(report.processes, 'separate');
    assert.ok(views.some((v) => v.phase.startsWith('partition') && v.links.some((l) => !l.connected)), 'a view with the partition');
    assert.ok(views.some((v) => v.map && v.robots.every((r) => r.pose)), 'views carry the map and poses');
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

  it('logged inference ran, and one accepted result is audited end to end against the anchor on the stand-in node', () => {
    assert.ok(report.inference.tasks > 3);
    assert.ok(report.anchoring.on.includes('stand-in'));
    assert.ok(report.anchoring.anchors >= 1);
    assert.ok(report.audit?.report, `audit: ${JSON.stringify(report.audit)}`);
    assert.equal(report.audit.report.decision.status, 'accepted');
    assert.equal(report.audit.report.live.checked, true);
  });
});
