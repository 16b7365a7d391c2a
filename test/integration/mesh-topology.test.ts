import assert from 'node:assert/strict';
import { FleetGater } from '../../nodes/mesh/gater.js';
import { type MeshHost, createMeshHost } from '../../nodes/mesh/host.js';
import { testIdentities } from '../helpers/fleet.js';
import { waitFor } from '../helpers/wait.js';

/** Members reachable from `from` over `edges`, staying inside `group`. */
function reach(from: string, group: Set<string>, edges: (m: string) => Iterable<string>): Set<string> {
  const seen = new Set([from]);
  const todo = [from];
  while (todo.length) {
    for (const n of edges(todo.pop()!)) {
      if (group.has(n) && !seen.has(n)) {
        seen.add(n);
        todo.push(n);
      }
    }
  }
  return seen;
}

describe('bounded mesh topology (ring neighbours and chords)', function () {
  this.timeout(120_000);

  it('neighbour sets are symmetric, about `degree` each, and connected inside any partition group', async () => {
    const members = (await testIdentities(50, 300)).map((i) => i.peerId.toString());
    const gaters = new Map(members.map((m) => [m, new FleetGater(members, m)]));
    const sets = new Map(members.map((m) => [m, gaters.get(m)!.neighbours(6)]));
    for (const [m, set] of sets) for (const n of set) assert.ok(sets.get(n)!.has(m), 'a link both ends agree on');
    const mean = [...sets.values()].reduce((a, s) => a + s.size, 0) / members.length;
    assert.ok(mean >= 4 && mean <= 8, `mean degree ${mean}`);
    assert.ok([...sets.values()].every((s) => s.size >= 2));
    // Random splits into two or three groups: each group's own links keep it connected.
    let seed = 7;
    const rand = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (let trial = 0; trial < 20; trial++) {
      const k = 2 + (trial % 2);
      const groupOf = new Map(members.map((m) => [m, Math.floor(rand() * k)]));
      for (let g = 0; g < k; g++) {
        const group = new Set(members.filter((m) => groupOf.get(m) === g));
        if (group.size < 2) continue;
        for (const m of members) gaters.get(m)!.heal();
        for (const m of group) gaters.get(m)!.partition(members.filter((x) => !group.has(x)));
        const first = [...group][0];
        const reached = reach(first, group, (m) => gaters.get(m)!.neighbours(6));
        assert.equal(reached.size, group.size, `group ${g} of split ${trial} stays connected`);
      }
    }
  });

  describe('over real libp2p (14 robots on loopback, degree 4)', () => {
    const hosts: MeshHost[] = [];
    let members: string[];

    before(async () => {
      const ids = await testIdentities(14, 400);
      members = ids.map((i) => i.peerId.toString());
      // Started one after another, each knowing where the earlier ones are (as the fleet does).
      for (const identity of ids) {
        const bootstrap = hosts.flatMap((h) => h.addresses());
        hosts.push(await createMeshHost({ identity, fleetName: 'topo', members, bootstrap, degree: 4, redialMs: 200 }));
      }
    });
    after(async () => {
      await Promise.allSettled(hosts.map((h) => h.stop()));
    });

    const byId = (): Map<string, MeshHost> => new Map(hosts.map((h) => [h.peerId, h]));
    const neighboursConnected = (): boolean =>
      hosts.every((h) => [...h.gater.neighbours(4)].every((n) => h.connectedPeers().includes(n)));

    it('each robot connects to its neighbours only (not to every member it knows)', async () => {
      await waitFor(neighboursConnected, 'every robot connected to its ring neighbours and chords', 60_000);
      const total = hosts.reduce((a, h) => a + h.connectedPeers().length, 0) / 2;
      assert.ok(total < (14 * 13) / 2 / 2, `${total} connections, a full mesh has ${(14 * 13) / 2}`);
      for (const h of hosts)
        for (const p of h.connectedPeers())
          assert.ok(h.gater.neighbours(4).has(p) || byId().get(p)!.gater.neighbours(4).has(h.peerId));
      assert.equal(reach(members[0], new Set(members), (m) => byId().get(m)!.connectedPeers()).size, 14);
    });

    it('a partition leaves each side connected by its own ring; the heal brings every neighbour back', async () => {
      const a = new Set(members.filter((_, i) => i % 3 === 0));
      const b = members.filter((m) => !a.has(m));
      await Promise.all(hosts.map((h) => h.partition(a.has(h.peerId) ? b : [...a])));
      const connectedInside = (group: Set<string>): boolean =>
        reach([...group][0], group, (m) => byId().get(m)!.connectedPeers()).size === group.size;
      await waitFor(() => connectedInside(a) && connectedInside(new Set(b)), 'both sides connected inside', 60_000);
      assert.ok(
        hosts.every((h) => h.connectedPeers().every((p) => a.has(p) === a.has(h.peerId))),
        'nothing crosses the partition',
      );
      for (const h of hosts) h.heal();
      await waitFor(neighboursConnected, 'every neighbour back after the heal', 60_000);
    });

    it('heal() dials healed peers itself and never starts a second redial loop', async () => {
      // A member that never answers: the redial loop keeps trying it, once a round.
      const [ghost] = await testIdentities(1, 499);
      const id = (await testIdentities(1, 498))[0];
      const ghostId = ghost.peerId.toString();
      const host = await createMeshHost({
        identity: id,
        fleetName: 'topo',
        members: [id.peerId.toString(), ghostId],
        redialMs: 200,
      });
      try {
        await host.addPeerAddresses(ghostId, [`/ip4/127.0.0.1/tcp/9/p2p/${ghostId}`]);
        let dials = 0;
        const dial = host.node.dial.bind(host.node);
        host.node.dial = ((...args: Parameters<typeof dial>) => {
          dials++;
          return dial(...args);
        }) as typeof dial;
        for (let i = 0; i < 20; i++) host.heal();
        // Give every loop that could exist time for several rounds, then count a window of them.
        await new Promise((r) => setTimeout(r, 1000));
        dials = 0;
        await new Promise((r) => setTimeout(r, 2000));
        // One loop: ~10 rounds in 2 s (fewer while a dial waits); twenty loops would be ~200.
        assert.ok(dials <= 15, `${dials} dials in 2 s`);
      } finally {
        await host.stop();
      }
    });
  });
});
