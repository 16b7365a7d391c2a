import { type Hex, fromHex } from '../../protocol/bytes.js';
import { GrowingMerkleTree } from '../../protocol/merkle.js';
import type { Ledger } from './ledger.js';

/**
 * The Merkle tree an anchor commits, over every entry of the log sorted by (lamport, id) — the
 * same root as a MerkleTree over `ledger.ancestry(ledger.heads())` — kept between anchors: new
 * entries usually sort last and cost O(log n) each; one arriving late (after a partition heal)
 * rehashes only the entries after its place. An anchor no longer hashes the whole log again.
 */
export class AnchorTree {
  private readonly tree = new GrowingMerkleTree();
  /** The leaves in order, with their lamports (the sort key, then the id). */
  private readonly ids: Hex[] = [];
  private readonly lamports: number[] = [];
  private readonly held = new Set<Hex>();
  private pending: Hex[] = [];
  private readonly onEntry = (d: { idHex: Hex }): void => void this.pending.push(d.idHex);

  constructor(private readonly ledger: Ledger) {
    ledger.on('entry', this.onEntry);
    const heads = ledger.heads();
    if (heads.length) this.pending = ledger.ancestry(heads);
  }

  close(): void {
    this.ledger.off('entry', this.onEntry);
  }

  /** Takes in what arrived since the last call; the root and count then cover the whole log. */
  update(): { root: Uint8Array; count: number } | undefined {
    const arrived = this.pending.filter((id) => !this.held.has(id) && this.ledger.lamportOf(id) !== undefined);
    this.pending = [];
    if (arrived.length) {
      const lamport = (id: Hex): number => this.ledger.lamportOf(id)!;
      const before = (la: number, a: Hex, lb: number, b: Hex): boolean => la < lb || (la === lb && a < b);
      arrived.sort((a, b) => (before(lamport(a), a, lamport(b), b) ? -1 : 1));
      for (const id of arrived) this.held.add(id);
      // Where the first newcomer belongs; everything from there on is merged and rehashed.
      const first = arrived[0];
      let lo = 0;
      let hi = this.ids.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (before(this.lamports[mid], this.ids[mid], lamport(first), first)) lo = mid + 1;
        else hi = mid;
      }
      const tail = this.ids.splice(lo);
      this.lamports.length = lo;
      const merged: Hex[] = [];
      for (let i = 0, j = 0; i < tail.length || j < arrived.length;) {
        const takeTail =
          j >= arrived.length ||
          (i < tail.length && before(lamport(tail[i]), tail[i], lamport(arrived[j]), arrived[j]));
        merged.push(takeTail ? tail[i++] : arrived[j++]);
      }
      for (const id of merged) {
        this.ids.push(id);
        this.lamports.push(lamport(id));
      }
      this.tree.replaceFrom(lo, merged.map(fromHex));
    }
    return this.tree.count ? { root: this.tree.root, count: this.tree.count } : undefined;
  }

  /** The ids in leaf order (for tests and proofs). */
  leaves(): readonly Hex[] {
    return this.ids;
  }
}
