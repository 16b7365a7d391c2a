import assert from 'node:assert/strict';
import { lpStream } from '@libp2p/utils';
import { peerIdFromString } from '@libp2p/peer-id';
import type { Ping } from '@libp2p/ping';
import { type MeshHost, createMeshHost } from '../../nodes/mesh/host.js';
import { LinkShaper } from '../../nodes/mesh/link-shaper.js';
import { testIdentities } from '../helpers/fleet.js';
import { waitFor } from '../helpers/wait.js';

const PROTOCOL = '/robomesh-test/bulk/1.0.0';
const BYTES = 300_000;
const RATE = 250_000; // 2 Mbit/s
const DELAY_MS = 40;

/** Sends BYTES to `to` and waits for its one-byte acknowledgement; returns the milliseconds taken. */
async function transfer(from: MeshHost, to: MeshHost): Promise<number> {
  const started = performance.now();
  const stream = await from.node.dialProtocol(peerIdFromString(to.peerId), PROTOCOL, {
    signal: AbortSignal.timeout(20_000),
  });
  const lp = lpStream(stream);
  const payload = new Uint8Array(BYTES).map((_, i) => i % 251);
  await lp.write(payload, { signal: AbortSignal.timeout(20_000) });
  const ack = await lp.read({ signal: AbortSignal.timeout(20_000) });
  assert.equal(ack.subarray()[0], 1, 'the receiver got every byte intact');
  await stream.close();
  return performance.now() - started;
}

describe('link shaping (two robots, real libp2p on loopback)', function () {
  this.timeout(60_000);
  let hosts: MeshHost[];
  const shapers = [new LinkShaper(), new LinkShaper()];

  before(async () => {
    const ids = await testIdentities(2, 90);
    const members = ids.map((i) => i.peerId.toString());
    const a = await createMeshHost({ identity: ids[0], fleetName: 'shape', members, linkShaper: shapers[0] });
    const b = await createMeshHost({
      identity: ids[1],
      fleetName: 'shape',
      members,
      linkShaper: shapers[1],
      bootstrap: a.addresses().map((x) => (x.includes('/p2p/') ? x : `${x}/p2p/${a.peerId}`)),
    });
    hosts = [a, b];
    for (const h of hosts) {
      await h.node.handle(PROTOCOL, async (stream) => {
        const lp = lpStream(stream, { maxDataLength: 2 * BYTES });
        const got = (await lp.read({ signal: AbortSignal.timeout(20_000) })).subarray();
        const intact = got.length === BYTES && got.every((v, i) => v === i % 251);
        await lp.write(Uint8Array.of(intact ? 1 : 0));
      });
    }
    await waitFor(() => a.connectedPeers().includes(b.peerId), 'b dials a');
  });
  after(async () => {
    await Promise.all(hosts.map((h) => h.stop()));
  });

  it('paces and delays both directions of a link, the inbound side included', async () => {
    const [a, b] = hosts;
    const unshapedMs = await transfer(a, b);
    shapers[0].set(b.peerId, { bytesPerSecond: RATE, delayMs: DELAY_MS });
    shapers[1].set(a.peerId, { bytesPerSecond: RATE, delayMs: DELAY_MS });
    // Whatever the machine's load, a shaped link can never be faster than its rate and delay.
    const floorMs = (BYTES / RATE) * 1000 + 2 * DELAY_MS;
    const aToB = await transfer(a, b); // a accepted b's dial: a's side of the connection is inbound
    const bToA = await transfer(b, a);
    assert.ok(
      aToB >= floorMs * 0.97,
      `a→b took ${aToB.toFixed(0)} ms, the shaped link allows no less ` +
        `than ${floorMs} ms (unshaped ${unshapedMs.toFixed(0)} ms)`,
    );
    assert.ok(
      bToA >= floorMs * 0.97,
      `b→a took ${bToA.toFixed(0)} ms, the shaped link allows no less than ${floorMs} ms`,
    );
    const rtt = await (a.node.services.ping as Ping).ping(peerIdFromString(b.peerId), {
      signal: AbortSignal.timeout(10_000),
    });
    assert.ok(rtt >= 2 * DELAY_MS * 0.97, `ping ${rtt} ms over a link delayed ${DELAY_MS} ms each way`);
    assert.deepEqual([...shapers[0].shaped().keys()], [b.peerId]);
  });

  it('lifting the shaping releases what waits and leaves the connection working', async () => {
    const [a, b] = hosts;
    shapers[0].set(b.peerId, { bytesPerSecond: 20_000, delayMs: 0 }); // 300 KB would take 15 s
    const pending = transfer(a, b);
    await waitFor(() => shapers[0].backlog() > 0, 'bytes waiting on the slow link');
    shapers[0].set(b.peerId, null);
    shapers[1].clear();
    await pending; // intact (asserted inside) once the shaping is gone
    assert.equal(shapers[0].shaped().size + shapers[1].shaped().size, 0);
    assert.ok(a.connectedPeers().includes(b.peerId));
  });
});
