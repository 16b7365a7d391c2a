import { randomUUID } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { clone } from '@bufbuild/protobuf';
import { NodeProtoSchema, type ModelProto, type NodeProto, type TensorProto } from 'onnx-buf';
import ort from './ort-float16.js';
import {
  type Int8Granularity,
  type Precision,
  type BoundarySpec,
  boundarySpecs,
  decodeTailInputs,
  declaredDims,
  encodeHeadOutputs,
} from './boundary.js';
import { type Cut, type CutOptions, findCuts } from './cuts.js';
import { type BoundaryType, extractModel } from './extract.js';
import { type GraphIndex, indexGraph } from './graph.js';
import {
  type LoadedModel,
  ModelError,
  attr,
  declaredType,
  node,
  opset13Model,
  parseModel,
  serializeModel,
  tensorValueInfo,
} from './onnx-model.js';
import { type TensorShape, probeShapes, resolveInputShapes, symbolicDims } from './probe.js';

/** A model with its graph index, probed shapes and candidate cuts: computed once per model. */
export interface ModelAnalysis {
  model: LoadedModel;
  index: GraphIndex;
  inputShapes: Record<string, number[]>;
  shapes: Map<string, TensorShape>;
  /** True when some input dim is symbolic: boundary shapes then follow the input at run time. */
  dynamic: boolean;
  cuts: Cut[];
  /** Channel block of ORT's blocked CPU layout here (see nchwcBlockSize); 0 or absent: none. */
  nchwcBlock?: number;
}

export interface AnalyzeOptions {
  inputShapes?: Record<string, number[]>;
  cuts?: Partial<CutOptions>;
}

export async function analyzeModel(model: LoadedModel, options: AnalyzeOptions = {}): Promise<ModelAnalysis> {
  const index = indexGraph(model.graph);
  const inputShapes = resolveInputShapes(model, index, options.inputShapes);
  const shapes = await probeShapes(model, index, inputShapes);
  const dynamic = model.graph.input
    .filter((i) => index.inputs.includes(i.name))
    .some((i) => (declaredType(i)?.dims ?? ['?']).some((d) => typeof d !== 'number' || d <= 0));
  const cuts = findCuts(index, shapes, options.cuts);
  if (dynamic) {
    const dims = await symbolicDims(
      model,
      index,
      inputShapes,
      shapes,
      cuts.flatMap((c) => c.tensors.map((t) => t.name)),
    );
    for (const t of cuts.flatMap((c) => c.tensors)) {
      const d = dims.get(t.name);
      if (d) t.dims = d;
    }
  }
  return { model, index, inputShapes, shapes, dynamic, cuts, nchwcBlock: await nchwcBlockSize() };
}

export interface SplitModels {
  cut: Cut;
  precision: Precision;
  granularity: Int8Granularity;
  head: Uint8Array;
  tail: Uint8Array;
  boundary: BoundarySpec[];
  /** The whole model's input and output names, for feeding the head and reading the tail. */
  inputs: string[];
  outputs: string[];
}

export function findCut(analysis: ModelAnalysis, cutId: string): Cut {
  const cut = analysis.cuts.find((c) => c.id === cutId);
  if (!cut) {
    throw new ModelError(
      'UNKNOWN_CUT',
      `no cut '${cutId}' in this model (cuts: ${analysis.cuts.map((c) => c.id).join(', ') || 'none'})`,
    );
  }
  return cut;
}

/** Head and tail ONNX models for one cut, with the boundary encoded at `precision`. */
export function buildSplit(
  analysis: ModelAnalysis,
  cutId: string,
  precision: Precision = 'fp32',
  granularity: Int8Granularity = 'channel',
): SplitModels {
  const cut = findCut(analysis, cutId);
  const { model, index, dynamic } = analysis;
  const names = cut.tensors.map((t) => t.name);
  const types = new Map<string, BoundaryType>(
    cut.tensors.map((t) => [t.name, { dtype: t.dtype, dims: dynamic ? t.dims : t.shape }]),
  );
  // Extraction builds fresh graph containers, so the edits below never reach the source model.
  const head = extractModel(model.proto, index, index.inputs, names, types);
  const tail = extractModel(model.proto, index, names, index.outputs, types);
  const boundary = boundarySpecs(cut.tensors, precision, granularity);
  encodeHeadOutputs(head, boundary, dynamic);
  if (analysis.nchwcBlock) anchorBlockedLayout(tail, boundary, dynamic, analysis.nchwcBlock);
  decodeTailInputs(tail, boundary, dynamic);
  return {
    cut,
    precision,
    granularity,
    head: serializeModel(head),
    tail: serializeModel(tail),
    boundary,
    inputs: index.inputs,
    outputs: index.outputs,
  };
}

const FLOAT = 1;
const BLOCKED_SUFFIX = '__rm_blocked';
/** Ops that keep a blocked input blocked in ORT's NCHWc pass (BatchNormalization becomes a Conv). */
const BLOCKED_PASS_THROUGH = new Set(['BatchNormalization', 'Relu', 'Sigmoid', 'Tanh']);

/**
 * Keeps ORT's blocked layout across a tail's first residual Add. On x86, ORT rewrites Conv
 * chains into a channel-blocked layout (NCHWc) and fuses a residual Add (and the activation
 * after it) into the Conv before it, but only when both Add operands come from blocked ops.
 * A tail input is plain NCHW, so where it is the skip operand of such an Add, ORT converts the
 * Conv output back to NCHW, runs Add and activation on their own and converts back, which
 * the whole model never does (on the generated CNN that cost its tails 5–18 µs, 2–7 % of the
 * whole model's run, at four of its seven cuts). A 1×1 MaxPool, an exact identity, is an op ORT blocks
 * whatever its input; put on such an input, it lets the Add and activation fuse as in the
 * whole model, for the price of one copy. Only where ORT blocks this tensor at all: float,
 * rank 4, channels known and a multiple of `block`.
 */
export function anchorBlockedLayout(tail: ModelProto, specs: BoundarySpec[], dynamic: boolean, block: number): void {
  const graph = tail.graph!;
  const weights = new Map<string, TensorProto>(graph.initializer.map((t) => [t.name, t]));
  const producer = new Map<string, NodeProto>();
  for (const n of graph.node) {
    for (const o of n.output) producer.set(o, n);
    const value = n.opType === 'Constant' ? n.attribute.find((a) => a.name === 'value')?.t : undefined;
    if (value) weights.set(n.output[0], value);
  }
  // ORT blocks 2-D Convs with constant float weights, padding channels up to the block.
  const blockedConv = (n: NodeProto): boolean => {
    const w = weights.get(n.input[1] ?? '');
    return w !== undefined && w.dataType === FLOAT && w.dims.length === 4;
  };
  const blocked = (name: string, depth = 0): boolean => {
    const p = producer.get(name);
    if (!p || p.domain || depth > 4) return false;
    if (p.opType === 'Conv') return blockedConv(p);
    return BLOCKED_PASS_THROUGH.has(p.opType) && blocked(p.input[0], depth + 1);
  };
  const anchors: NodeProto[] = [];
  for (const spec of specs) {
    const dims = declaredDims(spec, dynamic);
    const channels = dims?.[1];
    if (spec.dtype !== 'float32' || dims?.length !== 4 || typeof channels !== 'number' || channels % block !== 0)
      continue;
    const isSkip = graph.node.some(
      (n) =>
        !n.domain &&
        (n.opType === 'Add' || n.opType === 'Sum') &&
        n.input.includes(spec.name) &&
        n.input.every((i) => i === spec.name || blocked(i)),
    );
    if (!isSkip) continue;
    const anchored = `${spec.name}${BLOCKED_SUFFIX}`;
    // Nodes are shared with the source model (see extractModel): rewire copies.
    graph.node = graph.node.map((n) => {
      if (!n.input.includes(spec.name)) return n;
      const copy = clone(NodeProtoSchema, n);
      copy.input = n.input.map((i) => (i === spec.name ? anchored : i));
      return copy;
    });
    anchors.push(node('MaxPool', [spec.name], [anchored], [attr('kernel_shape', [1, 1])]));
  }
  graph.node.unshift(...anchors);
}

let blockSize: Promise<number> | undefined;

/**
 * The channel block of ORT's blocked (NCHWc) CPU layout on this machine: 8 with AVX2, 16 with
 * AVX-512, 0 where ORT does not use it (other CPUs). Asked of ORT once per process: a MaxPool
 * over 4, 8, …, 64 channels each, optimized and saved; the narrowest one ORT blocked is the block.
 */
export function nchwcBlockSize(): Promise<number> {
  blockSize ??= probeBlockSize().catch(() => 0);
  return blockSize;
}

async function probeBlockSize(): Promise<number> {
  const widths = [4, 8, 16, 32, 64];
  const model = opset13Model('robomesh nchwc probe', {
    name: 'nchwc_probe',
    node: widths.map((c) => node('MaxPool', [`x${c}`], [`y${c}`], [attr('kernel_shape', [1, 1])])),
    input: widths.map((c) => tensorValueInfo(`x${c}`, FLOAT, [1, c, 2, 2])),
    output: widths.map((c) => tensorValueInfo(`y${c}`, FLOAT, [1, c, 2, 2])),
  });
  const path = join(tmpdir(), `robomesh-nchwc-${process.pid}-${randomUUID()}.onnx`);
  try {
    const session = await ort.InferenceSession.create(serializeModel(model), {
      graphOptimizationLevel: 'all',
      intraOpNumThreads: 1,
      interOpNumThreads: 1,
      optimizedModelFilePath: path,
      logSeverityLevel: 3,
    });
    await session.release();
    const optimized = parseModel(new Uint8Array(await readFile(path)), 'optimized probe').graph;
    const pooled = new Set(
      optimized.node.filter((n) => n.opType === 'MaxPool' && n.domain.endsWith('nchwc')).flatMap((n) => n.input),
    );
    // A blocked pool reads its input through a ReorderInput; find which width that was.
    const reordered = new Set(
      optimized.node.filter((n) => n.output.some((o) => pooled.has(o))).flatMap((n) => n.input),
    );
    return widths.find((c) => reordered.has(`x${c}`)) ?? 0;
  } finally {
    await rm(path, { force: true });
  }
}
