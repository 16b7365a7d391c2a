import { type Int8Granularity, type Precision, type BoundarySpec, boundarySpecs, decodeTailInputs, encodeHeadOutputs } from './boundary.js';
import { type Cut, type CutOptions, findCuts } from './cuts.js';
import { type BoundaryType, extractModel } from './extract.js';
import { type GraphIndex, indexGraph } from './graph.js';
import { type LoadedModel, ModelError, declaredType, serializeModel } from './onnx-model.js';
import { type TensorShape, probeShapes, resolveInputShapes } from './probe.js';

/** A model with its graph index, probed shapes and candidate cuts: computed once per model. */
export interface ModelAnalysis {
  model: LoadedModel;
  index: GraphIndex;
  inputShapes: Record<string, number[]>;
  shapes: Map<string, TensorShape>;
  /** True when some input dim is symbolic: boundary shapes then follow the input at run time. */
  dynamic: boolean;
  cuts: Cut[];
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
  return { model, index, inputShapes, shapes, dynamic, cuts: findCuts(index, shapes, options.cuts) };
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
    throw new ModelError('UNKNOWN_CUT', `no cut '${cutId}' in this model (cuts: ${analysis.cuts.map((c) => c.id).join(', ') || 'none'})`);
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
    cut.tensors.map((t) => [t.name, dynamic ? { dtype: t.dtype } : { dtype: t.dtype, dims: t.shape }]),
  );
  // Extraction builds fresh graph containers, so the edits below never reach the source model.
  const head = extractModel(model.proto, index, index.inputs, names, types);
  const tail = extractModel(model.proto, index, names, index.outputs, types);
  const boundary = boundarySpecs(cut.tensors, precision, granularity);
  encodeHeadOutputs(head, boundary, dynamic);
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
