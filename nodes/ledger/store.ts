import { RobomeshError } from '../../protocol/errors.js';
import type { Hex } from '../../protocol/log-entry.js';

/** A log store that cannot be used as it is; the message names the file and what to do. */
export type StoreErrorCode = 'UNREADABLE' | 'READ_ONLY' | 'OLD_LAYOUT' | 'DAMAGED' | 'LOST_OWN_ENTRIES';

export class StoreError extends RobomeshError<StoreErrorCode> {
  constructor(code: StoreErrorCode, message: string, options?: ErrorOptions) {
    super(code, message, options);
  }
}

/** What the ledger keeps per entry besides its bytes, for lookups without decoding. */
export interface StoredEntry {
  id: Hex;
  /** The id as bytes, when the caller has them (saves a store keyed by bytes a hex decode). */
  idBytes?: Uint8Array;
  author: Hex;
  seq: number;
  lamport: number;
  bytes: Uint8Array;
}

/** What serving a range needs of an entry. */
export interface RangeRow {
  seq: number;
  lamport: number;
  bytes: Uint8Array;
}

/**
 * Storage of log entries; entries are never updated or deleted. `put` returns once the entries
 * survive kill -9. With `durable` (the default) they also survive power loss: a robot's own
 * entries are acknowledged only then. Entries copied from peers may skip that fsync; a power
 * cut can lose only the last of them, never corrupt the store, and anti-entropy fetches them
 * again. (In WAL mode a later durable commit makes every earlier one durable too.)
 */
export interface LogStore {
  /** A file on disk (survives a restart), or memory (tests, tools). */
  readonly location: string | undefined;
  put(entries: StoredEntry[], durable?: boolean): void;
  has(id: Hex): boolean;
  get(id: Hex): StoredEntry | undefined;
  /** Every entry, in (lamport, id) order: used to rebuild state at start. */
  all(): StoredEntry[];
  /**
   * Entries of one author with lo ≤ seq ≤ hi, by seq (equivocating twins included): at most
   * `limit`, and none after the one that brings their bytes to `maxBytes`.
   */
  range(author: Hex, lo: number, hi: number, limit: number, maxBytes?: number): RangeRow[];
  close(): void;
}

/** In memory, for tests and the many-schedule property test: same contract, no durability. */
export class MemoryLogStore implements LogStore {
  private readonly byId = new Map<Hex, StoredEntry>();
  private readonly byAuthor = new Map<Hex, StoredEntry[]>();
  readonly location = undefined;

  put(entries: StoredEntry[], _durable = true): void {
    for (const e of entries) {
      if (this.byId.has(e.id)) continue;
      this.byId.set(e.id, e);
      const list = this.byAuthor.get(e.author) ?? [];
      list.push(e);
      this.byAuthor.set(e.author, list);
    }
  }
  has(id: Hex): boolean {
    return this.byId.has(id);
  }
  get(id: Hex): StoredEntry | undefined {
    return this.byId.get(id);
  }
  all(): StoredEntry[] {
    return [...this.byId.values()].sort((a, b) => a.lamport - b.lamport || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }
  range(author: Hex, lo: number, hi: number, limit: number, maxBytes = Infinity): StoredEntry[] {
    const all = (this.byAuthor.get(author) ?? [])
      .filter((e) => e.seq >= lo && e.seq <= hi)
      .sort((a, b) => a.seq - b.seq || (a.id < b.id ? -1 : 1));
    const out: StoredEntry[] = [];
    let bytes = 0;
    for (const e of all) {
      if (out.length >= limit || bytes >= maxBytes) break;
      out.push(e);
      bytes += e.bytes.length;
    }
    return out;
  }
  close(): void {}
}
