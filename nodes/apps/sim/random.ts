import { prng } from '../../util/index.js';

/** Standard normal samples from a uniform source (Box–Muller, both values used). */
export function gaussian(uniform: () => number): () => number {
  let spare: number | undefined;
  return () => {
    if (spare !== undefined) {
      const s = spare;
      spare = undefined;
      return s;
    }
    const u = 1 - uniform();
    const v = uniform();
    const mag = Math.sqrt(-2 * Math.log(u));
    spare = mag * Math.sin(2 * Math.PI * v);
    return mag * Math.cos(2 * Math.PI * v);
  };
}

/** An independent stream per robot, so adding a robot leaves the others' noise unchanged. */
export function streamFor(seed: number, index: number): () => number {
  const mix = prng((seed ^ Math.imul(index + 1, 0x9e3779b1)) >>> 0);
  return prng(Math.floor(mix() * 2 ** 32));
}
