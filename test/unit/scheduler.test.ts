import assert from 'node:assert/strict';
import { AdvertError, decodeAdvert, encodeAdvert } from '../../protocol/adverts.js';
import { signerFromSeed } from '../../protocol/ed25519.js';
import { InferProtocolError, decodeHeader, encodeHeader } from '../../protocol/infer-messages.js';
import { ComputeLoad, readSchedstat } from '../../nodes/inference/compute-load.js';
import { LinkEstimator } from '../../nodes/scheduler/links.js';
import { type PlanInput, rankPlans } from '../../nodes/scheduler/planner.js';

const base = (over: Partial<PlanInput> = {}): PlanInput => ({
  localWholeMs: 300,
  localQueue: 0,
  inputBytes: 4_000_000,
  outputBytes: 40_000,
  cuts: [
    { id: 'early', bytes: { fp32: 8_000_000, fp16: 4_000_000, int8: 2_000_000 }, headMs: 5 },
    { id: 'mid', bytes: { fp32: 400_000, fp16: 200_000, int8: 100_000 }, headMs: 30 },
  ],
  peers: [{ peer: 'p', bandwidth: 1000, rttMs: 5, queue: 0, wholeMs: 20, tailMs: { early: 19, mid: 14 } }],
  precisions: ['fp32', 'fp16', 'int8'],
  ...over,
});

describe('planner', () => {
  it('keeps work local when the link is slow', () => {
    const best = rankPlans(base({ peers: [{ ...base().peers[0], bandwidth: 10 }] }))[0];
    assert.equal(best.kind, 'local');
  });
  it('offloads everything over a very fast link to a much faster peer', () => {
    const best = rankPlans(base({ peers: [{ ...base().peers[0], bandwidth: 1_000_000 }] }))[0];
    assert.equal(best.kind, 'offload');
  });
  it('splits at the small cut, at int8, over a medium link', () => {
    const [best] = rankPlans(base());
    assert.deepEqual([best.kind, best.cut, best.precision], ['split', 'mid', 'int8']);
    // 30 head + 100000 B / 1000 B/ms + 40000/1000 back + 5 rtt + 14 tail
    assert.equal(best.predictedMs, 30 + 100 + 40 + 5 + 14);
  });
  it('avoids a peer with a long queue', () => {
    const busy = { ...base().peers[0], peer: 'busy', queue: 50 };
    const ranked = rankPlans(base({ peers: [busy] }));
    assert.equal(ranked[0].kind, 'local');
  });
  it('ranks every (cut, peer, precision) plus local and offload, fastest first', () => {
    const ranked = rankPlans(base());
    assert.equal(ranked.length, 1 + 1 + 2 * 3);
    for (let i = 1; i < ranked.length; i++) assert.ok(ranked[i - 1].predictedMs <= ranked[i].predictedMs);
  });
});

describe('link estimator', () => {
  it('averages bandwidth over transfers (EWMA) and ignores tiny ones', () => {
    const links = new LinkEstimator(1000, 0.5, 0.5);
    links.recordTransfer('p', 100, 1);
    assert.equal(links.get('p').samples, 0);
    links.recordTransfer('p', 1_000_000, 100);
    assert.equal(links.get('p').bandwidth, 10_000);
    links.recordTransfer('p', 1_000_000, 250);
    assert.equal(links.get('p').bandwidth, 7_000);
    links.recordRtt('p', 4);
    assert.equal(links.get('p').rttMs, 1 + 0.5 * (4 - 1));
    assert.deepEqual(links.dueForProbe(['p', 'q']), ['q']);
  });
  it('an RTT sample does not make an old bandwidth figure fresh; probes are sized to the link', () => {
    const links = new LinkEstimator(1000, 0.5, 0.5);
    links.recordTransfer('p', 1_000_000, 4000, 0); // 250 B/ms: a 2 Mbit/s radio link
    // The connection monitor's RTT arrives every second; the bandwidth was measured only at 0.
    for (let t = 1000; t <= 20_000; t += 1000) links.recordRtt('p', 40, t);
    assert.deepEqual(links.dueForProbe(['p'], 20_000), ['p']);
    assert.equal(links.get('p').updatedAt, 20_000);
    assert.equal(links.probeBytes('p'), 25_000, '100 ms of 2 Mbit/s');
    links.recordTransfer('p', 100_000_000, 100, 21_000);
    links.recordTransfer('p', 100_000_000, 100, 22_000);
    assert.deepEqual(links.dueForProbe(['p'], 22_000), []);
    assert.equal(links.probeBytes('p'), 256 * 1024, 'never more than 256 KiB');
    assert.equal(new LinkEstimator(10).probeBytes('q'), 16 * 1024, 'never less than 16 KiB');
  });
  it("a probe's wire time is its payload's less its own round trip; steady links are probed less often", () => {
    const links = new LinkEstimator(1000, 0.3, 0.7);
    // The connection monitor's ping waited behind a busy event loop: 33 ms on a 4 ms path.
    links.recordRtt('p', 33, 0);
    // 16 KiB at 5 Mbit/s (625 B/ms) is 26 ms on the wire, plus the 4 ms round trip.
    links.recordProbe('p', 16_384, { rttMs: 4, ms: 4 + 16_384 / 625 }, 100);
    assert.ok(Math.abs(links.get('p').bandwidth / 625 - 1) < 1e-9, String(links.get('p').bandwidth));
    assert.equal(links.get('p').minRttMs, 4);
    links.recordRtt('p', 33, 1000); // the monitor again: ignored while probes give round trips
    assert.equal(links.get('p').rttMs, 4);
    links.recordRtt('p', 33, 20_000); // no probe for 20 s: the monitor counts again
    assert.ok(links.get('p').rttMs > 4);
    // A stall in the short exchange would read the wire time as nothing: never under a quarter.
    const fresh = new LinkEstimator();
    fresh.recordProbe('q', 16_384, { rttMs: 30, ms: 31 }, 0);
    assert.equal(fresh.get('q').bandwidth, 16_384 / (31 / 4));
    // Each agreeing probe doubles the link's probe age, up to 1.5 s; a disagreeing one resets it.
    const ages: number[] = [];
    for (let t = 1000; t <= 4000; t += 1000) {
      links.recordProbe('p', 16_384, { rttMs: 4, ms: 4 + 16_384 / 625 }, t);
      ages.push(links.probeAgeMs('p'));
    }
    assert.deepEqual(ages, [1000, 1500, 1500, 1500]);
    assert.deepEqual(links.dueForProbe(['p'], 5400), []);
    assert.deepEqual(links.dueForProbe(['p'], 5600), ['p']);
    links.recordProbe('p', 16_384, { rttMs: 4, ms: 4 + 16_384 / 2500 }, 5600); // 20 Mbit/s: a step
    assert.equal(links.probeAgeMs('p'), 500);
    // The confirming probe is sized for the rate the step read: 50 ms of 20 Mbit/s.
    assert.equal(links.probeBytes('p', 50), 50 * 2500);
  });
  it('learns a link that got slower faster than one that got faster', () => {
    const links = new LinkEstimator(1000, 0.3, 0.7);
    links.recordTransfer('p', 1_000_000, 10); // 100,000 B/ms
    links.recordTransfer('p', 1_000_000, 20); // a little slower: the EWMA, weighted for a drop
    assert.equal(links.get('p').bandwidth, 100_000 + 0.7 * (50_000 - 100_000));
    const before = links.get('p').bandwidth;
    links.recordTransfer('p', 1_000_000, 10); // a little faster again: weighted less
    assert.equal(links.get('p').bandwidth, before + 0.3 * (100_000 - before));
  });
  it('a step of the link is learnt in one sample down, two samples up; one stray sample up is not', () => {
    const links = new LinkEstimator(1000, 0.3, 0.7);
    links.recordTransfer('p', 1_250_000, 100); // 12,500 B/ms: 100 Mbit/s
    links.recordTransfer('p', 625_000, 1000); // 625 B/ms: the link stepped to 5 Mbit/s
    assert.equal(links.get('p').bandwidth, 625, 'a drop below a quarter replaces the estimate');
    links.recordTransfer('p', 1_200_000, 100); // one fast sample: half-way in an EWMA, no more
    assert.equal(links.get('p').bandwidth, 625 + 0.3 * (12_000 - 625));
    links.recordTransfer('p', 50_000, 80); // back to 625 B/ms: the stray sample is forgotten
    const settled = links.get('p').bandwidth;
    links.recordTransfer('p', 1_200_000, 100); // the link is back at 100 Mbit/s: two samples say so
    links.recordTransfer('p', 1_300_000, 100);
    assert.equal(links.get('p').bandwidth, Math.sqrt(12_000 * 13_000));
    assert.ok(settled < 4000);
  });
});

describe('compute load', () => {
  it('is (ran + waited to run) ÷ ran over the latest busy intervals; idle or old intervals do not count', () => {
    let totals = { run: 0, wait: 0 };
    const load = new ComputeLoad(5, 10_000, 5e6, () => totals);
    const interval = (runMs: number, waitMs: number, at: number): boolean => {
      totals = { run: totals.run + runMs * 1e6, wait: totals.wait + waitMs * 1e6 };
      return load.sample(at);
    };
    assert.equal(load.sample(0), false, 'the first reading only starts an interval');
    assert.equal(load.slowdown(0), 1, 'nothing measured: unloaded');
    assert.equal(interval(2, 50, 1000), false, 'ran 2 ms: too idle to tell (a calibration follows)');
    assert.equal(load.slowdown(1000), 1);
    for (const [run, wait, at] of [
      [100, 0, 2000],
      [100, 200, 3000], // another process took two thirds of the CPU
      [100, 200, 4000],
      [100, 4900, 5000], // one freak interval does not move the median
      [100, 190, 6000],
    ])
      assert.equal(interval(run, wait, at), true);
    assert.equal(load.slowdown(6000), 3);
    assert.equal(load.slowdown(20_000), 1, 'ten seconds without a reading: nothing is known of now');
    assert.equal(new ComputeLoad(5, 10_000, 5e6, () => undefined).sample(), true, 'no schedstat: nothing to do');
  });
  it('reads this process’s threads from Linux schedstat', function () {
    const first = readSchedstat();
    if (!first) return this.skip(); // not Linux
    const until = performance.now() + 30;
    while (performance.now() < until); // 30 ms on the CPU
    const second = readSchedstat()!;
    assert.ok(second.run - first.run >= 20e6, `${(second.run - first.run) / 1e6} ms ran`);
  });
});

describe('capability adverts', () => {
  const signer = signerFromSeed(new Uint8Array(32).fill(5));
  const other = signerFromSeed(new Uint8Array(32).fill(6));
  const robot = '12D3KooWSbmRDNRBMeufFMWpC9wwPrZVjVTLKuX2vhmn17NeZ828';
  const keyOf = (r: string): Uint8Array | undefined => (r === robot ? signer.publicKey : undefined);
  const good = {
    v: 2 as const,
    robot,
    seq: 3,
    queue: 1,
    models: [{ hash: 'a'.repeat(64), wholeMs: 12.5, tailMs: { c1: 3 } }],
  };
  it('round-trips, signed by the robot it names, with or without a slowdown', () => {
    assert.deepEqual(decodeAdvert(encodeAdvert(good, signer), keyOf), good);
    const loaded = { ...good, slowdown: 2.5 };
    assert.deepEqual(decodeAdvert(encodeAdvert(loaded, signer), keyOf), loaded);
  });
  it('rejects forged adverts: another key, an unknown robot, a changed byte', () => {
    const forged = (bytes: Uint8Array, keys = keyOf): void => {
      assert.throws(
        () => decodeAdvert(bytes, keys),
        (e: unknown) => e instanceof AdvertError && e.code === 'FORGED',
      );
    };
    forged(encodeAdvert(good, other));
    forged(encodeAdvert(good, signer), () => undefined);
    const bytes = encodeAdvert(good, signer);
    bytes[bytes.length - 3] ^= 1; // inside the JSON, still valid JSON: the queue or a time changes
    assert.throws(() => decodeAdvert(bytes, keyOf), AdvertError);
    const sig = encodeAdvert(good, signer);
    sig[5] ^= 1;
    forged(sig);
  });
  it('rejects malformed adverts with AdvertError', () => {
    const bad: unknown[] = [
      'not json',
      { ...good, v: 1 },
      { ...good, robot: 'x' },
      { ...good, seq: -1 },
      { ...good, queue: 1.5 },
      { ...good, models: 'x' },
      { ...good, models: [{ ...good.models[0], hash: 'zz' }] },
      { ...good, models: [{ ...good.models[0], wholeMs: -1 }] },
      { ...good, models: [{ ...good.models[0], tailMs: { 'bad id!': 1 } }] },
      { ...good, models: [{ ...good.models[0], tailMs: { c1: Number.MAX_VALUE } }] },
      { ...good, models: Array.from({ length: 33 }, () => good.models[0]) },
      { ...good, slowdown: 0 },
      { ...good, slowdown: 1e9 },
      { ...good, slowdown: '2' },
    ];
    for (const b of bad) {
      const json = new TextEncoder().encode(typeof b === 'string' ? b : JSON.stringify(b));
      const bytes = new Uint8Array(64 + json.length);
      bytes.set(json, 64);
      assert.throws(
        () => decodeAdvert(bytes, keyOf),
        (e: unknown) => e instanceof AdvertError && e.code === 'MALFORMED',
        JSON.stringify(b).slice(0, 80),
      );
    }
    assert.throws(() => decodeAdvert(new Uint8Array(70_000), keyOf), AdvertError);
    assert.throws(() => decodeAdvert(new Uint8Array(10), keyOf), AdvertError);
  });
});

describe('infer protocol headers', () => {
  const req = {
    t: 'req' as const,
    id: 'r1',
    model: 'b'.repeat(64),
    cut: 'c3',
    precision: 'int8' as const,
    granularity: 'channel' as const,
    budgetMs: 500,
    chunks: 3,
    bytes: 2_500_000,
  };
  it('round-trips a request', () => {
    assert.deepEqual(decodeHeader(encodeHeader(req), 1 << 28), req);
  });
  it('rejects bad headers with InferProtocolError', () => {
    const bad = [
      { ...req, chunks: 2 },
      { ...req, bytes: 1 << 29 },
      { ...req, model: 'x' },
      { ...req, precision: 'int4' },
      { ...req, budgetMs: 0 },
      { ...req, id: '../../etc' },
      { ...req, t: 'hello' },
    ];
    for (const b of bad)
      assert.throws(() => decodeHeader(encodeHeader(b as typeof req), 1 << 28), InferProtocolError, JSON.stringify(b));
    assert.throws(() => decodeHeader(Uint8Array.of(2, 1, 2), 100), InferProtocolError);
    assert.throws(() => decodeHeader(Uint8Array.of(1, 0xff, 0xfe), 100), InferProtocolError);
  });
});
