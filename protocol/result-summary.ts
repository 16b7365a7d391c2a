import { createHash } from 'node:crypto';
import { type Tensor, encodeFrame } from './tensor-frame.js';

/**
 * What an executor records in the log for a result: the sha256 of the output frame (bit-exact
 * agreement) and per output tensor its mean, mean square, min and max in fixed point (1e-6),
 * which the quorum contract compares with a tolerance when floating-point results differ by
 * rounding (another precision, another CPU).
 */
export function resultDigest(outputs: Tensor[]): { digest: string; values: number[] } {
  const digest = createHash('sha256').update(encodeFrame(outputs)).digest('hex');
  const values: number[] = [];
  for (const t of outputs) {
    if (values.length >= 64) break;
    const d = t.data;
    if (!(d instanceof Float32Array || d instanceof Float64Array) || d.length === 0) continue;
    let sum = 0;
    let squares = 0;
    let min = Infinity;
    let max = -Infinity;
    for (const v of d) {
      sum += v;
      squares += v * v;
      if (v < min) min = v;
      if (v > max) max = v;
    }
    for (const x of [sum / d.length, squares / d.length, min, max])
      values.push(Number.isFinite(x) ? Math.round(x * 1e6) : 0);
  }
  return { digest, values };
}
