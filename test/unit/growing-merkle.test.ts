import assert from 'node:assert/strict';
import { GrowingMerkleTree, digest, verifyInclusion } from '../../protocol/merkle.js';
import { prng } from '../../nodes/util/index.js';
import { testSeed } from '../helpers/seed.js';

/**
 * The tree written out plainly, level by level, as RFC 6962 hashes it with an odd last node
 * promoted: the reference the growing tree must match (leaf 0x00 ‖ id, node 0x01 ‖ left ‖ right).
 */
function reference(leaves: Uint8Array[]): { root: Uint8Array; siblings: (index: number) => Uint8Array[] } {
  const levels = [leaves.map((leaf) => digest(Uint8Array.from([0, ...leaf])))];
  while (levels[levels.length - 1].length > 1) {
    const below = levels[levels.length - 1];
    const up: Uint8Array[] = [];
    for (let i = 0; i < below.length; i += 2)
      up.push(i + 1 < below.length ? digest(Uint8Array.from([1, ...below[i], ...below[i + 1]])) : below[i]);
    levels.push(up);
  }
  return {
    root: levels[levels.length - 1][0],
    siblings: (index) =>
      levels.slice(0, -1).flatMap((level, l) => {
        const sibling = (index >> l) ^ 1;
        return sibling < level.length ? [level[sibling]] : [];
      }),
  };
}

describe('growing Merkle tree (what anchors keep between anchors)', () => {
  const leaf = (random: () => number): Uint8Array => Uint8Array.from({ length: 32 }, () => Math.floor(random() * 256));

  it('has the root and proofs of a tree built at once, at every size from 1 to 300, appended one by one', () => {
    const seed = testSeed();
    const random = prng(seed);
    const leaves: Uint8Array[] = [];
    const growing = new GrowingMerkleTree();
    for (let n = 1; n <= 300; n++) {
      leaves.push(leaf(random));
      growing.append([leaves[n - 1]]);
      const whole = reference(leaves);
      assert.deepEqual(growing.root, whole.root, `size ${n} (ROBOMESH_SEED=${seed})`);
      const i = Math.floor(random() * n);
      assert.deepEqual(growing.prove(i).siblings, whole.siblings(i), `proof of ${i} of ${n} (ROBOMESH_SEED=${seed})`);
    }
  });

  it('late leaves replace the tail: the root of a rebuild; proofs up to 100,000 leaves; tampering fails', () => {
    const seed = testSeed();
    const random = prng(seed);
    for (const n of [1, 2, 3, 1000, 4097, 100_000]) {
      const leaves = Array.from({ length: n }, () => leaf(random));
      const growing = new GrowingMerkleTree();
      growing.append(leaves.slice(0, Math.ceil(n / 2)));
      growing.append(leaves.slice(Math.ceil(n / 2)));
      // A late leaf lands before the last quarter: the tail from there is replaced.
      const at = Math.floor((3 * n) / 4);
      const late = leaf(random);
      const after = [...leaves.slice(0, at), late, ...leaves.slice(at)];
      growing.replaceFrom(at, after.slice(at));
      const whole = reference(after);
      assert.deepEqual(growing.root, whole.root, `size ${n + 1} (ROBOMESH_SEED=${seed})`);
      for (let k = 0; k < 20; k++) {
        const i = Math.floor(random() * after.length);
        const proof = growing.prove(i);
        assert.ok(
          verifyInclusion(after[i], proof, growing.root),
          `leaf ${i} of ${after.length} (ROBOMESH_SEED=${seed})`,
        );
        // Seeded tampering: a flipped bit in the leaf, a sibling or the root, another position. (The
        // size is bound by the signed anchor entry that carries it, not by the root.)
        const bit = (b: Uint8Array): Uint8Array => {
          const c = Uint8Array.from(b);
          c[Math.floor(random() * c.length)] ^= 1 << Math.floor(random() * 8);
          return c;
        };
        assert.ok(!verifyInclusion(bit(after[i]), proof, growing.root), `tampered leaf (ROBOMESH_SEED=${seed})`);
        assert.ok(!verifyInclusion(after[i], proof, bit(growing.root)), `tampered root (ROBOMESH_SEED=${seed})`);
        if (proof.siblings.length) {
          const s = Math.floor(random() * proof.siblings.length);
          const siblings = proof.siblings.map((x, j) => (j === s ? bit(x) : x));
          assert.ok(
            !verifyInclusion(after[i], { ...proof, siblings }, growing.root),
            `tampered sibling (ROBOMESH_SEED=${seed})`,
          );
          assert.ok(
            !verifyInclusion(after[i], { ...proof, siblings: proof.siblings.slice(1) }, growing.root),
            `a sibling dropped (ROBOMESH_SEED=${seed})`,
          );
        }
        if (after.length > 1) {
          const other = (i + 1 + Math.floor(random() * (after.length - 1))) % after.length;
          assert.ok(
            !verifyInclusion(after[i], { ...proof, index: other }, growing.root),
            `moved (ROBOMESH_SEED=${seed})`,
          );
        }
      }
    }
  });

  it('refuses positions outside the tree, and has no root while empty', () => {
    const t = new GrowingMerkleTree();
    assert.throws(() => t.root, RangeError);
    assert.throws(() => t.replaceFrom(1, []), RangeError);
    t.append([new Uint8Array(32)]);
    assert.throws(() => t.prove(1), RangeError);
  });
});
