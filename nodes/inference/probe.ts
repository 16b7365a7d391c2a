import { clone } from '@bufbuild/protobuf';
import { ModelProtoSchema } from 'onnx-buf';
import ort from 'onnxruntime-node';
import { type DType, isDType } from '../../protocol/dtypes.js';
import type { GraphIndex } from './graph.js';
import { type LoadedModel, ModelError, declaredType, serializeModel } from './onnx-model.js';
import { tensorValueInfo } from './onnx-model.js';
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
        throw new ModelError('BAD_INPUT_SHAPE', `input '${info.name}' has rank ${declared.length}, shape given has ${override.length}`);
      }
      declared?.forEach((d, k) => {
        if (typeof d === 'number' && d > 0 && d !== override[k]) {
          throw new ModelError('BAD_INPUT_SHAPE', `input '${info.name}' dim ${k} is fixed at ${d}, shape given says ${override[k]}`);
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
 * Shapes and dtypes of every non-constant tensor, from one ORT run with all of them exposed
 * as outputs (there is no ONNX shape inference in JS).
 */
export async function probeShapes(
  model: LoadedModel,
  index: GraphIndex,
  inputShapes: Record<string, number[]>,
): Promise<Map<string, TensorShape>> {
  const probe = clone(ModelProtoSchema, model.proto);
  const graph = probe.graph!;
  const existing = new Set(graph.output.map((o) => o.name));
  for (const n of index.nodes) {
    for (const o of n.output) {
      if (o && !index.constants.has(o) && !existing.has(o)) {
        existing.add(o);
        graph.output.push(tensorValueInfo(o, 0));
        graph.output[graph.output.length - 1].type = undefined;
      }
    }
  }
  const session = await ort.InferenceSession.create(serializeModel(probe), { graphOptimizationLevel: 'disabled' });
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
