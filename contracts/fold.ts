import { createHash } from 'node:crypto';
import type { Hex } from '../protocol/log-entry.js';
import { type FleetState, type LogItem, apply, cloneState, emptyState } from './fleet-state.js';

/** Total order of the log: Lamport clock, then id. A valid topological order, since every
 * entry's clock exceeds its parents'. */
export function compareItems(a: LogItem, b: LogItem): number {
  return a.lamport - b.lamport || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

/**
 * Snapshots every 256 entries near the tip, where late entries usually land, and every 4096
 * further back: each snapshot copies the whole state, so dense snapshots over a long log would
 * cost O(n²) time on a full refold and O(n²) memory.
 */
const SNAPSHOT_EVERY = 256;
const SPARSE_EVERY = 4096;
const DENSE_TAIL = 1024;

/**
 * Folds the log into FleetState incrementally. An entry at the tip is applied directly; one that
 * lands inside the order (late, from a healed partition) refolds from the nearest snapshot
 * before its position, not from genesis.
 */
export class LedgerFold {
  private readonly order: LogItem[] = [];
  private readonly ids = new Set<Hex>();
  /** By position: `state` is the state before applying order[at]. */
  private snapshots: { at: number; state: FleetState }[] = [{ at: 0, state: emptyState() }];
  private current = emptyState();
  /** Entries re-applied by refolds (tip appends excluded): what incremental folding saves. */
  refolded = 0;
  /** Changes whenever the state may have: lets readers cache what they derive from it. */
  version = 0;
  private hashed: { version: number; hash: Hex } | undefined;

  get state(): FleetState {
    return this.current;
  }

  get size(): number {
    return this.order.length;
  }

  has(id: Hex): boolean {
    return this.ids.has(id);
  }

  items(): readonly LogItem[] {
    return this.order;
  }

  insert(item: LogItem): void {
    this.insertMany([item]);
  }

  /**
   * Inserts several entries and folds once: a batch from a healed partition interleaves with
   * what is here, and refolding per entry would cost O(n²).
   */
  insertMany(items: LogItem[]): void {
    const fresh = items.filter((i) => !this.ids.has(i.id));
    if (fresh.length === 0) return;
    for (const i of fresh) this.ids.add(i.id);
    const oldLength = this.order.length;
    fresh.sort(compareItems);
    let from: number;
    if (oldLength === 0 || compareItems(fresh[0], this.order[oldLength - 1]) > 0) {
      this.order.push(...fresh);
      from = oldLength;
    } else {
      from = this.position(fresh[0]);
      const merged: LogItem[] = [];
      let a = from;
      let b = 0;
      while (a < oldLength || b < fresh.length) {
        if (b >= fresh.length || (a < oldLength && compareItems(this.order[a], fresh[b]) < 0))
          merged.push(this.order[a++]);
        else merged.push(fresh[b++]);
      }
      this.order.length = from;
      this.order.push(...merged);
    }
    if (from === oldLength) {
      for (let i = from; i < this.order.length; i++) this.applyAt(i);
      return;
    }
    let k = this.snapshots.length - 1;
    while (this.snapshots[k].at > from) k--;
    this.snapshots.length = k + 1;
    const start = this.snapshots[k];
    this.current = cloneState(start.state);
    for (let i = start.at; i < this.order.length; i++) {
      this.applyAt(i, SNAPSHOT_EVERY);
      this.refolded++;
    }
  }

  /**
   * `denseTail`: how far from the end snapshots are dense. A refold keeps only the last of the
   * dense ones (each copies the whole state: 4 of a 20,000-entry state cost more than the
   * refold's applies, measured); appends at the tip then add the others as the log grows.
   */
  private applyAt(i: number, denseTail = DENSE_TAIL): void {
    const last = this.snapshots[this.snapshots.length - 1];
    if (i > last.at && i % SNAPSHOT_EVERY === 0 && (i >= this.order.length - denseTail || i % SPARSE_EVERY === 0)) {
      // Drop the dense snapshots that have fallen behind the tail.
      this.snapshots = this.snapshots.filter((s) => s.at % SPARSE_EVERY === 0 || s.at >= i - DENSE_TAIL);
      this.snapshots.push({ at: i, state: cloneState(this.current) });
    }
    apply(this.current, this.order[i]);
    this.version++;
  }

  private position(item: LogItem): number {
    let lo = 0;
    let hi = this.order.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (compareItems(this.order[mid], item) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  stateHash(): Hex {
    if (this.hashed?.version !== this.version) this.hashed = { version: this.version, hash: stateHash(this.current) };
    return this.hashed.hash;
  }
}

/** A digest of everything decided, in a canonical order: equal exactly when states are equal. */
export function stateHash(s: FleetState): Hex {
  const sorted = <T>(xs: Iterable<T>): T[] => [...xs].sort();
  const canonical = {
    fleet: s.fleet ?? null,
    genesis: s.genesis ?? null,
    members: sorted(s.members),
    admins: sorted(s.admins),
    tasks: [...s.tasks.values()].sort((a, b) => (a.task < b.task ? -1 : 1)),
    reputation: [...s.reputation].sort(),
    equivocations: s.equivocations,
    tiles: [...s.tiles].sort(),
    flags: [...s.flags].map(([robot, by]) => [robot, sorted(by)]).sort(),
    flagged: s.flagged,
    offences: [...s.offences].map(([robot, by]) => [robot, sorted(by)]).sort(),
    offenders: s.offenders,
    anchors: s.anchors,
    ignored: s.ignored,
    applied: s.applied,
  };
  const bytesAsHex = (_key: string, v: unknown): unknown =>
    v instanceof Uint8Array ? Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex') : v;
  return createHash('sha256').update(JSON.stringify(canonical, bytesAsHex)).digest('hex');
}
