import assert from 'node:assert/strict';
import { once } from 'node:events';
import { type AddressInfo, Socket, connect, createServer } from 'node:net';
import type { MessageStream } from '@libp2p/interface';
import { peerIdFromString } from '@libp2p/peer-id';
import type { Ping } from '@libp2p/ping';
import { corkWrites } from '../../nodes/mesh/corked-writes.js';
import { createMeshHost } from '../../nodes/mesh/host.js';
import { testIdentities } from '../helpers/fleet.js';
import { waitFor } from '../helpers/wait.js';

/** Stands in for @libp2p/tcp's connection: a socket, and a sendData writing each buffer on its own. */
function tcpLikeConnection(socket: Socket): {
  socket: Socket;
  sendData: (data: Uint8Array[] & { byteLength: number }) => { sentBytes: number; canSendMore: boolean };
} {
  return {
    socket,
    sendData(data) {
      let canSendMore = true;
      for (const buf of data) canSendMore = socket.write(buf);
      return { sentBytes: data.byteLength, canSendMore };
    },
  };
}

const frames = (n: number): (Uint8Array[] & { byteLength: number })[] =>
  Array.from({ length: n }, (_, i) => {
    const list = [Uint8Array.of(0, 8), new Uint8Array(8).fill(i & 0xff)] as Uint8Array[] & { byteLength: number };
    list.byteLength = 10;
    return list;
  });

describe('corked writes (a real TCP socket on loopback)', () => {
  it("turns one tick's writes into one system call, every byte arriving in order", async () => {
    const server = createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const accepted = once(server, 'connection');
    const client = connect((server.address() as AddressInfo).port, '127.0.0.1');
    await once(client, 'connect');
    const [peer] = (await accepted) as [Socket];
    try {
      const received: Buffer[] = [];
      let got = 0;
      peer.on('data', (b: Buffer) => {
        received.push(b);
        got += b.length;
      });
      const connection = tcpLikeConnection(client);
      // What reaches the kernel: one call per _write, one per _writev (a batch).
      const calls = { write: 0, writev: 0 };
      const sock = client as unknown as { _write: (...a: unknown[]) => void; _writev: (...a: unknown[]) => void };
      const write = sock._write.bind(client);
      const writev = sock._writev.bind(client);
      sock._write = (...a) => (calls.write++, write(...a));
      sock._writev = (...a) => (calls.writev++, writev(...a));

      assert.equal(corkWrites(connection as unknown as MessageStream), true);
      const sent = frames(100);
      for (const f of sent) connection.sendData(f);
      assert.equal(calls.write + calls.writev, 0, 'nothing is written before the tick ends');
      await new Promise((r) => process.nextTick(r));
      assert.equal(
        calls.write + calls.writev,
        1,
        `one write for 200 buffers (write ${calls.write}, writev ${calls.writev})`,
      );

      // The next tick corks again: its writes are batched as well.
      for (const f of frames(10)) connection.sendData(f);
      await new Promise((r) => process.nextTick(r));
      assert.equal(calls.write + calls.writev, 2);

      const deadline = Date.now() + 5000;
      while (got < 1100 && Date.now() < deadline) await once(peer, 'data');
      const bytes = Buffer.concat(received);
      assert.equal(bytes.length, 1100);
      const expected = Buffer.concat([...sent, ...frames(10)].flatMap((f) => f.map((b) => Buffer.from(b))));
      assert.deepEqual(bytes, expected);
    } finally {
      client.destroy();
      peer.destroy();
      server.close();
    }
  });

  it('leaves anything that is not a TCP connection as it is', () => {
    const sendData = (): { sentBytes: number; canSendMore: boolean } => ({ sentBytes: 0, canSendMore: true });
    const other = { socket: {}, sendData };
    assert.equal(corkWrites(other as unknown as MessageStream), false);
    assert.equal(other.sendData, sendData);
    assert.equal(corkWrites({} as MessageStream), false);
  });

  it("is wired into the robots' libp2p connections (real hosts on loopback)", async function () {
    this.timeout(30_000);
    const ids = await testIdentities(2, 95);
    const members = ids.map((i) => i.peerId.toString());
    const a = await createMeshHost({ identity: ids[0], fleetName: 'cork', members });
    const b = await createMeshHost({
      identity: ids[1],
      fleetName: 'cork',
      members,
      bootstrap: a.addresses().map((x) => (x.includes('/p2p/') ? x : `${x}/p2p/${a.peerId}`)),
    });
    const cork = Socket.prototype.cork;
    let corks = 0;
    Socket.prototype.cork = function (this: Socket) {
      corks++;
      return cork.call(this);
    };
    try {
      await waitFor(() => a.connectedPeers().length === 1, 'the two hosts to connect', 10_000);
      const rtt = await (b.node.services as unknown as { ping: Ping }).ping.ping(peerIdFromString(a.peerId), {
        signal: AbortSignal.timeout(5000),
      });
      assert.ok(rtt >= 0);
      assert.ok(corks > 0, 'the ping went out through corked sockets');
    } finally {
      Socket.prototype.cork = cork;
      await Promise.all([a.stop(), b.stop()]);
    }
  });
});
