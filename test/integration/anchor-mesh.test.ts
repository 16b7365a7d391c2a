import assert from 'node:assert/strict';
import * as cbor from '@ipld/dag-cbor';
import { IotaClient } from '@iota/iota-sdk/client';
import { signerFromSeed } from '../../protocol/ed25519.js';
import { IotaAnchorChain } from '../../nodes/ledger/anchor-chain.js';
import { MemoryAnchorQueue } from '../../nodes/ledger/anchor-queue.js';
import { anchorRelayTopic } from '../../nodes/ledger/anchor-relay.js';
import { buildAnchorTx, iotaAddressOf } from '../../nodes/ledger/iota-tx.js';
import { MemoryLogStore } from '../../nodes/ledger/store.js';
import { RobotViewSource } from '../../nodes/apps/dashboard/index.js';
import type { Robot } from '../../nodes/robot/robot.js';
import { DEPLOYMENT, FakeIotaNode, robotSeed } from '../helpers/fake-iota.js';
import { startFleet, testGenesis, testIdentities } from '../helpers/fleet.js';
import { waitFor } from '../helpers/wait.js';

describe('anchor relay over real libp2p (2 robots, loopback)', function () {
  this.timeout(60_000);
  let robots: Robot[];
  let node: FakeIotaNode;

  before(async () => {
    const identities = await testIdentities(2, 130);
    const genesis = testGenesis(identities);
    node = new FakeIotaNode(DEPLOYMENT.packageId);
    const coin = node.fund(iotaAddressOf(signerFromSeed(identities[0].seed).publicKey));
    const chain = new IotaAnchorChain(new IotaClient({ transport: node.transport() }));
    robots = await startFleet(identities, [], (i) => ({
      ledger: { store: new MemoryLogStore(), genesis, antiEntropyMs: 1000 },
      // r0 has no IOTA node but knows its gas coin; r1 reaches a node. Periodic anchoring off: the test drives it.
      anchor:
        i === 0
          ? {
              deployment: DEPLOYMENT,
              queue: new MemoryAnchorQueue(),
              gas: { coin, price: 1000n, budget: 20_000_000n },
              everyMs: 3_600_000,
            }
          : { deployment: DEPLOYMENT, queue: new MemoryAnchorQueue(), chain, everyMs: 3_600_000 },
    }));
  });
  after(async () => {
    await Promise.allSettled(robots.map((r) => r.stop()));
  });

  it(
    'a robot without a node signs its anchor; a peer with ' + 'a node submits it; the receipt comes back in the log',
    async () => {
      const [a, b] = robots;
      for (let k = 0; k < 5; k++) a.ledger!.append({ type: 'claim', task: `relay-${k}` });
      await waitFor(() => b.ledger!.size === a.ledger!.size, "b to hold a's entries");
      const item = (await a.anchorer!.snapshot())!;
      assert.ok(item.signed, 'signed offline');
      await waitFor(() => b.anchorer!.queued.some((q) => q.root === item.root), 'the signed anchor to reach b');
      const report = await b.anchorer!.flush();
      assert.deepEqual(
        report.anchored.map((x) => x.tx),
        [item.signed.digest],
      );
      assert.equal(node.executed.get(item.signed.digest)!.sender, a.anchorer!.address, "on chain as a's transaction");
      await waitFor(
        () => a.ledger!.state.anchors.some((x) => x.root === item.root),
        'the receipt to replicate back to a',
      );
      await a.anchorer!.flush();
      assert.equal(a.anchorer!.queued.length, 0, 'a dropped its queued anchor once the receipt was in the log');
    },
  );

  it('an anchor the package aborts is shown on the robot\u2019s dashboard feed with its Move constant', async () => {
    const [a, b] = robots;
    const source = new RobotViewSource(b, { refreshMs: 60_000 });
    try {
      for (let k = 0; k < 3; k++) a.ledger!.append({ type: 'claim', task: `abort-${k}` });
      await waitFor(() => b.ledger!.size === a.ledger!.size, "b to hold a's entries");
      node.fund(b.anchorer!.address);
      assert.ok(await b.anchorer!.snapshot());
      node.faults.abortNext = { count: 1, code: 3 };
      const report = await b.anchorer!.flush();
      assert.equal(report.failed.length, 1);
      const line = source.current().log.find((l) => l.kind === 'anchor-failed');
      assert.ok(line, 'a feed line for the failed anchor');
      assert.match(line.detail, /ENotRegistered in ledger::anchor/);
      assert.equal(line.robot, b.name);
    } finally {
      source.close();
    }
  });

  it('a relayed transaction signed by a key outside the fleet is rejected by the gossip validator', async () => {
    const [a, b] = robots;
    const outsider = robotSeed(77);
    const fake = await buildAnchorTx(
      outsider,
      DEPLOYMENT,
      { coin: node.fund(iotaAddressOf(signerFromSeed(outsider).publicKey)), price: 1000n, budget: 1n },
      {
        root: new Uint8Array(32).fill(9),
        count: 3,
        firstLamport: 1,
        lastLamport: 2,
        results: [],
      },
    );
    const before = b.anchorRelay!.rejected;
    const queuedBefore = b.anchorer!.queued.length;
    const msg = {
      root: new Uint8Array(32).fill(9),
      count: 3,
      heads: ['a'.repeat(64)],
      first: 1,
      last: 2,
      results: [],
      tx: fake.bytes,
      sig: fake.signature,
    };
    await a.host.node.services.pubsub.publish(anchorRelayTopic('test'), cbor.encode(msg));
    await waitFor(() => b.anchorRelay!.rejected > before, "b to reject the outsider's anchor");
    assert.equal(b.anchorer!.queued.length, queuedBefore, 'nothing of the outsider queued');
  });
});
