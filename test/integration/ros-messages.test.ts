import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from '@foxglove/rosmsg';
import { ROS_TYPES, RosMessageError, type RosType, decode, encode, schemaText } from '../../ros/messages.js';
import { prng } from '../../nodes/util/prng.js';

type Message = Record<string, unknown>;

const ROOT = fileURLToPath(new URL('../../..', import.meta.url));

const stamp = { sec: 1_700_000_123, nanosec: 456_789_012 };
const header = (frame_id: string) => ({ stamp, frame_id });
const pose = (x: number, y: number, qz: number, qw: number) => ({
  position: { x, y, z: 0 },
  orientation: { x: 0, y: 0, z: qz, w: qw },
});
const covariance = (step: number, every: number) =>
  Float64Array.from({ length: 36 }, (_, i) => (i % every === 0 ? i * step : 0));

/**
 * One sample per type, mirrored field by field in test/fastcdr/encode.cpp: change both together.
 * Odd-length strings sit before 4- and 8-byte fields so that padding is exercised.
 */
const SAMPLES: Record<RosType, Message> = {
  'sensor_msgs/msg/Image': {
    header: header('camera'),
    height: 2,
    width: 3,
    encoding: 'mono8',
    is_bigendian: 0,
    step: 3,
    data: Uint8Array.of(0, 1, 2, 250, 254, 255),
  },
  'sensor_msgs/msg/CompressedImage': {
    header: header('cam_optical'),
    format: 'png',
    data: [0x89, 0x50, 0x4e, 0x47, 0x0d],
  },
  'sensor_msgs/msg/LaserScan': {
    header: header('laser'),
    angle_min: -1.5707964,
    angle_max: 1.5707964,
    angle_increment: 0.0174533,
    time_increment: 0.0001,
    scan_time: 0.1,
    range_min: 0.12,
    range_max: 3.5,
    ranges: [1, 2.5, Infinity, 0.3333],
    intensities: [],
  },
  'nav_msgs/msg/Odometry': {
    header: header('odom'),
    child_frame_id: 'base_link',
    pose: { pose: pose(1.5, -2.25, 0.38268343236, 0.92387953251), covariance: covariance(0.01, 1) },
    twist: {
      twist: { linear: { x: 0.5, y: 0, z: 0 }, angular: { x: 0, y: 0, z: -0.1 } },
      covariance: covariance(0.05, 7),
    },
  },
  'nav_msgs/msg/OccupancyGrid': {
    header: header('map'),
    info: {
      map_load_time: { sec: 1_700_000_000, nanosec: 5 },
      resolution: 0.05,
      width: 4,
      height: 3,
      origin: pose(-10.5, -7.25, 0, 1),
    },
    data: Int8Array.of(-1, -1, 0, 0, 100, 50, -1, 0, 0, 100, 100, -1),
  },
  'diagnostic_msgs/msg/DiagnosticArray': {
    header: header(''),
    status: [
      {
        level: 2,
        name: 'robomesh/split',
        message: 'peer lost',
        hardware_id: 'jetson-7',
        values: [
          { key: 'rtt_ms', value: '12.5' },
          { key: 'temp', value: '21 °C' },
        ],
      },
      { level: 0, name: 'ok', message: '', hardware_id: 'x', values: [] },
    ],
  },
  'robomesh_msgs/msg/InferenceResult': {
    header: header('camera'),
    model_hash: 'sha256:9f86d081884c7d65',
    task_id: 't-42',
    executor: '12D3KooWRzCVDwH',
    plan: 'split',
    cut: 'layer3',
    precision: 'fp16',
    latency_ms: 12.625,
    predicted_ms: 11.5,
    output_names: ['logits', 'boxes', 'x'],
    output_sizes: [1000, 4, 7],
    summary: [0.1, 0.02, -3.5, 4.25, 0.5, 0.3, 0, 1, -0.125, 0.7, -1, 1],
    digest: Uint8Array.from({ length: 32 }, (_, i) => (i * 7 + 1) & 0xff),
  },
  'robomesh_msgs/msg/SplitDecision': {
    header: header('map'),
    model_hash: 'sha256:9f86',
    plan: 'offload',
    cut: '',
    precision: 'int8',
    peer: '12D3KooWPeer',
    predicted_ms: 8.75,
    actual_ms: 9.125,
    failover_peers: ['12D3KooWA', '12D3KooWB'],
    failover_codes: ['TIMEOUT', 'REFUSED'],
  },
  'robomesh_msgs/msg/PeerStatus': {
    header: header('map'),
    peer_id: '12D3KooWPeer1',
    name: 'rover-1',
    connected: true,
    bandwidth_bps: 125_000_000.5,
    rtt_ms: 3.5,
    queue_length: 2,
    speed_factor: 0.75,
    reputation: -3,
    excluded: false,
  },
  'robomesh_msgs/msg/LedgerEvent': {
    header: header('map'),
    entry_id: 'bafyreib',
    author: '12D3KooWAuthor',
    seq: 42n,
    lamport: 9_007_199_254_740_993n,
    kind: 'result',
    task_id: 't-42',
    detail: 'ok',
    log_size: 17,
    state_hash: 'e3b0c442',
  },
};

const sample = (type: RosType): Message => structuredClone(SAMPLES[type]);
const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');

function assertSameBytes(ours: Uint8Array, reference: Uint8Array, what: string): void {
  let i = 0;
  while (i < ours.length && i < reference.length && ours[i] === reference[i]) i++;
  if (i === ours.length && i === reference.length) return;
  const around = (b: Uint8Array) => hex(b.subarray(Math.max(0, i - 8), i + 8));
  assert.fail(
    `${what}: first difference at byte ${i} (ours ${ours.length} bytes, Fast-CDR ${reference.length})\n` +
      `  ours     [${Math.max(0, i - 8)}..]: ${around(ours)}\n  ` +
      `Fast-CDR [${Math.max(0, i - 8)}..]: ${around(reference)}`,
  );
}

function expectRosError(code: string, mention: string, fn: () => unknown): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof RosMessageError, `expected RosMessageError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    assert.ok(err.message.includes(mention), `'${err.message}' should mention '${mention}'`);
    return true;
  });
}

type Definitions = ReturnType<typeof parse>;

/** What a decoded message should equal: the sample with float32 fields rounded, all arrays plain. */
function expected(defs: Definitions, fields: Definitions[number]['definitions'], value: Message): Message {
  const out: Message = {};
  for (const f of fields.filter((field) => field.isConstant !== true)) {
    const one = (v: unknown): unknown => {
      if (f.isComplex === true) return expected(defs, defs.find((d) => d.name === f.type)!.definitions, v as Message);
      return f.type === 'float32' ? Math.fround(v as number) : v;
    };
    const v = value[f.name];
    out[f.name] = f.isArray === true ? Array.from(v as ArrayLike<unknown>, one) : one(v);
  }
  return out;
}

function plain(value: unknown): unknown {
  if (ArrayBuffer.isView(value)) return Array.from(value as unknown as ArrayLike<unknown>);
  if (Array.isArray(value)) return value.map(plain);
  if (typeof value === 'object' && value !== null)
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]));
  return value;
}

describe('ROS 2 messages', () => {
  let dir = '';
  let encoderPath = '';

  before(function () {
    this.timeout(120_000); // g++ takes a few seconds
    dir = mkdtempSync(join(tmpdir(), 'robomesh-fastcdr-'));
    encoderPath = join(dir, 'encode');
    try {
      execFileSync(
        'g++',
        ['-std=c++17', '-O0', join(ROOT, 'test/fastcdr/encode.cpp'), '-lfastcdr', '-o', encoderPath],
        { stdio: 'pipe' },
      );
    } catch (err) {
      const e = err as NodeJS.ErrnoException & { stderr?: Buffer };
      const why = e.code === 'ENOENT' ? 'g++ is not installed' : (e.stderr?.toString() ?? e.message);
      throw new Error(
        `cannot build the Fast-CDR reference encoder; install the Debian packages ` +
          `libfastcdr-dev and g++ (apt-get install libfastcdr-dev g++)\n${why}`,
        { cause: err },
      );
    }
  });

  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const fastcdr = (type: RosType, ...flags: string[]): Uint8Array =>
    Uint8Array.from(Buffer.from(execFileSync(encoderPath, [type, ...flags], { encoding: 'utf8' }).trim(), 'hex'));

  describe('byte compatibility with eProsima Fast-CDR', () => {
    for (const type of ROS_TYPES) {
      it(`${type} encodes byte for byte like Fast-CDR`, () => {
        assertSameBytes(encode(type, sample(type)), fastcdr(type), type);
      });
    }

    it('decodes Fast-CDR output whose padding bytes are not zero', () => {
      for (const type of ROS_TYPES) {
        const dirty = fastcdr(type, '--dirty-padding');
        assert.deepEqual(plain(decode(type, dirty)), plain(decode(type, fastcdr(type))), type);
      }
    });
  });

  describe('round trip', () => {
    for (const type of ROS_TYPES) {
      it(`${type} decodes to what was encoded`, () => {
        const defs = parse(schemaText(type), { ros2: true });
        const decoded = decode(type, encode(type, sample(type)));
        assert.deepEqual(plain(decoded), plain(expected(defs, defs[0].definitions, sample(type))));
      });
    }

    it('accepts both type spellings and safe-integer numbers for 64-bit fields', () => {
      const image = sample('sensor_msgs/msg/Image');
      assert.deepEqual(encode('sensor_msgs/Image', image), encode('sensor_msgs/msg/Image', image));
      const event = { ...sample('robomesh_msgs/msg/LedgerEvent'), seq: 42 };
      assert.deepEqual(
        encode('robomesh_msgs/LedgerEvent', event),
        encode('robomesh_msgs/LedgerEvent', sample('robomesh_msgs/msg/LedgerEvent')),
      );
      assert.equal(
        (decode('robomesh_msgs/LedgerEvent', encode('robomesh_msgs/LedgerEvent', event)) as Message).seq,
        42n,
      );
    });
  });

  describe('typed errors', () => {
    it('rejects unknown types', () => {
      expectRosError('UNKNOWN_TYPE', 'sensor_msgs/msg/Imu', () => encode('sensor_msgs/msg/Imu', {}));
      expectRosError('UNKNOWN_TYPE', 'std_msgs/Header', () => decode('std_msgs/Header', new Uint8Array(16)));
      expectRosError('UNKNOWN_TYPE', 'nope', () => schemaText('nope'));
    });

    it('rejects every truncation of every message; the whole message decodes', () => {
      for (const type of ROS_TYPES) {
        const bytes = encode(type, sample(type));
        for (let length = 0; length < bytes.length; length++) {
          expectRosError('BAD_CDR', type, () => decode(type, bytes.subarray(0, length)));
        }
        decode(type, bytes);
      }
    });

    it('rejects malformed CDR: bad encapsulation, huge lengths, missing NUL, bool out of range, trailing bytes', () => {
      const image = encode('sensor_msgs/msg/Image', sample('sensor_msgs/msg/Image'));
      const patched = (at: number, ...values: number[]) => {
        const copy = image.slice();
        copy.set(values, at);
        return copy;
      };
      expectRosError('BAD_CDR', 'encapsulation', () => decode('sensor_msgs/msg/Image', patched(1, 0x07)));
      expectRosError('BAD_CDR', 'header.frame_id', () =>
        decode('sensor_msgs/msg/Image', patched(12, 0xff, 0xff, 0xff, 0x7f)),
      );
      expectRosError('BAD_CDR', 'not NUL-terminated', () => decode('sensor_msgs/msg/Image', patched(22, 0x41)));
      expectRosError('BAD_CDR', 'data length', () =>
        decode('sensor_msgs/msg/Image', image.subarray(0, image.length - 6 - 2)),
      );
      const padded = new Uint8Array(image.length + 8);
      padded.set(image);
      expectRosError('BAD_CDR', 'after the message', () => decode('sensor_msgs/msg/Image', padded));
      decode('sensor_msgs/msg/Image', padded.subarray(0, image.length + 3));

      const peer = encode('robomesh_msgs/msg/PeerStatus', sample('robomesh_msgs/msg/PeerStatus'));
      peer[Buffer.from(peer).indexOf('rover-1\0') + 8] = 2;
      expectRosError('BAD_CDR', 'connected', () => decode('robomesh_msgs/msg/PeerStatus', peer));
    });

    it('random garbage after a valid header only ever fails with RosMessageError', () => {
      const random = prng(7);
      for (let round = 0; round < 2000; round++) {
        const type = ROS_TYPES[round % ROS_TYPES.length];
        const bytes = Uint8Array.from({ length: 4 + Math.floor(random() * 200) }, () => Math.floor(random() * 256));
        bytes.set([0, 1, 0, 0]);
        try {
          decode(type, bytes);
        } catch (err) {
          assert.ok(err instanceof RosMessageError && err.code === 'BAD_CDR', `${type}: ${String(err)}`);
        }
      }
    });

    it('rejects missing fields, declared defaults included, naming the path', () => {
      const image = sample('sensor_msgs/msg/Image');
      delete (image.header as Message).frame_id;
      expectRosError('MISSING_FIELD', 'header.frame_id', () => encode('sensor_msgs/msg/Image', image));

      const diagnostics = sample('diagnostic_msgs/msg/DiagnosticArray');
      delete ((diagnostics.status as Message[])[0].values as Message[])[1].value;
      expectRosError('MISSING_FIELD', 'status[0].values[1].value', () =>
        encode('diagnostic_msgs/msg/DiagnosticArray', diagnostics),
      );

      const odometry = sample('nav_msgs/msg/Odometry');
      delete (((odometry.pose as Message).pose as Message).orientation as Message).w;
      expectRosError('MISSING_FIELD', 'pose.pose.orientation.w', () => encode('nav_msgs/msg/Odometry', odometry));
    });

    it('rejects wrong-typed, out-of-range and unknown fields, naming the path', () => {
      const bad = (type: RosType, patch: Message) => () => encode(type, { ...sample(type), ...patch });
      expectRosError('BAD_FIELD', 'latency_ms', bad('robomesh_msgs/msg/InferenceResult', { latency_ms: '12' }));
      expectRosError('BAD_FIELD', 'height', bad('sensor_msgs/msg/Image', { height: -1 }));
      expectRosError('BAD_FIELD', 'data', bad('sensor_msgs/msg/Image', { data: 'abc' }));
      expectRosError('BAD_FIELD', 'data[3]', bad('nav_msgs/msg/OccupancyGrid', { data: [0, 0, 0, 200] }));
      expectRosError('BAD_FIELD', 'connected', bad('robomesh_msgs/msg/PeerStatus', { connected: 1 }));
      expectRosError('BAD_FIELD', 'seq', bad('robomesh_msgs/msg/LedgerEvent', { seq: 1.5 }));
      expectRosError('BAD_FIELD', 'lamport', bad('robomesh_msgs/msg/LedgerEvent', { lamport: -1n }));
      expectRosError(
        'BAD_FIELD',
        'output_names[1]',
        bad('robomesh_msgs/msg/InferenceResult', { output_names: ['a', 7] }),
      );
      expectRosError('BAD_FIELD', 'header', bad('robomesh_msgs/msg/PeerStatus', { header: 'now' }));
      expectRosError('BAD_FIELD', 'pose.covariance', () => {
        const odometry = sample('nav_msgs/msg/Odometry');
        (odometry.pose as Message).covariance = new Float64Array(35);
        encode('nav_msgs/msg/Odometry', odometry);
      });
      expectRosError('UNKNOWN_FIELD', 'extra', bad('robomesh_msgs/msg/SplitDecision', { extra: 1 }));
      expectRosError(
        'UNKNOWN_FIELD',
        'header.stamp.nsec',
        bad('robomesh_msgs/msg/SplitDecision', { header: { stamp: { sec: 1, nsec: 2 }, frame_id: '' } }),
      );
    });
  });

  describe('schema text', () => {
    for (const type of ROS_TYPES) {
      it(`${type} has its own fields, a std_msgs/Header section, and re-parses`, () => {
        const text = schemaText(type);
        assert.ok(text.includes(`\n${'='.repeat(80)}\nMSG: std_msgs/Header\n`), text);
        assert.ok(text.includes('MSG: builtin_interfaces/Time\nint32 sec\nuint32 nanosec\n'), text);
        const [own] = parse(text, { ros2: true });
        const fields = own.definitions.filter((f) => f.isConstant !== true).map((f) => f.name);
        assert.deepEqual(fields, Object.keys(SAMPLES[type]));
        assert.ok(text.startsWith('std_msgs/Header header\n'), text);
      });
    }

    it('writes our .msg fields as declared', () => {
      const text = schemaText('robomesh_msgs/msg/InferenceResult');
      for (const line of [
        'string executor',
        'float64 latency_ms',
        'string[] output_names',
        'uint32[] output_sizes',
        'float32[] summary',
        'uint8[] digest',
      ]) {
        assert.ok(text.includes(`\n${line}\n`), line);
      }
      assert.ok(schemaText('nav_msgs/Odometry').includes('\nfloat64[36] covariance\n'));
    });
  });
});
