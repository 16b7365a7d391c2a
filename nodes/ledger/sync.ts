import { EntryError, type Hex } from '../../protocol/log-entry.js';
import { type Ledger, MissingParentsError } from './ledger.js';

/** What a replica answers during anti-entropy; implemented over libp2p and in-process. */
export interface SyncPeer {
  summary(): Promise<Map<Hex, { maxSeq: number; count: number }>>;
  /** Up to `limit` entries of `author` with lo ≤ seq ≤ hi, in seq order. */
  range(author: Hex, lo: number, hi: number, limit: number): Promise<{ seq: number; bytes: Uint8Array }[]>;
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
  for (const [author, t] of theirs) {
    const mine = ledger.summary().get(author) ?? { maxSeq: 0, count: 0 };
    // Equal top but more entries there: equivocation twins we lack; read the author from the start.
    let lo = t.count > mine.count && t.maxSeq <= mine.maxSeq ? 1 : mine.maxSeq + 1;
    while (lo <= t.maxSeq && result.rounds < maxRounds) {
      result.rounds++;
      const got = await peer.range(author, lo, t.maxSeq, batch);
      if (got.length === 0) break;
      offer(got.map((g) => g.bytes));
      retryPending();
      // A full batch may end inside a slot with twins: continue from that slot, never skip one.
      const lastSeq = got[got.length - 1].seq;
      lo = got.length < batch ? t.maxSeq + 1 : Math.max(lo + 1, lastSeq);
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
    range: async (author, lo, hi, limit) => ledger.entriesOf(author, lo, hi, limit),
  };
}
