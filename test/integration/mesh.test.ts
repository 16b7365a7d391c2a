import assert from 'node:assert/strict';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { lpStream } from '@libp2p/utils';
import { peerIdFromString } from '@libp2p/peer-id';
import { INFER_PROTOCOL, MAX_MESSAGE_BYTES, encodeHeader } from '../../protocol/infer-messages.js';
import type { Tensor } from '../../protocol/tensor-frame.js';
import { textLikeImage } from '../../nodes/inference/sample-images.js';
import { InferError } from '../../nodes/mesh/infer-client.js';
import { loadOrCreateIdentity } from '../../nodes/mesh/identity.js';
import { Robot } from '../../nodes/robot/robot.js';
import { DETECTOR, sharedCache, startFleet, testIdentities } from '../helpers/fleet.js';
import { waitFor } from '../helpers/wait.js';

const image = (seed: number): Tensor[] => [
  { name: 'x', dtype: 'float32', dims: [1, 3, 320, 320], data: textLikeImage(320, 320, seed) },
];
/** Share of pixels on the same side of the detector's 0.3 text threshold. */
const maskAgreement = (a: Tensor[], b: Tensor[]): number => {
  const x = a[0].data as Float32Array;
  const y = b[0].data as Float32Array;
  let same = 0;
  for (let i = 0; i < x.length; i++) if (x[i] > 0.3 === y[i] > 0.3) same++;
  return same / x.length;
};
const maxDiff = (a: Tensor[], b: Tensor[]): number => {
  const x = a[0].data as Float32Array;
  const y = b[0].data as Float32Array;
  assert.equal(x.length, y.length);
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i] - y[i]));
  return m;
};

describe('robot identity', () => {
  it('creates the key file once with mode 0600 and reuses it', async () => {
    const path = join(await sharedCache(), 'id-test', 'identity.key');
    const first = await loadOrCreateIdentity(path);
    assert.equal((await stat(path)).mode & 0o777, 0o600);
    const again = await loadOrCreateIdentity(path);
    assert.equal(again.peerId.toString(), first.peerId.toString());
  });
});

describe('robot mesh (3 robots, real libp2p on loopback, PaddleOCR detector)', function () {
  this.timeout(180_000);
  let robots: Robot[];
  let model: string;
  let local: Tensor[];
  const input = image(21);

  before(async () => {
    robots = await startFleet(await testIdentities(3, 40), [DETECTOR]);
    model = robots[0].models.hashes()[0];
    local = (await robots[0].infer(model, input, { force: { kind: 'local' } })).outputs;
  });
  after(async () => {
    await Promise.allSettled(robots.map((r) => r.stop()));
  });

  it('split inference across peers returns what a local run returns', async () => {
    const [a, b, c] = robots;
    const cuts = a.models.get(model).analysis.cuts;
    for (const [k, cut] of [cuts[0], cuts[Math.floor(cuts.length / 2)], cuts[cuts.length - 1]].entries()) {
      const peer = [b, c][k % 2].peerId;
      const out = await a.infer(model, input, { force: { kind: 'split', cut: cut.id, precision: 'fp32', peer } });
      assert.equal(out.decision.executor, peer, 'the tail ran on the peer');
      assert.ok(maxDiff(local, out.outputs) <= 1e-4, `cut ${cut.id}`);
    }
    const offload = await a.infer(model, input, { force: { kind: 'offload', peer: c.peerId } });
    assert.equal(offload.decision.executor, c.peerId);
    assert.ok(maxDiff(local, offload.outputs) <= 1e-4);
    // The scheduler's own choice, whatever it is, gives the same answer and says what it predicted.
    const chosen = await a.infer(model, input);
    assert.ok(maskAgreement(local, chosen.outputs) >= 0.99, JSON.stringify(chosen.decision.plan));
    assert.ok(chosen.decision.plan.predictedMs > 0 && chosen.decision.actualMs > 0);
    assert.ok(chosen.decision.alternatives.length > 3);
  });

  it('learns link bandwidth from real transfers', () => {
    const link = robots[0].links.get(robots[1].peerId);
    assert.ok(link.samples > 0, 'a transfer was recorded');
    assert.ok(link.bandwidth > 1000, `loopback measured at only ${link.bandwidth} bytes/ms`);
  });

  it('a fp16 split on either peer agrees with the whole model run here', async () => {
    const [a, b, c] = robots;
    const cut = a.models.get(model).analysis.cuts[2].id;
    for (const peer of [b, c]) {
      // The executor builds this cut's tail session on first use, which the stall budget (from
      // profiled run times) does not cover on a loaded machine: that first request may fall back.
      const force = { kind: 'split' as const, cut, precision: 'fp16' as const, peer: peer.peerId };
      await a.infer(model, input, { force });
      const out = await a.infer(model, input, { force });
      assert.equal(out.decision.executor, peer.peerId);
      assert.ok(maskAgreement(local, out.outputs) >= 0.999);
    }
  });

  it('a stranger\u2019s key cannot connect or run anything', async () => {
    const [stranger] = await testIdentities(1, 90);
    const members = [...robots.map((r) => r.peerId), stranger.peerId.toString()];
    const s = await Robot.start({
      name: 'stranger',
      identity: stranger,
      fleet: { name: 'test', members, bootstrap: robots[0].host.addresses() },
      models: [],
      cacheDir: await sharedCache(),
      dataDir: join(await sharedCache(), 'stranger'),
      probeIntervalMs: 0,
    });
    try {
      // The fleet refuses the connection right after the handshake proves the key, before any
      // protocol: whatever the stranger's dial saw, no protocol stream opens and nothing stays up.
      await assert.rejects(
        s.host.node.dialProtocol(peerIdFromString(robots[0].peerId), INFER_PROTOCOL, {
          signal: AbortSignal.timeout(5000),
        }),
      );
      await assert.rejects(
        s.client.infer(
          robots[1].peerId,
          { model, cut: 'input', precision: 'fp32', granularity: 'channel' },
          input,
          3000,
        ),
        InferError,
      );
      for (const r of robots) {
        assert.ok(!r.host.node.getConnections().some((c) => c.remotePeer.toString() === stranger.peerId.toString()));
        assert.ok(!r.adverts.get(stranger.peerId.toString()), 'no advert from the stranger reached the fleet');
      }
    } finally {
      await s.stop();
    }
  });

  it('malformed requests reset the stream and cost reputation; the robot keeps serving', async () => {
    const [a, b] = robots;
    const before = b.reputation.score(a.peerId);
    const stream = await a.host.node.dialProtocol(peerIdFromString(b.peerId), INFER_PROTOCOL);
    const lp = lpStream(stream, { maxDataLength: MAX_MESSAGE_BYTES });
    await lp.write(
      encodeHeader({
        t: 'req',
        id: 'bad1',
        model,
        cut: 'input',
        precision: 'fp32',
        granularity: 'channel',
        budgetMs: 1000,
        chunks: 1,
        bytes: 40,
      }),
    );
    await lp.write(Uint8Array.of(2, ...new Uint8Array(40).fill(7)));
    // The robot may answer BAD_FRAME or just cut the stream; both are right.
    const reply = await lp.read({ signal: AbortSignal.timeout(5000) }).catch(() => undefined);
    if (reply) assert.match(new TextDecoder().decode(reply.subarray(1)), /BAD_FRAME/);
    await waitFor(() => b.reputation.score(a.peerId) < before, 'the sender penalised');
    const out = await a.infer(model, input, { force: { kind: 'offload', peer: b.peerId } });
    assert.equal(out.decision.executor, b.peerId);
  });

  it('a partition via the gater and its heal: peers come back and serve', async () => {
    const [a, b] = robots;
    await a.host.partition([b.peerId]);
    await b.host.partition([a.peerId]);
    await waitFor(() => !a.host.connectedPeers().includes(b.peerId), 'the partition');
    const during = await a.infer(model, input);
    assert.notEqual(during.decision.executor, b.peerId, 'a partitioned peer is not used');
    a.host.heal();
    b.host.heal();
    await waitFor(() => a.host.connectedPeers().includes(b.peerId), 'reconnection after heal', 20_000);
    await waitFor(() => a.scheduler.plans(model, input).some((p) => p.peer === b.peerId), 'b advertising again');
    const after = await a.infer(model, input, { force: { kind: 'offload', peer: b.peerId } });
    assert.equal(after.decision.executor, b.peerId);
    assert.ok(maxDiff(local, after.outputs) <= 1e-4);
  });

  it('after a failed offload, a stand-by peer slower than running here is skipped: the request runs here', async () => {
    const [a, b, c] = robots;
    // a's link to c reads 0.1 Mbit/s: shipping the input there takes longer than the whole model here.
    a.links.recordTransfer(c.peerId, 100_000, 8000);
    let first = true;
    b.service.tamper = (_r, out) => {
      if (!first) return out;
      first = false;
      return out.slice().fill(0xab, 0, 16);
    };
    try {
      const out = await a.infer(model, input, { force: { kind: 'offload', peer: b.peerId } });
      assert.equal(out.decision.executor, a.peerId);
      assert.deepEqual(
        out.decision.failovers.map((f) => f.peer),
        [b.peerId],
        'c was not tried',
      );
      assert.ok(maxDiff(local, out.outputs) <= 1e-4);
    } finally {
      b.service.tamper = undefined;
      a.reputation.forgive(b.peerId);
    }
  });

  it('a Byzantine peer sending garbage is isolated; requests still complete and others are unaffected', async () => {
    const [a, b, c] = robots;
    c.service.tamper = (_r, out) => {
      const junk = out.slice();
      junk.fill(0xab, 0, 16);
      return junk;
    };
    for (let i = 0; i < 3 && !a.reputation.isIsolated(c.peerId); i++) {
      const out = await a.infer(model, input, { force: { kind: 'offload', peer: c.peerId } });
      assert.notEqual(out.decision.executor, c.peerId, 'garbage is never accepted as a result');
      assert.ok(out.decision.failovers.some((f) => f.peer === c.peerId));
      assert.ok(maxDiff(local, out.outputs) <= 1e-4, 'the request completed correctly elsewhere');
    }
    assert.ok(a.reputation.isIsolated(c.peerId), `c isolated (score ${a.reputation.score(c.peerId)})`);
    await waitFor(() => !a.host.connectedPeers().includes(c.peerId), 'c cut off');
    const fromB = await a.infer(model, input, { force: { kind: 'offload', peer: b.peerId } });
    assert.equal(fromB.decision.executor, b.peerId, 'honest peers still serve');
    assert.ok(!a.scheduler.plans(model, input).some((p) => p.peer === c.peerId), 'the liar is no longer planned for');
  });

  it('the executing peer killed mid-request: the request still completes', async () => {
    const [a, b] = robots;
    b.service.once('request', () => void b.stop());
    const out = await a.infer(model, input, { force: { kind: 'offload', peer: b.peerId }, deadlineMs: 10_000 });
    assert.equal(out.decision.executor, a.peerId);
    assert.ok(out.decision.failovers.some((f) => f.peer === b.peerId));
    assert.ok(maxDiff(local, out.outputs) <= 1e-4);
  });
});
