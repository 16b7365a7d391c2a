import { EntryError, type Hex } from '../../protocol/log-entry.js';
import { type Ledger, MissingParentsError } from './ledger.js';

/** What a replica answers during anti-entropy; implemented over libp2p and in-process. */
export interface SyncPeer {
  summary(): Promise<Map<Hex, { maxSeq: number; count: number }>>;
  /**
   * Entries of several authors with lo ≤ seq ≤ hi each, in one round trip: up to `limit` in all,
   * ordered by Lamport clock so parents come first.
   */
  ranges(want: { author: Hex; lo: number; hi: number }[], limit: number): Promise<{ author: Hex; seq: number; bytes: Uint8Array }[]>;
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
  for (const [author, t] of theirs) {
    const mine = ledger.summary().get(author) ?? { maxSeq: 0, count: 0 };
    const lo = t.count > mine.count && t.maxSeq <= mine.maxSeq ? 1 : mine.maxSeq + 1;
    if (lo <= t.maxSeq) next.set(author, lo);
  }
  while (next.size && result.rounds < maxRounds) {
    result.rounds++;
    const want = [...next].map(([author, lo]) => ({ author, lo, hi: theirs.get(author)!.maxSeq }));
    const got = await peer.ranges(want, batch);
    if (got.length === 0) break;
    offer(got.map((g) => g.bytes));
    retryPending();
    const last = new Map<Hex, number>();
    for (const g of got) last.set(g.author, Math.max(last.get(g.author) ?? 0, g.seq));
    for (const w of want) {
      const l = last.get(w.author);
      // Authors the peer sent nothing for this round are done only if the batch was not full.
      if (l === undefined) {
        if (got.length < batch) next.delete(w.author);
        continue;
      }
      const lo = Math.max(w.lo + 1, l);
      if (l >= w.hi && got.length < batch) next.delete(w.author);
      else next.set(w.author, lo);
    }
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

/** The server side of `ranges`: a fair share of the limit per author, parents first. */
export function servedRanges(ledger: Ledger, want: { author: Hex; lo: number; hi: number }[], limit: number): { author: Hex; seq: number; bytes: Uint8Array }[] {
  const out: { author: Hex; seq: number; bytes: Uint8Array; lamport: number }[] = [];
  const share = Math.max(1, Math.ceil(limit / Math.max(1, want.length)));
  for (const w of want.slice(0, 1024)) {
    for (const e of ledger.entriesOf(w.author, w.lo, w.hi, share)) out.push({ author: w.author, seq: e.seq, bytes: e.bytes, lamport: e.lamport });
  }
  return out
    .sort((a, b) => a.lamport - b.lamport)
    .slice(0, limit)
    .map(({ author, seq, bytes }) => ({ author, seq, bytes }));
}
