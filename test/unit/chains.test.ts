import assert from 'node:assert/strict';
import { type ChainManifest, decodeChainManifest, encodeChainManifest } from '../../protocol/chain-manifest.js';
import type { Cut } from '../../nodes/inference/cuts.js';
import type { ModelAnalysis } from '../../nodes/inference/split.js';
import { planChainCuts } from '../../nodes/inference/stages.js';
import { BoundedQueue } from '../../nodes/scheduler/bounded-queue.js';
import { ChainRunner } from '../../nodes/scheduler/chain.js';
import type { ModelRegistry } from '../../nodes/inference/index.js';
import type { InferClient, PeerCapability, PeerReputation, WorkQueue } from '../../nodes/mesh/index.js';
import type { Tensor } from '../../protocol/tensor-frame.js';

const hash = (c: string) => c.repeat(64);
const manifest = (): ChainManifest => ({
  v: 1,
  model: hash('a'),
  inputShapes: { x: [1, 3, 8, 8] },
  stages: [
    {
      hash: hash('b'),
      from: 'input',
      to: 'c1',
      inPrecision: 'fp32',
      outPrecision: 'int8',
      weightBytes: 10,
      share: 0.5,
      outBytes: 4,
    },
    {
      hash: hash('c'),
      from: 'c1',
      to: 'output',
      inPrecision: 'int8',
      outPrecision: 'fp32',
      weightBytes: 10,
      share: 0.5,
      outBytes: 0,
    },
  ],
});

describe('chain manifests', () => {
  it('round-trip', () => {
    assert.deepEqual(decodeChainManifest(encodeChainManifest(manifest())), manifest());
  });

  it('refuse stages that do not join up, bad hashes and oversized input, naming the fault', () => {
    const cases: [string, (m: ChainManifest) => unknown, RegExp][] = [
      ['gap', (m) => (m.stages[1].from = 'c2'), /stage 2 does not start where/],
      ['precision', (m) => (m.stages[1].inPrecision = 'fp16'), /stage 2 does not start where/],
      ['end', (m) => (m.stages[1].to = 'c9'), /does not end at the output/],
      ['hash', (m) => (m.stages[0].hash = 'xyz'), /stage 1: hash/],
      ['shape', (m) => (m.inputShapes.x = [1, -3]), /input 'x'/],
      ['none', (m) => (m.stages = []), /stages is not a list/],
      ['share', (m) => (m.stages[0].share = 2), /share/],
    ];
    for (const [name, spoil, message] of cases) {
      const m = manifest();
      spoil(m);
      assert.throws(() => decodeChainManifest(JSON.stringify(m)), { code: 'BAD_MANIFEST', message }, name);
    }
    assert.throws(() => decodeChainManifest('{'), { code: 'BAD_MANIFEST', message: /not JSON/ });
    assert.throws(() => decodeChainManifest(' '.repeat(70_000)), { code: 'BAD_MANIFEST', message: /larger/ });
  });
});

describe('planning chain cuts', () => {
  const cut = (id: string, headShare: number, tensors: string[], bytes: number): Cut => ({
    id,
    headShare,
    tensors: tensors.map((name) => ({ name, dtype: 'float32', shape: [1] })),
    bytes: { fp32: bytes, fp16: bytes / 2, int8: bytes / 4 },
  });
  const analysis = (cuts: Cut[]) => ({ cuts }) as unknown as ModelAnalysis;
  const cuts = [
    cut('c1', 0.2, ['a'], 4000),
    cut('c2', 0.33, ['b', 'skip'], 8000),
    cut('c3', 0.4, ['c'], 1000),
    cut('c4', 0.66, ['d', 'skip'], 8000),
    cut('c5', 0.7, ['e'], 1000),
  ];

  it('balance the stages, never joining cuts that carry the same tensor', () => {
    // c2 → c4 would balance best but both carry 'skip'.
    assert.deepEqual(
      planChainCuts(analysis(cuts), { stages: 3, precision: 'fp32' }).map((c) => c.id),
      ['c2', 'c5'],
    );
    assert.throws(() => planChainCuts(analysis(cuts), { stages: 3, precision: 'fp32', cuts: ['c2', 'c4'] }), {
      code: 'BAD_CHAIN',
      message: /carry the same tensor/,
    });
    assert.throws(() => planChainCuts(analysis(cuts), { stages: 3, precision: 'fp32', cuts: ['c4', 'c2'] }), {
      message: /does not come after/,
    });
    assert.throws(() => planChainCuts(analysis(cuts), { stages: 7, precision: 'fp32' }), { code: 'BAD_CHAIN' });
    assert.throws(() => planChainCuts(analysis(cuts), { stages: 1, precision: 'fp32' }), { code: 'BAD_CHAIN' });
  });

  it('weigh boundaries as pipeline stages when a link rate is given, and measured times over FLOPs', () => {
    // At 10 kB/s the 8 kB boundaries (800 ms) are the bottleneck; 1 kB ones win though less balanced.
    const slow = { stages: 3, precision: 'fp32' as const, wholeMs: 1000, bytesPerSecond: 10_000 };
    assert.deepEqual(
      planChainCuts(analysis(cuts), slow).map((c) => c.id),
      ['c3', 'c5'],
    );
    // Measured: the first 20 % of FLOPs take half the time.
    const headMs = { c1: 500, c2: 600, c3: 650, c4: 800, c5: 850 };
    assert.deepEqual(
      planChainCuts(analysis(cuts), { stages: 2, precision: 'fp32', wholeMs: 1000, headMs }).map((c) => c.id),
      ['c1'],
    );
  });
});

describe('BoundedQueue', () => {
  it('hands items over in order, holds a putter back while full, and drops the oldest on offer', async () => {
    const q = new BoundedQueue<number>(2);
    await q.put(1);
    await q.put(2);
    let third = false;
    const putting = q.put(3).then(() => (third = true));
    await Promise.resolve();
    assert.equal(third, false);
    assert.equal(await q.take(), 1);
    await putting;
    assert.equal(q.length, 2);
    assert.equal(q.offerDroppingOldest(4), 2);
    assert.deepEqual([await q.take(), await q.take()], [3, 4]);
    const waiting = q.take();
    q.offerDroppingOldest(5);
    assert.equal(await waiting, 5);
    q.close();
    assert.equal(await q.take(), undefined);
    assert.throws(() => new BoundedQueue(0), RangeError);
  });
});

describe('chain streams', () => {
  it('a frame that fails at a stage does not stop the frames behind it; every frame gets one fate', async () => {
    // Stage 2 has no holder for frames 0–1 and 5–9 (a partition), then one again. The stream's
    // ordering is under test here; test/integration/chains.test.ts runs real robots.
    // Three stages; outputs are checked against the manifest, and this one names none.
    const two = manifest().stages.map((st) => ({ ...st, outputs: undefined }));
    const m: ChainManifest = { ...manifest(), stages: [two[0], { ...two[0], hash: hash('d') }, two[1]] };
    let held = false;
    const frame: Tensor[] = [{ name: 'x', dtype: 'float32', dims: [1], data: new Float32Array(1) }];
    const advert = (robot: string, hashes: string[]) =>
      ({ robot, models: hashes.map((h) => ({ hash: h, wholeMs: 1 })), queue: 0 }) as unknown as PeerCapability;
    const runner = new ChainRunner({
      self: 'me',
      models: { has: () => false, profile: () => undefined } as unknown as ModelRegistry,
      queue: { length: 0 } as unknown as WorkQueue,
      client: {
        infer: async () => ({ outputs: frame, sentBytes: 4 }),
      } as unknown as InferClient,
      peers: () => [
        advert('A', [m.stages[0].hash, m.stages[2].hash]),
        ...(held ? [advert('B', [m.stages[1].hash])] : []),
      ],
      reputation: { penalise: () => undefined } as unknown as PeerReputation,
    });
    const stream = runner.open(m, { maxQueue: 2 });
    const fates: string[] = [];
    for (let i = 0; i < 16; i++) {
      held = !((i >= 0 && i < 2) || (i >= 5 && i < 10));
      const outcome = await stream.offer(frame);
      fates.push('dropped' in outcome ? 'dropped' : 'failed' in outcome ? 'failed' : 'ok');
    }
    await stream.close();
    assert.deepEqual(fates, [
      ...['failed', 'failed'],
      ...['ok', 'ok', 'ok'],
      ...Array(5).fill('failed'),
      ...Array(6).fill('ok'),
    ]);
  });
});
