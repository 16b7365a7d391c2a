import assert from 'node:assert/strict';
import { DTYPES, type DType, type TensorData, viewAs } from '../../protocol/dtypes.js';
import { FrameError } from '../../protocol/errors.js';
import {
  DEFAULT_FRAME_LIMITS,
  type Tensor,
  checkFrameStart,
  decodeFrame,
  encodeFrame,
  encodeFrameChunks,
} from '../../protocol/tensor-frame.js';
import { prng } from '../../nodes/util/prng.js';
import { testSeed, withSeed } from '../helpers/seed.js';

function randomTensor(random: () => number, name: string): Tensor {
  const dtypes = Object.keys(DTYPES) as DType[];
  const dtype = dtypes[Math.floor(random() * dtypes.length)];
  const rank = Math.floor(random() * 5);
  const dims = Array.from({ length: rank }, () => Math.floor(random() * 6));
  const n = dims.reduce((a, b) => a * b, 1);
  const bytes = new Uint8Array(n * DTYPES[dtype].bytes);
  for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(random() * 256);
  const t: Tensor = { name, dtype, dims, data: viewAs(dtype, bytes.buffer, 0, n) };
  if (dtype === 'uint8' && rank > 0 && random() < 0.5) {
    const perAxis = random() < 0.5 && dims[rank - 1] > 0;
    const k = perAxis ? dims[rank - 1] : 1;
    t.quant = {
      scale: Float32Array.from({ length: k }, () => 0.001 + random()),
      zeroPoint: Int32Array.from({ length: k }, () => Math.floor(random() * 256)),
      ...(perAxis ? { axis: rank - 1 } : {}),
    };
  }
  return t;
}

const bytesOf = (d: TensorData): Uint8Array => new Uint8Array(d.buffer, d.byteOffset, d.byteLength);

function expectFrameError(code: string, fn: () => unknown): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof FrameError, `expected FrameError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return true;
  });
}

const sample = (): Tensor[] => [
  { name: 'a', dtype: 'float32', dims: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, 6]) },
  {
    name: 'q',
    dtype: 'uint8',
    dims: [2, 2],
    data: Uint8Array.from([1, 2, 3, 4]),
    quant: { scale: Float32Array.of(0.5, 0.25), zeroPoint: Int32Array.of(3, 4), axis: 1 },
  },
];

describe('tensor frame', () => {
  it('round-trips random tensor sets of every dtype (seeded property test)', async () => {
    const seed = testSeed();
    await withSeed(seed, () => {
      const random = prng(seed);
      for (let round = 0; round < 500; round++) {
        const count = Math.floor(random() * 5);
        const tensors = Array.from({ length: count }, (_, i) => randomTensor(random, `t${i}.${round}`));
        const decoded = decodeFrame(encodeFrame(tensors));
        assert.equal(decoded.length, tensors.length);
        decoded.forEach((d, i) => {
          const t = tensors[i];
          assert.equal(d.name, t.name);
          assert.equal(d.dtype, t.dtype);
          assert.deepEqual(d.dims, t.dims);
          assert.deepEqual(bytesOf(d.data), bytesOf(t.data));
          assert.deepEqual(d.quant, t.quant);
        });
      }
    });
  });

  it('decodes payloads as views into the received buffer, copying only when unaligned', () => {
    const frame = encodeFrame(sample());
    const [a] = decodeFrame(frame);
    assert.equal(a.data.buffer, frame.buffer, 'aligned payload must not be copied');
    const shifted = new Uint8Array(frame.length + 1).subarray(1);
    shifted.set(frame);
    const [b] = decodeFrame(shifted);
    assert.notEqual(b.data.buffer, shifted.buffer);
    assert.deepEqual(Array.from(b.data as Float32Array), [1, 2, 3, 4, 5, 6]);
  });

  it('encodes payloads into chunks without copying them', () => {
    const tensors = sample();
    const chunks = encodeFrameChunks(tensors);
    assert.ok(
      chunks.some((c) => c.buffer === tensors[0].data.buffer),
      'payload chunk is a view of the caller data',
    );
  });

  describe('rejects malformed frames with typed errors', () => {
    const good = (): Uint8Array => encodeFrame(sample());
    it('truncated anywhere', () => {
      const frame = good();
      for (let len = 0; len < frame.length; len++) {
        assert.throws(() => decodeFrame(frame.subarray(0, len)), FrameError, `length ${len}`);
      }
      expectFrameError('TRUNCATED', () => decodeFrame(frame.subarray(0, 5)));
      expectFrameError('TRUNCATED', () => decodeFrame(frame.subarray(0, frame.length - 8)));
    });
    it('bad magic, unknown version, reserved flags', () => {
      const f1 = good();
      f1[0] ^= 0xff;
      expectFrameError('BAD_MAGIC', () => decodeFrame(f1));
      const f2 = good();
      f2[4] = 9;
      expectFrameError('UNSUPPORTED_VERSION', () => decodeFrame(f2));
      const f3 = good();
      f3[5] = 1;
      expectFrameError('RESERVED_FLAGS', () => decodeFrame(f3));
    });
    it('unknown dtype', () => {
      const f = good();
      const dtypeAt = 12 + 2 + 1; // after the fixed header, name length and the 1-byte name 'a'
      f[dtypeAt] = 200;
      expectFrameError('UNKNOWN_DTYPE', () => decodeFrame(f));
      expectFrameError('UNKNOWN_DTYPE', () => encodeFrame([{ ...sample()[0], dtype: 'complex64' as DType }]));
      expectFrameError('UNKNOWN_DTYPE', () => encodeFrame([{ ...sample()[0], data: new Int32Array(6) }]));
    });
    it('dims whose product does not match the payload', () => {
      const f = good();
      const firstDim = 12 + 2 + 1 + 2;
      new DataView(f.buffer).setUint32(firstDim, 3, true);
      expectFrameError('SIZE_MISMATCH', () => decodeFrame(f));
      expectFrameError('SIZE_MISMATCH', () => encodeFrame([{ ...sample()[0], dims: [4, 4] }]));
    });
    it('negative, fractional and absurd dims', () => {
      expectFrameError('BAD_DIMS', () => encodeFrame([{ ...sample()[0], dims: [-2, -3] }]));
      expectFrameError('BAD_DIMS', () => encodeFrame([{ ...sample()[0], dims: [1.5, 4] }]));
      const f = good();
      new DataView(f.buffer).setUint32(12 + 2 + 1 + 2, 0xffffffff, true);
      expectFrameError('TOO_LARGE', () => decodeFrame(f));
      const rankAt = 12 + 2 + 1 + 1;
      const g = good();
      g[rankAt] = 200;
      expectFrameError('BAD_DIMS', () => decodeFrame(g));
    });
    it('frames over the configured maximum', () => {
      const limits = { ...DEFAULT_FRAME_LIMITS, maxFrameBytes: 64 };
      expectFrameError('TOO_LARGE', () => decodeFrame(good(), limits));
      expectFrameError('TOO_LARGE', () => encodeFrame(sample(), limits));
      expectFrameError('TOO_LARGE', () =>
        encodeFrame(Array.from({ length: 65 }, (_, i) => ({ ...sample()[0], name: `t${i}` }))),
      );
    });
    it('bad quantization parameters and names', () => {
      const [, q] = sample();
      expectFrameError('BAD_QUANT', () => encodeFrame([{ ...q, quant: { ...q.quant!, axis: 5 } }]));
      expectFrameError('BAD_QUANT', () =>
        encodeFrame([{ ...q, quant: { ...q.quant!, scale: Float32Array.of(1, -1) } }]),
      );
      expectFrameError('BAD_QUANT', () =>
        encodeFrame([{ ...q, quant: { scale: Float32Array.of(1, 1), zeroPoint: Int32Array.of(0, 0) } }]),
      );
      expectFrameError('BAD_NAME', () => encodeFrame([{ ...q, name: '' }]));
      expectFrameError('BAD_NAME', () => encodeFrame([q, q]));
    });
    it('trailing bytes', () => {
      const f = good();
      const longer = new Uint8Array(f.length + 8);
      longer.set(f);
      expectFrameError('TRAILING_BYTES', () => decodeFrame(longer));
    });
    it('random corruption never escapes as anything but a FrameError (seeded)', async () => {
      const seed = testSeed();
      await withSeed(seed, () => {
        const random = prng(seed);
        const base = good();
        for (let i = 0; i < 2000; i++) {
          const f = base.slice();
          const flips = 1 + Math.floor(random() * 4);
          for (let k = 0; k < flips; k++) f[Math.floor(random() * f.length)] = Math.floor(random() * 256);
          try {
            decodeFrame(f);
          } catch (err) {
            assert.ok(err instanceof FrameError, `non-FrameError escaped: ${String(err)}`);
          }
        }
      });
    });
  });

  it('checks the start of a frame still arriving against the size announced for it', () => {
    const frame = encodeFrame([
      { name: 'x', dtype: 'float32', dims: [2, 3, 5], data: new Float32Array(30) },
      { name: 'y', dtype: 'int64', dims: [3], data: new BigInt64Array(3) },
    ]);
    for (const n of [0, 5, 12, 20, 60, frame.length]) checkFrameStart(frame.subarray(0, n), frame.length);
    const refused = (prefix: Uint8Array, total: number, code: string): void =>
      assert.throws(
        () => checkFrameStart(prefix, total),
        (e: unknown) => e instanceof FrameError && e.code === code,
      );
    refused(frame.subarray(0, 64), frame.length + 8, 'SIZE_MISMATCH');
    refused(frame.subarray(0, 64), frame.length - 8, 'SIZE_MISMATCH');
    refused(new Uint8Array(64).fill(7), frame.length, 'BAD_MAGIC');
    refused(frame.subarray(0, 12), 11, 'TRUNCATED');
    refused(frame.subarray(0, 12), DEFAULT_FRAME_LIMITS.maxFrameBytes + 1, 'TOO_LARGE');
  });
});
