import type { Tensor } from '../../protocol/tensor-frame.js';
import type { Misbehaviour } from './task-executor.js';

/**
 * Lying executors for tests, scenarios and benchmarks: each rewrites what the executor computed
 * before it is fingerprinted, logged and sent (a consistent liar; one whose wire bytes differ from
 * its signed result is refused by the requester outright). Never used in normal operation.
 */
export type LieKind = 'wrong' | 'permuted' | 'scaled' | 'shifted' | 'garbage' | 'truncated';

const floats = (t: Tensor, f: (d: Float32Array) => Float32Array): Tensor =>
  t.data instanceof Float32Array ? { ...t, data: f(t.data) } : t;

const LIES: Record<LieKind, (outputs: Tensor[], seed: number) => Tensor[]> = {
  wrong: (o) => o.map((t) => floats(t, (d) => d.map((v) => v * 0.5 + 0.25))),
  // Every element moved (a reversal): mean, rms, min and max stay the same.
  permuted: (o) => o.map((t) => floats(t, (d) => d.slice().reverse())),
  scaled: (o) => o.map((t) => floats(t, (d) => d.map((v) => v * 1.1))),
  shifted: (o) => o.map((t) => floats(t, (d) => d.map((v) => v + 0.01))),
  // A quarter of the elements replaced by noise of the same range.
  garbage: (o, seed) =>
    o.map((t) =>
      floats(t, (d) => {
        const out = d.slice();
        let s = seed | 1;
        for (let i = 0; i < out.length; i += 4) {
          s = (s * 1103515245 + 12345) >>> 0;
          out[i] = (s / 2 ** 32) * 2 - 1;
        }
        return out;
      }),
    ),
  // The first output cut to half its elements along the first axis that has more than one.
  truncated: (o) =>
    o.map((t, i) => {
      if (i > 0 || !(t.data instanceof Float32Array)) return t;
      const axis = t.dims.findIndex((d) => d > 1);
      if (axis < 0) return t;
      const dims = [...t.dims];
      dims[axis] = Math.ceil(dims[axis] / 2);
      const n = dims.reduce((a, b) => a * b, 1);
      return { ...t, dims, data: t.data.slice(0, n) };
    }),
};

export function lie(kind: LieKind, seed = 7): Misbehaviour {
  return { outputs: (outputs) => LIES[kind](outputs, seed) };
}

/** Never answers or logs a result (a robot that takes the work and sits on it). */
export const stall = (): Misbehaviour => ({ stall: true });
