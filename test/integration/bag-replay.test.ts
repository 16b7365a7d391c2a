import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { McapIndexedReader, McapWriter } from '@mcap/core';
import { FileHandleReadable, FileHandleWritable } from '@mcap/nodejs';
import { loadDecompressHandlers } from '@mcap/support';
import { SqliteDatabase } from '../../nodes/ledger/index.js';
import { readBag } from '../../ros/bag-reader.js';
import { RosError } from '../../ros/errors.js';
import { McapTransport } from '../../ros/mcap-transport.js';
import { codec } from '../../ros/messages.js';

const NODE = fileURLToPath(new URL('../../ros/robot-node.js', import.meta.url));

/** rosbag2's QoS metadata for a best-effort sensor topic, as `ros2 bag record` writes it. */
const SENSOR_QOS =
  '- history: 3\n  depth: 0\n  reliability: 2\n  durability: 2\n  deadline:\n    sec: 2147483647\n' +
  '    nsec: 4294967295\n  lifespan:\n    sec: 2147483647\n    nsec: 4294967295\n  liveliness: 1\n' +
  '  liveliness_lease_duration:\n    sec: 2147483647\n    nsec: 4294967295\n  avoid_ros_namespace_conventions: false';
/** A type robomesh's codec does not know, with the definition rosbag2 stores for it. */
const LOG_TYPE = 'rcl_interfaces/msg/Log';
const LOG_DEFINITION =
  'byte DEBUG=10\nbyte INFO=20\nbuiltin_interfaces/Time stamp\nuint8 level\nstring name\nstring msg\n' +
  'string file\nstring function\nuint32 line\n';
const SCANS = 12;
const OTHER_TOPICS = [
  ['/parameter_events', 'rcl_interfaces/msg/ParameterEvent'],
  ['/arm/state', 'my_robot_msgs/msg/ArmState'],
] as const;
/** A message of a type robomesh does not know: any bytes, to come out the same. */
const OPAQUE = Uint8Array.from([0, 1, 0, 0, 42, 0, 0, 0]);
const MESSAGES = 2 * SCANS + OTHER_TOPICS.length;
const T0 = 1_765_000_000_000_000_000n; // a 2025 log time, past 2^53 ns

const scan = (i: number) => ({
  header: { stamp: { sec: 1_765_000_000 + i, nanosec: 0 }, frame_id: 'laser' },
  angle_min: -1.5,
  angle_max: 1.5,
  angle_increment: 0.5,
  time_increment: 0,
  scan_time: 0.1,
  range_min: 0.1,
  range_max: 10,
  ranges: [1, 2, 3, 4, 5, 6, 7].map((r) => r + i),
  intensities: [],
});

/** Bytes through an installed compressor (zstd or lz4 frames, as MCAP stores chunks). */
function compressWith(tool: 'zstd' | 'lz4', data: Uint8Array): Uint8Array {
  const run = spawnSync(tool, ['-q', '-c'], { input: data, maxBuffer: 64 << 20 });
  if (run.status !== 0) assert.fail(`${tool} failed (apt-get install ${tool}): ${run.stderr?.toString()}`);
  return new Uint8Array(run.stdout);
}

type BagShape = 'zstd chunks' | 'lz4 chunks' | 'no chunks, no summary';

/**
 * A recording as `ros2 bag record -a` leaves it: scans on /scan, and /rosout messages of a type
 * the codec does not know, interleaved in time, with rosbag2's channel metadata.
 */
async function writeBag(path: string, shape: BagShape): Promise<void> {
  const handle = await open(path, 'w');
  const chunked = shape !== 'no chunks, no summary';
  const writer = new McapWriter({
    writable: new FileHandleWritable(handle),
    useChunks: chunked,
    useChunkIndex: chunked,
    useMessageIndex: chunked,
    useStatistics: chunked,
    useSummaryOffsets: chunked,
    chunkSize: 512,
    ...(shape === 'zstd chunks' && {
      compressChunk: (d: Uint8Array) => ({ compression: 'zstd', compressedData: compressWith('zstd', d) }),
    }),
    ...(shape === 'lz4 chunks' && {
      compressChunk: (d: Uint8Array) => ({ compression: 'lz4', compressedData: compressWith('lz4', d) }),
    }),
  });
  await writer.start({ profile: 'ros2', library: 'rosbag2-like test writer' });
  const scanSchema = await writer.registerSchema({
    name: 'sensor_msgs/msg/LaserScan',
    encoding: 'ros2msg',
    data: new TextEncoder().encode(codec.schemaText('sensor_msgs/msg/LaserScan')),
  });
  const logSchema = await writer.registerSchema({
    name: LOG_TYPE,
    encoding: 'ros2msg',
    data: new TextEncoder().encode(LOG_DEFINITION),
  });
  const meta = new Map([['offered_qos_profiles', SENSOR_QOS]]);
  // Two more channels of types robomesh does not know: rcl's own, and a user's.
  for (const [topic, name] of OTHER_TOPICS) {
    const schemaId = await writer.registerSchema({
      name,
      encoding: 'ros2msg',
      data: new TextEncoder().encode('int32 x\n'),
    });
    const channelId = await writer.registerChannel({ topic, schemaId, messageEncoding: 'cdr', metadata: meta });
    await writer.addMessage({ channelId, sequence: 0, logTime: T0 - 1n, publishTime: T0 - 1n, data: OPAQUE });
  }
  const scans = await writer.registerChannel({
    topic: '/scan',
    schemaId: scanSchema,
    messageEncoding: 'cdr',
    metadata: meta,
  });
  const rosout = await writer.registerChannel({
    topic: '/rosout',
    schemaId: logSchema,
    messageEncoding: 'cdr',
    metadata: meta,
  });
  for (let i = 0; i < SCANS; i++) {
    const t = T0 + BigInt(i) * 100_000_000n;
    await writer.addMessage({
      channelId: scans,
      sequence: i,
      logTime: t,
      publishTime: t,
      data: codec.encode('sensor_msgs/msg/LaserScan', scan(i)),
    });
    // Opaque to robomesh: CDR of a Log it cannot decode, carried through as bytes.
    const log = new Uint8Array(64).fill(i);
    await writer.addMessage({ channelId: rosout, sequence: i, logTime: t + 1n, publishTime: t + 1n, data: log });
  }
  await writer.end();
  await handle.close();
}

/** rosbag2's sqlite3 storage (its `topics` and `messages` tables), with the same recording. */
function writeDb3(path: string): void {
  const db = new SqliteDatabase(path);
  db.exec(
    'CREATE TABLE topics(id INTEGER PRIMARY KEY, name TEXT NOT NULL, type TEXT NOT NULL, ' +
      'serialization_format TEXT NOT NULL, offered_qos_profiles TEXT NOT NULL);' +
      'CREATE TABLE messages(id INTEGER PRIMARY KEY, topic_id INTEGER NOT NULL, ' +
      'timestamp INTEGER NOT NULL, data BLOB NOT NULL);',
  );
  db.prepare('INSERT INTO topics VALUES (1, ?, ?, ?, ?)').run('/scan', 'sensor_msgs/msg/LaserScan', 'cdr', SENSOR_QOS);
  db.prepare('INSERT INTO topics VALUES (2, ?, ?, ?, ?)').run('/rosout', LOG_TYPE, 'cdr', SENSOR_QOS);
  const insert = db.prepare('INSERT INTO messages(topic_id, timestamp, data) VALUES (?, ?, ?)');
  for (let i = 0; i < SCANS; i++) {
    const t = T0 + BigInt(i) * 100_000_000n;
    insert.run(1, t, Buffer.from(codec.encode('sensor_msgs/msg/LaserScan', scan(i))));
    insert.run(2, t + 1n, Buffer.alloc(64, i));
  }
  db.close();
}

/** Replays `bag` into a node subscribed to /scan, recording everything; what it saw and wrote. */
async function replayRecording(bag: string, out: string) {
  const transport = await McapTransport.create(codec, out);
  const stamps: bigint[] = [];
  const ranges: number[] = [];
  transport.subscribe('/scan', 'sensor_msgs/msg/LaserScan', (m, t) => {
    stamps.push(t);
    ranges.push((m as { ranges: number[] }).ranges[0]);
  });
  const progress: [number, number][] = [];
  const played = await transport.replay(bag, (done, total) => progress.push([done, total]));
  await transport.close();
  const handle = await open(out, 'r');
  try {
    const reader = await McapIndexedReader.Initialize({
      readable: new FileHandleReadable(handle),
      decompressHandlers: await loadDecompressHandlers(),
    });
    const channels = [...reader.channelsById.values()];
    const topics = new Map(channels.map((c) => [c.topic, { channel: c, schema: reader.schemasById.get(c.schemaId) }]));
    let recorded = 0;
    const bytes = new Map<string, Uint8Array[]>();
    for await (const m of reader.readMessages()) {
      recorded++;
      const topic = reader.channelsById.get(m.channelId)!.topic;
      bytes.set(topic, [...(bytes.get(topic) ?? []), Uint8Array.from(m.data)]);
    }
    return { played, stamps, ranges, progress, topics, recorded, bytes };
  } finally {
    await handle.close();
  }
}

describe('replaying real rosbag2 recordings: other types, compressed chunks, no index, sqlite3', function () {
  this.timeout(60_000);
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rm-bags-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  for (const shape of ['zstd chunks', 'lz4 chunks', 'no chunks, no summary'] as const) {
    it(`an MCAP bag with ${shape} and a type robomesh does not know plays whole, and is recorded whole`, async () => {
      const bag = join(dir, `${shape.replace(/\W+/g, '-')}.mcap`);
      await writeBag(bag, shape);
      const r = await replayRecording(bag, join(dir, `${shape.replace(/\W+/g, '-')}-out.mcap`));
      assert.equal(r.played, MESSAGES, 'every message played, /rosout and the other types included');
      assert.equal(r.stamps.length, SCANS);
      assert.deepEqual(
        r.ranges,
        [...Array(SCANS).keys()].map((i) => 1 + i),
      );
      assert.equal(r.stamps[0], T0, 'the clock is the bag\u2019s log time, all 64 bits');
      assert.equal(r.recorded, MESSAGES);
      for (const [topic, name] of OTHER_TOPICS) {
        assert.equal(r.topics.get(topic)?.schema?.name, name);
        assert.deepEqual(r.bytes.get(topic), [OPAQUE], `${topic}: the same bytes out`);
      }
      const rosout = r.topics.get('/rosout')!;
      assert.equal(rosout.schema?.name, LOG_TYPE);
      assert.equal(new TextDecoder().decode(rosout.schema?.data), LOG_DEFINITION, 'the bag\u2019s own definition kept');
      assert.equal(rosout.channel.metadata.get('offered_qos_profiles'), SENSOR_QOS, 'and its QoS');
      // A bag without a summary does not say how many it holds.
      assert.deepEqual(r.progress.at(-1), [MESSAGES, shape === 'no chunks, no summary' ? 0 : MESSAGES]);
    });
  }

  it('a .db3 bag (rosbag2 sqlite3 storage), and a rosbag2 folder holding it, play whole', async () => {
    const folder = join(dir, 'rosbag2_2025_12_07-10_00_00');
    await mkdir(folder);
    const bag = join(folder, 'rosbag2_2025_12_07-10_00_00_0.db3');
    writeDb3(bag);
    for (const path of [bag, folder]) {
      const r = await replayRecording(path, join(dir, 'db3-out.mcap'));
      assert.equal(r.played, 2 * SCANS);
      assert.deepEqual(
        r.ranges,
        [...Array(SCANS).keys()].map((i) => 1 + i),
      );
      assert.equal(r.stamps[0], T0);
      assert.equal(
        r.topics.get('/scan')!.schema?.name,
        'sensor_msgs/msg/LaserScan',
        'a known type gets its definition',
      );
      assert.equal(r.topics.get('/rosout')!.channel.schemaId, 0, 'an unknown one is kept without (a .db3 has none)');
      assert.equal(r.topics.get('/rosout')!.channel.metadata.get('offered_qos_profiles'), SENSOR_QOS);
    }
  });

  it('robot-node replays such a bag to the end, exits 0, and its output keeps the unknown types intact', async () => {
    const bag = join(dir, 'for-the-node.mcap');
    await writeBag(bag, 'zstd chunks');
    const out = join(dir, 'node-out.mcap');
    const env = { ...process.env };
    delete env.ROS_DISTRO;
    delete env.AMENT_PREFIX_PATH;
    const run = await new Promise<{ code: number; stderr: string }>((resolve) =>
      execFile(
        process.execPath,
        [
          NODE,
          '--replay',
          bag,
          '--record',
          out,
          '--ros-args',
          '-p',
          `data_dir:=${join(dir, 'node')}`,
          '-p',
          'models:=[]',
        ],
        { env, timeout: 60_000 },
        (err, _stdout, stderr) => resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stderr }),
      ),
    );
    assert.equal(run.code, 0, run.stderr);
    const seen = new Map<string, Uint8Array[]>();
    for await (const m of readBag(out)) seen.set(m.topic, [...(seen.get(m.topic) ?? []), m.data]);
    assert.equal(seen.get('/rosout')?.length, SCANS);
    for (const [topic] of OTHER_TOPICS) assert.deepEqual(seen.get(topic), [OPAQUE], topic);
  });

  it('what the node publishes is recorded with a QoS profile ros2 bag play can offer', async () => {
    const out = join(dir, 'published.mcap');
    const transport = await McapTransport.create(codec, out);
    transport.setClock(T0);
    transport.publisher('/scan_out', 'sensor_msgs/msg/LaserScan').publish(scan(0));
    await transport.close();
    const messages = [];
    for await (const m of readBag(out)) messages.push(m);
    assert.equal(messages.length, 1);
    assert.match(messages[0].metadata.get('offered_qos_profiles') ?? '', /reliability: 1\n {2}durability: 2/);
  });

  it('not a bag, or missing: BAG_UNREADABLE naming the file; a bag cut short plays what is whole', async () => {
    const garbage = join(dir, 'garbage.mcap');
    await writeFile(garbage, 'not a bag at all');
    const whole = join(dir, 'whole.mcap');
    await writeBag(whole, 'no chunks, no summary'); // all data: half the file is half the messages
    const truncated = join(dir, 'truncated.mcap');
    const bytes = await readFile(whole);
    await writeFile(truncated, bytes.subarray(0, Math.floor(bytes.length / 2)));
    for (const path of [garbage, join(dir, 'missing.mcap'), join(dir, 'missing.db3')]) {
      const transport = await McapTransport.create(codec);
      await assert.rejects(
        () => transport.replay(path),
        (err: unknown) => err instanceof RosError && err.code === 'BAG_UNREADABLE' && err.message.includes(path),
      );
    }
    const transport = await McapTransport.create(codec);
    const played = await transport.replay(truncated);
    assert.ok(played > 0 && played < MESSAGES, `played ${played} of the ${MESSAGES} in the whole bag`);
  });

  it('a record whose length claims a terabyte is refused once the reader holds its limit, not the file', async () => {
    const whole = join(dir, 'whole-for-length.mcap');
    await writeBag(whole, 'no chunks, no summary');
    const bytes = new Uint8Array(await readFile(whole));
    // Records after the 8-byte magic: opcode (1), length (8, little endian), body. The first
    // message's length becomes 2^40, and 3 MiB follow it.
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    let at = 8;
    while (bytes[at] !== 0x05) at += 9 + Number(view.getBigUint64(at + 1, true));
    view.setBigUint64(at + 1, 1n << 40n, true);
    const damaged = join(dir, 'damaged-length.mcap');
    await writeFile(damaged, Buffer.concat([bytes.subarray(0, at + 9), new Uint8Array(3 << 20)]));
    const read = async (maxRecordBytes: number) => {
      const topics: string[] = [];
      for await (const m of readBag(damaged, undefined, { maxRecordBytes })) topics.push(m.topic);
      return topics.length;
    };
    await assert.rejects(
      read(1 << 20),
      (err: unknown) =>
        err instanceof RosError &&
        err.code === 'BAG_UNREADABLE' &&
        err.message.includes(damaged) &&
        /damaged length field/.test(err.message),
    );
    // Under the default limit the same file reads as a recording cut short: what was whole plays.
    assert.equal(await read(512 << 20), 0);
  });
});
