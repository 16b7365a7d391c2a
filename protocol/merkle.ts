import { digest, equalBytes } from './bytes.js';

export { digest, equalBytes };

/**
 * Merkle tree over log entry ids, RFC 6962 style: domain-separated leaf (0x00) and node (0x01)
 * hashes so a leaf can never pass for a node; an odd node at the end of a level is promoted
 * unchanged (never duplicated, which would let two different lists share a root). A proof is the
 * list of sibling hashes from leaf to root; its shape follows from (index, count) alone, so the
 * verifier recomputes it and a path of the wrong length or for another position fails.
 */
/** Reused input buffers (0x01 ‖ left ‖ right): hashing runs synchronously, so one of each suffices. */
const leafInput = new Uint8Array(33);
const nodeInput = new Uint8Array(65);
nodeInput[0] = 1;

export const leafHash = (data: Uint8Array): Uint8Array => {
  if (data.length !== 32) {
    const input = new Uint8Array(1 + data.length);
    input.set(data, 1);
    return digest(input);
  }
  leafInput.set(data, 1);
  return digest(leafInput);
};
const nodeHash = (l: Uint8Array, r: Uint8Array): Uint8Array => {
  nodeInput.set(l, 1);
  nodeInput.set(r, 33);
  return digest(nodeInput);
};

/**
 * Byte equality in JS: for hashes, keys and signatures (32–64 bytes) a loop the JIT inlines is
 * several times cheaper than a call into Buffer.compare, and a verifier makes several per entry.
 */

export interface InclusionProof {
  index: number;
  count: number;
  siblings: Uint8Array[];
}

/**
 * A Merkle tree kept up to date as leaves are appended,
 * or replaced from a position on: only the nodes over changed leaves are hashed again, so an
 * append costs O(log n) and a late leaf near the end costs what follows it. What the anchorer
 * keeps between anchors, so an anchor does not hash the whole log again.
 */
export class GrowingMerkleTree {
  /** levels[0] = leaf hashes; each level holds ceil(below / 2) nodes; the last has one (the root). */
  protected readonly levels: Uint8Array[][] = [[]];

  get count(): number {
    return this.levels[0].length;
  }

  get root(): Uint8Array {
    if (this.count === 0) throw new RangeError('an empty tree has no root');
    return this.levels[this.levels.length - 1][0];
  }

  append(leaves: readonly Uint8Array[]): void {
    this.replaceFrom(this.count, leaves);
  }

  /** Leaves from `index` on become `leaves` (the tree then holds index + leaves.length). */
  replaceFrom(index: number, leaves: readonly Uint8Array[]): void {
    if (!Number.isInteger(index) || index < 0 || index > this.count)
      throw new RangeError(`position ${index} is outside 0..${this.count}`);
    const base = this.levels[0];
    base.length = index;
    for (const leaf of leaves) base.push(leafHash(leaf));
    // Level by level, recompute the parents of what changed (an odd last node is promoted).
    let from = index;
    for (let l = 0; ; l++) {
      const level = this.levels[l];
      if (level.length <= 1) {
        this.levels.length = l + 1;
        return;
      }
      const up = (this.levels[l + 1] ??= []);
      const first = from >> 1;
      up.length = Math.min(up.length, first);
      for (let p = first; 2 * p < level.length; p++)
        up.push(2 * p + 1 < level.length ? nodeHash(level[2 * p], level[2 * p + 1]) : level[2 * p]);
      from = first;
    }
  }

  prove(index: number): InclusionProof {
    if (!Number.isInteger(index) || index < 0 || index >= this.count)
      throw new RangeError(`leaf ${index} is outside 0..${this.count - 1}`);
    const siblings: Uint8Array[] = [];
    let i = index;
    for (let l = 0; l < this.levels.length - 1; l++) {
      const sibling = i ^ 1;
      if (sibling < this.levels[l].length) siblings.push(this.levels[l][sibling]);
      i >>= 1;
    }
    return { index, count: this.count, siblings };
  }
}

/** A tree over a list of leaves, built at once (a GrowingMerkleTree given them all). */
export class MerkleTree extends GrowingMerkleTree {
  constructor(leaves: readonly Uint8Array[]) {
    if (leaves.length === 0) throw new RangeError('a Merkle tree needs at least one leaf');
    super();
    this.append(leaves);
  }

  /** The sibling hashes of leaf `index` equal `path` (what prove(index).siblings would give). */
  provesWith(index: number, path: readonly Uint8Array[]): boolean {
    let i = index;
    let used = 0;
    for (let l = 0; l < this.levels.length - 1; l++) {
      const level = this.levels[l];
      const sibling = i ^ 1;
      if (sibling < level.length) {
        const p = path[used++];
        if (p === undefined || !equalBytes(p, level[sibling])) return false;
      }
      i >>= 1;
    }
    return used === path.length;
  }
}

/** The root a leaf and its proof lead to; undefined when the path does not fit (index, count). */
export function rootFromInclusion(leaf: Uint8Array, proof: InclusionProof): Uint8Array | undefined {
  const { index, count, siblings } = proof;
  if (!Number.isSafeInteger(count) || count < 1 || !Number.isSafeInteger(index) || index < 0 || index >= count)
    return undefined;
  let h = leafHash(leaf);
  let i = index;
  let width = count;
  let used = 0;
  while (width > 1) {
    const sibling = i ^ 1;
    if (sibling < width) {
      const s = siblings[used++];
      if (!(s instanceof Uint8Array) || s.length !== 32) return undefined;
      h = i & 1 ? nodeHash(s, h) : nodeHash(h, s);
    }
    i >>= 1;
    width = Math.ceil(width / 2);
  }
  return used === siblings.length ? h : undefined;
}

/** Recomputes the root from a leaf and its proof; true only for that exact position and count. */
export function verifyInclusion(leaf: Uint8Array, proof: InclusionProof, root: Uint8Array): boolean {
  const computed = rootFromInclusion(leaf, proof);
  return computed !== undefined && equalBytes(computed, root);
}
