import { type DecodedEntry, EntryError, type Hex, equalBytes, parseEntry, toHex } from '../../protocol/log-entry.js';
import { LIMITS } from '../../protocol/limits.js';
import type { RangesReply, Summary, Want } from '../../protocol/log-sync.js';
import { type Ledger, MissingParentsError } from './ledger.js';

export type { RangesReply, Summary, Want };

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

export interface PullResult {
  added: number;
  rejected: { code: string; message: string }[];
  rounds: number;
  /** What the peer said it holds (per author: highest seq, count) when the sync began. */
  theirs?: Map<Hex, { maxSeq: number; count: number }>;
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
  result.theirs = theirs;
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

const MAX_WANT = LIMITS.log.maxWant;
const MAX_REPLY_BYTES = LIMITS.log.maxReplyBytes;

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
