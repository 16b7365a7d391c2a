import assert from 'node:assert/strict';
import { MemoryLogStore } from '../../nodes/ledger/store.js';
import type { Robot } from '../../nodes/robot/robot.js';
import { startFleet, testGenesis, testIdentities } from '../helpers/fleet.js';
import { waitFor } from '../helpers/wait.js';

/** The replicator's background sync, reached from outside for this test only. */
const background = (r: Robot) => r.replicator as unknown as { syncInBackground(peer: string): void };

describe('log sync after a failed background sync (real libp2p)', function () {
  this.timeout(60_000);
  let robots: Robot[];

  before(async () => {
    const identities = await testIdentities(2, 190);
    const genesis = testGenesis(identities);
    robots = await startFleet(identities, [], () => ({
      // No anti-entropy round within the test: only triggered syncs can catch a robot up.
      ledger: { store: new MemoryLogStore(), genesis, antiEntropyMs: 3_600_000 },
    }));
  });
  after(() => Promise.allSettled(robots.map((r) => r.stop())));

  it('a trigger during the hold-off after a failure becomes one retry when it ends', async () => {
    const [a, b] = robots;
    await a.host.partition([b.peerId]);
    await b.host.partition([a.peerId]);
    await waitFor(() => !a.host.connectedPeers().includes(b.peerId), 'the partition');
    for (let i = 0; i < 20; i++) b.ledger!.append({ type: 'claim', task: `while-apart-${i}` });
    const want = b.ledger!.size;
    background(a).syncInBackground(b.peerId); // fails: the gater refuses the dial
    await waitFor(
      () => (a.replicator as unknown as { failedAt: Map<string, number> }).failedAt.has(b.peerId),
      'the failed sync',
    );
    a.host.heal();
    b.host.heal();
    // A trigger inside the hold-off (as gossip with missing parents or a reconnect would be).
    background(a).syncInBackground(b.peerId);
    await waitFor(() => a.ledger!.size >= want, 'a caught up without an anti-entropy round', 10_000);
    assert.equal(a.ledger!.size, want);
  });
});
