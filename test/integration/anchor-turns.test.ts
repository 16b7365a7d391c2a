import assert from 'node:assert/strict';
import { IotaClient } from '@iota/iota-sdk/client';
import { signerFromSeed } from '../../protocol/ed25519.js';
import { IotaAnchorChain } from '../../nodes/ledger/anchor-chain.js';
import { MemoryAnchorQueue } from '../../nodes/ledger/anchor-queue.js';
import { Anchorer } from '../../nodes/ledger/anchorer.js';
import { type Payload, decodeEntry } from '../../protocol/log-entry.js';
import { anchorRank, anchorTurnNow } from '../../nodes/ledger/anchor-turns.js';
import { iotaAddressOf } from '../../nodes/ledger/iota-tx.js';
import { MemoryLogStore } from '../../nodes/ledger/store.js';
import type { Robot } from '../../nodes/robot/robot.js';
import { DEPLOYMENT, FakeIotaNode, robotLedger, robotSeed } from '../helpers/fake-iota.js';
import { startFleet, testGenesis, testIdentities } from '../helpers/fleet.js';
import { waitFor } from '../helpers/wait.js';

describe('anchoring in turns: every robot with a node may anchor, one anchor per period', function () {
  this.timeout(90_000);
  let robots: Robot[] = [];
  after(async () => {
    await Promise.allSettled(robots.map((r) => r.stop()));
  });

  it('ranks members per period the same way everywhere; a slot passes before the next steps in', () => {
    const members = ['aa', 'bb', 'cc', 'dd'];
    for (let period = 0; period < 50; period++) {
      const ranks = members.map((m) => anchorRank(members, m, period)).sort();
      assert.deepEqual(ranks, [0, 1, 2, 3]);
      assert.equal(anchorRank([...members].reverse(), members[0], period), anchorRank(members, members[0], period));
    }
    const firsts = new Set(Array.from({ length: 40 }, (_, p) => members.find((m) => anchorRank(members, m, p) === 0)));
    assert.ok(firsts.size >= 3, 'the first turn moves around the fleet');
    assert.equal(anchorRank(members, 'zz', 1), 4, 'not a member: last');
    const self = members.find((m) => anchorRank(members, m, 10) === 2)!;
    const at = (now: number, lastAnchorAt = 0) =>
      anchorTurnNow({ members, self, now, everyMs: 1000, slotMs: 100, lastAnchorAt });
    assert.equal(at(10_150), false, 'third in turn: not before two slots have passed');
    assert.equal(at(10_250), true);
    assert.equal(at(10_300), false, 'past its slot: the next one’s turn');
    assert.equal(at(10_250, 10_050), false, 'an anchor came in this period: nothing to do');
    assert.equal(at(10_250, 9_990), true, "last period's anchor does not count");
  });

  it('a made-up anchor entry takes nobody’s turn; a genuine one ends the period’s turns', async () => {
    const ledger = robotLedger();
    let clock = 1_000_000;
    const node = new FakeIotaNode(DEPLOYMENT.packageId);
    node.fund(iotaAddressOf(signerFromSeed(robotSeed(0)).publicKey));
    const anchorer = new Anchorer({
      ledger,
      seed: robotSeed(0),
      deployment: DEPLOYMENT,
      queue: new MemoryAnchorQueue(),
      chain: new IotaAnchorChain(new IotaClient({ transport: node.transport() })),
      finalityTimeoutMs: 2000,
      now: () => clock,
    });
    try {
      const real = (await anchorer.snapshot())!;
      await anchorer.flush();
      await anchorer.anchorsChecked();
      const counted = anchorer.lastAnchorAt;
      assert.ok(counted > 0, 'the genuine anchor counted');
      const genuine = ledger.state.anchors[0];
      const entry = decodeEntry(ledger.get(genuine.id)!).entry.payload as Extract<Payload, { type: 'anchor' }>;
      clock += 60_000;
      // A member writes anchors it never paid for: garbage bytes, and a real transaction for another root.
      ledger.append({ ...entry, root: 'ab'.repeat(32), tx: 'made-up' });
      ledger.append({ ...entry, txBytes: Uint8Array.of(1, 2, 3), tx: 'garbage' });
      await anchorer.anchorsChecked();
      assert.equal(anchorer.lastAnchorAt, counted, 'made-up anchors moved nothing');
      assert.equal(real.root, genuine.root);
    } finally {
      anchorer.close();
    }
  });

  it('three robots anchoring every 3 s: anchors from more than one robot, none twice, each covering more', async () => {
    const identities = await testIdentities(3, 250);
    const genesis = testGenesis(identities);
    const node = new FakeIotaNode(DEPLOYMENT.packageId);
    for (const i of identities) node.fund(iotaAddressOf(signerFromSeed(i.seed).publicKey));
    const chain = new IotaAnchorChain(new IotaClient({ transport: node.transport() }));
    const t0 = Date.now();
    robots = await startFleet(identities, [], () => ({
      ledger: { store: new MemoryLogStore(), genesis, antiEntropyMs: 1000 },
      anchor: { deployment: DEPLOYMENT, queue: new MemoryAnchorQueue(), chain, everyMs: 3000 },
    }));
    let k = 0;
    const writer = setInterval(() => robots[k % 3].ledger!.append({ type: 'claim', task: `turn-${k++}` }), 100);
    try {
      await waitFor(() => robots[0].ledger!.state.anchors.length >= 6, '6 anchors', 40_000, 100);
    } finally {
      clearInterval(writer);
    }
    const periods = Math.ceil((Date.now() - t0) / 3000) + 1;
    const anchors = robots[0].ledger!.state.anchors;
    assert.equal(new Set(anchors.map((a) => a.root)).size, anchors.length, 'no root anchored twice');
    assert.ok(anchors.length <= periods + 1, `${anchors.length} anchors in ${periods} periods`);
    const authors = new Set(anchors.map((a) => a.author));
    assert.ok(authors.size >= 2, `anchored by ${authors.size} robot(s)`);
    const executed = [...node.executed.values()];
    assert.equal(executed.length, anchors.length, 'one transaction per anchor: nothing paid twice');
  });
});
