import { create } from '@bufbuild/protobuf';
import { type ModelProto, StringStringEntryProtoSchema, type TensorProto } from 'onnx-buf';
import type { ChainManifest, ChainStage } from '../../protocol/chain-manifest.js';
import { DTYPES, dtypeFromCode } from '../../protocol/dtypes.js';
import { RobomeshError } from '../../protocol/errors.js';
import {
  type Int8Granularity,
  type Precision,
  boundarySpecs,
  decodeTailInputs,
  encodeHeadOutputs,
} from './boundary.js';
import type { Cut } from './cuts.js';
import { type BoundaryType, extractModel } from './extract.js';
import { indexGraph } from './graph.js';
import { type LoadedModel, declaredType, parseModel, serializeModel } from './onnx-model.js';
import { type ModelAnalysis, anchorBlockedLayout, findCut } from './split.js';

export const STAGE_META_KEY = 'robomesh.stage';
/** Where a chain starts and ends, in place of a cut id. */
export const CHAIN_INPUT = 'input';
export const CHAIN_OUTPUT = 'output';

/** What a stage file says about itself (its ONNX metadata). */
export interface StageInfo {
  v: 1;
  model: string;
  index: number;
  of: number;
  from: string;
  to: string;
  inPrecision: Precision;
  outPrecision: Precision;
  granularity: Int8Granularity;
}

export type StageErrorCode = 'BAD_STAGE' | 'BAD_CHAIN';
export type StageOutput = NonNullable<ChainStage['outputs']>[number];

export class StageError extends RobomeshError<StageErrorCode> {
  constructor(code: StageErrorCode, message: string) {
    super(code, message);
  }
}

const ELEMENT_BYTES: Record<number, number> = { 1: 4, 2: 1, 3: 1, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 16: 2 };

function tensorBytes(t: TensorProto): number {
  if (t.rawData.length > 0) return t.rawData.length;
  const count = t.dims.reduce((a, b) => a * Number(b), 1);
  return count * (ELEMENT_BYTES[t.dataType] ?? 4);
}

/** Bytes of a model's weights: initializers and Constant values. */
export function weightBytes(proto: ModelProto): number {
  const graph = proto.graph!;
  let bytes = graph.initializer.reduce((n, t) => n + tensorBytes(t), 0);
  for (const n of graph.node) {
    const value = n.opType === 'Constant' ? n.attribute.find((a) => a.name === 'value')?.t : undefined;
    if (value) bytes += tensorBytes(value);
  }
  return bytes;
}

const tensorsOf = (analysis: ModelAnalysis, end: string, side: 'from' | 'to'): string[] => {
  if (end === (side === 'from' ? CHAIN_INPUT : CHAIN_OUTPUT))
    return side === 'from' ? analysis.index.inputs : analysis.index.outputs;
  return findCut(analysis, end).tensors.map((t) => t.name);
};

/**
 * The stage of a model from cut `from` (or its input) to cut `to` (or its output), taking the
 * first boundary encoded at `inPrecision` and giving the second at `outPrecision`. Shapes are
 * fixed at the shapes the model was analysed at, so every stage file checks its frames exactly.
 */
export function buildStage(
  analysis: ModelAnalysis,
  from: string,
  to: string,
  precisions: { in: Precision; out: Precision; granularity?: Int8Granularity },
  position: { index: number; of: number },
): { bytes: Uint8Array; info: StageInfo; outputs?: StageOutput[] } {
  const { model, index, inputShapes } = analysis;
  const granularity = precisions.granularity ?? 'channel';
  const inputs = tensorsOf(analysis, from, 'from');
  const outputs = tensorsOf(analysis, to, 'to');
  const shared = inputs.filter((n) => outputs.includes(n));
  if (shared.length > 0)
    throw new StageError(
      'BAD_CHAIN',
      `cuts ${from} and ${to} both carry '${shared[0]}': a stage between them would only pass it on`,
    );
  const fromCut: Cut | undefined = from === CHAIN_INPUT ? undefined : findCut(analysis, from);
  const toCut: Cut | undefined = to === CHAIN_OUTPUT ? undefined : findCut(analysis, to);
  const types = new Map<string, BoundaryType>();
  for (const t of [...(fromCut?.tensors ?? []), ...(toCut?.tensors ?? [])])
    types.set(t.name, { dtype: t.dtype, dims: t.shape });
  if (!fromCut)
    for (const name of inputs) {
      const info = model.graph.input.find((i) => i.name === name);
      const dtype = dtypeFromCode(declaredType(info!)?.elemType ?? 0);
      if (dtype) types.set(name, { dtype, dims: inputShapes[name] });
    }
  const stage = extractModel(model.proto, index, inputs, outputs, types);
  if (toCut) encodeHeadOutputs(stage, boundarySpecs(toCut.tensors, precisions.out, granularity), false);
  if (fromCut) {
    const specs = boundarySpecs(fromCut.tensors, precisions.in, granularity);
    if (analysis.nchwcBlock) anchorBlockedLayout(stage, specs, false, analysis.nchwcBlock);
    decodeTailInputs(stage, specs, false);
  }
  const info: StageInfo = {
    v: 1,
    model: model.hash,
    ...position,
    from,
    to,
    inPrecision: fromCut ? precisions.in : 'fp32',
    outPrecision: toCut ? precisions.out : 'fp32',
    granularity,
  };
  const gives: StageOutput[] = [];
  for (const o of stage.graph!.output) {
    const declared = declaredType(o);
    const dtype = dtypeFromCode(declared?.elemType ?? 0);
    const dims = declared?.dims;
    if (!dtype || !dims?.every((d): d is number => typeof d === 'number' && d > 0)) {
      gives.length = 0;
      break;
    }
    gives.push({ name: o.name, dtype, dims });
  }
  stage.metadataProps = [
    ...stage.metadataProps.filter((p) => p.key !== STAGE_META_KEY),
    create(StringStringEntryProtoSchema, { key: STAGE_META_KEY, value: JSON.stringify(info) }),
  ];
  return { bytes: serializeModel(stage), info, outputs: gives.length ? gives : undefined };
}

/** A stage file's info, or undefined for a model that is not a stage; malformed info throws. */
export function stageInfoOf(model: LoadedModel, source = 'model'): StageInfo | undefined {
  const meta = model.proto.metadataProps.find((p) => p.key === STAGE_META_KEY)?.value;
  if (meta === undefined) return undefined;
  let info: Partial<StageInfo>;
  try {
    info = JSON.parse(meta) as Partial<StageInfo>;
  } catch {
    throw new StageError('BAD_STAGE', `${source}: its '${STAGE_META_KEY}' metadata is not JSON`);
  }
  const precision = (p: unknown) => p === 'fp32' || p === 'fp16' || p === 'int8';
  const ok =
    info.v === 1 &&
    typeof info.model === 'string' &&
    /^[0-9a-f]{64}$/.test(info.model) &&
    Number.isInteger(info.index) &&
    Number.isInteger(info.of) &&
    typeof info.from === 'string' &&
    typeof info.to === 'string' &&
    precision(info.inPrecision) &&
    precision(info.outPrecision);
  if (!ok) throw new StageError('BAD_STAGE', `${source}: incomplete '${STAGE_META_KEY}' metadata`);
  return info as StageInfo;
}

/**
 * What a robot holding only a stage needs: its index, the fixed shapes its inputs declare, and
 * no cuts (a stage is served whole, never split again).
 */
export async function analyzeStage(model: LoadedModel): Promise<ModelAnalysis> {
  const index = indexGraph(model.graph);
  const inputShapes: Record<string, number[]> = {};
  for (const name of index.inputs) {
    const dims = declaredType(model.graph.input.find((i) => i.name === name)!)?.dims;
    if (!dims || !dims.every((d): d is number => typeof d === 'number' && d > 0))
      throw new StageError('BAD_STAGE', `stage input '${name}' has no fixed shape`);
    inputShapes[name] = dims;
  }
  return { model, index, inputShapes, shapes: new Map(), dynamic: false, cuts: [] };
}

export interface ChainPlanOptions {
  stages: number;
  precision: Precision;
  /** The cuts to use (stages − 1 of them, in order); chosen here when absent. */
  cuts?: string[];
  /** Whole-model time and link rate: with both, boundaries are weighed as pipeline stages too. */
  wholeMs?: number;
  bytesPerSecond?: number;
  /** Measured head time per cut id (a profile): stages are then balanced by time, not FLOPs. */
  headMs?: Record<string, number>;
  /**
   * Robots that will hold each stage (default 1 each): a stage k robots share takes 1/k of the
   * frames, and so do the links into and out of it.
   */
  replicas?: number[];
  /**
   * With a link rate: whether the model's outputs travel back from the last stage's robot (true
   * by default: a requester usually holds the first stage, not the last).
   */
  outputsShipped?: boolean;
}

/**
 * The cuts that split a model into `stages` stages with the smallest bottleneck: the largest
 * stage's share of compute (× wholeMs), or a boundary's transfer time when a link rate is given.
 * Ties go to fewer bytes shipped. Consecutive cuts must not carry the same tensor.
 */
export function planChainCuts(analysis: ModelAnalysis, options: ChainPlanOptions): Cut[] {
  const { stages, precision } = options;
  if (!Number.isInteger(stages) || stages < 2)
    throw new StageError('BAD_CHAIN', `a chain needs at least 2 stages, not ${stages}`);
  const disjoint = (a: Cut | undefined, b: Cut | undefined): boolean =>
    !a || !b || !a.tensors.some((t) => b.tensors.some((u) => u.name === t.name));
  if (options.cuts) {
    const cuts = options.cuts.map((id) => findCut(analysis, id));
    if (cuts.length !== stages - 1)
      throw new StageError('BAD_CHAIN', `${stages} stages need ${stages - 1} cuts, got ${cuts.length}`);
    cuts.forEach((c, k) => {
      if (k > 0 && !(c.headShare > cuts[k - 1].headShare))
        throw new StageError('BAD_CHAIN', `cut ${c.id} does not come after ${cuts[k - 1].id}`);
      if (!disjoint(cuts[k - 1], c))
        throw new StageError('BAD_CHAIN', `cuts ${cuts[k - 1].id} and ${c.id} carry the same tensor`);
    });
    return cuts;
  }
  const cuts = [...analysis.cuts].sort((a, b) => a.headShare - b.headShare);
  if (options.bytesPerSecond && !options.wholeMs)
    throw new StageError(
      'BAD_CHAIN',
      "weighing boundaries against a link rate needs the model's time: run `robomesh profile MODEL` first",
    );
  const computeMs = options.wholeMs ?? 1;
  let outputBytes = 0;
  for (const name of analysis.index?.outputs ?? []) {
    const shape = analysis.shapes.get(name);
    if (shape) outputBytes += shape.dims.reduce((a, b) => a * b, 1) * DTYPES[shape.dtype].bytes;
  }
  const returnMs =
    options.bytesPerSecond && options.outputsShipped !== false
      ? (1000 * outputBytes) / options.bytesPerSecond / replicasOf(options, stages - 1)
      : 0;
  const measured = options.headMs && options.wholeMs ? options.headMs : undefined;
  const before = (c: Cut): number =>
    measured?.[c.id] !== undefined ? Math.min(1, measured[c.id] / computeMs) : c.headShare;
  const replicas = (stage: number): number => replicasOf(options, stage);
  // Boundary after stage j: its frames spread over the links of the wider stage beside it.
  const ship = (c: Cut, j: number): number =>
    options.bytesPerSecond
      ? (1000 * c.bytes[precision]) / options.bytesPerSecond / Math.max(replicas(j), replicas(j + 1))
      : 0;
  type Best = { bottleneck: number; bytes: number; path: number[] };
  // best[j][i]: the best j + 1 stages ending at cut i (minimax decomposes stage by stage).
  const best: (Best | undefined)[][] = [];
  best.push(
    cuts.map((c, k) => ({
      bottleneck: Math.max((before(c) * computeMs) / replicas(0), ship(c, 0)),
      bytes: c.bytes[precision],
      path: [k],
    })),
  );
  const better = (a: Best, b: Best | undefined): boolean =>
    !b || a.bottleneck < b.bottleneck - 1e-12 || (Math.abs(a.bottleneck - b.bottleneck) <= 1e-12 && a.bytes < b.bytes);
  for (let j = 1; j < stages - 1; j++) {
    const row: (Best | undefined)[] = cuts.map(() => undefined);
    cuts.forEach((c, to) => {
      for (let from = 0; from < to; from++) {
        const prev = best[j - 1][from];
        const p = cuts[from];
        if (!prev || !(c.headShare > p.headShare) || !disjoint(p, c)) continue;
        const candidate: Best = {
          bottleneck: Math.max(
            prev.bottleneck,
            (Math.max(0, before(c) - before(p)) * computeMs) / replicas(j),
            ship(c, j),
          ),
          bytes: prev.bytes + c.bytes[precision],
          path: [...prev.path, to],
        };
        if (better(candidate, row[to])) row[to] = candidate;
      }
    });
    best.push(row);
  }
  let chosen: Best | undefined;
  best[stages - 2].forEach((b, k) => {
    if (!b) return;
    const tail = (Math.max(0, 1 - before(cuts[k])) * computeMs) / replicas(stages - 1);
    const last = { ...b, bottleneck: Math.max(b.bottleneck, tail, returnMs) };
    if (better(last, chosen)) chosen = last;
  });
  if (!chosen)
    throw new StageError(
      'BAD_CHAIN',
      `this model has no ${stages - 1} cuts one after another that carry different tensors (${cuts.length} cuts)`,
    );
  return chosen.path.map((k) => cuts[k]);
}

function replicasOf(options: ChainPlanOptions, stage: number): number {
  return Math.max(1, options.replicas?.[stage] ?? 1);
}

/** Every stage file of a chain and its manifest. */
export function buildChain(
  analysis: ModelAnalysis,
  options: ChainPlanOptions & { granularity?: Int8Granularity },
): { manifest: ChainManifest; stages: { info: StageInfo; bytes: Uint8Array; outputs?: StageOutput[] }[] } {
  const cuts = planChainCuts(analysis, options);
  const ends = [CHAIN_INPUT, ...cuts.map((c) => c.id), CHAIN_OUTPUT];
  const shares = [0, ...cuts.map((c) => c.headShare), 1];
  const stages: { info: StageInfo; bytes: Uint8Array; outputs?: StageOutput[] }[] = [];
  const entries: ChainStage[] = [];
  for (let k = 0; k + 1 < ends.length; k++) {
    const stage = buildStage(
      analysis,
      ends[k],
      ends[k + 1],
      { in: options.precision, out: options.precision, granularity: options.granularity },
      { index: k, of: ends.length - 1 },
    );
    stages.push(stage);
    const parsed = parseModel(stage.bytes, `stage ${k + 1}`);
    entries.push({
      hash: parsed.hash,
      from: stage.info.from,
      to: stage.info.to,
      inPrecision: stage.info.inPrecision,
      outPrecision: stage.info.outPrecision,
      weightBytes: weightBytes(parsed.proto),
      share: Math.max(0, shares[k + 1] - shares[k]),
      outBytes: k < cuts.length ? cuts[k].bytes[options.precision] : 0,
      ...(stage.outputs ? { outputs: stage.outputs } : {}),
    });
  }
  return { manifest: { v: 1, model: analysis.model.hash, inputShapes: analysis.inputShapes, stages: entries }, stages };
}
