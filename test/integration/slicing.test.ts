import assert from 'node:assert/strict';
import type { NodeProto, TensorProto } from 'onnx-buf';
import ort from 'onnxruntime-node';
import { decodeFrame, encodeFrame } from '../../protocol/tensor-frame.js';
import { PRECISIONS, type Int8Granularity, type Precision, channelAxis } from '../../nodes/inference/boundary.js';
import { BoundaryError } from '../../nodes/inference/wire.js';
import { ModelSlicer } from '../../nodes/inference/slicer.js';
import {
  attr,
  node,
  opset13Model,
  parseModel,
  runnableBytes,
  serializeModel,
  tensorProto,
  tensorValueInfo,
} from '../../nodes/inference/onnx-model.js';
import { prng } from '../../nodes/util/index.js';
import { inputsFor, sessions, slicerFor } from '../helpers/models.js';

type Name = 'ocr-det' | 'ocr-cls' | 'cnn';

async function splitOutput(
  slicer: ModelSlicer,
  cutId: string,
  precision: Precision,
  feeds: Record<string, ort.Tensor>,
  g: Int8Granularity = 'channel',
): Promise<Float32Array> {
  // Through the wire codec exactly as between robots: head → frame bytes → decode → tail.
  const frame = encodeFrame(await slicer.runHead(cutId, precision, feeds, g));
  const out = await slicer.runTail(cutId, precision, decodeFrame(frame), g);
  return out[slicer.analysis.index.outputs[0]].data as Float32Array;
}

const maxAbsDiff = (a: Float32Array, b: Float32Array): number => {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
};

/**
 * Share of rows (length `classes`) whose argmax agrees, over the rows where the whole model is
 * decided (top-2 margin ≥ MIN_MARGIN, in probability, or as a share of the row's range for raw
 * logits): a 0.494/0.506 coin flip may flip under any rounding.
 */
function argmaxAgreement(a: Float32Array, b: Float32Array, classes: number, relativeMargin: boolean): number {
  let same = 0;
  let decided = 0;
  for (let r = 0; r < a.length / classes; r++) {
    const row = Array.from(a.subarray(r * classes, (r + 1) * classes));
    const other = Array.from(b.subarray(r * classes, (r + 1) * classes));
    const sorted = [...row].sort((x, y) => y - x);
    const scale = relativeMargin ? sorted[0] - sorted[sorted.length - 1] : 1;
    if (sorted[0] - sorted[1] < MIN_MARGIN * scale) continue;
    decided++;
    if (row.indexOf(sorted[0]) === other.indexOf(Math.max(...other))) same++;
  }
  assert.ok(decided > 0, 'no decided rows to compare');
  return same / decided;
}

/** Share of pixels on the same side of PaddleOCR's 0.3 text threshold. */
function maskAgreement(a: Float32Array, b: Float32Array): number {
  let same = 0;
  for (let i = 0; i < a.length; i++) if (a[i] > 0.3 === b[i] > 0.3) same++;
  return same / a.length;
}

// Stated tolerances (README, "Slicing"): fp32 within 1e-4 absolute; fp16/int8 judged by the
// decision the model makes: argmax (classifiers) or text-mask pixels (detector).
const FP32_TOLERANCE = 1e-4;
const MIN_MASK_AGREEMENT: Record<Precision, number> = { fp32: 1, fp16: 0.999, int8: 0.99 };
const MIN_ARGMAX_AGREEMENT = 1;
const MIN_MARGIN = 0.05;
/** Classifier probabilities (softmax) may move at most this much at fp16/int8. */
const MAX_PROBABILITY_SHIFT: Record<Int8Granularity, number> = { channel: 0.02, tensor: 0.1 };

for (const name of ['cnn', 'ocr-cls', 'ocr-det'] as Name[]) {
  describe(`slicing builtin:${name}`, () => {
    let slicer: ModelSlicer;
    let feeds: Record<string, ort.Tensor>;
    let whole: Float32Array;
    // The CNN takes batch 1: judge its decisions over several inputs, concatenated.
    const samples = name === 'cnn' ? 16 : 1;
    let feedSets: Record<string, ort.Tensor>[];
    let wholeAll: Float32Array;
    const runAll = async (run: (f: Record<string, ort.Tensor>) => Promise<Float32Array>): Promise<Float32Array> => {
      const parts: number[] = [];
      for (const f of feedSets) parts.push(...(await run(f)));
      return Float32Array.from(parts);
    };
    before(async () => {
      slicer = await slicerFor(name);
      feedSets = Array.from({ length: samples }, (_, k) => inputsFor(slicer, name, 11 + k));
      feeds = feedSets[0];
      const output = slicer.analysis.index.outputs[0];
      whole = (await slicer.runWhole(feeds))[output].data as Float32Array;
      wholeAll = await runAll(async (f) => (await slicer.runWhole(f))[output].data as Float32Array);
    });

    it('finds single- and block-boundary cuts with bytes and compute share', () => {
      const { cuts } = slicer.analysis;
      assert.ok(cuts.length >= 5, `only ${cuts.length} cuts`);
      for (const c of cuts) {
        assert.ok(c.headShare > 0 && c.headShare <= 1);
        assert.ok(c.bytes.fp16 <= c.bytes.fp32);
        // Below 1 KiB the per-channel scales outweigh the saving; above it int8 must pay off.
        if (c.bytes.fp32 > 1024) assert.ok(c.bytes.int8 < c.bytes.fp16, `cut ${c.id}: ${JSON.stringify(c.bytes)}`);
        assert.ok(c.tensors.length >= 1 && c.tensors.length <= 4);
      }
      const shares = cuts.map((c) => c.headShare);
      assert.deepEqual(
        shares,
        [...shares].sort((a, b) => a - b),
        'cuts are in compute order',
      );
    });

    it('every cut at fp32: head → frame → tail equals the whole model', async () => {
      for (const cut of slicer.analysis.cuts) {
        const out = await splitOutput(slicer, cut.id, 'fp32', feeds);
        const diff = maxAbsDiff(whole, out);
        assert.ok(diff <= FP32_TOLERANCE, `cut ${cut.id}: max |Δ| ${diff}`);
      }
    });

    for (const precision of ['fp16', 'int8'] as Precision[]) {
      for (const granularity of (precision === 'int8' ? ['channel', 'tensor'] : ['channel']) as Int8Granularity[]) {
        it(
          `every cut at ${precision}${precision === 'int8' ? ` per ${granularity}` : ''}: ` +
            `the model decides the same`,
          async () => {
            for (const cut of slicer.analysis.cuts) {
              const out = await runAll((f) => splitOutput(slicer, cut.id, precision, f, granularity));
              const whole = wholeAll;
              if (name === 'ocr-det') {
                const agree = maskAgreement(whole, out);
                assert.ok(agree >= MIN_MASK_AGREEMENT[precision], `cut ${cut.id}: mask agreement ${agree}`);
              } else {
                const classes = name === 'cnn' ? 10 : 2;
                const agree = argmaxAgreement(whole, out, classes, name === 'cnn');
                assert.ok(agree >= MIN_ARGMAX_AGREEMENT, `cut ${cut.id}: argmax agreement ${agree}`);
                if (name === 'ocr-cls') {
                  const shift = maxAbsDiff(whole, out);
                  assert.ok(shift <= MAX_PROBABILITY_SHIFT[granularity], `cut ${cut.id}: probability moved ${shift}`);
                }
              }
            }
          },
        );
      }
    }

    it('int8 frames are about a quarter of fp32 and fp16 half', async () => {
      const cut = slicer.analysis.cuts[Math.floor(slicer.analysis.cuts.length / 2)];
      const sizes = await Promise.all(
        PRECISIONS.map(async (p) => encodeFrame(await slicer.runHead(cut.id, p, feeds)).length),
      );
      assert.ok(sizes[1] < 0.52 * sizes[0], `fp16 ${sizes[1]} vs fp32 ${sizes[0]}`);
      assert.ok(sizes[2] < 0.27 * sizes[0], `int8 ${sizes[2]} vs fp32 ${sizes[0]}`);
    });
  });
}

describe('int8 per-channel on tensors that are not channels-first', () => {
  /** x [1, 3600, 2] (anchor boxes' coordinate pairs) → Mul → Relu → Add: cuts in between carry [1, 3600, 2]. */
  async function pairsModel(): Promise<ModelSlicer> {
    const two = tensorProto('two', 1, [], Float32Array.of(2));
    const one = tensorProto('one', 1, [], Float32Array.of(1));
    const model = opset13Model('test pairs', {
      name: 'pairs',
      node: [node('Mul', ['x', 'two'], ['m']), node('Relu', ['m'], ['r']), node('Add', ['r', 'one'], ['y'])],
      input: [tensorValueInfo('x', 1, [1, 3600, 2])],
      output: [tensorValueInfo('y', 1, [1, 3600, 2])],
      initializer: [two, one],
    });
    return ModelSlicer.open(parseModel(serializeModel(model), 'pairs'), sessions);
  }

  it('a [1, 3600, 2] boundary is quantized along its last axis: fewer bytes than fp16, values kept', async () => {
    assert.equal(channelAxis([1, 3600, 2]), 2);
    assert.equal(channelAxis([1, 64, 80, 80]), 1, 'NCHW feature maps keep axis 1');
    assert.equal(channelAxis([1, 30, 40, 6]), 1, 'thirty rows of 1,200 values: one scale each is cheap');
    assert.equal(channelAxis([1, 4096, 1]), undefined, 'no axis cheap enough: one scale for the tensor');
    const slicer = await pairsModel();
    const cut = slicer.analysis.cuts.find((c) => c.tensors.some((t) => t.shape.join() === '1,3600,2'));
    assert.ok(cut, `a cut carrying the pairs (${slicer.analysis.cuts.map((c) => c.id).join(', ')})`);
    const data = Float32Array.from({ length: 7200 }, (_, i) => ((i * 7919) % 1000) / 100 - 3);
    const feeds = { x: new ort.Tensor('float32', data, [1, 3600, 2]) };
    const frames = await Promise.all(
      (['fp16', 'int8'] as const).map(async (p) => encodeFrame(await slicer.runHead(cut.id, p, feeds, 'channel'))),
    );
    assert.ok(frames[1].length < 0.6 * frames[0].length, `int8 ${frames[1].length} B vs fp16 ${frames[0].length} B`);
    const whole = (await slicer.runWhole(feeds)).y.data as Float32Array;
    const split = await slicer.runTail(cut.id, 'int8', decodeFrame(frames[1]), 'channel');
    assert.ok(maxAbsDiff(whole, split.y.data as Float32Array) < 0.05, 'within a quantization step of the whole');
  });
});

describe('encoders whose skips come straight out of projection Convs (MobileNetV3 / PAN style)', () => {
  /**
   * Stem, four inverted-residual blocks with linear (activation-free) projections, and a decoder
   * reading the outputs of blocks 2 and 3 through 1×1 laterals: those skips are Conv outputs with
   * two readers each, live through the rest of the encoder.
   */
  function panLike(): Uint8Array {
    const random = prng(7);
    const nodes: NodeProto[] = [];
    const weights: TensorProto[] = [];
    const conv = (x: string, name: string, cin: number, cout: number, k: number, stride = 1, group = 1): string => {
      const n = (cout * cin * k * k) / group;
      const std = Math.sqrt(2 / ((cin / group) * k * k));
      weights.push(
        tensorProto(
          `${name}.w`,
          1,
          [cout, cin / group, k, k],
          Float32Array.from({ length: n }, () => (random() - 0.5) * 2 * std),
        ),
        tensorProto(
          `${name}.b`,
          1,
          [cout],
          Float32Array.from({ length: cout }, () => (random() - 0.5) * 0.1),
        ),
      );
      const pad = (k - 1) / 2;
      nodes.push(
        node(
          'Conv',
          [x, `${name}.w`, `${name}.b`],
          [name],
          [
            attr('kernel_shape', [k, k]),
            attr('pads', [pad, pad, pad, pad]),
            attr('strides', [stride, stride]),
            attr('group', group),
          ],
        ),
      );
      return name;
    };
    const op = (type: string, ins: string[], out: string): string => {
      nodes.push(node(type, ins, [out]));
      return out;
    };
    const block = (x: string, name: string, cin: number, cout: number, stride: number): string => {
      const e = op('Relu', [conv(x, `${name}.expand`, cin, cin * 3, 1)], `${name}.expand.act`);
      const d = op('Relu', [conv(e, `${name}.dw`, cin * 3, cin * 3, 3, stride, cin * 3)], `${name}.dw.act`);
      const projected = conv(d, `${name}.project`, cin * 3, cout, 1);
      return stride === 1 && cin === cout ? op('Add', [projected, x], `${name}.sum`) : projected;
    };
    const up = (x: string, name: string): string => {
      weights.push(tensorProto(`${name}.scales`, 1, [4], Float32Array.of(1, 1, 2, 2)));
      nodes.push(node('Resize', [x, '', `${name}.scales`], [name], [attr('mode', 'nearest')]));
      return name;
    };
    const stem = op('Relu', [conv('x', 'stem', 3, 16, 3, 2)], 'stem.act');
    const b1 = block(stem, 'b1', 16, 24, 2);
    const b2 = block(b1, 'b2', 24, 32, 2);
    const b3 = block(b2, 'b3', 32, 48, 2);
    const b4 = block(b3, 'b4', 48, 48, 1);
    let y = conv(b4, 'top', 48, 16, 1);
    y = op('Add', [up(y, 'up3'), conv(b2, 'lat2', 32, 16, 1)], 'fuse2');
    y = op('Add', [y, up(conv(b3, 'lat3', 48, 16, 1), 'up3b')], 'fuse3');
    op('Sigmoid', [conv(up(y, 'up2'), 'seg', 16, 2, 3)], 'mask');
    return serializeModel(
      opset13Model('test pan-like', {
        name: 'pan_like',
        node: nodes,
        initializer: weights,
        input: [tensorValueInfo('x', 1, [1, 3, 64, 64])],
        output: [tensorValueInfo('mask', 1, [1, 2, 16, 16])],
      }),
    );
  }

  it('cuts through the encoder carry the skips, and head → tail equals the whole model', async () => {
    const slicer = await ModelSlicer.open(parseModel(panLike(), 'pan-like'), sessions);
    const { cuts, index } = slicer.analysis;
    const carrying = cuts.filter((c) => c.tensors.some((t) => t.name === 'b2.project'));
    assert.ok(
      carrying.some((c) => c.headShare > 0.3 && c.headShare < 0.9),
      `a cut inside the encoder with the block-2 skip live: ${cuts
        .map((c) => `${c.id} ${c.headShare.toFixed(2)} ${c.tensors.map((t) => t.name).join('+')}`)
        .join('; ')}`,
    );
    for (const cut of cuts)
      for (const t of cut.tensors) {
        const readers = new Set(index.consumers.get(t.name));
        const producer = index.nodes[index.producer.get(t.name)!].opType;
        assert.ok(
          !(producer === 'Conv' && readers.size === 1),
          `cut ${cut.id} splits ${t.name} from the one op ORT fuses into its Conv`,
        );
      }
    const x = new ort.Tensor(
      'float32',
      Float32Array.from({ length: 3 * 64 * 64 }, (_, i) => Math.sin(i / 13)),
      [1, 3, 64, 64],
    );
    const whole = (await slicer.runWhole({ x })).mask.data as Float32Array;
    for (const cut of cuts) {
      const diff = maxAbsDiff(whole, await splitOutput(slicer, cut.id, 'fp32', { x }));
      assert.ok(diff <= FP32_TOLERANCE, `cut ${cut.id}: max |Δ| ${diff}`);
    }
  });
});

describe('old exports listing their initializers as graph inputs', () => {
  it('run whole without those inputs (ORT can fold them), with the same outputs as the original bytes', async () => {
    const w = tensorProto(
      'w',
      1,
      [4, 3, 3, 3],
      Float32Array.from({ length: 108 }, (_, i) => Math.sin(i)),
    );
    const b = tensorProto('b', 1, [4], Float32Array.of(0.1, -0.2, 0.3, 0));
    const graph = {
      name: 'old',
      node: [
        node('Conv', ['x', 'w', 'b'], ['c'], [attr('pads', [1, 1, 1, 1])]),
        node('Relu', ['c'], ['r']),
        node('ReduceMean', ['r'], ['y'], [attr('axes', [2, 3])]),
      ],
      // As PyTorch <= 1.2 (keep_initializers_as_inputs) wrote them: weights are inputs too.
      input: [
        tensorValueInfo('x', 1, [1, 3, 16, 16]),
        tensorValueInfo('w', 1, [4, 3, 3, 3]),
        tensorValueInfo('b', 1, [4]),
      ],
      output: [tensorValueInfo('y', 1, [1, 4, 1, 1])],
      initializer: [w, b],
    };
    const loaded = parseModel(serializeModel(opset13Model('test old export', graph)), 'old');
    const runnable = parseModel(runnableBytes(loaded), 'runnable').graph;
    assert.deepEqual(
      runnable.input.map((i) => i.name),
      ['x'],
      'only what a caller feeds',
    );
    assert.equal(runnable.initializer.length, 2);
    const slicer = await ModelSlicer.open(loaded, sessions);
    const x = new ort.Tensor(
      'float32',
      Float32Array.from({ length: 768 }, (_, i) => Math.cos(i / 7)),
      [1, 3, 16, 16],
    );
    const original = await ort.InferenceSession.create(loaded.bytes, { logSeverityLevel: 3 });
    const expected = (await original.run({ x })).y.data as Float32Array;
    await original.release();
    assert.ok(maxAbsDiff((await slicer.runWhole({ x })).y.data as Float32Array, expected) < 1e-6);
    const plain = parseModel(serializeModel(opset13Model('test new export', { ...graph, input: [graph.input[0]] })));
    assert.equal(runnableBytes(plain), plain.bytes, 'a model without such inputs runs from its own bytes');
  });
});

describe('boundary checks at the tail', () => {
  it('rejects wrong names, dtypes, ranks, shapes and quantization with BoundaryError', async () => {
    const slicer = await slicerFor('cnn');
    const feeds = inputsFor(slicer, 'cnn', 2);
    const cut = slicer.analysis.cuts[1];
    const good = await slicer.runHead(cut.id, 'fp32', feeds);
    const int8 = await slicer.runHead(cut.id, 'int8', feeds);
    const t = good[0];
    const q = int8[0];
    const [, , h, w] = t.dims;
    const cases: [string, Precision, typeof good][] = [
      ['unknown name', 'fp32', [{ ...t, name: 'other' }]],
      ['no tensors', 'fp32', []],
      ['wrong dtype', 'fp32', [{ ...t, dtype: 'int32', data: new Int32Array(t.data.length) }]],
      ['wrong rank', 'fp32', [{ ...t, dims: [t.data.length] }]],
      ['wrong shape, same element count', 'fp32', [{ ...t, dims: [t.dims[0], t.dims[1], h / 2, w * 2] }]],
      ['int8 without scales', 'int8', [{ ...q, quant: undefined }]],
      [
        'int8 per tensor where per channel agreed',
        'int8',
        [{ ...q, quant: { scale: q.quant!.scale.subarray(0, 1), zeroPoint: q.quant!.zeroPoint.subarray(0, 1) } }],
      ],
      ['fp32 sent as int8', 'int8', good],
    ];
    for (const [what, precision, tensors] of cases) {
      await assert.rejects(slicer.runTail(cut.id, precision, tensors), BoundaryError, what);
    }
    // And the good frame still runs afterwards: a bad frame does not poison the session.
    await slicer.runTail(cut.id, 'fp32', good);
  });

  it('caches one session per (model, cut, precision, part)', async () => {
    const slicer = await slicerFor('cnn');
    const feeds = inputsFor(slicer, 'cnn', 3);
    const cut = slicer.analysis.cuts[2];
    await slicer.runHead(cut.id, 'fp16', feeds);
    const before = sessions.size;
    for (let i = 0; i < 5; i++) await slicer.runHead(cut.id, 'fp16', feeds);
    assert.equal(sessions.size, before);
  });

  it("releaseCut closes one cut's sessions; they come back on demand", async () => {
    const slicer = await slicerFor('cnn');
    const feeds = inputsFor(slicer, 'cnn', 5);
    const [a, b] = slicer.analysis.cuts;
    await slicer.runTail(a.id, 'fp32', await slicer.runHead(a.id, 'fp32', feeds));
    await slicer.runHead(b.id, 'fp32', feeds);
    await slicer.releaseCut(a.id); // also whatever other precisions earlier tests opened
    const after = sessions.size;
    await slicer.runHead(b.id, 'fp32', feeds);
    assert.equal(sessions.size, after, 'the other cut kept its session');
    await slicer.runTail(a.id, 'fp32', await slicer.runHead(a.id, 'fp32', feeds));
    assert.equal(sessions.size, after + 2);
    await slicer.releaseCut(a.id);
    assert.equal(sessions.size, after);
  });
});

describe('boundary shapes and layout', () => {
  it('dynamic models: fixed boundary dims are declared, input-dependent ones symbolic', async () => {
    const slicer = await slicerFor('ocr-cls');
    assert.ok(slicer.analysis.dynamic);
    for (const cut of slicer.analysis.cuts) {
      for (const t of cut.tensors) {
        assert.ok(t.dims, `cut ${cut.id}: '${t.name}' has no declared dims`);
        assert.equal(t.dims.length, t.shape.length);
        if (t.shape.length === 4) {
          // Batch, height and width follow the input; channels do not.
          assert.deepEqual(
            t.dims.map((d) => typeof d),
            ['string', 'number', 'string', 'string'],
            `cut ${cut.id}: ${JSON.stringify(t.dims)}`,
          );
          assert.equal(t.dims[1], t.shape[1]);
        }
      }
      const tail = parseModel(slicer.split(cut.id).tail).graph;
      const declared =
        tail.input[0].type?.value.case === 'tensorType' ? tail.input[0].type.value.value.shape?.dim : undefined;
      assert.equal(declared?.length, cut.tensors[0].shape.length, `cut ${cut.id}: tail input declared without a shape`);
    }
    // A fixed dim that does not match is the frame's fault, reported before ORT sees it.
    const feeds = inputsFor(slicer, 'ocr-cls', 4);
    const cut = slicer.analysis.cuts.find((c) => c.tensors[0].shape.length === 4)!;
    const [t] = await slicer.runHead(cut.id, 'fp32', feeds);
    const [n, c, h, w] = t.dims;
    const wrong = { ...t, dims: [n, c * 2, h, w / 2] };
    await assert.rejects(
      slicer.runTail(cut.id, 'fp32', [wrong]),
      (e: unknown) => e instanceof BoundaryError && e.code === 'WRONG_SHAPE',
    );
  });

  it('tails start residual skips in the blocked layout where ORT uses one', async () => {
    const slicer = await slicerFor('cnn');
    const block = slicer.analysis.nchwcBlock ?? 0;
    // c1 cuts after the stem: the 16-channel boundary is the skip of the first residual Add.
    const cut = slicer.analysis.cuts.find((c) => c.tensors.length === 1 && c.tensors[0].name === 'stem.out')!;
    const tail = parseModel(slicer.split(cut.id).tail).graph;
    const anchors = tail.node.filter((n) => n.opType === 'MaxPool');
    assert.equal(anchors.length, block > 0 && 16 % block === 0 ? 1 : 0, `block ${block}`);
    for (const a of anchors) assert.deepEqual(a.input, ['stem.out']);
  });
});
