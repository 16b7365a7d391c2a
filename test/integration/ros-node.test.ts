import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { McapIndexedReader } from '@mcap/core';
import { FileHandleReadable } from '@mcap/nodejs';
import type { DenseMap } from '../../nodes/mapping/merged-map.js';
import { mapQuality } from '../../nodes/apps/sim/map-quality.js';
import { floorPlan } from '../../nodes/apps/sim/index.js';
import { readBag as readRosBag } from '../../ros/bag-reader.js';
import { McapTransport } from '../../ros/mcap-transport.js';
import { codec } from '../../ros/messages.js';
import { PARAMETERS, resolveParams } from '../../ros/params.js';
import { RclnodejsTransport, loadRclnodejs } from '../../ros/rclnodejs-transport.js';
import { RobotRosNode } from '../../ros/robot-ros-node.js';
import { startRobot } from '../../ros/robot-setup.js';
import { writeSimBag } from '../../ros/sim-bag.js';
import { sharedCache } from '../helpers/fleet.js';
import { slicerFor } from '../helpers/models.js';
import { buildChain } from '../../nodes/inference/index.js';
import { encodeChainManifest } from '../../protocol/chain-manifest.js';
import type * as Rcl from 'rclnodejs';
import { rclnodejsStandIn as standIn } from '../helpers/rclnodejs-stand-in.js';

const NODE = fileURLToPath(new URL('../../ros/robot-node.js', import.meta.url));

async function readBag(path: string): Promise<Map<string, { type: string; messages: unknown[] }>> {
  const handle = await open(path, 'r');
  try {
    const reader = await McapIndexedReader.Initialize({ readable: new FileHandleReadable(handle) });
    assert.equal(reader.header.profile, 'ros2');
    const topics = new Map<string, { type: string; messages: unknown[] }>();
    for await (const m of reader.readMessages()) {
      const channel = reader.channelsById.get(m.channelId)!;
      const schema = reader.schemasById.get(channel.schemaId)!;
      assert.equal(schema.encoding, 'ros2msg');
      assert.equal(channel.messageEncoding, 'cdr');
      const t = topics.get(channel.topic) ?? { type: schema.name, messages: [] };
      t.messages.push(codec.decode(schema.name, m.data));
      topics.set(channel.topic, t);
    }
    return topics;
  } finally {
    await handle.close();
  }
}

describe('ROS edge without ROS: a simulated bag replayed through a robot node', function () {
  this.timeout(180_000);
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rm-ros-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it(
    'lidar, odometry and camera in; inference results, split decisions, ' +
      'ledger events and a merged map out, in a bag @mcap/core reads',
    async () => {
      const input = join(dir, 'sim.mcap');
      const counts = await writeSimBag(input, codec, { plan: 'builtin:small', seconds: 40, seed: 3, cameraEvery: 10 });
      assert.ok(
        counts['/scan'] > 50 && counts['/camera/image_raw'] === 5,
        `frames at 0, 10, 20, 30, 40 s: ${JSON.stringify(counts)}`,
      );

      const params = resolveParams([
        {
          robot_name: 'r1',
          data_dir: join(dir, 'r1'),
          'map.publish_period': 5,
          'fleet.listen': ['/ip4/127.0.0.1/tcp/0'],
        },
      ]);
      const output = join(dir, 'out.mcap');
      const transport = await McapTransport.create(codec, output);
      const robot = await startRobot(params, {
        cacheDir: await sharedCache(),
        profileRuns: 2,
        advertPeriodMs: 500,
        probeIntervalMs: 0,
      });
      const node = new RobotRosNode(robot, transport, params);
      const played = await transport.replay(input);
      node.publishMap();
      node.close();
      await transport.close();
      // The same node on rclnodejs (a stand-in): sensors subscribed best effort, /map latched,
      // each settable by a qos.* parameter.
      const s = standIn();
      const rcl = await RclnodejsTransport.create(codec, 'r1', '', s.rcl, ['node']);
      const rosNode = new RobotRosNode(robot, rcl, resolveParams([{ robot_name: 'r1', 'qos.odom': 'reliable:20' }]));
      const qosOf = (list: { topic: string; options: Rcl.Options }[], topic: string) => {
        const q = list.find((x) => x.topic === topic)!.options.qos as Rcl.QoS;
        return [q.reliability(), q.durability, q.depth];
      };
      assert.deepEqual(qosOf(s.subscriptions, '/scan'), [2, 2, 5], '/scan: best effort, volatile, 5');
      assert.deepEqual(qosOf(s.subscriptions, '/camera/image_raw'), [2, 2, 5]);
      assert.deepEqual(qosOf(s.subscriptions, '/odom'), [1, 2, 20], 'qos.odom: reliable:20');
      assert.deepEqual(qosOf(s.publishers, '/map'), [1, 1, 1], '/map: reliable, transient local, 1');
      assert.deepEqual(qosOf(s.publishers, '/robomesh/inference'), [1, 2, 10]);
      rosNode.close();
      await rcl.close();
      assert.throws(() => resolveParams([{ 'qos.map': 'latched' }]), /parameter qos.map: "latched" is not sensor_data/);
      await robot.stop();
      const offered = new Map<string, string>();
      for await (const m of readRosBag(output)) offered.set(m.topic, m.metadata.get('offered_qos_profiles') ?? '');
      assert.match(offered.get('/map')!, /depth: 1\n {2}reliability: 1\n {2}durability: 1/, 'recorded as offered');
      assert.match(offered.get('/scan')!, /reliability: 1/, 'an input keeps the QoS its bag recorded');
      assert.equal(played, counts['/scan'] + counts['/odom'] + counts['/camera/image_raw']);

      const bag = await readBag(output);
      assert.equal(bag.get('/scan')?.messages.length, counts['/scan'], 'inputs recorded too');
      const results = bag.get('/robomesh/inference')!;
      assert.equal(results.type, 'robomesh_msgs/msg/InferenceResult');
      assert.equal(results.messages.length, 5, 'one result per camera frame');
      const r = results.messages[0] as { plan: string; digest: Uint8Array; summary: Float32Array; latency_ms: number };
      assert.equal(r.plan, 'local', 'a robot alone runs everything locally');
      assert.equal(r.digest.length, 32);
      assert.ok(r.latency_ms > 0);
      assert.equal(bag.get('/robomesh/split_decisions')!.messages.length, 5);
      assert.ok(
        bag.get('/robomesh/ledger')!.messages.some((m) => (m as { kind: string }).kind === 'tile'),
        'tile contributions logged',
      );
      assert.ok(bag.get('/diagnostics')!.messages.length > 0);

      const maps = bag.get('/map')!;
      assert.equal(maps.type, 'nav_msgs/msg/OccupancyGrid');
      const last = maps.messages[maps.messages.length - 1] as {
        info: { width: number; height: number; resolution: number; origin: { position: { x: number; y: number } } };
        data: Int8Array;
      };
      const world = floorPlan('builtin:small').world;
      const dense: DenseMap = {
        width: last.info.width,
        height: last.info.height,
        resolution: last.info.resolution,
        origin: { x: last.info.origin.position.x, y: last.info.origin.position.y },
        cell0: {
          cx: Math.round((last.info.origin.position.x - world.origin.x) / world.resolution),
          cy: Math.round((last.info.origin.position.y - world.origin.y) / world.resolution),
        },
        states: Int8Array.from(last.data, (v) => (v === 100 ? 1 : v === 0 ? -1 : 0)),
      };
      const q = mapQuality(dense, world);
      console.log(
        `      replayed ${played} messages; map from the output bag: accuracy ` +
          `${(q.accuracy * 100).toFixed(1)} %, coverage ${(q.coverage * 100).toFixed(1)} %`,
      );
      assert.ok(q.accuracy > 0.9, `accuracy ${q.accuracy}`);
    },
  );

  it('with inference.chain, camera frames run through the chain\u2019s stages, one result each', async () => {
    const slicer = await slicerFor('ocr-det');
    const { manifest, stages } = buildChain(slicer.analysis, { stages: 3, precision: 'fp32' });
    const files: string[] = [];
    for (const [k, stage] of stages.entries()) {
      files.push(join(dir, `stage-${k + 1}.onnx`));
      await writeFile(files[k], stage.bytes);
    }
    const chainFile = join(dir, 'chain.json');
    await writeFile(chainFile, encodeChainManifest(manifest));
    const input = join(dir, 'chain-sim.mcap');
    await writeSimBag(input, codec, { plan: 'builtin:small', seconds: 4, seed: 5, cameraEvery: 1 });
    const params = resolveParams([
      {
        robot_name: 'c1',
        data_dir: join(dir, 'c1'),
        models: [],
        'inference.stages': files,
        'inference.chain': chainFile,
        'fleet.listen': ['/ip4/127.0.0.1/tcp/0'],
      },
    ]);
    const output = join(dir, 'chain-out.mcap');
    const transport = await McapTransport.create(codec, output);
    const robot = await startRobot(params, { cacheDir: await sharedCache(), advertPeriodMs: 500, probeIntervalMs: 0 });
    try {
      assert.deepEqual(robot.models.hashes().sort(), manifest.stages.map((x) => x.hash).sort());
      const node = new RobotRosNode(robot, transport, params);
      await transport.replay(input);
      node.close();
      await transport.close();
      assert.equal(node.counts.errors, 0);
      const results = (await readBag(output)).get('/robomesh/inference')!.messages as {
        plan: string;
        model_hash: string;
        output_sizes: Uint32Array;
      }[];
      assert.equal(results.length, node.counts.images - node.counts.framesDropped);
      assert.ok(results.length >= 4, `${results.length} results`);
      for (const r of results) {
        assert.equal(r.plan, 'chain');
        assert.equal(r.model_hash, manifest.model);
        assert.deepEqual([...r.output_sizes], [320 * 320]);
      }
      assert.equal(robot.chains.counters.delivered, results.length);
    } finally {
      await robot.stop();
    }
    assert.throws(
      () =>
        new RobotRosNode(
          robot,
          transport,
          resolveParams([{ 'inference.chain': join(dir, 'missing.json'), data_dir: join(dir, 'c2') }]),
        ),
      { code: 'BAD_CONFIG' },
    );
  });

  it('the entry point refuses clearly: no ROS and no bag, a missing bag, a bad parameter', async () => {
    const run = (args: string[]): Promise<{ code: number; stderr: string }> =>
      new Promise((resolve) => {
        const env = { ...process.env };
        delete env.ROS_DISTRO;
        delete env.AMENT_PREFIX_PATH;
        execFile(process.execPath, [NODE, ...args], { env, timeout: 60_000 }, (err, _out, stderr) =>
          resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stderr }),
        );
      });
    const noRos = await run(['--ros-args', '-p', `data_dir:=${join(dir, 'x')}`]);
    assert.equal(noRos.code, 2);
    assert.match(noRos.stderr, /ROS 2 is not sourced/);
    const missing = await run(['--replay', join(dir, 'nope.mcap'), '--ros-args', '-p', `data_dir:=${join(dir, 'y')}`]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /cannot open bag/);
    const bad = await run(['--ros-args', '-p', 'map.resolution:=fine']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /map.resolution/);
    // A garbage genesis file: one line naming it, exit 2, and the process ends (it used to keep
    // its mesh host listening after the error, so ros2 launch's respawn never fired).
    const genesis = join(dir, 'garbage-genesis.bin');
    await writeFile(genesis, 'not an entry');
    const replayIn = join(dir, 'in-genesis.mcap');
    await writeSimBag(replayIn, codec, { plan: 'builtin:small', seconds: 1, seed: 3 });
    const started = Date.now();
    const garbage = await run([
      '--replay',
      replayIn,
      '--ros-args',
      '-p',
      `data_dir:=${join(dir, 'g')}`,
      '-p',
      `fleet.genesis_file:=${genesis}`,
      '-p',
      'models:=[]',
    ]);
    assert.equal(garbage.code, 2, garbage.stderr);
    assert.equal(garbage.stderr.trim().split('\n').length, 1, garbage.stderr);
    assert.match(
      garbage.stderr,
      new RegExp(
        `fleet.genesis_file: the genesis file ${genesis.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} ` +
          'is not a signed log entry',
      ),
    );
    assert.ok(Date.now() - started < 30_000);
  });
});

describe('rclnodejs transport against a stand-in module', () => {
  it('a build that misuses rclnodejs fails: a scratch compile against rclnodejs\u2019s own types', async function () {
    this.timeout(120_000);
    const root = fileURLToPath(new URL('../../../', import.meta.url));
    const transport = join(root, 'ros', 'rclnodejs-transport.js'); // TypeScript maps it to the .ts beside it
    const scratch = await mkdtemp(join(tmpdir(), 'rm-rcl-tsc-'));
    const compile = async (code: string): Promise<{ code: number; out: string }> => {
      await writeFile(join(scratch, 'use.ts'), code);
      await writeFile(
        join(scratch, 'tsconfig.json'),
        JSON.stringify({
          compilerOptions: {
            strict: true,
            module: 'NodeNext',
            moduleResolution: 'NodeNext',
            target: 'ES2022',
            skipLibCheck: true,
            noEmit: true,
            types: ['node'],
            typeRoots: [join(root, 'node_modules', '@types')],
          },
          files: ['use.ts', join(root, 'node_modules', 'rclnodejs', 'types', 'index.d.ts')],
        }),
      );
      const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
      return new Promise((resolve) =>
        execFile(process.execPath, [tsc, '-p', scratch], { timeout: 110_000 }, (err, stdout, stderr) =>
          resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr }),
        ),
      );
    };
    try {
      const header =
        "import type * as Rcl from 'rclnodejs';\n" + `import type { RclModule } from ${JSON.stringify(transport)};\n`;
      const ok = await compile(
        `${header}export const start = (rcl: RclModule) => rcl.init(undefined, process.argv);\n`,
      );
      assert.equal(ok.code, 0, ok.out);
      // The call the transport used to make: rclnodejs 2.x takes argv itself, not { argv }.
      const misuse = await compile(
        `${header}export const start = (rcl: RclModule) => rcl.init(undefined, { argv: process.argv });\n`,
      );
      assert.notEqual(misuse.code, 0);
      assert.match(misuse.out, /use\.ts.*error TS\d+:.*argv/s);
      // And a transport type declaring that shape does not fit the module rclnodejs declares.
      const drift = await compile(
        `${header}interface Wrong { init: (c: undefined, o: { argv: string[] }) => Promise<void> }\n` +
          'type Fits<T extends Wrong> = T;\nexport type Check = Fits<typeof Rcl>;\n',
      );
      assert.notEqual(drift.code, 0);
      assert.match(drift.out, /error TS2344/);
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  });

  it('is loaded only when ROS 2 is sourced, with a clear error otherwise', async () => {
    let loads = 0;
    const loader = async () => {
      loads++;
      return standIn().rcl;
    };
    await assert.rejects(loadRclnodejs({}, loader), /ROS 2 is not sourced/);
    assert.equal(loads, 0, 'never imported without ROS');
    const env = { ROS_DISTRO: 'jazzy', AMENT_PREFIX_PATH: '/opt/ros/jazzy' };
    assert.ok(await loadRclnodejs(env, loader));
    await assert.rejects(
      loadRclnodejs(env, () => Promise.reject(new Error('Cannot find module build/Release/rclnodejs.node'))),
      /rclnodejs failed to load with ROS jazzy/,
    );
  });

  it('publishes our CDR bytes, decodes raw subscriptions, drops malformed ones, passes ROS args to rcl', async () => {
    const s = standIn();
    const transport = await RclnodejsTransport.create(codec, 'r1', '/fleet', s.rcl, [
      'node',
      'robot-node.js',
      '--ros-args',
      '-p',
      'robot_name:=r1',
    ]);
    assert.deepEqual(s.calls.slice(0, 3), [
      'init ["node","robot-node.js","--ros-args","-p","robot_name:=r1"]',
      'node r1 /fleet',
      'spin',
    ]);
    const odom = {
      header: { stamp: { sec: 3, nanosec: 5 }, frame_id: 'map' },
      child_frame_id: 'base',
      pose: {
        pose: { position: { x: 1, y: 2, z: 0 }, orientation: { x: 0, y: 0, z: 0, w: 1 } },
        covariance: new Float64Array(36),
      },
      twist: {
        twist: { linear: { x: 0, y: 0, z: 0 }, angular: { x: 0, y: 0, z: 0 } },
        covariance: new Float64Array(36),
      },
    };
    transport.publisher('odom', 'nav_msgs/Odometry').publish(odom);
    assert.equal(s.published[0].type, 'nav_msgs/msg/Odometry');
    assert.deepEqual(new Uint8Array(s.published[0].data as Buffer), codec.encode('nav_msgs/msg/Odometry', odom));

    const got: unknown[] = [];
    const unsubscribe = transport.subscribe('odom', 'nav_msgs/msg/Odometry', (m) => void got.push(m));
    assert.equal(s.subscriptions[0].options.isRaw, true);
    const qos = s.subscriptions[0].options.qos as Rcl.QoS;
    assert.deepEqual([qos.reliability(), qos.durability, qos.depth], [1, 2, 10], 'reliable, volatile, 10 by default');
    s.subscriptions[0].cb(Buffer.from(codec.encode('nav_msgs/msg/Odometry', odom)));
    s.subscriptions[0].cb(Buffer.from([0, 1, 0, 0, 7]));
    assert.equal(got.length, 1, 'the malformed message was dropped, not delivered');
    assert.equal((got[0] as typeof odom).pose.pose.position.y, 2);
    unsubscribe();
    s.subscriptions[0].cb(Buffer.from(codec.encode('nav_msgs/msg/Odometry', odom)));
    assert.equal(got.length, 1);
    assert.equal(transport.now(), 1234n);
    const values = transport.parameters(PARAMETERS);
    assert.equal(s.declared.size, PARAMETERS.length, 'every parameter declared');
    assert.equal(values['topics.scan'], 'front/scan', "rcl's value comes back");
    assert.equal(values['iota.registry_version'], 0, 'integers come back as numbers');
    assert.equal(resolveParams([values]).topics.scan, 'front/scan');
    await transport.close();
    assert.deepEqual(s.calls.slice(-2), ['destroy', 'shutdown']);
  });
});
