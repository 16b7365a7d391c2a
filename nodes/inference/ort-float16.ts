import ort from 'onnxruntime-node';

/**
 * onnxruntime-node 1.30 on Node ≥ 23, where Float16Array exists: a float16 input given as a
 * Float16Array reaches the native binding with a byte length of 0 and every run fails ("not
 * enough space: expected N, got 0"; microsoft/onnxruntime PR 32323, open). onnxruntime-common
 * decides once, at the first Tensor it builds, whether float16 data is a Float16Array or a
 * Uint16Array; made without Float16Array in sight, the decision keeps Uint16Array, which the
 * binding reads correctly. Imported for this effect by every module that builds tensors.
 */
const descriptor = Object.getOwnPropertyDescriptor(globalThis, 'Float16Array');
if (descriptor?.configurable) {
  delete (globalThis as { Float16Array?: unknown }).Float16Array;
  try {
    new ort.Tensor('float32', new Float32Array(1), [1]);
  } finally {
    Object.defineProperty(globalThis, 'Float16Array', descriptor);
  }
}

export default ort;
