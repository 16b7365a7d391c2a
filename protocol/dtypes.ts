/**
 * Tensor element types carried in frames. Codes are ONNX TensorProto.DataType values so a frame
 * maps to an ONNX tensor without a translation table.
 */
export const DTYPES = {
  float32: { code: 1, bytes: 4 },
  uint8: { code: 2, bytes: 1 },
  int8: { code: 3, bytes: 1 },
  uint16: { code: 4, bytes: 2 },
  int16: { code: 5, bytes: 2 },
  int32: { code: 6, bytes: 4 },
  int64: { code: 7, bytes: 8 },
  bool: { code: 9, bytes: 1 },
  float16: { code: 10, bytes: 2 },
  float64: { code: 11, bytes: 8 },
  uint32: { code: 12, bytes: 4 },
  uint64: { code: 13, bytes: 8 },
} as const;

export type DType = keyof typeof DTYPES;

export type TypedArrayOf<D extends DType> = D extends 'float32'
  ? Float32Array
  : D extends 'uint8' | 'bool'
    ? Uint8Array
    : D extends 'int8'
      ? Int8Array
      : D extends 'uint16' | 'float16'
        ? Uint16Array
        : D extends 'int16'
          ? Int16Array
          : D extends 'int32'
            ? Int32Array
            : D extends 'int64'
              ? BigInt64Array
              : D extends 'float64'
                ? Float64Array
                : D extends 'uint32'
                  ? Uint32Array
                  : BigUint64Array;

export type TensorData =
  | Float32Array
  | Float64Array
  | Uint8Array
  | Int8Array
  | Uint16Array
  | Int16Array
  | Int32Array
  | Uint32Array
  | BigInt64Array
  | BigUint64Array;

const BY_CODE = new Map<number, DType>(Object.entries(DTYPES).map(([k, v]) => [v.code, k as DType]));

export function dtypeFromCode(code: number): DType | undefined {
  return BY_CODE.get(code);
}

export function isDType(name: string): name is DType {
  return Object.prototype.hasOwnProperty.call(DTYPES, name);
}

/** A typed-array view of `byteLength` bytes at `byteOffset` of `buffer` (no copy). */
export function viewAs(dtype: DType, buffer: ArrayBufferLike, byteOffset: number, length: number): TensorData {
  switch (dtype) {
    case 'float32':
      return new Float32Array(buffer, byteOffset, length);
    case 'uint8':
    case 'bool':
      return new Uint8Array(buffer, byteOffset, length);
    case 'int8':
      return new Int8Array(buffer, byteOffset, length);
    case 'uint16':
    case 'float16':
      return new Uint16Array(buffer, byteOffset, length);
    case 'int16':
      return new Int16Array(buffer, byteOffset, length);
    case 'int32':
      return new Int32Array(buffer, byteOffset, length);
    case 'int64':
      return new BigInt64Array(buffer, byteOffset, length);
    case 'float64':
      return new Float64Array(buffer, byteOffset, length);
    case 'uint32':
      return new Uint32Array(buffer, byteOffset, length);
    case 'uint64':
      return new BigUint64Array(buffer, byteOffset, length);
  }
}

/** Which typed array class a dtype's data must be, to reject mismatched tensors early. */
export function expectedArrayName(dtype: DType): string {
  return viewAs(dtype, new ArrayBuffer(0), 0, 0).constructor.name;
}
