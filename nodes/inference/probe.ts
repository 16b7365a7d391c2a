import { clone } from '@bufbuild/protobuf';
import { ModelProtoSchema } from 'onnx-buf';
import ort from './ort-float16.js';
import { type DType, isDType } from '../../protocol/dtypes.js';
import type { GraphIndex } from './graph.js';
import { type LoadedModel, ModelError, declaredType, serializeModel, tensorValueInfo } from './onnx-model.js';
import { syntheticFeeds } from './feeds.js';

export interface TensorShape {
  dtype: DType;
  dims: number[];
}

/** Dims for each graph input: declared fixed dims kept, symbolic ones from overrides or defaults. */
export function resolveInputShapes(
  model: LoadedModel,
  index: GraphIndex,
  overrides: Record<string, number[]> = {},
): Record<string, number[]> {
  for (const name of Object.keys(overrides)) {
    if (!index.inputs.includes(name)) {
      throw new ModelError('BAD_INPUT_SHAPE', `model has no input '${name}' (inputs: ${index.inputs.join(', ')})`);
    }
  }
  const shapes: Record<string, number[]> = {};
  for (const info of model.graph.input.filter((i) => index.inputs.includes(i.name))) {
    const declared = declaredType(info)?.dims;
    const override = overrides[info.name];
    if (override) {
      if (declared && declared.length !== override.length) {
        throw new ModelError(
          'BAD_INPUT_SHAPE',
          `input '${info.name}' has rank ${declared.length}, shape given has ${override.length}`,
        );
      }
      declared?.forEach((d, k) => {
        if (typeof d === 'number' && d > 0 && d !== override[k]) {
          throw new ModelError(
            'BAD_INPUT_SHAPE',
            `input '${info.name}' dim ${k} is fixed at ${d}, shape given says ${override[k]}`,
          );
        }
      });
      shapes[info.name] = override;
    } else {
      if (!declared) throw new ModelError('BAD_INPUT_SHAPE', `input '${info.name}' has no declared shape; pass one`);
      // Symbolic dims: batch 1, every other one 256 (a multiple of common strides).
      shapes[info.name] = declared.map((d, k) => (typeof d === 'number' && d > 0 ? d : k === 0 ? 1 : 256));
    }
  }
  return shapes;
}

/**
 * Shapes and dtypes of every non-constant tensor (or only of `only`), from one ORT run with
 * them exposed as outputs (there is no ONNX shape inference in JS).
 */
export async function probeShapes(
  model: LoadedModel,
  index: GraphIndex,
  inputShapes: Record<string, number[]>,
  only?: Iterable<string>,
): Promise<Map<string, TensorShape>> {
  const probe = clone(ModelProtoSchema, model.proto);
  const graph = probe.graph!;
  const wanted = only === undefined ? undefined : new Set(only);
  const existing = new Set(graph.output.map((o) => o.name));
  for (const n of index.nodes) {
    for (const o of n.output) {
      if (o && !index.constants.has(o) && !existing.has(o) && (!wanted || wanted.has(o))) {
        existing.add(o);
        graph.output.push(tensorValueInfo(o, 0));
        graph.output[graph.output.length - 1].type = undefined;
      }
    }
  }
  const session = await ort.InferenceSession.create(serializeModel(probe), {
    graphOptimizationLevel: 'disabled',
    // Optimisations are off here anyway: ORT's advice on initializers listed as inputs is noise.
    logSeverityLevel: 3,
  });
  try {
    const feeds = syntheticFeeds(model, index, inputShapes, 1);
    const results = await session.run(feeds);
    const shapes = new Map<string, TensorShape>();
    for (const [name, t] of Object.entries({ ...feeds, ...results })) {
      if (isDType(t.type)) shapes.set(name, { dtype: t.type, dims: [...t.dims] });
      if (name in results) t.dispose();
    }
    return shapes;
  } finally {
    await session.release();
  }
}

/**
 * Dims to declare for `names` in sub-models of a model with symbolic input dims: a number where
 * the dim is fixed, a symbolic name (one per tensor and axis, so no equality is claimed between
 * tensors) where it follows the input. Found by probing again with every symbolic input dim
 * doubled (doubling keeps any divisibility the model needs) and comparing with `shapes`.
 * Declaring the fixed dims matters: ORT plans layouts, fusions and constant folding on them,
 * and a boundary of unknown shape made tails measurably slower than the same layers inside the
 * whole model. Tensors whose rank changes, or all of them if the second probe fails, are left
 * out (declared without a shape, as before).
 */
export async function symbolicDims(
  model: LoadedModel,
  index: GraphIndex,
  inputShapes: Record<string, number[]>,
  shapes: Map<string, TensorShape>,
  names: Iterable<string>,
): Promise<Map<string, (number | string)[]>> {
  const wanted = [...new Set(names)];
  const varied: Record<string, number[]> = {};
  for (const [name, dims] of Object.entries(inputShapes)) {
    const declared = declaredType(model.graph.input.find((i) => i.name === name)!)?.dims;
    varied[name] = dims.map((d, k) => {
      const fixed = declared?.[k];
      return typeof fixed === 'number' && fixed > 0 ? d : 2 * d;
    });
  }
  let other: Map<string, TensorShape>;
  try {
    other = await probeShapes(model, index, varied, wanted);
  } catch {
    return new Map(); // the model refuses the other shape: keep boundaries shapeless
  }
  const out = new Map<string, (number | string)[]>();
  for (const name of wanted) {
    const a = shapes.get(name)?.dims;
    const b = other.get(name)?.dims;
    if (!a || !b || a.length !== b.length) continue;
    out.set(
      name,
      a.map((d, k) => (d === b[k] ? d : `${name}:${k}`)),
    );
  }
  return out;
}
