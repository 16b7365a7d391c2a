import { EntryError, type Hex } from '../../protocol/log-entry.js';
import { type Ledger, MissingParentsError } from './ledger.js';

/** What a replica answers during anti-entropy; implemented over libp2p and in-process. */
export interface SyncPeer {
  summary(): Promise<Map<Hex, { maxSeq: number; count: number }>>;
  /**
   * Entries of several authors with lo ≤ seq ≤ hi each, in one round trip: up to `limit` in all
   * and about MAX_REPLY_BYTES, ordered by Lamport clock so parents come first. `full` says the
   * reply stopped at a limit: an author it holds nothing for may still have entries.
   */
  ranges(want: { author: Hex; lo: number; hi: number }[], limit: number): Promise<RangesReply>;
}

export interface RangesReply {
  entries: { author: Hex; seq: number; bytes: Uint8Array }[];
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
export function pullFrom(ledger: Ledger, peer: SyncPeer, batch = 500, maxRounds = 10_000): Promise<PullResult> {
  return ledger.bulk(() => pull(ledger, peer, batch, maxRounds));
}

async function pull(ledger: Ledger, peer: SyncPeer, batch: number, maxRounds: number): Promise<PullResult> {
  const result: PullResult = { added: 0, rejected: [], rounds: 0 };
  const theirs = await peer.summary();
  const pending: Uint8Array[] = [];
  /** Ingests a batch in one transaction and one fold; returns how many were settled. */
  const offer = (list: Uint8Array[]): number => {
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
  // One round trip per batch across every author behind: a heal costs a few round trips,
  // not one per author.
  const next = new Map<Hex, number>();
  const ours = ledger.summary();
  for (const [author, t] of theirs) {
    const mine = ours.get(author) ?? { maxSeq: 0, count: 0 };
    const lo = t.count > mine.count && t.maxSeq <= mine.maxSeq ? 1 : mine.maxSeq + 1;
    if (lo <= t.maxSeq) next.set(author, lo);
  }
  // The next request goes out before this batch is ingested: the peer reads and sends while
  // we verify and store.
  const ask = (): { want: { author: Hex; lo: number; hi: number }[]; reply: Promise<RangesReply> } | undefined => {
    if (next.size === 0 || result.rounds >= maxRounds) return undefined;
    result.rounds++;
    const want = [...next].map(([author, lo]) => ({ author, lo, hi: theirs.get(author)!.maxSeq }));
    const reply = peer.ranges(want, batch);
    reply.catch(() => undefined); // awaited below; never left rejected and unheard if we stop early
    return { want, reply };
  };
  let inflight = ask();
  while (inflight) {
    const { want } = inflight;
    const { entries: got, full } = await inflight.reply;
    if (got.length === 0) break;
    const last = new Map<Hex, number>();
    for (const g of got) last.set(g.author, Math.max(last.get(g.author) ?? 0, g.seq));
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
    offer(got.map((g) => g.bytes));
    retryPending();
  }
  retryPending();
  for (const bytes of pending) result.rejected.push({ code: 'MISSING_PARENTS', message: `entry still lacks parents after sync (${bytes.length} B)` });
  return result;
}

/** Serves the pull side of anti-entropy from a local ledger. */
export function localSyncPeer(ledger: Ledger): SyncPeer {
  return {
    summary: async () => ledger.summary(),
    ranges: async (want, limit) => servedRanges(ledger, want, limit),
  };
}

/** A reply stops at about this many bytes of entries (plus one entry): a round trip stays short on a slow link. */
export const MAX_REPLY_BYTES = 1024 * 1024;

/** The server side of `ranges`: a fair share of the limit per author, parents first. */
export function servedRanges(ledger: Ledger, want: { author: Hex; lo: number; hi: number }[], limit: number, maxBytes = MAX_REPLY_BYTES): RangesReply {
  const out: { author: Hex; seq: number; bytes: Uint8Array; lamport: number }[] = [];
  const share = Math.max(1, Math.ceil(limit / Math.max(1, want.length)));
  let full = false;
  for (const w of want.slice(0, 1024)) {
    const got = ledger.entriesOf(w.author, w.lo, w.hi, share);
    if (got.length === share) full = true;
    for (const e of got) out.push({ author: w.author, seq: e.seq, bytes: e.bytes, lamport: e.lamport });
  }
  out.sort((a, b) => a.lamport - b.lamport);
  if (out.length > limit) {
    out.length = limit;
    full = true;
  }
  let bytes = 0;
  const entries: RangesReply['entries'] = [];
  for (const { author, seq, bytes: b } of out) {
    if (bytes >= maxBytes) {
      full = true;
      break;
    }
    entries.push({ author, seq, bytes: b });
    bytes += b.length;
  }
  return { entries, full };
}
