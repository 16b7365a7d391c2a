import type { ModelProto, NodeProto, TensorProto, ValueInfoProto } from 'onnx-buf';
import type { DType } from '../../protocol/dtypes.js';
import { ModelError, attr, defaultOpset, node, tensorProto, tensorValueInfo } from './onnx-model.js';

export type Precision = 'fp32' | 'fp16' | 'int8';
export const PRECISIONS: readonly Precision[] = ['fp32', 'fp16', 'int8'];
export type Int8Granularity = 'tensor' | 'channel';

/** How one cut tensor travels: which head outputs (= tail inputs) carry it, and how encoded. */
export interface BoundarySpec {
  name: string;
  dtype: DType;
  /** Shape seen when probing; dims may differ at run time for models with dynamic inputs. */
  shape: number[];
  /** Models with dynamic inputs: dims declared at the boundary (numbers fixed, names symbolic), if known. */
  dims?: (number | string)[];
  encoding: 'raw' | 'fp16' | 'uint8';
  /** uint8 only: quantized per slice along this axis; absent = one scale for the tensor. */
  axis?: number;
  /** Head outputs = tail inputs for this tensor: [value] or, for uint8, [value, scale, zeroPoint]. */
  parts: string[];
}

const FLOAT = 1;
const UINT8 = 2;
const INT64 = 7;
const FLOAT16 = 10;
const RESERVED = '__rm_';

export function boundarySpecs(
  tensors: { name: string; dtype: DType; shape: number[]; dims?: (number | string)[] }[],
  precision: Precision,
  granularity: Int8Granularity,
): BoundarySpec[] {
  return tensors.map(({ name, dtype, shape, dims }) => {
    const base = dims ? { name, dtype, shape, dims } : { name, dtype, shape };
    if (dtype !== 'float32' || precision === 'fp32') return { ...base, encoding: 'raw', parts: [name] };
    if (precision === 'fp16') return { ...base, encoding: 'fp16', parts: [`${name}${RESERVED}fp16`] };
    const parts = [`${name}${RESERVED}q`, `${name}${RESERVED}scale`, `${name}${RESERVED}zp`];
    const axis = granularity === 'channel' ? channelAxis(shape) : undefined;
    return axis === undefined ? { ...base, encoding: 'uint8', parts } : { ...base, encoding: 'uint8', axis, parts };
  });
}

/**
 * The axis to quantize per slice along: channels-first (axis 1) when a scale and zero point per
 * slice (8 bytes on the wire) cost at most 1/64 of the int8 data, else the last axis (channels-last
 * layouts, [N, boxes, 2] coordinate pairs) under the same rule, else none (one scale for the
 * tensor). Axis 1 regardless would put 3,600 scales on a [1, 3600, 2] tensor: more bytes than fp16.
 */
export function channelAxis(shape: number[]): number | undefined {
  if (shape.length < 2) return undefined;
  const size = shape.reduce((a, b) => a * b, 1);
  const affordable = (axis: number): boolean => shape[axis] > 1 && shape[axis] * 64 <= size;
  if (affordable(1)) return 1;
  if (shape.length > 2 && affordable(shape.length - 1)) return shape.length - 1;
  return undefined;
}

/** The dims a boundary part is declared with: the probed shape, the symbolic dims, or none. */
export function declaredDims(spec: BoundarySpec, dynamic: boolean): (number | string)[] | undefined {
  return dynamic ? spec.dims : spec.shape;
}

/** Dims of the per-channel scale and zero point (empty per tensor; unknown if the channel count is). */
function paramDims(spec: BoundarySpec, dynamic: boolean): (number | string)[] | undefined {
  if (spec.axis === undefined) return [];
  const channels = declaredDims(spec, dynamic)?.[spec.axis];
  return typeof channels === 'number' ? [channels] : undefined;
}

interface Emitted {
  nodes: NodeProto[];
  initializers: TensorProto[];
  io: ValueInfoProto[];
}

/** Rewrites the head so its outputs are the encoded boundary parts (Cast / quantize in-graph). */
export function encodeHeadOutputs(head: ModelProto, specs: BoundarySpec[], dynamic: boolean): void {
  const graph = head.graph!;
  const opset = defaultOpset(head);
  const out: Emitted = { nodes: [], initializers: [], io: [] };
  for (const spec of specs) {
    const dims = declaredDims(spec, dynamic);
    if (spec.encoding === 'raw') {
      out.io.push(graph.output.find((o) => o.name === spec.name)!);
    } else if (spec.encoding === 'fp16') {
      out.nodes.push(node('Cast', [spec.name], [spec.parts[0]], [attr('to', FLOAT16)]));
      out.io.push(tensorValueInfo(spec.parts[0], FLOAT16, dims));
    } else {
      quantize(spec, opset, out);
      out.io.push(
        tensorValueInfo(spec.parts[0], UINT8, dims),
        tensorValueInfo(spec.parts[1], FLOAT, paramDims(spec, dynamic)),
        tensorValueInfo(spec.parts[2], UINT8, paramDims(spec, dynamic)),
      );
    }
  }
  graph.node.push(...out.nodes);
  graph.initializer.push(...out.initializers);
  graph.output = out.io;
}

/** Rewrites the tail so it takes the encoded parts and decodes them back to float32 in-graph. */
export function decodeTailInputs(tail: ModelProto, specs: BoundarySpec[], dynamic: boolean): void {
  const graph = tail.graph!;
  const opset = defaultOpset(tail);
  const out: Emitted = { nodes: [], initializers: [], io: [] };
  for (const spec of specs) {
    const dims = declaredDims(spec, dynamic);
    if (spec.encoding === 'raw') {
      out.io.push(graph.input.find((i) => i.name === spec.name)!);
    } else if (spec.encoding === 'fp16') {
      out.nodes.push(node('Cast', [spec.parts[0]], [spec.name], [attr('to', FLOAT)]));
      out.io.push(tensorValueInfo(spec.parts[0], FLOAT16, dims));
    } else {
      dequantize(spec, opset, out);
      out.io.push(
        tensorValueInfo(spec.parts[0], UINT8, dims),
        tensorValueInfo(spec.parts[1], FLOAT, paramDims(spec, dynamic)),
        tensorValueInfo(spec.parts[2], UINT8, paramDims(spec, dynamic)),
      );
    }
  }
  graph.node.unshift(...out.nodes);
  graph.initializer.push(...out.initializers);
  graph.input = out.io;
}

function constant(out: Emitted, name: string, value: number | number[], type: 'float' | 'int64'): string {
  if (!out.initializers.some((t) => t.name === name)) {
    const data =
      type === 'float' ? Float32Array.of(value as number) : BigInt64Array.from((value as number[]).map(BigInt));
    out.initializers.push(
      tensorProto(name, type === 'float' ? FLOAT : INT64, type === 'float' ? [] : [data.length], data),
    );
  }
  return name;
}

/** QuantizeLinear exists from opset 10 (per-tensor) and takes an axis from 13. */
const hasQuantizeLinear = (opset: number, perAxis: boolean): boolean => opset >= (perAxis ? 13 : 10);

function requireOpset(opset: number, spec: BoundarySpec): void {
  if (opset < 8) {
    throw new ModelError('UNSUPPORTED_OPSET', `int8 boundary for '${spec.name}' needs opset >= 8 (model has ${opset})`);
  }
}

/**
 * Asymmetric uint8 with the range computed in-graph from this very tensor (min/max including 0),
 * so no calibration data is needed and any input distribution quantizes well.
 */
function quantize(spec: BoundarySpec, opset: number, out: Emitted): void {
  requireOpset(opset, spec);
  const [q, scaleOut, zpOut] = spec.parts;
  const p = `${spec.name}${RESERVED}`;
  const rank = spec.shape.length;
  const axes = [...Array(rank).keys()].filter((a) => a !== spec.axis);
  const reduce = (op: string, o: string): NodeProto =>
    opset >= 18
      ? node(op, [spec.name, constant(out, `${p}axes`, axes, 'int64')], [o], [attr('keepdims', 1)])
      : node(op, [spec.name], [o], [attr('axes', axes), attr('keepdims', 1)]);
  const zero = constant(out, `${RESERVED}zero`, 0, 'float');
  const half = constant(out, `${RESERVED}half`, 0.5, 'float');
  const levels = constant(out, `${RESERVED}255`, 255, 'float');
  const eps = constant(out, `${RESERVED}eps`, 1e-12, 'float');
  const flat = constant(
    out,
    spec.axis === undefined ? `${RESERVED}scalar_shape` : `${RESERVED}vector_shape`,
    spec.axis === undefined ? [] : [-1],
    'int64',
  );
  out.nodes.push(
    reduce('ReduceMin', `${p}min`),
    reduce('ReduceMax', `${p}max`),
    node('Min', [`${p}min`, zero], [`${p}lo`]),
    node('Max', [`${p}max`, zero], [`${p}hi`]),
    node('Sub', [`${p}hi`, `${p}lo`], [`${p}range`]),
    node('Div', [`${p}range`, levels], [`${p}step`]),
    node('Max', [`${p}step`, eps], [`${p}s`]),
    node('Sub', [zero, `${p}lo`], [`${p}neglo`]),
    node('Div', [`${p}neglo`, `${p}s`], [`${p}zraw`]),
    node('Add', [`${p}zraw`, half], [`${p}zhalf`]),
    node('Floor', [`${p}zhalf`], [`${p}zf`]),
    node('Reshape', [`${p}s`, flat], [scaleOut]),
    node('Cast', [`${p}zf`], [`${p}zp8`], [attr('to', UINT8)]),
    node('Reshape', [`${p}zp8`, flat], [zpOut]),
  );
  if (hasQuantizeLinear(opset, spec.axis !== undefined)) {
    const axisAttr = spec.axis === undefined ? [] : [attr('axis', spec.axis)];
    out.nodes.push(node('QuantizeLinear', [spec.name, scaleOut, zpOut], [q], axisAttr));
    return;
  }
  out.nodes.push(
    node('Div', [spec.name, `${p}s`], [`${p}x`]),
    node('Add', [`${p}x`, half], [`${p}xh`]),
    node('Floor', [`${p}xh`], [`${p}xr`]),
    node('Add', [`${p}xr`, `${p}zf`], [`${p}xz`]),
    node('Max', [`${p}xz`, zero], [`${p}xlo`]),
    node('Min', [`${p}xlo`, levels], [`${p}xc`]),
    node('Cast', [`${p}xc`], [q], [attr('to', UINT8)]),
  );
}

function dequantize(spec: BoundarySpec, opset: number, out: Emitted): void {
  requireOpset(opset, spec);
  const [q, scale, zp] = spec.parts;
  if (hasQuantizeLinear(opset, spec.axis !== undefined)) {
    const axisAttr = spec.axis === undefined ? [] : [attr('axis', spec.axis)];
    out.nodes.push(node('DequantizeLinear', [q, scale, zp], [spec.name], axisAttr));
    return;
  }
  const p = `${spec.name}${RESERVED}`;
  let s = scale;
  let z = zp;
  if (spec.axis !== undefined) {
    const shape = spec.shape.map((_, k) => (k === spec.axis ? -1 : 1));
    const bshape = constant(out, `${p}bshape`, shape, 'int64');
    out.nodes.push(node('Reshape', [scale, bshape], [`${p}sb`]), node('Reshape', [zp, bshape], [`${p}zb`]));
    s = `${p}sb`;
    z = `${p}zb`;
  }
  out.nodes.push(
    node('Cast', [q], [`${p}qf`], [attr('to', FLOAT)]),
    node('Cast', [z], [`${p}zpf`], [attr('to', FLOAT)]),
    node('Sub', [`${p}qf`, `${p}zpf`], [`${p}centered`]),
    node('Mul', [`${p}centered`, s], [spec.name]),
  );
}
