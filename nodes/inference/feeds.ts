import ort from './ort-float16.js';
import { dtypeFromCode } from '../../protocol/dtypes.js';
import { elementCount } from '../../protocol/tensor-frame.js';
import { prng } from '../util/index.js';
import type { GraphIndex } from './graph.js';
import { type LoadedModel, ModelError, declaredType } from './onnx-model.js';

/** Deterministic inputs for probing and profiling: floats uniform in [0, 1), integers zero. */
export function syntheticFeeds(
  model: LoadedModel,
  index: GraphIndex,
  shapes: Record<string, number[]>,
  seed: number,
): Record<string, ort.Tensor> {
  const random = prng(seed);
  const feeds: Record<string, ort.Tensor> = {};
  for (const name of index.inputs) {
    const info = model.graph.input.find((i) => i.name === name)!;
    const dtype = dtypeFromCode(declaredType(info)?.elemType ?? 0);
    const dims = shapes[name];
    if (!dtype || !dims) throw new ModelError('BAD_INPUT_SHAPE', `input '${name}' needs a tensor type and a shape`);
    const n = elementCount(dims);
    switch (dtype) {
      case 'float32':
        feeds[name] = new ort.Tensor('float32', Float32Array.from({ length: n }, random), dims);
        break;
      case 'float64':
        feeds[name] = new ort.Tensor('float64', Float64Array.from({ length: n }, random), dims);
        break;
      case 'float16':
        // Zeros: these feeds time and probe models, and fp16 boundaries carry what a head gave.
        feeds[name] = new ort.Tensor('float16', new Uint16Array(n), dims);
        break;
      case 'int64':
        feeds[name] = new ort.Tensor('int64', new BigInt64Array(n), dims);
        break;
      case 'int32':
        feeds[name] = new ort.Tensor('int32', new Int32Array(n), dims);
        break;
      case 'bool':
        feeds[name] = new ort.Tensor('bool', new Uint8Array(n), dims);
        break;
      case 'uint8':
        feeds[name] = new ort.Tensor(
          'uint8',
          Uint8Array.from({ length: n }, () => Math.floor(random() * 256)),
          dims,
        );
        break;
      default:
        throw new ModelError(
          'UNSUPPORTED_INPUT',
          `input '${name}' of type ${dtype}: synthetic data not supported; feed it yourself`,
        );
    }
  }
  return feeds;
}
