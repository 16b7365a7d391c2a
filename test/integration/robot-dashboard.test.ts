import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { signerFromSeed } from '../../protocol/ed25519.js';
import { textLikeImage } from '../../nodes/inference/sample-images.js';
import { signEntry, toHex } from '../../protocol/log-entry.js';
import type { FleetView } from '../../nodes/apps/dashboard/view.js';
import type { RobotIdentity } from '../../nodes/mesh/identity.js';
import type { Robot } from '../../nodes/robot/robot.js';
import { McapTransport } from '../../ros/mcap-transport.js';
import { codec } from '../../ros/messages.js';
import { resolveParams } from '../../ros/params.js';
import { type RobotDashboard, startRobotDashboard } from '../../ros/robot-dashboard.js';
import { RobotRosNode } from '../../ros/robot-ros-node.js';
import { startRobot } from '../../ros/robot-setup.js';
import { writeSimBag } from '../../ros/sim-bag.js';
import { sharedCache, testIdentities } from '../helpers/fleet.js';
import { resultPayload, taskPayload } from '../helpers/tasks.js';
import { freePort } from '../helpers/ports.js';
import { waitFor } from '../helpers/wait.js';

const NODE = fileURLToPath(new URL('../../ros/robot-node.js', import.meta.url));
const WAIT = { timeout: 15_000 };
/** Present in the page (an SVG line drawn straight up or down has an empty box, which Playwright calls hidden). */
const DRAWN = { state: 'attached', ...WAIT } as const;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The robot's key file, as loadOrCreateIdentity writes it, so startRobot uses a known identity. */
async function writeKey(dataDir: string, id: RobotIdentity): Promise<void> {
  await mkdir(dataDir, { recursive: true });
  await writeFile(
    join(dataDir, 'identity.key'),
    `${JSON.stringify({ kind: 'robomesh-ed25519-seed', seed: Buffer.from(id.seed).toString('hex') })}\n`,
    { mode: 0o600 },
  );
}

const keyOf = (id: RobotIdentity): string => toHex(id.privateKey.publicKey.raw);
const mapCells = (page: Page): Promise<number> =>
  page.evaluate(() => Number(document.getElementById('map-canvas')!.dataset.mapCells));

describe("a single robot's own dashboard (chromium, no fleet controller)", function () {
  this.timeout(120_000);
  const executablePath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
  let dir: string;
  let bag: string;
  let robot: Robot;
  let peer: Robot;
  let peerId: string;
  let node: RobotRosNode;
  let transport: McapTransport;
  let dash: RobotDashboard | undefined;
  let browser: Browser;
  let page: Page;
  let child: ChildProcess | undefined;
  const pageErrors: string[] = [];
  const state = async (url: string): Promise<FleetView> =>
    (await fetch(new URL('/state.json', url))).json() as Promise<FleetView>;

  before(async () => {
    const t0 = Date.now();
    if (!existsSync(executablePath))
      assert.fail(`no chromium at ${executablePath}: apt-get install chromium (or set CHROMIUM_PATH)`);
    dir = await mkdtemp(join(tmpdir(), 'rm-robot-dash-'));
    bag = join(dir, 'sim.mcap');
    await writeSimBag(bag, codec, { plan: 'builtin:small', seconds: 30, seed: 5, cameraEvery: 30, cameraSize: 32 });

    // A fleet of two: r1 (the robot whose dashboard this is) and r2, its peer.
    const [a, b] = await testIdentities(2, 70);
    peerId = b.peerId.toString();
    const genesis = join(dir, 'genesis.bin');
    await writeFile(
      genesis,
      signEntry(
        {
          seq: 1,
          lamport: 1,
          parents: [],
          payload: { type: 'genesis', fleet: 'dash', members: [keyOf(a), keyOf(b)], admins: [keyOf(a)] },
        },
        signerFromSeed(a.seed),
      ).bytes,
    );
    const fleet = {
      'fleet.name': 'dash',
      'fleet.members': [a.peerId.toString(), peerId],
      'fleet.genesis_file': genesis,
      'fleet.listen': ['/ip4/127.0.0.1/tcp/0'],
      'map.publish_period': 1.0,
    };
    const extra = { cacheDir: await sharedCache(), profileRuns: 2, advertPeriodMs: 300, probeIntervalMs: 0 };
    // The small generated CNN keeps start-up short (profiling the OCR detector takes tens of
    // seconds); it takes 64×64 inputs named `image`, so the bag's camera frames are not for it.
    const paramsA = resolveParams([
      {
        ...fleet,
        robot_name: 'r1',
        data_dir: join(dir, 'r1'),
        models: ['builtin:cnn'],
        'topics.camera': 'unused/image_raw',
        'dashboard.port': await freePort(),
      },
    ]);
    await writeKey(paramsA.data_dir, a);
    robot = await startRobot(paramsA, extra);
    const paramsB = resolveParams([
      { ...fleet, robot_name: 'r2', data_dir: join(dir, 'r2'), models: [], 'fleet.bootstrap': robot.host.addresses() },
    ]);
    await writeKey(paramsB.data_dir, b);
    peer = await startRobot(paramsB, extra);

    transport = await McapTransport.create(codec);
    node = new RobotRosNode(robot, transport, paramsA);
    dash = await startRobotDashboard(robot, paramsA, { pose: () => node.pose, names: { [peerId]: 'r2' } });
    assert.ok(dash, 'dashboard.port set: a dashboard');
    browser = await chromium.launch({ executablePath, args: ['--no-sandbox'] });
    page = await browser.newPage();
    page.on('pageerror', (err) => pageErrors.push(err.message));
    await page.goto(dash.url, WAIT);
    console.log(`      a 30 s simulated bag, two robots and chromium ready in ${Date.now() - t0} ms`);
  });

  after(async () => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await browser?.close();
    await dash?.close();
    node?.close();
    await transport?.close();
    await Promise.allSettled([robot?.stop(), peer?.stop()]);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it(
    'serves its page on 127.0.0.1 showing the robot and ' + 'its link to the peer, with the measured bandwidth',
    async () => {
      assert.match(dash!.url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
      assert.match(await page.title(), /robomesh/);
      await page.locator('#mesh-graph g.robot[data-robot="r1"]').waitFor(WAIT);
      await page.locator('#mesh-graph g.robot[data-robot="r2"]').waitFor(WAIT);
      await page.locator('#mesh-graph line.link.connected[data-a="r1"][data-b="r2"]').waitFor(DRAWN);
      await page.locator('#phase', { hasText: 'r1: 1/1 peers connected' }).waitFor(WAIT);
      assert.equal(await page.locator('#partition-banner').isVisible(), false);
      // Bandwidth appears once the link estimator has measured it: an idle-link probe, which a
      // robot sends once it plans requests of its own.
      const image = { name: 'image', dtype: 'float32' as const, dims: [1, 3, 64, 64], data: textLikeImage(64, 64, 7) };
      robot.scheduler.plans(robot.models.hashes()[0], [image]);
      await robot.probeIdleLinks();
      await page.locator('#mesh-graph text.bw', { hasText: /Mbit\/s/ }).waitFor(WAIT);
      const view = await state(dash!.url);
      assert.equal(view.robots[0].name, 'r1');
      assert.equal(view.robots[0].peerId, robot.peerId);
      assert.deepEqual(
        view.robots.map((r) => [r.name, r.up]),
        [
          ['r1', true],
          ['r2', true],
        ],
      );
      assert.ok(view.links[0].bandwidthBps! > 0 && view.links[0].rttMs! >= 0, JSON.stringify(view.links));
    },
  );

  it('draws its merged map as a simulated bag replays through the robot node, with its pose', async () => {
    assert.equal(await mapCells(page), 0, 'no map before any scan');
    // Replay paced (each scan handler waits a little) so the page sees the map grow, not just the end.
    const pace = transport.subscribe('/scan', 'sensor_msgs/msg/LaserScan', () => sleep(15));
    const replayed = transport.replay(bag);
    try {
      await page.waitForFunction(() => Number(document.getElementById('map-canvas')!.dataset.mapCells) > 0, undefined, {
        timeout: 30_000,
      });
      const first = await mapCells(page);
      await replayed;
      node.publishMap();
      await page.waitForFunction((n) => Number(document.getElementById('map-canvas')!.dataset.mapCells) > n, first, {
        timeout: 15_000,
      });
      console.log(`      map cells on the page: ${first} early in the replay, ${await mapCells(page)} at its end`);
    } finally {
      pace();
      await replayed.catch(() => undefined); // a failed replay fails the assertions below
    }
    const view = await state(dash!.url);
    const pose = view.robots[0].pose;
    assert.ok(pose && view.map, 'a pose and a map');
    const inside = (v: number, o: number, cells: number): boolean => v >= o && v <= o + cells * view.map!.resolution;
    assert.ok(
      inside(pose.x, view.map.origin.x, view.map.width) && inside(pose.y, view.map.origin.y, view.map.height),
      `pose ${JSON.stringify(pose)} on the map`,
    );
    assert.ok(
      view.log.some((l) => l.kind === 'tile' && l.robot === 'r1'),
      'its tile versions in the feed',
    );
  });

  it('plots the latency of every inference its scheduler runs', async () => {
    const [model] = robot.models.hashes();
    const image = { name: 'image', dtype: 'float32' as const, dims: [1, 3, 64, 64], data: textLikeImage(64, 64, 7) };
    for (let i = 0; i < 3; i++) await robot.infer(model, [image], { deadlineMs: 10_000 });
    await page.waitForFunction(
      () => document.querySelectorAll('#latency-plot circle.sample').length === 3,
      undefined,
      WAIT,
    );
    assert.equal(
      await page.locator('#plan-breakdown [data-plan="local"] .count').textContent(),
      '3',
      'r2 has no model: all local',
    );
    const view = await state(dash!.url);
    assert.deepEqual(
      view.latency.map((l) => l.robot),
      ['r1', 'r1', 'r1'],
    );
    assert.ok(
      view.latency.every((l) => l.ms > 0 && l.plan === 'local' && l.predictedMs! > 0),
      JSON.stringify(view.latency),
    );
    // The robot's own prediction error: the median over these decisions, as the page shows it.
    const error = 100 * robot.scheduler.predictionError()!;
    const self = view.robots.find((r) => r.name === 'r1')!;
    assert.ok(Math.abs(self.predictionErrorPct! - error) < 1e-9, `${self.predictionErrorPct} vs ${error}`);
    const expected = view.latency.map((l) => (100 * Math.abs(l.predictedMs! - l.ms)) / l.ms).sort((a, b) => a - b)[1];
    assert.ok(Math.abs(error - expected) < 1e-6, `median of |predicted ÷ measured − 1|: ${error} vs ${expected}`);
    const shown = /r1: prediction error \d+ %, compute [\d.]+× its unloaded time/.source;
    await page.waitForFunction(
      (pattern) => new RegExp(pattern).test(document.getElementById('prediction')!.textContent!),
      shown,
      WAIT,
    );
  });

  it(
    'adds a line to the log feed when the robot appends an ' + "entry, then the peer's result and the final decision",
    async () => {
      const task = `dash-${Date.now().toString(36)}`;
      robot.ledger!.appendBatch([
        taskPayload(task, { f: 0 }),
        { type: 'assign', task, executors: [peer.ledger!.self!] },
      ]);
      const taskLine = page
        .locator('#log-feed li', { hasText: task })
        .filter({ has: page.locator('.tag', { hasText: /^task$/ }) });
      await taskLine.waitFor(WAIT);
      assert.equal(await taskLine.locator('.who').textContent(), 'r1');
      await page.locator('#log-feed li', { hasText: `${task} → r2` }).waitFor(WAIT);

      // r2 hears of the task over the mesh and logs its result; r1's feed shows it and the quorum.
      await waitFor(
        () => peer.ledger!.state.tasks.get(task)?.status === 'assigned',
        'r2 to hold the assigned task',
        15_000,
      );
      const result = peer.ledger!.append(resultPayload(task, 1));
      const digest = (result.entry.payload as { digest: string }).digest;
      const quorum = page.locator('#log-feed li', { hasText: `${task} final` });
      await quorum.waitFor(WAIT);
      assert.equal(await quorum.locator('.tag').textContent(), 'quorum');
      assert.match((await quorum.textContent()) ?? '', new RegExp(`r2 agree on ${digest.slice(0, 10)}`));
      const resultLine = page
        .locator('#log-feed li', { hasText: task })
        .filter({ has: page.locator('.tag', { hasText: /^result$/ }) });
      assert.equal(await resultLine.locator('.who').textContent(), 'r2');
    },
  );

  it(
    'shows a partition as a disconnected (dashed red) ' + 'link and a banner, and the link back after the heal',
    async () => {
      await robot.host.partition([peerId]);
      const cut = page.locator('#mesh-graph line.link.partitioned[data-a="r1"][data-b="r2"]');
      await cut.waitFor(DRAWN);
      assert.equal(await cut.getAttribute('stroke'), '#e74c3c');
      assert.ok(await cut.getAttribute('stroke-dasharray'));
      await page.locator('#partition-banner', { hasText: 'PARTITION r1 | r2' }).waitFor(WAIT);
      await page.locator('#phase', { hasText: 'r1: 0/1 peers connected; partitioned from r2' }).waitFor(WAIT);
      assert.match(
        (await page.locator('#mesh-graph g.robot[data-robot="r2"]').getAttribute('class')) ?? '',
        /\bdown\b/,
      );

      robot.host.heal();
      await page
        .locator('#mesh-graph line.link.connected[data-a="r1"][data-b="r2"]')
        .waitFor({ ...DRAWN, timeout: 20_000 });
      await page.locator('#partition-banner').waitFor({ state: 'hidden', ...WAIT });
      assert.deepEqual(pageErrors, [], 'no script errors on the page');
    },
  );

  it(
    'the ROS entry point serves it: robot-node --replay with ' +
      'dashboard.port prints the URL and serves until SIGINT',
    async () => {
      const port = await freePort();
      const args = [
        NODE,
        '--replay',
        bag,
        '--ros-args',
        '-p',
        'robot_name:=solo',
        '-p',
        `data_dir:=${join(dir, 'solo')}`,
        '-p',
        'models:=[]',
        '-p',
        'fleet.listen:=[/ip4/127.0.0.1/tcp/0]',
        '-p',
        'map.publish_period:=1.0',
        '-p',
        `dashboard.port:=${port}`,
      ];
      const env = { ...process.env };
      delete env.ROS_DISTRO;
      delete env.AMENT_PREFIX_PATH;
      const proc = spawn(process.execPath, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
      child = proc;
      let stderr = '';
      proc.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr += s));
      const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));

      await waitFor(
        () => /replay done; dashboard still at/.test(stderr) || proc.exitCode !== null,
        'the replay to end with the dashboard up',
        45_000,
        100,
      );
      const url = /\[solo\] dashboard at (http:\S+)/.exec(stderr)?.[1];
      assert.equal(url, `http://127.0.0.1:${port}/`, stderr);
      const view = await state(url);
      assert.deepEqual(
        view.robots.map((r) => r.name),
        ['solo'],
        'a fleet of one',
      );
      assert.ok(view.map && view.map.width > 0, 'the replayed map');
      assert.ok(view.robots[0].pose, 'its pose from the bag');
      assert.ok(
        view.log.some((l) => l.kind === 'genesis') && view.log.some((l) => l.kind === 'tile'),
        JSON.stringify(view.log.map((l) => l.kind)),
      );
      const solo = await browser.newPage();
      try {
        await solo.goto(url, WAIT);
        await solo.waitForFunction(
          () => Number(document.getElementById('map-canvas')!.dataset.mapCells) > 0,
          undefined,
          WAIT,
        );
        await solo.locator('#mesh-graph g.robot[data-robot="solo"]').waitFor(WAIT);
      } finally {
        await solo.close();
      }

      proc.kill('SIGINT');
      const code = await Promise.race([exited, sleep(20_000).then(() => 'timeout' as const)]);
      assert.equal(code, 0, stderr);
      assert.match(stderr, /\[solo\] stopped:/);
      await assert.rejects(fetch(url), 'the dashboard is gone once the node stopped');
    },
  );
});
