import * as cbor from '@ipld/dag-cbor';
import { type Hex, isHexKey } from './bytes.js';
import { CborError, Reader } from './canonical-cbor.js';
import { WireError } from './errors.js';
import { LIMITS } from './limits.js';
import { MAX_ENTRY_BYTES } from './log-entry.js';

/**
 * The log's replication on the wire.
 *
 * Gossip (`logTopic`): one DAG-CBOR list of 1..256 entries (an author's entries published
 * together, parents first).
 *
 * Anti-entropy (`LOG_PROTOCOL`), one stream per sync, messages length-prefixed:
 *   asker → { t: 'start', have: Summary, limit }    holder → Summary, then a RangesReply
 *   asker → { t: 'ranges', want: Want[], limit }    holder → a RangesReply
 *   asker → { t: 'news' }                            holder → `true` (it will pull from the asker)
 * A Summary is [[author, { maxSeq, count }], …]; a RangesReply is { full, entries: [bytes…] }
 * with the entries' stored bytes in Lamport order. Every decoder here checks counts against
 * LIMITS.log before it allocates or parses what the counts announce, and throws WireError.
 */
export const LOG_PROTOCOL = '/robomesh/log/4.0.0';
export const logTopic = (fleet: string): string => `robomesh/${fleet}/log/2`;

/** Per author: highest seq and entries held. */
export type Summary = Map<Hex, { maxSeq: number; count: number }>;

/** Of one author, entries lo ≤ seq ≤ hi. */
export interface Want {
  author: Hex;
  lo: number;
  hi: number;
}

/** The entries' stored bytes as they are (nothing decoded or re-encoded to serve them). */
export interface RangesReply {
  entries: Uint8Array[];
  full: boolean;
}

export type SyncRequest =
  { t: 'start'; have: Summary; limit: number } | { t: 'ranges'; want: Want[]; limit: number } | { t: 'news' };

/** Largest request message (a summary of maxAuthors, or maxWant ranges). */
export const MAX_REQUEST_BYTES = 256 * 1024;
/** Largest reply message: a ranges reply of about maxReplyBytes plus one entry. */
export const MAX_REPLY_MESSAGE = LIMITS.log.maxReplyBytes + MAX_ENTRY_BYTES + LIMITS.log.maxBatch * 8 + 1024;

const fail = (why: string): never => {
  throw new WireError('log', 'MALFORMED', why);
};

/** Strict DAG-CBOR with a cap on the items decoded (checked before each list or map is read). */
function strict(bytes: Uint8Array, maxItems: number, what: string): unknown {
  try {
    const r = new Reader(bytes, maxItems);
    const value = r.item(0);
    if (r.pos !== bytes.length) fail(`${what}: bytes after the message`);
    return value;
  } catch (err) {
    if (err instanceof CborError) return fail(`${what}: ${err.message}`);
    throw err;
  }
}

const uint = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;

export function encodeSummary(summary: Summary): Uint8Array {
  return cbor.encode(summaryValue(summary));
}

const summaryValue = (summary: Summary) =>
  [...summary].map(([author, { maxSeq, count }]) => [author, { maxSeq, count }]);

function summaryFrom(data: unknown): Summary {
  if (!Array.isArray(data) || data.length > LIMITS.log.maxAuthors)
    return fail(`a summary is a list of at most ${LIMITS.log.maxAuthors} authors`);
  const out: Summary = new Map();
  for (const pair of data as unknown[]) {
    if (!Array.isArray(pair) || pair.length !== 2 || !isHexKey(pair[0]))
      return fail('a summary pair is not [author, {maxSeq, count}]');
    const v = pair[1] as { maxSeq?: unknown; count?: unknown } | null;
    if (typeof v !== 'object' || v === null || Object.keys(v).length !== 2 || !uint(v.maxSeq) || !uint(v.count))
      return fail('a summary value is not {maxSeq, count}');
    out.set(pair[0], { maxSeq: v.maxSeq, count: v.count });
  }
  return out;
}

/** Items a summary of maxAuthors takes: a list, and per author a pair, a key, a map of two. */
const SUMMARY_ITEMS = 1 + LIMITS.log.maxAuthors * 6;

export function decodeSummary(bytes: Uint8Array): Summary {
  return summaryFrom(strict(bytes, SUMMARY_ITEMS, 'log summary'));
}

export function encodeSyncRequest(req: SyncRequest): Uint8Array {
  if (req.t === 'start') return cbor.encode({ t: 'start', have: summaryValue(req.have), limit: req.limit });
  return cbor.encode(req);
}

export function decodeSyncRequest(bytes: Uint8Array): SyncRequest {
  if (bytes.length > MAX_REQUEST_BYTES) fail(`a request of ${bytes.length} bytes`);
  const req = strict(bytes, SUMMARY_ITEMS + 16 + LIMITS.log.maxWant * 7, 'log request') as Record<string, unknown>;
  if (typeof req !== 'object' || req === null || Array.isArray(req)) return fail('a request is not a map');
  const limit = (): number => {
    if (!uint(req.limit) || req.limit < 1 || req.limit > LIMITS.log.maxBatch)
      return fail(`limit must be 1..${LIMITS.log.maxBatch}`);
    return req.limit;
  };
  const keys = Object.keys(req).sort().join(',');
  switch (req.t) {
    case 'start':
      if (keys !== 'have,limit,t') fail(`start has fields ${keys}`);
      return { t: 'start', have: summaryFrom(req.have), limit: limit() };
    case 'ranges': {
      if (keys !== 'limit,t,want') fail(`ranges has fields ${keys}`);
      const want = req.want;
      if (!Array.isArray(want) || want.length > LIMITS.log.maxWant)
        return fail(`want is a list of at most ${LIMITS.log.maxWant} ranges`);
      for (const w of want as Record<string, unknown>[]) {
        if (typeof w !== 'object' || w === null || Object.keys(w).length !== 3) fail('a range is not {author, lo, hi}');
        if (!isHexKey(w.author) || !uint(w.lo) || !uint(w.hi) || w.lo > w.hi) fail('a range is not {author, lo ≤ hi}');
      }
      return { t: 'ranges', want: want as Want[], limit: limit() };
    }
    case 'news':
      if (keys !== 't') fail(`news has fields ${keys}`);
      return { t: 'news' };
    default:
      return fail(`unknown request ${JSON.stringify(String(req.t)).slice(0, 40)}`);
  }
}

/** A log gossip message: the DAG-CBOR list of one author's entries published together, parents first. */
export function packLogGossip(entries: Uint8Array[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  let group: Uint8Array[] = [];
  let bytes = 0;
  for (const e of entries) {
    if (group.length && (group.length >= LIMITS.gossip.maxEntries || bytes + e.length > LIMITS.gossip.maxBytes)) {
      out.push(cbor.encode(group));
      group = [];
      bytes = 0;
    }
    group.push(e);
    bytes += e.length;
  }
  if (group.length) out.push(cbor.encode(group));
  return out;
}

export function decodeLogGossip(data: Uint8Array): Uint8Array[] {
  if (data.length > LIMITS.gossip.maxBytes + MAX_ENTRY_BYTES + 16) fail(`log gossip of ${data.length} bytes`);
  const list = strict(data, 1 + LIMITS.gossip.maxEntries, 'log gossip');
  if (
    !Array.isArray(list) ||
    list.length < 1 ||
    list.length > LIMITS.gossip.maxEntries ||
    !list.every((e) => e instanceof Uint8Array && e.length >= LIMITS.log.minEntryBytes && e.length <= MAX_ENTRY_BYTES)
  )
    return fail(`log gossip is not a list of 1..${LIMITS.gossip.maxEntries} entries`);
  return list as Uint8Array[];
}

const FULL_KEY = Uint8Array.of(0x64, ...new TextEncoder().encode('full'));
const ENTRIES_KEY = Uint8Array.of(0x67, ...new TextEncoder().encode('entries'));

/**
 * The DAG-CBOR of a ranges reply, {full, entries: [bytes…]} (what cbor.encode gives), written
 * directly: one allocation and a copy of each stored entry, instead of a generic encoder's
 * token stream over a megabyte.
 */
export function encodeRangesReply(reply: RangesReply): Uint8Array {
  let size = 1 + FULL_KEY.length + 1 + ENTRIES_KEY.length + headerLength(reply.entries.length);
  for (const e of reply.entries) size += headerLength(e.length) + e.length;
  // Every byte is written below: no need to zero a megabyte first (in this VM, zeroed fresh
  // memory costs more than the copy into it).
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  out[at++] = 0xa2;
  out.set(FULL_KEY, at);
  at += FULL_KEY.length;
  out[at++] = reply.full ? 0xf5 : 0xf4;
  out.set(ENTRIES_KEY, at);
  at += ENTRIES_KEY.length;
  at = writeHeader(out, at, 4, reply.entries.length);
  for (const e of reply.entries) {
    at = writeHeader(out, at, 2, e.length);
    out.set(e, at);
    at += e.length;
  }
  if (at !== size) throw new Error(`ranges reply encoded ${at} of ${size} bytes`);
  return out;
}

/** Bytes of a CBOR header of length n in its shortest form, as DAG-CBOR requires. */
function headerLength(n: number): number {
  return n < 24 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : 5;
}

/** Writes the shortest CBOR header (major type, length n) at `at`; returns the offset after it. */
function writeHeader(out: Uint8Array, at: number, major: number, n: number): number {
  const m = major << 5;
  if (n < 24) out[at++] = m | n;
  else if (n < 0x100) {
    out[at++] = m | 24;
    out[at++] = n;
  } else if (n < 0x10000) {
    out[at++] = m | 25;
    out[at++] = n >> 8;
    out[at++] = n & 0xff;
  } else {
    out[at++] = m | 26;
    out[at++] = (n >>> 24) & 0xff;
    out[at++] = (n >> 16) & 0xff;
    out[at++] = (n >> 8) & 0xff;
    out[at++] = n & 0xff;
  }
  return at;
}

/**
 * Reads what encodeRangesReply writes (and nothing else), from one buffer or from the pieces a
 * stream delivered it in: no contiguous copy of the whole reply is made. An entry is a view into
 * the piece holding it, or a copy when it straddles two.
 */
export function decodeRangesReply(data: Uint8Array | readonly Uint8Array[]): RangesReply {
  const bad = (why = 'not {full, entries: [bytes…]}'): never => {
    throw new WireError('log', 'MALFORMED', `log sync reply is ${why}`);
  };
  const pieces = data instanceof Uint8Array ? [data] : data;
  let left = pieces.reduce((n, p) => n + p.length, 0);
  let piece = 0;
  let at = 0;
  const byte = (): number => {
    while (piece < pieces.length && at === pieces[piece].length) {
      piece++;
      at = 0;
    }
    if (piece === pieces.length) return bad();
    left--;
    return pieces[piece][at++];
  };
  const bytes = (n: number): Uint8Array => {
    if (n > left || n === 0) bad();
    left -= n;
    while (at === pieces[piece].length) {
      piece++;
      at = 0;
    }
    const here = pieces[piece];
    if (at + n <= here.length) {
      at += n;
      return here.subarray(at - n, at);
    }
    const out = new Uint8Array(n);
    for (let filled = 0; filled < n;) {
      if (at === pieces[piece].length) {
        piece++;
        at = 0;
      }
      const take = Math.min(n - filled, pieces[piece].length - at);
      out.set(pieces[piece].subarray(at, at + take), filled);
      filled += take;
      at += take;
    }
    return out;
  };
  const expect = (want: Uint8Array): void => {
    for (const b of want) if (byte() !== b) bad();
  };
  /** Reads a header of `major`, checking it is in shortest form. */
  const length = (major: number): number => {
    const first = byte();
    if (first >> 5 !== major) bad();
    const info = first & 31;
    let n: number;
    if (info < 24) return info;
    if (info === 24) n = byte();
    else if (info === 25) n = (byte() << 8) | byte();
    else if (info === 26) n = ((byte() << 24) >>> 0) + ((byte() << 16) | (byte() << 8) | byte());
    else return bad();
    if (n < (info === 24 ? 24 : info === 25 ? 0x100 : 0x10000)) bad();
    return n;
  };
  expect(Uint8Array.of(0xa2));
  expect(FULL_KEY);
  const flag = byte();
  if (flag !== 0xf4 && flag !== 0xf5) bad();
  expect(ENTRIES_KEY);
  const count = length(4);
  // Checked before any entry is looked at: a megabyte of empty entries is refused at once.
  if (count > LIMITS.log.maxBatch) bad(`${count} entries, more than ${LIMITS.log.maxBatch}`);
  if (count * (LIMITS.log.minEntryBytes + 2) > left) bad(`${count} entries in ${left} bytes`);
  const entries: Uint8Array[] = new Array(count);
  for (let i = 0; i < count; i++) {
    const n = length(2);
    if (n < LIMITS.log.minEntryBytes || n > MAX_ENTRY_BYTES) bad(`an entry of ${n} bytes`);
    entries[i] = bytes(n);
  }
  if (left !== 0) bad();
  return { entries, full: flag === 0xf5 };
}
