import { attr, node, opset13Model, serializeModel, tensorValueInfo } from '../nodes/inference/index.js';

/**
 * A model that sums its input to one number: shipping a tensor to it measures the protocol's
 * throughput with negligible compute on the far side (its compute time is subtracted anyway).
 */
export function sinkModel(): Uint8Array {
  return serializeModel(
    opset13Model('robomesh bench', {
      name: 'sink',
      node: [node('ReduceSum', ['x'], ['y'], [attr('keepdims', 0)])],
      input: [tensorValueInfo('x', 1, ['n'])],
      output: [tensorValueInfo('y', 1, [])],
    }),
  );
}

export const RAW_PORT_OFFSET = 1;

export function arg(name: string, fallback?: string): string {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? process.argv[i + 1] : fallback;
  if (v === undefined) throw new Error(`missing --${name}`);
  return v;
}
