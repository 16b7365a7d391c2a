import assert from 'node:assert/strict';
import { lpStream } from '@libp2p/utils';
import { encodeAdvert } from '../../protocol/adverts.js';
import { signerFromSeed } from '../../protocol/ed25519.js';
import { INFER_PROTOCOL, MAX_MESSAGE_BYTES, decodeHeader, encodeHeader } from '../../protocol/infer-messages.js';
import type { Tensor } from '../../protocol/tensor-frame.js';
import { textLikeImage } from '../../nodes/inference/sample-images.js';
import { advertTopic } from '../../nodes/mesh/adverts.js';
import { InferError } from '../../nodes/mesh/infer-client.js';
import { fetchBlob } from '../../nodes/mesh/blob-fetch.js';
import type { Robot } from '../../nodes/robot/robot.js';
import { DETECTOR, startFleet, testIdentities } from '../helpers/fleet.js';
import { waitFor } from '../helpers/wait.js';

describe('mesh protocols (real libp2p on loopback)', function () {
  this.timeout(120_000);
  let robots: Robot[];
  let seeds: Uint8Array[];
  let model: string;

  before(async () => {
    const ids = await testIdentities(3, 60);
    seeds = ids.map((i) => i.seed);
    // r2 starts with no model: it has to fetch it.
    robots = await startFleet(ids, [DETECTOR], (i) => (i === 2 ? { models: [] } : {}));
    model = robots[0].models.hashes()[0];
  });
  after(async () => {
    await Promise.allSettled(robots.map((r) => r.stop()));
  });

  it('ships a frame above 4 MiB (a 640×640 input) in chunks and gets the same answer', async () => {
    const [a, b] = robots;
    const input: Tensor[] = [{ name: 'x', dtype: 'float32', dims: [1, 3, 640, 640], data: textLikeImage(640, 640, 4) }];
    assert.ok(input[0].data.byteLength > 4 * 1024 * 1024);
    const remote = await a.client.infer(
      b.peerId,
      { model, cut: 'input', precision: 'fp32', granularity: 'channel' },
      input,
      20_000,
    );
    const local = await a.models.runFrom(model, 'input', 'fp32', 'channel', input);
    assert.deepEqual(remote.outputs[0].dims, [1, 1, 640, 640]);
    const x = remote.outputs[0].data as Float32Array;
    const y = local[0].data as Float32Array;
    assert.ok(x.every((v, i) => Math.abs(v - y[i]) <= 1e-4));
    assert.ok(remote.sentBytes > 4 * 1024 * 1024);
  });

  it(
    'honours the deadline: a request that cannot finish ' + 'in time fails with DEADLINE, the peer keeps serving',
    async () => {
      const [a, b] = robots;
      const input: Tensor[] = [
        { name: 'x', dtype: 'float32', dims: [1, 3, 640, 640], data: textLikeImage(640, 640, 5) },
      ];
      await assert.rejects(
        a.client.infer(b.peerId, { model, cut: 'input', precision: 'fp32', granularity: 'channel' }, input, 2),
        (err: unknown) => err instanceof InferError && err.code === 'DEADLINE',
      );
      const ok = await a.client.infer(
        b.peerId,
        { model, cut: 'input', precision: 'fp32', granularity: 'channel' },
        input,
        20_000,
      );
      assert.equal(ok.outputs.length, 1);
    },
  );

  it('fetches a model by hash from a peer and verifies it', async () => {
    const [, b, c] = robots;
    assert.equal(c.models.has(model), false);
    await c.fetchModel(model, DETECTOR.inputShape);
    assert.equal(c.models.has(model), true);
    assert.ok(c.models.profile(model), 'profiled after fetching, so it can be advertised and planned');
    await assert.rejects(fetchBlob(c.host.node, b.peerId, 'ab'.repeat(32)), /does not hold/);
  });

  it('a reply for another request resets the stream and costs the replier reputation', async () => {
    const [a, b] = robots;
    await b.host.node.unhandle(INFER_PROTOCOL);
    await b.host.node.handle(INFER_PROTOCOL, async (stream) => {
      const lp = lpStream(stream, { maxDataLength: MAX_MESSAGE_BYTES, maxBufferSize: 8 * MAX_MESSAGE_BYTES });
      const req = decodeHeader((await lp.read()).subarray(), 1 << 30);
      if (req.t !== 'req') return;
      for (let i = 0; i < req.chunks; i++) await lp.read();
      await lp.write(encodeHeader({ t: 'res', id: 'someone-else', computeMs: 1, chunks: 0, bytes: 0 }));
    });
    a.client.forget(b.peerId); // pooled streams were opened under the honest handler
    const before = a.reputation.score(b.peerId);
    const input: Tensor[] = [{ name: 'x', dtype: 'float32', dims: [1, 3, 320, 320], data: textLikeImage(320, 320, 6) }];
    await assert.rejects(
      a.client.infer(b.peerId, { model, cut: 'input', precision: 'fp32', granularity: 'channel' }, input, 5000),
      (err: unknown) => err instanceof InferError && err.code === 'WRONG_REPLY',
    );
    assert.ok(a.reputation.score(b.peerId) < before);
    await b.host.node.unhandle(INFER_PROTOCOL);
    await b.service.start();
  });

  it('rejects malformed and forged adverts; gossipsub lowers the sender\u2019s score', async () => {
    const [a, b, c] = robots;
    const receivers = [a, c];
    const rejectedBefore = receivers.map((r) => r.adverts.rejected);
    const pubsub = b.host.node.services.pubsub;
    // getScore exists at run time but not on the GossipSub type (notes).
    const score = (r: Robot, of = b.peerId): number =>
      (r.host.node.services.pubsub as unknown as { getScore: (p: string) => number }).getScore(of);
    // Quiet topics must not cost honest robots their score (gossipsub's default delivery quota did).
    for (const r of robots)
      for (const o of robots) if (r !== o) assert.ok(score(r, o.peerId) >= 0, `honest score ${score(r, o.peerId)}`);
    await pubsub.publish(advertTopic('test'), new TextEncoder().encode('{"v":2,"robot":"nope"}'));
    // b signs an advert naming a: a valid advert in every field but its signer.
    await pubsub.publish(
      advertTopic('test'),
      encodeAdvert({ v: 2, robot: a.peerId, seq: 1e15, queue: 0, models: [] }, signerFromSeed(seeds[1])),
    );
    await waitFor(() => receivers.some((r, i) => r.adverts.rejected >= rejectedBefore[i] + 2), 'both adverts rejected');
    assert.ok(
      receivers.every((r) => r.adverts.get(a.peerId)?.seq !== 1e15),
      'a forged advert is never stored',
    );
    // Whoever got the junk straight from b (its mesh peers) penalises b; nobody relays it further.
    await waitFor(
      () => Math.min(...receivers.map((r) => score(r))) < 0,
      `b's gossip score to fall (now ${receivers.map((r) => score(r)).join(', ')})`,
    );
  });

  it('inspects decisions: each request emits its plan, alternatives and the measured outcome', async () => {
    const [a] = robots;
    const seen: unknown[] = [];
    a.scheduler.on('decision', (d) => seen.push(d));
    const input: Tensor[] = [{ name: 'x', dtype: 'float32', dims: [1, 3, 320, 320], data: textLikeImage(320, 320, 7) }];
    const out = await a.infer(model, input);
    assert.equal(seen.length, 1);
    assert.equal(seen[0], out.decision);
    assert.ok(out.decision.alternatives.some((p) => p.kind === 'local'));
    assert.ok(out.decision.alternatives.every((p, i, all) => i === 0 || all[i - 1].predictedMs <= p.predictedMs));
  });
});

describe('long partitions', function () {
  this.timeout(60_000);
  it('our redial loop brings a fleet peer back (libp2p\u2019s reconnect queue is off)', async () => {
    const robots = await startFleet(await testIdentities(2, 80), []);
    const [a, b] = robots;
    try {
      await a.host.partition([b.peerId]);
      await b.host.partition([a.peerId]);
      await waitFor(() => a.host.connectedPeers().length === 0 && b.host.connectedPeers().length === 0, 'the cut');
      const seqBefore = a.adverts.get(b.peerId)?.seq ?? 0;
      a.host.heal();
      b.host.heal();
      await waitFor(() => a.host.connectedPeers().includes(b.peerId), 'the redial loop to reconnect', 20_000);
      await waitFor(() => (a.adverts.get(b.peerId)?.seq ?? 0) > seqBefore, 'b\u2019s adverts reaching a again');
    } finally {
      await Promise.all(robots.map((r) => r.stop()));
    }
  });
  it('a robot cut off by a peer redials it at the redial loop\u2019s pace, not in a handshake loop', async () => {
    // The cut peer's handshakes succeed on its side and are refused after them on ours: libp2p's
    // reconnect queue took that for a dial that worked and went again at once (~30 a second).
    const robots = await startFleet(await testIdentities(2, 84), []);
    const [a, b] = robots;
    try {
      await a.host.partition([b.peerId]);
      await waitFor(() => !a.host.connectedPeers().includes(b.peerId), 'the cut');
      let opened = 0;
      const count = () => opened++;
      b.host.node.addEventListener('connection:open', count);
      const windowMs = 4000;
      await new Promise((resolve) => setTimeout(resolve, windowMs)); // a window to count in, not a wait for an event
      b.host.node.removeEventListener('connection:open', count);
      // One dial a second from b's redial loop, and a's refusals after each handshake.
      assert.ok(
        opened <= windowMs / 1000 + 2,
        `b opened ${opened} connections to a peer that refuses it in ${windowMs} ms`,
      );
      assert.ok(!a.host.connectedPeers().includes(b.peerId), 'the cut holds');
    } finally {
      await Promise.all(robots.map((r) => r.stop()));
    }
  });
});
