import { createHash } from 'node:crypto';
import { DTYPES, type DType, dtypeFromCode } from './dtypes.js';
import { type Tensor, encodeFrame } from './tensor-frame.js';

/**
 * What an executor records in the log for a logged task's result, and the rule the task
 * contract uses to decide whether two results agree.
 *
 * `digest` is the sha256 of the output tensor frame (bit-exact agreement). Two honest executors
 * rarely agree bit for bit: another intra-op thread count or another CPU's kernels sum in
 * another order. So each result also carries a fingerprint, per output tensor:
 *
 *   name, dtype and dims (exact: a truncated or reshaped output never agrees);
 *   float tensors: count of non-finite values (exact), mean, root mean square, min, max, and
 *     PROJECTIONS sums Σ wᵢ·xᵢ / √N with signs wᵢ ∈ {−1, +1} drawn from a generator seeded by
 *     the task id and the output's position;
 *   other tensors: the sha256 of their bytes (integers are compared exactly).
 *
 * Fingerprint bytes (little-endian):
 *   version u8 = 1 | outputs u8
 *   per output: nameLen u8, name utf8, dtype u8 (ONNX code), rank u8, dims u32×rank, then
 *     float: nonFinite u32, mean f32, rms f32, min f32, max f32, projections f32×PROJECTIONS
 *     other: sha256 (32 bytes)
 *
 * Agreement (fingerprintsAgree): equal digests agree. Otherwise the same outputs (names, dtypes,
 * dims, exact hashes, non-finite counts) and, per float output, with scale = max(rms₁, rms₂,
 * 1e-6), every statistic and every projection within TOLERANCE × scale of the other's.
 *
 * Why this catches lies and tolerates honest noise: honest runs differ per element by rounding
 * (measured here between 1 and 2 ORT threads and between graph optimisation levels: relative
 * differences of 1e-7 to 1e-5 of the output's rms), so their statistics and projections differ
 * by about as much, far below TOLERANCE = 1e-3. A permutation keeps mean, rms, min and max but
 * moves every projection by about the rms of what moved; a shift moves the mean by the shift, a
 * scale moves rms (and the projections) by the factor; garbage in a fraction p of the elements
 * moves the projections by about √p × its size; a truncation changes dims. Each lands orders of
 * magnitude past the tolerance on any output that is not constant.
 *
 * Limit, stated plainly: the signs are public (the task id is in the log before anyone runs it),
 * so an executor that computes the honest output and then perturbs it inside the subspace the
 * PROJECTIONS sign vectors and statistics do not see could pass. Catching that needs the outputs
 * themselves compared element by element, which the log does not hold.
 */
export const FINGERPRINT_VERSION = 1;
export const PROJECTIONS = 16;
export const TOLERANCE = 1e-3;
/** Largest fingerprint a result entry may carry. */
export const MAX_FINGERPRINT_BYTES = 4096;
const MAX_OUTPUTS = 32;
const SCALE_FLOOR = 1e-6;

export interface ResultRecordFields {
  digest: string;
  fingerprint: Uint8Array;
}

export interface FloatSummary {
  kind: 'float';
  name: string;
  dtype: DType;
  dims: number[];
  nonFinite: number;
  mean: number;
  rms: number;
  min: number;
  max: number;
  projections: number[];
}

export interface ExactSummary {
  kind: 'exact';
  name: string;
  dtype: DType;
  dims: number[];
  hash: string;
}

export type OutputSummary = FloatSummary | ExactSummary;

/**
 * The digest and fingerprint of a task's outputs; `task` seeds the projection signs. `frame` is the
 * outputs' tensor frame when the caller has encoded it already (the digest is its sha256).
 */
export function resultFingerprint(
  task: string,
  outputs: readonly Tensor[],
  frame: Uint8Array = encodeFrame(outputs),
): ResultRecordFields {
  const digest = createHash('sha256').update(frame).digest('hex');
  return { digest, fingerprint: encodeFingerprint(outputs.slice(0, MAX_OUTPUTS).map((t, i) => summarise(task, i, t))) };
}

function summarise(task: string, index: number, t: Tensor): OutputSummary {
  const d = t.data;
  const base = { name: t.name.slice(0, 64), dtype: t.dtype, dims: [...t.dims] };
  if (!(d instanceof Float32Array || d instanceof Float64Array)) {
    const bytes = new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
    return { kind: 'exact', ...base, hash: createHash('sha256').update(bytes).digest('hex') };
  }
  const projections = new Float64Array(PROJECTIONS);
  let state = seedOf(task, index);
  let sum = 0;
  let squares = 0;
  let min = Infinity;
  let max = -Infinity;
  let nonFinite = 0;
  let total = 0;
  for (let i = 0; i < d.length; i++) {
    let v = d[i];
    if (!Number.isFinite(v)) {
      nonFinite++;
      v = 0;
    } else {
      if (v < min) min = v;
      if (v > max) max = v;
    }
    sum += v;
    squares += v * v;
    // xorshift32: one step gives the signs of all projections for this element. Sums of the
    // elements whose bit is set (P) give the signed sums as 2P − total.
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    for (let j = 0; j < PROJECTIONS; j++) if ((state >>> j) & 1) projections[j] += v;
    total += v;
  }
  const n = Math.max(1, d.length);
  const root = Math.sqrt(n);
  return {
    kind: 'float',
    ...base,
    nonFinite,
    mean: sum / n,
    rms: Math.sqrt(squares / n),
    min: min === Infinity ? 0 : min,
    max: max === -Infinity ? 0 : max,
    projections: [...projections].map((p) => (2 * p - total) / root),
  };
}

function seedOf(task: string, index: number): number {
  const h = createHash('sha256').update(`robomesh-fingerprint-v1\n${task}\n${index}`).digest();
  return h.readUInt32LE(0) || 1;
}

export function encodeFingerprint(outputs: readonly OutputSummary[]): Uint8Array {
  const parts: Uint8Array[] = [Uint8Array.of(FINGERPRINT_VERSION, outputs.length)];
  for (const o of outputs) {
    const name = new TextEncoder().encode(o.name);
    const head = new Uint8Array(1 + name.length + 2 + 4 * o.dims.length);
    const hv = new DataView(head.buffer);
    head[0] = name.length;
    head.set(name, 1);
    head[1 + name.length] = DTYPES[o.dtype].code;
    head[2 + name.length] = o.dims.length;
    o.dims.forEach((d, i) => hv.setUint32(3 + name.length + 4 * i, d, true));
    parts.push(head);
    if (o.kind === 'exact') {
      parts.push(new Uint8Array(Buffer.from(o.hash, 'hex')));
      continue;
    }
    const body = new Uint8Array(4 + 4 * (4 + PROJECTIONS));
    const bv = new DataView(body.buffer);
    bv.setUint32(0, o.nonFinite, true);
    [o.mean, o.rms, o.min, o.max, ...o.projections].forEach((x, i) => bv.setFloat32(4 + 4 * i, x, true));
    parts.push(body);
  }
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Parses fingerprint bytes; null when they are not a well-formed version-1 fingerprint. */
export function decodeFingerprint(bytes: Uint8Array): OutputSummary[] | null {
  if (bytes.length < 2 || bytes.length > MAX_FINGERPRINT_BYTES || bytes[0] !== FINGERPRINT_VERSION) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const count = bytes[1];
  if (count > MAX_OUTPUTS) return null;
  const out: OutputSummary[] = [];
  let at = 2;
  const need = (n: number): boolean => at + n <= bytes.length;
  for (let k = 0; k < count; k++) {
    if (!need(1)) return null;
    const nameLength = bytes[at++];
    if (!need(nameLength + 2)) return null;
    let name: string;
    try {
      name = new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(at, at + nameLength));
    } catch {
      return null;
    }
    at += nameLength;
    const dtype = dtypeFromCode(bytes[at++]);
    const rank = bytes[at++];
    if (!dtype || rank > 8 || !need(4 * rank)) return null;
    const dims: number[] = [];
    for (let i = 0; i < rank; i++, at += 4) dims.push(view.getUint32(at, true));
    const float = dtype === 'float32' || dtype === 'float64';
    if (!float) {
      if (!need(32)) return null;
      out.push({ kind: 'exact', name, dtype, dims, hash: Buffer.from(bytes.subarray(at, at + 32)).toString('hex') });
      at += 32;
      continue;
    }
    if (!need(4 + 4 * (4 + PROJECTIONS))) return null;
    const nonFinite = view.getUint32(at, true);
    const f = (i: number): number => view.getFloat32(at + 4 + 4 * i, true);
    const summary: FloatSummary = {
      kind: 'float',
      name,
      dtype,
      dims,
      nonFinite,
      mean: f(0),
      rms: f(1),
      min: f(2),
      max: f(3),
      projections: Array.from({ length: PROJECTIONS }, (_, j) => f(4 + j)),
    };
    if (![summary.mean, summary.rms, summary.min, summary.max, ...summary.projections].every(Number.isFinite))
      return null;
    out.push(summary);
    at += 4 + 4 * (4 + PROJECTIONS);
  }
  return at === bytes.length ? out : null;
}

/** The agreement rule of the task contract (see the top of this file). */
export function fingerprintsAgree(a: ResultRecordFields, b: ResultRecordFields): boolean {
  if (a.digest === b.digest) return true;
  const x = decodeFingerprint(a.fingerprint);
  const y = decodeFingerprint(b.fingerprint);
  if (!x || !y || x.length !== y.length || x.length === 0) return false;
  return x.every((o, i) => outputsAgree(o, y[i]));
}

function outputsAgree(a: OutputSummary, b: OutputSummary): boolean {
  if (a.kind !== b.kind || a.name !== b.name || a.dtype !== b.dtype || a.dims.join(',') !== b.dims.join(','))
    return false;
  if (a.kind === 'exact') return a.hash === (b as ExactSummary).hash;
  const c = b as FloatSummary;
  if (a.nonFinite !== c.nonFinite) return false;
  const limit = TOLERANCE * Math.max(a.rms, c.rms, SCALE_FLOOR);
  const close = (p: number, q: number): boolean => Math.abs(p - q) <= limit;
  return (
    close(a.mean, c.mean) &&
    close(a.rms, c.rms) &&
    close(a.min, c.min) &&
    close(a.max, c.max) &&
    a.projections.every((p, j) => close(p, c.projections[j]))
  );
}
