import { readFile } from 'node:fs/promises';
import { create } from '@bufbuild/protobuf';
import { type ModelProto, StringStringEntryProtoSchema } from 'onnx-buf';
import { RobomeshError } from '../../protocol/errors.js';
import type { Tensor } from '../../protocol/tensor-frame.js';
import { prng } from '../util/index.js';
import ort from './ort-float16.js';
import {
  attr,
  modelHash,
  node,
  opset13Model,
  parseModel,
  serializeModel,
  tensorProto,
  tensorValueInfo,
} from './onnx-model.js';
import type { Feeds, ModelSlicer } from './slicer.js';

export type ExitErrorCode = 'NOT_A_CLASSIFIER' | 'NO_EXIT_CUT' | 'TOO_FEW_INPUTS' | 'BAD_EXIT';

export class ExitError extends RobomeshError<ExitErrorCode> {
  constructor(code: ExitErrorCode, message: string, options?: ErrorOptions) {
    super(code, message, options);
  }
}

/** What an exit is for and how good it was found; stored in the exit model's metadata. */
export interface ExitInfo {
  /** Hash of the whole model the exit belongs to. */
  model: string;
  cut: string;
  /** The cut tensor the exit reads. */
  tensor: string;
  classes: number;
  /** The model input's shape it was fitted at: the exit's pooling assumes it. */
  inputShape: number[];
  /** The model's output name and dims: the exit answers in the same form. */
  output: { name: string; dims: number[] };
  /** The model outputs probabilities (softmax) rather than logits. */
  probabilities: boolean;
  /** The exit answers when its top softmax probability is at least this. */
  threshold: number;
  /** Agreement with the whole model the threshold was chosen to keep. */
  target: number;
  /** On the test share of the calibration inputs (used neither to fit nor to choose the threshold). */
  exitRate: number;
  agreement: number;
  seed: number;
  inputs: number;
}

export interface ExitHead {
  info: ExitInfo;
  /** The exit as an ONNX model: the cut tensor in, logits (EXIT_LOGITS) out. */
  bytes: Uint8Array;
  hash: string;
}

export const EXIT_LOGITS = 'robomesh_exit_logits';
export const EXIT_META_KEY = 'robomesh.exit';
const PREFIX = 'robomesh_exit_';

export interface FitOptions {
  seed?: number;
  /** Agreement with the whole model to keep (default 0.99). */
  target?: number;
  /** Only these cuts (default: every cut carrying one static float NCHW tensor). */
  cuts?: string[];
  onProgress?: (done: number, total: number, stage: string) => void;
}

/** Shares of the calibration inputs: fit the head, choose the threshold, then measure it. */
const FIT_SHARE = 0.4;
const THRESHOLD_SHARE = 0.4;
const MIN_INPUTS = 40;
const EPOCHS = 300;
const LEARNING_RATE = 0.5;
const L2 = 1e-3;
/**
 * The pooled grid. On the direction classifier, 4×4 and 3×8 grids (L2 1e-3 and 1e-2) answered
 * more at a few middle cuts but less at the late ones that pay most (c424: 0.44–0.48 of inputs
 * against 0.63 at 2×2).
 */
const GRID_ROWS = 2;
const GRID_COLS = 2;

/**
 * Fits an exit at each eligible cut of a classifier by distillation: a pooled 2×2 grid of the
 * cut tensor (top/bottom, left/right kept: orientation and layout survive pooling) into a
 * linear layer trained on the whole model's own output probabilities (no labels). Deterministic
 * for a seed: the split of inputs is seeded, training starts from zeros and is full-batch.
 */
export async function fitExits(slicer: ModelSlicer, inputs: Feeds[], options: FitOptions = {}): Promise<ExitHead[]> {
  const { seed = 1, target = 0.99 } = options;
  if (!(target > 0 && target <= 1)) throw new ExitError('BAD_EXIT', `agreement target ${target} is not in (0, 1]`);
  if (inputs.length < MIN_INPUTS)
    throw new ExitError('TOO_FEW_INPUTS', `${inputs.length} calibration inputs; an exit needs at least ${MIN_INPUTS}`);
  const { analysis } = slicer;
  const outputName = analysis.index.outputs[0];
  const outShape = analysis.shapes.get(outputName);
  const classes = outShape ? outShape.dims.reduce((a, b) => a * b, 1) : 0;
  if (analysis.index.outputs.length !== 1 || !outShape || outShape.dtype !== 'float32' || outShape.dims[0] !== 1)
    throw new ExitError('NOT_A_CLASSIFIER', 'exits need a model with one float output of batch 1 (class scores)');
  if (classes < 2) throw new ExitError('NOT_A_CLASSIFIER', `the model's output has ${classes} value(s), not classes`);
  const cuts = analysis.cuts.filter(
    (c) =>
      (options.cuts === undefined || options.cuts.includes(c.id)) &&
      c.tensors.length === 1 &&
      c.tensors[0].dtype === 'float32' &&
      c.tensors[0].shape.length === 4,
  );
  if (cuts.length === 0)
    throw new ExitError('NO_EXIT_CUT', 'no cut carries one float NCHW tensor to attach an exit to');

  const order = shuffled(inputs.length, seed);
  const fitIdx = order.slice(0, Math.floor(inputs.length * FIT_SHARE));
  const thresholdIdx = order.slice(fitIdx.length, fitIdx.length + Math.floor(inputs.length * THRESHOLD_SHARE));
  const testIdx = order.slice(fitIdx.length + thresholdIdx.length);

  const total = inputs.length * (cuts.length + 1);
  let done = 0;
  const tick = (stage: string): void => options.onProgress?.(++done, total, stage);
  const teacher: Float64Array[] = [];
  for (const feeds of inputs) {
    teacher.push(Float64Array.from((await slicer.runWhole(feeds))[outputName].data as Float32Array));
    tick('whole model');
  }
  const probabilities = areProbabilities(teacher);
  const targets = teacher.map((t) => (probabilities ? t : softmax(t)));

  const exits: ExitHead[] = [];
  for (const cut of cuts) {
    const tensor = cut.tensors[0];
    const pooling = gridPooling(tensor.shape);
    const features: Float64Array[] = [];
    const cutValues: Float32Array[] = [];
    const featureSession = await ort.InferenceSession.create(serializeModel(poolingModel(tensor.name, tensor.shape)), {
      logSeverityLevel: 3,
    });
    try {
      for (const feeds of inputs) {
        const [boundary] = await slicer.runHead(cut.id, 'fp32', feeds);
        const values = boundary.data as Float32Array;
        cutValues.push(values);
        const x = new ort.Tensor('float32', values, tensor.shape);
        features.push(
          Float64Array.from((await featureSession.run({ [tensor.name]: x }))[`${PREFIX}flat`].data as Float32Array),
        );
        tick(cut.id);
      }
    } finally {
      await featureSession.release();
    }
    const { weights, bias } = trainSoftmax(
      fitIdx.map((i) => features[i]),
      fitIdx.map((i) => targets[i]),
      classes,
    );
    const info: ExitInfo = {
      model: analysis.model.hash,
      cut: cut.id,
      tensor: tensor.name,
      inputShape: analysis.inputShapes[analysis.index.inputs[0]],
      classes,
      output: { name: outputName, dims: outShape.dims },
      probabilities,
      threshold: 1,
      target,
      exitRate: 0,
      agreement: 1,
      seed,
      inputs: inputs.length,
    };
    const bytes = exitModel(info, tensor.shape, pooling, weights, bias);
    const session = await ort.InferenceSession.create(bytes, { logSeverityLevel: 3 });
    const judged: { confidence: number; agrees: boolean }[] = [];
    try {
      for (let i = 0; i < inputs.length; i++) {
        const x = new ort.Tensor('float32', cutValues[i], tensor.shape);
        const logits = (await session.run({ [tensor.name]: x }))[EXIT_LOGITS].data as Float32Array;
        const p = softmax(Float64Array.from(logits));
        judged.push({ confidence: Math.max(...p), agrees: argmax(p) === argmax(targets[i]) });
      }
    } finally {
      await session.release();
    }
    info.threshold = chooseThreshold(
      thresholdIdx.map((i) => judged[i]),
      target,
    );
    const exited = testIdx.filter((i) => judged[i].confidence >= info.threshold);
    info.exitRate = testIdx.length ? exited.length / testIdx.length : 0;
    info.agreement = testIdx.length ? 1 - exited.filter((i) => !judged[i].agrees).length / testIdx.length : 1;
    const stored = exitModel(info, tensor.shape, pooling, weights, bias);
    exits.push({ info, bytes: stored, hash: modelHash(stored) });
  }
  return exits;
}

/**
 * The lowest threshold (most inputs exiting) at which agreement with the whole model stays at
 * least `target` even with the disagreements counted at a one-sided ~95 % upper bound
 * (w + 2·√(w + 1) + 1: 3 when none was seen, the "rule of three"): exits are overconfident
 * on inputs they were not fitted on, and with 100 threshold inputs a margin of one miss let
 * 4 % disagree on the next 100. Above every confidence (never exits) when none qualifies.
 */
export function chooseThreshold(judged: { confidence: number; agrees: boolean }[], target: number): number {
  const n = judged.length;
  const sorted = [...judged].sort((a, b) => b.confidence - a.confidence);
  let best = Number.POSITIVE_INFINITY;
  let wrong = 0;
  for (let k = 0; k < n; k++) {
    if (!sorted[k].agrees) wrong++;
    // Inputs of equal confidence exit together.
    if (k + 1 < n && sorted[k + 1].confidence === sorted[k].confidence) continue;
    if (1 - (wrong + 2 * Math.sqrt(wrong + 1) + 1) / n >= target - 1e-9) best = sorted[k].confidence;
    else break;
  }
  return Number.isFinite(best) ? best : 1.01;
}

/** Reads an exit model (bytes of a file written by `robomesh exits fit`). */
export function parseExit(bytes: Uint8Array, source = 'exit'): ExitHead {
  const model = parseModel(bytes, source).proto;
  const meta = model.metadataProps.find((p) => p.key === EXIT_META_KEY)?.value;
  let info: ExitInfo;
  try {
    info = JSON.parse(meta ?? '') as ExitInfo;
  } catch {
    throw new ExitError(
      'BAD_EXIT',
      `${source} is an ONNX model but not a robomesh exit (no '${EXIT_META_KEY}' metadata)`,
    );
  }
  const ok =
    typeof info.model === 'string' &&
    typeof info.cut === 'string' &&
    typeof info.tensor === 'string' &&
    Number.isInteger(info.classes) &&
    Array.isArray(info.inputShape) &&
    typeof info.threshold === 'number' &&
    typeof info.exitRate === 'number' &&
    typeof info.output?.name === 'string';
  if (!ok) throw new ExitError('BAD_EXIT', `${source}: its exit metadata is incomplete`);
  return { info, bytes, hash: modelHash(bytes) };
}

/** Reads an exit file; an ExitError naming the file when it is missing or not an exit. */
export async function loadExit(path: string): Promise<ExitHead> {
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(await readFile(path));
  } catch (err) {
    throw new ExitError(
      'BAD_EXIT',
      `cannot read exit ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
  try {
    return parseExit(bytes, path);
  } catch (err) {
    if (err instanceof ExitError) throw err;
    throw new ExitError('BAD_EXIT', `${path} is not an ONNX model: ${(err as Error).message}`);
  }
}

/** The exit's verdict on its logits: the answer in the model's own output form, and whether to take it. */
export function judgeExit(
  exit: ExitInfo,
  logits: Float32Array,
): { confident: boolean; confidence: number; outputs: Tensor[] } {
  const p = softmax(Float64Array.from(logits));
  const confidence = Math.max(...p);
  const data = exit.probabilities ? Float32Array.from(p) : Float32Array.from(logits);
  return {
    confident: confidence >= exit.threshold,
    confidence,
    outputs: [{ name: exit.output.name, dtype: 'float32', dims: [...exit.output.dims], data }],
  };
}

/**
 * The head of `cut` with the exit grafted onto it: one session computes the boundary (at any
 * precision) and the exit's logits from the same fp32 cut tensor inside the graph.
 */
export function graftExit(head: Uint8Array, exit: ExitHead): Uint8Array {
  const model: ModelProto = parseModel(head, 'head').proto;
  const graph = model.graph!;
  const exitGraph = parseModel(exit.bytes, 'exit').proto.graph!;
  if (!graph.node.some((n) => n.output.includes(exit.info.tensor)))
    throw new ExitError('BAD_EXIT', `the head does not compute '${exit.info.tensor}'`);
  graph.node.push(...exitGraph.node);
  graph.initializer.push(...exitGraph.initializer);
  graph.output.push(...exitGraph.output);
  return serializeModel(model);
}

/** A rows × cols grid of averages; odd sizes padded at the bottom/right, pads not counted. */
function gridPooling(shape: number[]): { kernel: [number, number]; pads: number[]; cells: number } {
  const [, , h, w] = shape;
  const kernel: [number, number] = [Math.ceil(h / Math.min(h, GRID_ROWS)), Math.ceil(w / Math.min(w, GRID_COLS))];
  // As many cells as the kernel needs to cover the tensor: padding stays below one kernel.
  const rows = Math.ceil(h / kernel[0]);
  const cols = Math.ceil(w / kernel[1]);
  return { kernel, pads: [0, 0, kernel[0] * rows - h, kernel[1] * cols - w], cells: rows * cols };
}

function poolingNodes(tensor: string, shape: number[]) {
  const { kernel, pads } = gridPooling(shape);
  return [
    // No ceil_mode: heads of older opsets (before 10) would refuse it.
    node(
      'AveragePool',
      [tensor],
      [`${PREFIX}pooled`],
      [attr('kernel_shape', kernel), attr('strides', kernel), attr('pads', pads)],
    ),
    node('Flatten', [`${PREFIX}pooled`], [`${PREFIX}flat`], [attr('axis', 1)]),
  ];
}

function poolingModel(tensor: string, shape: number[]): ModelProto {
  const { cells } = gridPooling(shape);
  return opset13Model('robomesh exit features', {
    name: 'exit_features',
    node: poolingNodes(tensor, shape),
    input: [tensorValueInfo(tensor, 1, shape)],
    output: [tensorValueInfo(`${PREFIX}flat`, 1, [1, shape[1] * cells])],
  });
}

function exitModel(
  info: ExitInfo,
  shape: number[],
  pooling: { cells: number },
  weights: Float32Array,
  bias: Float32Array,
): Uint8Array {
  const features = shape[1] * pooling.cells;
  const model = opset13Model('robomesh exits fit', {
    name: 'robomesh_exit',
    node: [
      ...poolingNodes(info.tensor, shape),
      node('Gemm', [`${PREFIX}flat`, `${PREFIX}w`, `${PREFIX}b`], [EXIT_LOGITS], [attr('transB', 1)]),
    ],
    initializer: [
      tensorProto(`${PREFIX}w`, 1, [info.classes, features], weights),
      tensorProto(`${PREFIX}b`, 1, [info.classes], bias),
    ],
    input: [tensorValueInfo(info.tensor, 1, shape)],
    output: [tensorValueInfo(EXIT_LOGITS, 1, [1, info.classes])],
  });
  model.metadataProps.push(create(StringStringEntryProtoSchema, { key: EXIT_META_KEY, value: JSON.stringify(info) }));
  return serializeModel(model);
}

/**
 * Multinomial logistic regression on soft targets (the whole model's probabilities), features
 * standardised for training and the scaling folded back into the weights. Full-batch gradient
 * descent from zeros: the same inputs give the same weights. Written here because it is forty
 * lines and no maintained JS library fits soft targets without pulling in a tensor runtime.
 */
function trainSoftmax(
  xs: Float64Array[],
  ts: Float64Array[],
  classes: number,
): { weights: Float32Array; bias: Float32Array } {
  const n = xs.length;
  const d = xs[0].length;
  const mean = new Float64Array(d);
  const std = new Float64Array(d);
  for (const x of xs) for (let j = 0; j < d; j++) mean[j] += x[j] / n;
  for (const x of xs) for (let j = 0; j < d; j++) std[j] += (x[j] - mean[j]) ** 2 / n;
  for (let j = 0; j < d; j++) std[j] = Math.sqrt(std[j]) || 1;
  const zs = xs.map((x) => x.map((v, j) => (v - mean[j]) / std[j]));
  const w = new Float64Array(classes * d);
  const b = new Float64Array(classes);
  const gw = new Float64Array(classes * d);
  const gb = new Float64Array(classes);
  const logits = new Float64Array(classes);
  for (let epoch = 0; epoch < EPOCHS; epoch++) {
    gw.fill(0);
    gb.fill(0);
    for (let i = 0; i < n; i++) {
      const z = zs[i];
      for (let k = 0; k < classes; k++) {
        let s = b[k];
        for (let j = 0; j < d; j++) s += w[k * d + j] * z[j];
        logits[k] = s;
      }
      const p = softmax(logits);
      for (let k = 0; k < classes; k++) {
        const g = (p[k] - ts[i][k]) / n;
        gb[k] += g;
        for (let j = 0; j < d; j++) gw[k * d + j] += g * z[j];
      }
    }
    for (let q = 0; q < w.length; q++) w[q] -= LEARNING_RATE * (gw[q] + L2 * w[q]);
    for (let k = 0; k < classes; k++) b[k] -= LEARNING_RATE * gb[k];
  }
  const weights = new Float32Array(classes * d);
  const bias = new Float32Array(classes);
  for (let k = 0; k < classes; k++) {
    let shift = b[k];
    for (let j = 0; j < d; j++) {
      weights[k * d + j] = w[k * d + j] / std[j];
      shift -= (w[k * d + j] * mean[j]) / std[j];
    }
    bias[k] = shift;
  }
  return { weights, bias };
}

/** Whether every row is a probability distribution (a softmax output) rather than logits. */
export function areProbabilities(rows: ArrayLike<number>[]): boolean {
  return rows.every((r) => {
    const xs = Array.from(r);
    return xs.every((v) => v >= 0 && v <= 1) && Math.abs(xs.reduce((a, b) => a + b, 0) - 1) <= 1e-3;
  });
}

export function softmax(x: ArrayLike<number>): Float64Array {
  const m = Math.max(...Array.from(x));
  const e = Float64Array.from(x, (v) => Math.exp(v - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

export function argmax(x: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}

/** Indices 0..n-1 in a seeded order (Fisher–Yates). */
export function shuffled(n: number, seed: number): number[] {
  const random = prng(seed);
  const order = [...Array(n).keys()];
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order;
}
