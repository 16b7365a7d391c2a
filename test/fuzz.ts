import { signerFromSeed } from '../protocol/ed25519.js';
import { decodeAdvert, encodeAdvert } from '../protocol/adverts.js';
import { identityFromSeed } from '../nodes/mesh/identity.js';
import { decodeRelayMessage, encodeRelayMessage } from '../protocol/anchor-relay.js';
import { decodeBlobRequest, decodeBlobSize, encodeBlobRequest, encodeBlobSize } from '../protocol/blob-messages.js';
import { RobomeshError } from '../protocol/errors.js';
import { decodeHeader, encodeHeader } from '../protocol/infer-messages.js';
import { parseEntry, signBatch, toHex } from '../protocol/log-entry.js';
import {
  decodeLogGossip,
  decodeRangesReply,
  decodeSummary,
  decodeSyncRequest,
  encodeRangesReply,
  encodeSummary,
  encodeSyncRequest,
  packLogGossip,
} from '../protocol/log-sync.js';
import { decodeFingerprint, resultFingerprint } from '../protocol/result-fingerprint.js';
import { checkFrameStart, decodeFrame, encodeFrame } from '../protocol/tensor-frame.js';
import {
  decodeTileReply,
  decodeTileRequest,
  encodeTileReply,
  encodeTileRequest,
  packTile,
  unpackTile,
} from '../protocol/tile-sync.js';
import { prng } from '../nodes/util/prng.js';
import { testSeed } from './helpers/seed.js';

/**
 * npm run fuzz — every decoder in protocol/ fed mutated valid messages (bit flips, byte edits,
 * truncations, duplicated and spliced ranges, length fields set to extremes), seeded, bounded in
 * time. A decoder may accept or refuse; refusing must be its own typed error (a RobomeshError), never
 * a TypeError, RangeError or a hang. ROBOMESH_SEED (the seed variable every randomised test reads),
 * FUZZ_INPUTS (per decoder, default 1,000,000) and
 * FUZZ_SECONDS (per decoder, default 120) set the run. Prints a table of inputs, accepted and
 * refused per decoder; exits 1 on the first untyped error, with the seed and the input in hex.
 */
const SEED = testSeed();
const INPUTS = Number(process.env.FUZZ_INPUTS ?? 1_000_000);
const SECONDS = Number(process.env.FUZZ_SECONDS ?? 120);

const signer = signerFromSeed(new Uint8Array(32).fill(9));
const robotId = (await identityFromSeed(new Uint8Array(32).fill(9))).peerId.toString();
const author = toHex(signer.publicKey);
const entries = signBatch(
  [
    { seq: 1, lamport: 1, parents: [], payload: { type: 'claim', task: 't' } },
    {
      seq: 2,
      lamport: 2,
      parents: [new Uint8Array(32).fill(1)],
      payload: { type: 'result', task: 't', digest: 'a'.repeat(64), fingerprint: new Uint8Array(40).fill(3) },
    },
    {
      seq: 3,
      lamport: 3,
      parents: [],
      payload: {
        type: 'task',
        task: 't2',
        model: 'b'.repeat(64),
        cut: 'c12',
        precision: 'int8',
        input: 'c'.repeat(64),
        bytes: 4096,
        f: 1,
        timeout: 1000,
      },
    },
  ],
  signer,
).map((d) => d.bytes);
const tensors = [
  { name: 'x', dtype: 'float32' as const, dims: [1, 3, 4, 4], data: new Float32Array(48).map((_, i) => i / 7) },
  { name: 'q', dtype: 'uint8' as const, dims: [2, 8], data: new Uint8Array(16).fill(5) },
];
const tile = { tile: '3_-2', version: 7, cells: new Int8Array(64 * 64).map((_, i) => (i % 17) - 8) };

interface Target {
  name: string;
  samples: Uint8Array[];
  decode: (bytes: Uint8Array) => unknown;
}

const targets: Target[] = [
  {
    name: 'tensor frame',
    samples: [encodeFrame(tensors), encodeFrame(tensors.slice(0, 1))],
    decode: (b) => decodeFrame(b),
  },
  {
    // The first chunk of a frame still arriving, checked against the size its sender announced.
    name: 'tensor frame start',
    samples: [encodeFrame(tensors), encodeFrame(tensors.slice(0, 1))],
    decode: (b) => checkFrameStart(b.subarray(0, 64), b.length),
  },
  { name: 'log entry', samples: entries, decode: (b) => parseEntry(b) },
  {
    name: 'log sync request',
    samples: [
      encodeSyncRequest({ t: 'start', have: new Map([[author, { maxSeq: 3, count: 3 }]]), limit: 100 }),
      encodeSyncRequest({ t: 'ranges', want: [{ author, lo: 1, hi: 3 }], limit: 50 }),
      encodeSyncRequest({ t: 'news' }),
    ],
    decode: decodeSyncRequest,
  },
  {
    name: 'log summary',
    samples: [encodeSummary(new Map([[author, { maxSeq: 3, count: 4 }]]))],
    decode: decodeSummary,
  },
  {
    name: 'log sync reply',
    samples: [encodeRangesReply({ entries, full: true })],
    decode: (b) => decodeRangesReply(b),
  },
  { name: 'log gossip', samples: packLogGossip(entries), decode: decodeLogGossip },
  {
    name: 'tile request',
    samples: [encodeTileRequest({ want: ['d'.repeat(64), 'e'.repeat(64)], wait: 100 })],
    decode: decodeTileRequest,
  },
  {
    name: 'tile reply',
    samples: [encodeTileReply([packTile(tile)])],
    decode: (b) => decodeTileReply(b).map(unpackTile),
  },
  {
    name: 'anchor relay',
    samples: [
      encodeRelayMessage({
        root: new Uint8Array(32).fill(2),
        count: 10,
        heads: ['f'.repeat(64)],
        first: 1,
        last: 10,
        results: [{ task: 't', digest: 'a'.repeat(64) }],
        tx: new Uint8Array(300).fill(1),
        sig: 'AAAA',
      }),
    ],
    decode: decodeRelayMessage,
  },
  {
    name: 'infer header',
    samples: [
      encodeHeader({
        t: 'req',
        id: 'r1',
        model: 'b'.repeat(64),
        cut: 'c3',
        precision: 'fp16',
        granularity: 'channel',
        budgetMs: 1000,
        chunks: 1,
        bytes: 100,
        task: 't',
        entries: [Buffer.from(entries[0]).toString('base64')],
      }),
      encodeHeader({ t: 'res', id: 'r1', computeMs: 3, chunks: 1, bytes: 10 }),
      encodeHeader({ t: 'err', id: 'r1', code: 'OVERLOADED', message: 'busy' }),
    ],
    decode: (b) => decodeHeader(b, 1 << 28),
  },
  {
    name: 'capability advert',
    samples: [
      encodeAdvert(
        { v: 2, robot: robotId, seq: 1, queue: 0, models: [{ hash: 'b'.repeat(64), wholeMs: 3, tailMs: { c1: 1 } }] },
        signer,
      ),
    ],
    decode: (b) => decodeAdvert(b, () => signer.publicKey),
  },
  {
    name: 'result fingerprint',
    samples: [resultFingerprint('t', tensors).fingerprint],
    decode: (b) => decodeFingerprint(b),
  },
  {
    name: 'blob request and size',
    samples: [encodeBlobRequest('a'.repeat(64)), encodeBlobSize(77)],
    decode: (b) => [decodeBlobRequest(b), decodeBlobSize(b)],
  },
];

function mutate(random: () => number, input: Uint8Array, others: Uint8Array[]): Uint8Array {
  const b = Buffer.from(input);
  const pick = (n: number): number => Math.floor(random() * n);
  const rounds = 1 + pick(4);
  let out: Buffer = b;
  for (let r = 0; r < rounds; r++) {
    const at = pick(out.length + 1);
    switch (pick(9)) {
      case 0: // bit flip
        if (out.length) out[Math.min(at, out.length - 1)] ^= 1 << pick(8);
        break;
      case 1: // byte set to an interesting value
        if (out.length)
          out[Math.min(at, out.length - 1)] = [0, 0xff, 0x7f, 0x80, 0x18, 0x19, 0x1a, 0x1b, 0x9f, 0xbf][pick(10)];
        break;
      case 2: // truncate
        out = out.subarray(0, at);
        break;
      case 3: // delete a range
        out = Buffer.concat([out.subarray(0, at), out.subarray(Math.min(out.length, at + 1 + pick(16)))]);
        break;
      case 4: // insert random bytes
        out = Buffer.concat([
          out.subarray(0, at),
          Buffer.from(Array.from({ length: 1 + pick(8) }, () => pick(256))),
          out.subarray(at),
        ]);
        break;
      case 5: // duplicate a range
        out = Buffer.concat([out.subarray(0, at), out.subarray(at, at + pick(32)), out.subarray(at)]);
        break;
      case 6: {
        // splice with another sample
        const o = others[pick(others.length)];
        const from = pick(o.length + 1);
        out = Buffer.concat([out.subarray(0, at), o.subarray(from, from + pick(64))]);
        break;
      }
      case 7: // a 4-byte length field set to an extreme
        if (out.length >= at + 4) out.writeUInt32LE([0, 1, 0x7fffffff, 0xffffffff][pick(4)], at);
        break;
      default: // random bytes at the end
        out = Buffer.concat([out, Buffer.from(Array.from({ length: pick(4) }, () => pick(256)))]);
    }
  }
  return new Uint8Array(out.buffer, out.byteOffset, out.length);
}

const rows: Record<string, string | number>[] = [];
let failed = false;
for (const [k, t] of targets.entries()) {
  const random = prng(SEED + k * 7919);
  for (const s of t.samples) t.decode(s); // the valid samples decode
  const deadline = performance.now() + SECONDS * 1000;
  let inputs = 0;
  let accepted = 0;
  let refused = 0;
  const codes = new Map<string, number>();
  while (inputs < INPUTS && (inputs % 1000 !== 0 || performance.now() < deadline)) {
    const input = mutate(random, t.samples[Math.floor(random() * t.samples.length)], t.samples);
    inputs++;
    try {
      t.decode(input);
      accepted++;
    } catch (err) {
      if (err instanceof RobomeshError) {
        refused++;
        codes.set(err.code, (codes.get(err.code) ?? 0) + 1);
        continue;
      }
      process.stderr.write(
        `${t.name}: untyped ${(err as Error).name}: ${(err as Error).message}\n  seed ${SEED} ` +
          `(ROBOMESH_SEED=${SEED} reproduces), input ${inputs}: ${Buffer.from(input).toString('hex').slice(0, 400)}\n`,
      );
      failed = true;
      break;
    }
  }
  rows.push({ decoder: t.name, inputs, accepted, refused, codes: [...codes.keys()].sort().join(' ') });
  process.stdout.write(`${t.name}: ${inputs} inputs, ${accepted} accepted, ${refused} refused\n`);
  if (failed) break;
}
const width = (key: string): number => Math.max(key.length, ...rows.map((r) => String(r[key]).length));
const keys = ['decoder', 'inputs', 'accepted', 'refused', 'codes'];
const line = (r: Record<string, string | number>): string =>
  `| ${keys.map((k) => String(r[k]).padEnd(width(k))).join(' | ')} |`;
process.stdout.write(
  `\nfuzz, seed ${SEED}\n\n${line(Object.fromEntries(keys.map((k) => [k, k])))}\n| ` +
    `${keys.map((k) => '-'.repeat(width(k))).join(' | ')} |\n${rows.map(line).join('\n')}\n`,
);
process.exitCode = failed ? 1 : 0;
