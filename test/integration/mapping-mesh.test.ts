import assert from 'node:assert/strict';
import { MemoryLogStore } from '../../nodes/ledger/store.js';
import { mapDigest } from '../../nodes/mapping/merged-map.js';
import { ScanMatchingLocalizer } from '../../nodes/mapping/scan-matcher.js';
import type { Robot } from '../../nodes/robot/robot.js';
import { WorldSimulator, defaultRobots, floorPlan } from '../../nodes/apps/sim/index.js';
import { startFleet, testGenesis, testIdentities } from '../helpers/fleet.js';
import { waitFor } from '../helpers/wait.js';

describe('collaborative mapping over real libp2p (4 robots, loopback): partition and heal', function () {
  this.timeout(120_000);
  let robots: Robot[];

  before(async () => {
    const identities = await testIdentities(4, 140);
    const genesis = testGenesis(identities);
    const plan = floorPlan('builtin:small');
    robots = await startFleet(identities, [], () => ({
      ledger: { store: new MemoryLogStore(), genesis, antiEntropyMs: 1000 },
      mapping: { frame: { resolution: plan.world.resolution, origin: plan.world.origin }, syncMs: 500 },
    }));
  });
  after(async () => {
    await Promise.allSettled(robots.map((r) => r.stop()));
  });

  it(
    'both sides keep mapping while partitioned; after the heal ' +
      'every robot holds every contribution and the same merged map',
    async () => {
      const plan = floorPlan('builtin:small');
      const sim = new WorldSimulator({
        world: plan.world,
        robots: defaultRobots(plan, 4),
        seed: 5,
        scanEvery: 5,
        maxTime: 90,
      });
      const localizers = plan.starts.slice(0, 4).map((s) => new ScanMatchingLocalizer(s));
      const [a, b, c, d] = robots;
      let lastPublish = 0;
      let partitioned = false;
      let healed = false;
      while (!sim.done) {
        for (const [i, s] of sim.step().entries()) {
          if (s.scan) robots[i].map!.insert(localizers[i].update(s.odomPose, s.scan, robots[i].map!.grid), s.scan);
        }
        if (sim.time - lastPublish < 5 && !sim.done) continue;
        lastPublish = sim.time;
        for (const r of robots) r.map!.publish();
        if (!partitioned && sim.time >= 30) {
          partitioned = true;
          await a.host.partition([c.peerId, d.peerId]);
          await b.host.partition([c.peerId, d.peerId]);
          await c.host.partition([a.peerId, b.peerId]);
          await d.host.partition([a.peerId, b.peerId]);
          await waitFor(
            () => a.host.connectedPeers().length === 1 && c.host.connectedPeers().length === 1,
            'the partition',
          );
        }
        if (!healed && sim.time >= 60) {
          healed = true;
          assert.notEqual(mapDigest(a.map!.merged()), mapDigest(c.map!.merged()), 'the two sides mapped apart');
          for (const r of robots) r.host.heal();
        }
      }
      const converged = (): boolean => {
        const digests = new Set(robots.map((r) => mapDigest(r.map!.merged())));
        return (
          digests.size === 1 &&
          robots.every((r) => r.map!.missing().length === 0) &&
          new Set(robots.map((r) => r.ledger!.stateHash())).size === 1
        );
      };
      const healedAt = Date.now();
      await waitFor(converged, 'every robot to hold the same merged map', 60_000);
      console.log(
        `      converged ${Date.now() - healedAt} ms after the last publish; ` +
          `${robots[0].ledger!.state.tiles.size} (tile, robot) contributions`,
      );
      const contributions = robots[0].map!.contributions().length;
      assert.equal(contributions, robots[0].ledger!.state.tiles.size, 'cells held for every logged contribution');
      assert.deepEqual(robots[0].ledger!.state.flagged, []);
      assert.ok(robots.every((r) => r.mapSync!.rejected === 0));
      assert.ok(
        robots.some((r) => r.mapSync!.pulled > 0),
        'contributions gossiped during the partition were pulled after it',
      );
    },
  );
});
