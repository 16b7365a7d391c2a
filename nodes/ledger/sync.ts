import { type DecodedEntry, EntryError, type Hex, equalBytes, parseEntry, toHex } from '../../protocol/log-entry.js';
import { type Ledger, MissingParentsError } from './ledger.js';

/** Per author: highest seq and entries held. */
export type Summary = Map<Hex, { maxSeq: number; count: number }>;

/** Of one author, entries lo ≤ seq ≤ hi. */
export interface Want {
  author: Hex;
  lo: number;
  hi: number;
}

/** What a replica answers during anti-entropy; implemented over libp2p and in-process. */
export interface SyncPeer {
  /**
   * The first round trip: given our summary, the peer's summary and the first batch of what we
   * lack (`wantedFrom(theirs, ours)`, served as `ranges` would), so entries flow from the first
   * reply on instead of after a round trip for summaries.
   */
  start(ours: Summary, limit: number): Promise<{ theirs: Summary; first: RangesReply }>;
  /**
   * Entries of several authors with lo ≤ seq ≤ hi each, in one round trip: up to `limit` in all
   * and about MAX_REPLY_BYTES, ordered by Lamport clock so parents come first. `full` says the
   * reply stopped at a limit: an author it holds nothing for may still have entries.
   */
  ranges(want: Want[], limit: number): Promise<RangesReply>;
  /** The pull is over (whether it succeeded or not): release what the session holds. May be called twice. */
  close?(): void;
}

/**
 * Per author of `theirs`, the seqs to fetch given `ours`: everything past our max seq, or from 1
 * when they hold more of that author's entries without a higher seq (equivocation twins). Both
 * ends of a sync compute it (the server for the first batch, the puller for the rest).
 */
export function wantedFrom(theirs: Summary, ours: Summary): Want[] {
  const want: Want[] = [];
  for (const [author, t] of theirs) {
    const mine = ours.get(author) ?? { maxSeq: 0, count: 0 };
    const lo = t.count > mine.count && t.maxSeq <= mine.maxSeq ? 1 : mine.maxSeq + 1;
    if (lo <= t.maxSeq) want.push({ author, lo, hi: t.maxSeq });
  }
  return want;
}

/** The entries' stored bytes as they are (nothing decoded or re-encoded to serve them). */
export interface RangesReply {
  entries: Uint8Array[];
  full: boolean;
}

export interface PullResult {
  added: number;
  rejected: { code: string; message: string }[];
  rounds: number;
}

/**
 * Anti-entropy, pull side: compares per-author (max seq, count) with a peer and fetches what
 * is missing in bounded batches, by author and sequence range. Gossip published during a
 * partition is never replayed, so this runs on every (re)connection. Entries whose parents
 * (from other authors) are not here yet wait in a buffer and are retried as others arrive.
 */
export async function pullFrom(ledger: Ledger, peer: SyncPeer, batch = 500, maxRounds = 10_000): Promise<PullResult> {
  try {
    return await ledger.bulk(() => pull(ledger, peer, batch, maxRounds));
  } finally {
    peer.close?.();
  }
}

async function pull(ledger: Ledger, peer: SyncPeer, batch: number, maxRounds: number): Promise<PullResult> {
  const result: PullResult = { added: 0, rejected: [], rounds: 0 };
  const pending: DecodedEntry[] = [];
  /** Ingests a batch in one transaction and one fold; returns how many were settled. */
  const offer = (list: DecodedEntry[]): number => {
    let settled = 0;
    ledger.ingestBatch(list).forEach((status, i) => {
      if (status instanceof MissingParentsError) pending.push(list[i]);
      else {
        settled++;
        if (status instanceof EntryError) result.rejected.push({ code: status.code, message: status.message });
        else if (status !== 'duplicate') result.added++;
      }
    });
    return settled;
  };
  const retryPending = (): void => {
    while (pending.length && offer(pending.splice(0)) > 0);
  };
  // The first request carries our summary; its reply, the peer's and the first batch.
  const ours = ledger.summary();
  const { theirs, first } = await peer.start(ours, batch);
  const firstWant = wantedFrom(theirs, ours);
  // Per author behind, the next seq to ask for: one round trip per batch across all of them
  // (a heal costs a few round trips, not one per author).
  const next = new Map(firstWant.map((w) => [w.author, w.lo]));
  // The next request goes out before this batch is ingested: the peer reads and sends while
  // we verify and store.
  const ask = (): { want: Want[]; reply: Promise<RangesReply> } | undefined => {
    if (next.size === 0 || result.rounds >= maxRounds) return undefined;
    result.rounds++;
    // At most MAX_WANT authors a request (a server refuses more); the rest in later rounds.
    const want = [...next].slice(0, MAX_WANT).map(([author, lo]) => ({ author, lo, hi: theirs.get(author)!.maxSeq }));
    const reply = peer.ranges(want, batch);
    reply.catch(() => undefined); // awaited below; never left rejected and unheard if we stop early
    return { want, reply };
  };
  result.rounds++;
  let inflight = next.size ? { want: firstWant, reply: Promise.resolve(first) } : undefined;
  while (inflight) {
    const { want } = inflight;
    const { entries: raw, full } = await inflight.reply;
    if (raw.length === 0) break;
    // Parsed once here (author and seq steer the next request), verified and stored by the ledger.
    const got: DecodedEntry[] = [];
    for (const bytes of raw) {
      try {
        got.push(parseEntry(bytes));
      } catch (err) {
        if (!(err instanceof EntryError)) throw err;
        result.rejected.push({ code: err.code, message: err.message });
      }
    }
    if (got.length === 0) break;
    const last = new Map<Hex, number>();
    // Entries come in runs of one author's: hex-encode a key only when it changes.
    let key: Uint8Array | undefined;
    let author = '';
    for (const g of got) {
      if (!key || !equalBytes(key, g.entry.author)) author = toHex((key = g.entry.author));
      last.set(author, Math.max(last.get(author) ?? 0, g.entry.seq));
    }
    for (const w of want) {
      const l = last.get(w.author);
      // Authors the peer sent nothing for this round are done only if the reply was not full.
      if (l === undefined) {
        if (!full) next.delete(w.author);
        continue;
      }
      const lo = Math.max(w.lo + 1, l);
      if (l >= w.hi && !full) next.delete(w.author);
      else next.set(w.author, lo);
    }
    inflight = ask();
    // In slices, yielding between them: the reply to the request just sent (and requests the
    // peer makes of us) flow while we ingest, instead of stalling on a blocked event loop.
    for (let i = 0; i < got.length;) {
      if (i > 0) await new Promise((resolve) => setImmediate(resolve));
      // Slices end where a signed batch starts, so batches are verified whole (verifyEntries).
      let end = Math.min(got.length, i + INGEST_SLICE);
      while (end < got.length && end < i + 2 * INGEST_SLICE && got[end].entry.batch.index !== 0) end++;
      offer(got.slice(i, end));
      i = end;
    }
    retryPending();
  }
  retryPending();
  for (const d of pending)
    result.rejected.push({
      code: 'MISSING_PARENTS',
      message: `entry still lacks parents after sync (${d.bytes.length} B)`,
    });
  // The contracts refold what this sync brought once it returns (Ledger.bulk): tens of ms with
  // the event loop blocked. A request the peer already sent us (its own sync's next batch)
  // is answered first, or the peer's sync waits the whole refold for it.
  await new Promise((resolve) => setImmediate(resolve));
  return result;
}

/** Serves the pull side of anti-entropy from a local ledger. */
export function localSyncPeer(ledger: Ledger): SyncPeer {
  return {
    start: async (ours, limit) => servedStart(ledger, ours, limit),
    ranges: async (want, limit) => servedRanges(ledger, want, limit),
  };
}

/** The server side of `start`: our summary, and the first batch of what the asker lacks. */
export function servedStart(
  ledger: Ledger,
  theirs: Summary,
  limit: number,
  maxBytes = MAX_REPLY_BYTES,
): { theirs: Summary; first: RangesReply } {
  const summary = ledger.summary();
  const want = wantedFrom(summary, theirs);
  return {
    theirs: summary,
    first: want.length ? servedRanges(ledger, want, limit, maxBytes) : { entries: [], full: false },
  };
}

/**
 * Entries ingested (one transaction each) between two yields to the event loop. Short: a reply
 * the peer is still sending advances one yamux window update per yield of ours, and a request
 * the peer makes of us waits for one too (with 500, both robots sat idle waiting on each other for much of a heal).
 */
const INGEST_SLICE = 200;

/** Authors one `ranges` request may name. */
export const MAX_WANT = 1024;

/** A reply stops at about this many bytes of entries (plus one entry): a round trip stays short on a slow link. */
export const MAX_REPLY_BYTES = 1024 * 1024;

const sum = (rows: { bytes: Uint8Array }[]): number => rows.reduce((n, r) => n + r.bytes.length, 0);

/** The server side of `ranges`: a fair share of the limit per author, parents first. */
export function servedRanges(ledger: Ledger, want: Want[], limit: number, maxBytes = MAX_REPLY_BYTES): RangesReply {
  const out: { bytes: Uint8Array; lamport: number }[] = [];
  const share = Math.max(1, Math.ceil(limit / Math.max(1, want.length)));
  let full = false;
  // Authors past MAX_WANT are not served this time: `full` tells the asker to ask again.
  if (want.length > MAX_WANT) full = true;
  for (const w of want.slice(0, MAX_WANT)) {
    // No author can fill more than the byte budget: read no further than that.
    const got = ledger.entriesOf(w.author, w.lo, w.hi, share, maxBytes);
    if (got.length === share || sum(got) >= maxBytes) full = true;
    for (const e of got) out.push(e);
  }
  out.sort((a, b) => a.lamport - b.lamport);
  if (out.length > limit) {
    out.length = limit;
    full = true;
  }
  let bytes = 0;
  const entries: Uint8Array[] = [];
  for (const e of out) {
    if (bytes >= maxBytes) {
      full = true;
      break;
    }
    entries.push(e.bytes);
    bytes += e.bytes.length;
  }
  return { entries, full };
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
  const bad = (): never => {
    throw new EntryError('MALFORMED', 'log sync reply is not {full, entries: [bytes…]}');
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
    if (n > left) bad();
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
  if (count > left) bad();
  const entries: Uint8Array[] = new Array(count);
  for (let i = 0; i < count; i++) entries[i] = bytes(length(2));
  if (left !== 0) bad();
  return { entries, full: flag === 0xf5 };
}
