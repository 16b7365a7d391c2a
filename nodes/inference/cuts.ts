import type { NodeProto } from 'onnx-buf';
import { DTYPES, type DType } from '../../protocol/dtypes.js';
import { elementCount } from '../../protocol/tensor-frame.js';
import type { GraphIndex } from './graph.js';
import type { TensorShape } from './probe.js';
import { channelAxis } from './boundary.js';
import { allInputs } from './onnx-model.js';

export interface CutTensor {
  name: string;
  dtype: DType;
  /** Shape seen when probing. */
  shape: number[];
  /**
   * Models with symbolic input dims: the dims to declare at the boundary, fixed numbers where
   * they do not follow the input, symbolic names where they do. Absent when not known (the
   * boundary is then declared without a shape) or when the model is static (`shape` is used).
   */
  dims?: (number | string)[];
}

export interface Cut {
  /** `c<k>`: the cut after the k-th node in topological order; stable for a given model file. */
  id: string;
  tensors: CutTensor[];
  bytes: { fp32: number; fp16: number; int8: number };
  /** Estimated share of the model's compute (FLOPs) that runs before the cut, in [0, 1]. */
  headShare: number;
}

export interface CutOptions {
  /** At most this many tensors cross a cut. */
  maxTensors: number;
  /** A cut's fp32 bytes may be at most this multiple of the model input bytes. */
  maxBytesRatio: number;
  /** Cuts whose head share differs by less than this from a smaller cut are dropped as redundant. */
  minShareStep: number;
}

export const DEFAULT_CUT_OPTIONS: CutOptions = { maxTensors: 4, maxBytesRatio: 4, minShareStep: 0.01 };

/** Ops whose output ORT fuses into the op that follows (bias, normalisation, activation). */
const FUSED_PRODUCERS = new Set([
  'Conv',
  'ConvTranspose',
  'MatMul',
  'Gemm',
  'BatchNormalization',
  'InstanceNormalization',
]);
/** Ops that start a new layer: a tensor they read beside others is a block output. */
const LAYERS = new Set([
  'Conv',
  'ConvTranspose',
  'MatMul',
  'Gemm',
  'Resize',
  'Upsample',
  'MaxPool',
  'AveragePool',
  'GlobalAveragePool',
]);
/** Element-wise ops that finish a block; cutting on their input splits the block. */
const ACTIVATIONS = new Set([
  'Relu',
  'Clip',
  'Sigmoid',
  'HardSigmoid',
  'HardSwish',
  'LeakyRelu',
  'PRelu',
  'Tanh',
  'Elu',
  'Selu',
  'Softplus',
  'Gelu',
  'Mish',
  'BatchNormalization',
  'InstanceNormalization',
]);

const isFloat = (d: DType): boolean => d === 'float32' || d === 'float64' || d === 'float16';

export function cutBytes(tensors: CutTensor[]): Cut['bytes'] {
  let fp32 = 0;
  let fp16 = 0;
  let int8 = 0;
  for (const t of tensors) {
    const n = elementCount(t.shape);
    const own = n * DTYPES[t.dtype].bytes;
    fp32 += own;
    fp16 += isFloat(t.dtype) ? n * 2 : own;
    // uint8 payload + a scale and zero point per slice along the quantized axis (or one per tensor).
    const axis = channelAxis(t.shape);
    int8 += isFloat(t.dtype) ? n + 8 * (axis === undefined ? 1 : t.shape[axis]) : own;
  }
  return { fp32, fp16, int8 };
}

/** Rough FLOPs of one node from probed shapes: enough to rank where the compute sits. */
function nodeFlops(n: NodeProto, shapes: Map<string, TensorShape>, index: GraphIndex): number {
  const out = shapes.get(n.output[0]);
  const outElems = out ? elementCount(out.dims) : 0;
  const dimsOf = (name: string | undefined): number[] | undefined =>
    name === undefined ? undefined : (shapes.get(name)?.dims ?? index.constantDims.get(name));
  switch (n.opType) {
    case 'Conv': {
      const w = dimsOf(n.input[1]);
      return w ? 2 * outElems * elementCount(w.slice(1)) : outElems;
    }
    case 'ConvTranspose': {
      const w = dimsOf(n.input[1]);
      const x = dimsOf(n.input[0]);
      return w && x ? 2 * elementCount(x) * elementCount(w.slice(1)) : outElems;
    }
    case 'MatMul':
    case 'Gemm': {
      const a = dimsOf(n.input[0]);
      const k = a ? a[a.length - 1] : 1;
      return 2 * outElems * k;
    }
    default:
      return outElems;
  }
}

/**
 * Candidate cuts: points in topological order where the set of live activations (computed
 * before, read after) is small, not inside a fused Conv/BN/activation chain, and not a repeat
 * of a cheaper cut at nearly the same compute share.
 */
export function findCuts(
  index: GraphIndex,
  shapes: Map<string, TensorShape>,
  options: Partial<CutOptions> = {},
): Cut[] {
  const opts = { ...DEFAULT_CUT_OPTIONS, ...options };
  const { nodes, constants, consumers } = index;
  const end = nodes.length;
  const lastUse = new Map<string, number>();
  for (const [name, list] of consumers) if (!constants.has(name)) lastUse.set(name, list[list.length - 1]);
  for (const o of index.outputs) lastUse.set(o, end);

  const flops = nodes.map((n) => (constants.has(n.output[0] ?? '') ? 0 : nodeFlops(n, shapes, index)));
  const totalFlops = flops.reduce((a, b) => a + b, 0) || 1;
  const inputBytes = index.inputs.reduce((sum, name) => {
    const s = shapes.get(name);
    return sum + (s ? elementCount(s.dims) * DTYPES[s.dtype].bytes : 0);
  }, 0);
  const graphInputs = new Set(index.inputs);
  const graphOutputs = new Set(index.outputs);

  const live = new Set<string>(index.inputs);
  const candidates: Cut[] = [];
  const seen = new Set<string>();
  let flopsBefore = 0;
  for (let p = 0; p < end - 1; p++) {
    const n = nodes[p];
    flopsBefore += flops[p];
    for (const o of n.output) if (o && !constants.has(o) && (lastUse.get(o) ?? -1) > p) live.add(o);
    for (const i of allInputs(n)) if (live.has(i) && (lastUse.get(i) ?? -1) <= p) live.delete(i);
    if (constants.has(n.output[0] ?? '')) continue;
    if (live.size === 0 || live.size > opts.maxTensors) continue;
    const names = [...live].sort();
    if (names.some((t) => graphInputs.has(t) || graphOutputs.has(t) || !shapes.has(t))) continue;
    if (names.some((t) => splitsBlock(t, index))) continue;
    const key = names.join('\0');
    if (seen.has(key)) continue;
    seen.add(key);
    const tensors = names.map((name) => ({ name, dtype: shapes.get(name)!.dtype, shape: shapes.get(name)!.dims }));
    const bytes = cutBytes(tensors);
    if (inputBytes > 0 && bytes.fp32 > opts.maxBytesRatio * inputBytes) continue;
    candidates.push({ id: `c${p}`, tensors, bytes, headShare: flopsBefore / totalFlops });
  }
  return dropRedundant(dropInsideBlocks(candidates), opts.minShareStep);
}

/**
 * A cut carrying every tensor of an earlier cut plus an activation larger than that whole cut
 * sits inside an expanding block (a residual skip still live beside the expanded branch): the
 * block start ships less. Persistent skips to a later stage (FPN laterals) are not affected,
 * since there the extra activation is the smaller part.
 */
function dropInsideBlocks(cuts: Cut[]): Cut[] {
  const sets = cuts.map((c) => new Set(c.tensors.map((t) => t.name)));
  return cuts.filter(
    (b, i) =>
      !cuts.some(
        (a, j) =>
          j !== i &&
          a.headShare <= b.headShare &&
          sets[j].size < sets[i].size &&
          [...sets[j]].every((name) => sets[i].has(name)) &&
          b.bytes.fp32 - a.bytes.fp32 > a.bytes.fp32,
      ),
  );
}

/**
 * Whether a cut carrying `tensor` splits a block. ORT fuses an op into the one before only when
 * it is that op's sole reader, so a tensor read by several ops (a projection Conv's output kept
 * for a decoder skip, MobileNetV3-style) fuses with nothing and may cross a cut. A Conv output
 * with one reader stays refused even where nothing fuses (a linear bottleneck into the next
 * Conv): unclipped, its int8 boundary moved the direction classifier's probabilities 0.029,
 * beyond the 0.02 the per-channel tolerance allows.
 */
function splitsBlock(tensor: string, index: GraphIndex): boolean {
  const readers = [...new Set(index.consumers.get(tensor) ?? [])];
  // x · sigmoid(x) and x · hardsigmoid(x) (swish, hard-swish) read x twice: still an activation.
  if (readers.some((r) => ACTIVATIONS.has(index.nodes[r].opType))) return true;
  const p = index.producer.get(tensor);
  if (p === undefined || !FUSED_PRODUCERS.has(index.nodes[p].opType)) return false;
  // Several readers, one of them another layer: a block output kept for later (a skip), not the
  // inside of an activation written as element-wise ops (hard-swish: x · clip(x + 3) / 6).
  return readers.length === 1 || !readers.some((r) => LAYERS.has(index.nodes[r].opType));
}

/** Among cuts within `step` of each other in head share, keep the one shipping fewest bytes. */
function dropRedundant(cuts: Cut[], step: number): Cut[] {
  const kept: Cut[] = [];
  for (const cut of cuts) {
    const prev = kept[kept.length - 1];
    if (prev && cut.headShare - prev.headShare < step) {
      if (cut.bytes.fp32 < prev.bytes.fp32) kept[kept.length - 1] = cut;
    } else kept.push(cut);
  }
  return kept;
}
