import { createInterface } from 'node:readline';
import { peerIdFromString } from '@libp2p/peer-id';
import { multiaddr } from '@multiformats/multiaddr';
import { createMeshHost } from '../../nodes/mesh/host.js';
import { identityFromSeed } from '../../nodes/mesh/identity.js';

/**
 * A mesh host with mDNS on and no bootstrap list, for test/mdns.test.ts (run inside a network
 * namespace). argv: seed (hex), members (comma-separated PeerIds), listen multiaddr.
 * Prints one line per event: `ready|discovered|connected|dial|connect|conns <json>`; reads
 * commands on stdin: `dial <peer>` (ask for a protocol stream), `connect <multiaddr>` (a new
 * connection, hung up at once), `conns` (every open connection), `quit`.
 */
const [seed, members, listen] = process.argv.slice(2);
const out = (tag: string, value: unknown): void => void process.stdout.write(`${tag} ${JSON.stringify(value)}\n`);

const host = await createMeshHost({
  identity: await identityFromSeed(Buffer.from(seed, 'hex')),
  fleetName: 'mdns-test',
  members: members.split(','),
  listen: [listen],
  mdns: true,
  redialMs: 250,
});
const { node } = host;
node.addEventListener('peer:discovery', (evt) =>
  out('discovered', { peer: evt.detail.id.toString(), addrs: evt.detail.multiaddrs.map(String) }),
);
node.addEventListener('peer:connect', (evt) => out('connected', { peer: evt.detail.toString() }));
out('ready', { peerId: host.peerId, addrs: host.addresses() });

let quitting = false;
const quit = async (): Promise<void> => {
  if (quitting) return;
  quitting = true;
  await host.stop().catch(() => undefined); // exiting either way: the parent sees the exit
  process.exit(0);
};
process.on('SIGTERM', () => void quit());
for await (const line of createInterface({ input: process.stdin })) {
  const [cmd, arg] = line.split(' ');
  if (cmd === 'dial') {
    try {
      const stream = await node.dialProtocol(peerIdFromString(arg), '/ipfs/ping/1.0.0', {
        signal: AbortSignal.timeout(5000),
      });
      stream.abort(new Error('only a probe'));
      out('dial', { peer: arg, ok: true });
    } catch (err) {
      // Stream helpers reject with the 'close' Event itself when the remote hangs up mid-negotiation.
      out('dial', {
        peer: arg,
        ok: false,
        error: err instanceof Error ? err.message : `stream ${(err as Event).type}`,
      });
    }
  } else if (cmd === 'connect') {
    // A fresh connection to an address, then hung up: one member dial, timed.
    const t0 = performance.now();
    try {
      const conn = await node.dial(multiaddr(arg), { signal: AbortSignal.timeout(5000) });
      await node.hangUp(conn.remotePeer);
      out('connect', { ok: true, ms: performance.now() - t0 });
    } catch (err) {
      out('connect', { ok: false, error: (err as Error).message, ms: performance.now() - t0 });
    }
  } else if (cmd === 'conns') {
    out('conns', { peers: node.getConnections().map((c) => c.remotePeer.toString()) });
  } else if (cmd === 'quit') {
    break;
  }
}
await quit();
