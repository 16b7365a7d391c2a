import assert from 'node:assert/strict';
import { signerFromSeed } from '../../protocol/ed25519.js';
import { toHex } from '../../protocol/log-entry.js';
import { signGenesis } from '../../nodes/ledger/genesis.js';
import { MemoryLogStore } from '../../nodes/ledger/store.js';
import type { RobotIdentity } from '../../nodes/mesh/identity.js';
import { Robot } from '../../nodes/robot/robot.js';
import { sharedCache, testIdentities } from '../helpers/fleet.js';
import { waitFor } from '../helpers/wait.js';

const keyOf = (i: RobotIdentity): string => toHex(signerFromSeed(i.seed).publicKey);

describe('who may connect follows the log (real libp2p): admit lets a robot in, revoke cuts one off', function () {
  this.timeout(120_000);
  const robots: Robot[] = [];
  after(async () => {
    await Promise.allSettled(robots.map((r) => r.stop()));
  });

  it('a robot outside the genesis is refused until admitted; a revoked one is hung up on and refused', async () => {
    const ids = await testIdentities(3, 230);
    const peers = ids.map((i) => i.peerId.toString());
    // r0 is the admin; the genesis admits r0 and r1 only.
    const genesis = signGenesis('members', [keyOf(ids[1])], signerFromSeed(ids[0].seed));
    const cache = await sharedCache();
    const start = async (k: number, bootstrap: string[]): Promise<Robot> => {
      const robot = await Robot.start({
        name: `m${k}`,
        identity: ids[k],
        dataDir: `${cache}/membership-m${k}`,
        // r2 believes itself a member: only the others' logs decide whether it is.
        fleet: { name: 'members', members: peers, bootstrap },
        models: [],
        probeIntervalMs: 0,
        ledger: { store: new MemoryLogStore(), genesis, antiEntropyMs: 3_600_000 },
      });
      robots.push(robot);
      return robot;
    };
    const r0 = await start(0, []);
    const r1 = await start(1, r0.host.addresses());
    const r2 = await start(2, [...r0.host.addresses(), ...r1.host.addresses()]);
    const linked = (a: Robot, b: Robot): boolean => a.host.connectedPeers().includes(b.peerId);
    await waitFor(() => linked(r0, r1) && linked(r1, r0), 'r0 and r1 connected');
    assert.ok(!r0.host.gater.isMember(peers[2]) && !r1.host.gater.isMember(peers[2]));

    // r2 dials both every second and is refused: three rounds of it, never let in.
    for (let k = 0; k < 30; k++) {
      assert.ok(!linked(r0, r2) && !linked(r1, r2), 'a robot the log does not admit got in');
      await new Promise((r) => setTimeout(r, 100));
    }

    // The admin admits r2: both let it in once they hold the entry (r1 by gossip), and r2 learns it.
    r0.ledger!.append({ type: 'admit', member: keyOf(ids[2]) });
    await waitFor(
      () => linked(r2, r0) && linked(r2, r1) && linked(r0, r2) && linked(r1, r2),
      'r2 connected to both',
      20_000,
    );
    await waitFor(() => r2.ledger!.state.members.has(keyOf(ids[2])), 'r2 holds its own admission');

    // The admin revokes r1: r0 and r2 hang up on it, and carry on between themselves.
    const revoke = r0.ledger!.append({ type: 'revoke', member: keyOf(ids[1]) });
    await waitFor(
      () => !linked(r0, r1) && !linked(r2, r1) && r1.host.connectedPeers().length === 0,
      'r1 cut off',
    ).catch((err) => {
      const m = (r: Robot) => r.host.gater.memberList().length;
      throw new Error(
        `${(err as Error).message}: r0→r1 ${linked(r0, r1)} r2→r1 ${linked(r2, r1)} ` +
          `r1 sees ${r1.host.connectedPeers().length}; members r0 ${m(r0)} r1 ${m(r1)} r2 ${m(r2)}; ` +
          `r2 has revoke ${r2.ledger!.has(revoke.idHex)}, sizes ${[r0, r1, r2].map((r) => r.ledger!.size)} ` +
          `parents ${revoke.entry.parents.map((p) => [r0, r1, r2].map((r) => r.ledger!.has(toHex(p))).join('/'))}`,
      );
    });
    for (let k = 0; k < 20; k++) {
      assert.ok(!linked(r0, r1) && !linked(r2, r1), 'r1 got back in after its revocation');
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(linked(r0, r2));
    const entry = r0.ledger!.append({ type: 'admit', member: keyOf(ids[2]) });
    await waitFor(() => r2.ledger!.has(entry.idHex), 'r0 and r2 still replicate');
    assert.ok(!r1.ledger!.has(entry.idHex), 'nothing reaches the revoked robot');
  });
});
