import assert from 'node:assert/strict';
import { signerFromSeed } from '../../protocol/ed25519.js';
import { toHex } from '../../protocol/log-entry.js';
import { MerkleTree } from '../../protocol/merkle.js';
import { fromHex } from '../../protocol/bytes.js';
import { MemoryAnchorQueue } from '../../nodes/ledger/anchor-queue.js';
import { AnchorTree } from '../../nodes/ledger/anchor-tree.js';
import { Anchorer } from '../../nodes/ledger/anchorer.js';
import { Ledger } from '../../nodes/ledger/ledger.js';
import { MemoryLogStore } from '../../nodes/ledger/store.js';
import { prng } from '../../nodes/util/prng.js';
import { DEPLOYMENT, robotSeed } from '../helpers/fake-iota.js';
import { testSeed, withSeed } from '../helpers/seed.js';

/** The root anchors committed before the tree was kept: the whole log, hashed at once. */
const wholeRoot = (ledger: Ledger): string => toHex(new MerkleTree(ledger.ancestry(ledger.heads()).map(fromHex)).root);

describe('anchor tree kept between anchors', () => {
  it('has the root of the whole log after appends and late entries from a partitioned member (seeded)', async () => {
    const seed = testSeed();
    await withSeed(seed, async () => {
      const random = prng(seed);
      const a = new Ledger(new MemoryLogStore(), signerFromSeed(robotSeed(0)));
      const b = new Ledger(new MemoryLogStore(), signerFromSeed(robotSeed(1)));
      a.append({ type: 'genesis', fleet: 'tree', members: [a.self!, b.self!], admins: [a.self!] });
      b.ingestBatch(a.ids().map((id) => a.get(id)!));
      const tree = new AnchorTree(a);
      const anchorer = new Anchorer({
        ledger: a,
        seed: robotSeed(0),
        deployment: DEPLOYMENT,
        queue: new MemoryAnchorQueue(),
      });
      let sent = 0;
      let late = 0;
      for (let round = 0; round < 40; round++) {
        // a writes on; b, cut off, writes with the lamports it had; now and then b's entries arrive.
        for (let k = Math.floor(random() * 30); k > 0; k--) a.append({ type: 'claim', task: `a-${round}-${k}` });
        for (let k = Math.floor(random() * 5); k > 0; k--) b.append({ type: 'claim', task: `b-${round}-${k}` });
        if (random() < 0.3) {
          const mine = b.ids().filter((id) => !a.has(id));
          late += mine.filter((id) => b.lamportOf(id)! < Math.max(...a.ids().map((x) => a.lamportOf(x)!))).length;
          a.ingestBatch(mine.map((id) => b.get(id)!));
          sent += mine.length;
        }
        const t = tree.update()!;
        assert.equal(toHex(t.root), wholeRoot(a), `round ${round}`);
        assert.equal(t.count, a.ancestry(a.heads()).length);
        const item = await anchorer.snapshot();
        if (item) assert.equal(item.root, wholeRoot(a), `the anchorer's root, round ${round}`);
      }
      assert.ok(sent > 0 && late > 0, `late entries from b reached a (${late} of ${sent})`);
      tree.close();
      anchorer.close();
    });
  });
});
