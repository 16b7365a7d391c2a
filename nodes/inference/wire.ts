import ort from './ort-float16.js';
import { type DType, type TensorData, isDType } from '../../protocol/dtypes.js';
import { RobomeshError } from '../../protocol/errors.js';
import type { Tensor } from '../../protocol/tensor-frame.js';
import { type BoundarySpec, declaredDims } from './boundary.js';

/** A boundary frame that does not match what the tail expects. */
export type BoundaryErrorCode = 'MISSING_OUTPUT' | 'WRONG_DTYPE' | 'WRONG_QUANT' | 'WRONG_SHAPE' | 'WRONG_TENSORS';

/**
 * ORT's data as the typed array tensor frames use: on Node 24, onnxruntime-node hands float16 out
 * as a Float16Array (a global there); frames carry float16 as its raw 16-bit words.
 */
export function tensorData(type: string, data: unknown): TensorData {
  if (type === 'float16' && !(data instanceof Uint16Array)) {
    const d = data as ArrayBufferView;
    return new Uint16Array(d.buffer, d.byteOffset, d.byteLength / 2);
  }
  return data as TensorData;
}

export class BoundaryError extends RobomeshError<BoundaryErrorCode> {
  constructor(code: BoundaryErrorCode, message: string, options?: ErrorOptions) {
    super(code, message, options);
  }
}

const WIRE_DTYPE: Record<BoundarySpec['encoding'], DType | undefined> = {
  raw: undefined,
  fp16: 'float16',
  uint8: 'uint8',
};

/** Head outputs → frame tensors: one per cut tensor, quantization parameters carried in the frame. */
export function headOutputsToFrame(boundary: BoundarySpec[], outputs: ort.InferenceSession.OnnxValueMapType): Tensor[] {
  return boundary.map((spec) => {
    const value = outputs[spec.parts[0]] as ort.Tensor | undefined;
    if (!value || !isDType(value.type))
      throw new BoundaryError('MISSING_OUTPUT', `head did not produce '${spec.parts[0]}'`);
    const tensor: Tensor = {
      name: spec.name,
      dtype: value.type,
      dims: [...value.dims],
      data: tensorData(value.type, value.data),
    };
    if (spec.encoding === 'uint8') {
      const scale = outputs[spec.parts[1]] as ort.Tensor;
      const zp = outputs[spec.parts[2]] as ort.Tensor;
      tensor.quant = {
        scale: scale.data as Float32Array,
        zeroPoint: Int32Array.from(zp.data as Uint8Array),
        ...(spec.axis === undefined ? {} : { axis: spec.axis }),
      };
    }
    return tensor;
  });
}

/** A tensor as a frame's headers describe it, before its data arrived. */
export type TensorShape = Omit<Tensor, 'data'>;

/**
 * Checks tensors (from a frame's headers alone, or whole) against the boundary: every tensor
 * present, the dtype and rank it must have, fixed dims equal, quantization as agreed. Anything
 * else is a BoundaryError naming the tensor, never a tail run on a wrong tensor.
 */
export function checkTailTensors(boundary: BoundarySpec[], tensors: readonly TensorShape[], dynamic: boolean): void {
  const byName = new Map(tensors.map((t) => [t.name, t]));
  if (byName.size !== boundary.length) {
    throw new BoundaryError(
      'WRONG_TENSORS',
      `frame has ${tensors.map((t) => t.name).join(', ')}; the cut needs ${boundary.map((b) => b.name).join(', ')}`,
    );
  }
  for (const spec of boundary) {
    const t = byName.get(spec.name);
    if (!t) throw new BoundaryError('WRONG_TENSORS', `frame lacks boundary tensor '${spec.name}'`);
    const dtype = WIRE_DTYPE[spec.encoding] ?? spec.dtype;
    if (t.dtype !== dtype)
      throw new BoundaryError('WRONG_DTYPE', `'${spec.name}' must be ${dtype}, frame has ${t.dtype}`);
    if (t.dims.length !== spec.shape.length) {
      throw new BoundaryError(
        'WRONG_SHAPE',
        `'${spec.name}' must have rank ${spec.shape.length}, frame has [${t.dims.join(', ')}]`,
      );
    }
    const fixed = declaredDims(spec, dynamic);
    if (fixed && t.dims.some((d, k) => typeof fixed[k] === 'number' && d !== fixed[k])) {
      const want = fixed.map((d) => (typeof d === 'number' ? d : '?')).join(', ');
      throw new BoundaryError('WRONG_SHAPE', `'${spec.name}' must be [${want}], frame has [${t.dims.join(', ')}]`);
    }
    if (spec.encoding === 'uint8') {
      const q = t.quant;
      if (!q || q.axis !== spec.axis) {
        throw new BoundaryError(
          'WRONG_QUANT',
          `'${spec.name}' must be quantized ${spec.axis === undefined ? 'per tensor' : `along axis ${spec.axis}`}`,
        );
      }
      if (q.zeroPoint.some((z) => z < 0 || z > 255))
        throw new BoundaryError('WRONG_QUANT', `'${spec.name}' zero point outside uint8`);
    } else if (t.quant) {
      throw new BoundaryError('WRONG_QUANT', `'${spec.name}' must not be quantized`);
    }
  }
}

/** Frame tensors → tail feeds, after checkTailTensors. */
export function frameToTailFeeds(
  boundary: BoundarySpec[],
  tensors: Tensor[],
  dynamic: boolean,
): Record<string, ort.Tensor> {
  checkTailTensors(boundary, tensors, dynamic);
  const byName = new Map(tensors.map((t) => [t.name, t]));
  const feeds: Record<string, ort.Tensor> = {};
  for (const spec of boundary) {
    const t = byName.get(spec.name)!;
    const dtype = WIRE_DTYPE[spec.encoding] ?? spec.dtype;
    feeds[spec.parts[0]] = new ort.Tensor(dtype as 'float32', t.data as Float32Array, t.dims);
    if (spec.encoding === 'uint8') {
      const q = t.quant!;
      const paramDims = spec.axis === undefined ? [] : [q.scale.length];
      feeds[spec.parts[1]] = new ort.Tensor('float32', q.scale, paramDims);
      feeds[spec.parts[2]] = new ort.Tensor('uint8', Uint8Array.from(q.zeroPoint), paramDims);
    }
  }
  return feeds;
}
