import { type Hex, sha256, toHex } from './bytes.js';
import { type DType, isDType } from './dtypes.js';
import { RobomeshError } from './errors.js';
import type { Precision } from './infer-messages.js';

/**
 * A model cut into consecutive stages, each an ONNX model of its own ("stage file") identified by
 * its sha256. Stage k takes what stage k − 1 gives, encoded at `inPrecision` (the model's own
 * inputs for the first stage) and gives the next boundary at `outPrecision` (the model's outputs
 * for the last). Robots hold, advertise and serve stages by hash like whole models; the manifest
 * is what a requester needs to run the chain.
 */
export interface ChainStage {
  hash: string;
  /** Cut id the stage starts at, or 'input'. */
  from: string;
  /** Cut id the stage stops at, or 'output'. */
  to: string;
  inPrecision: Precision;
  outPrecision: Precision;
  /** Bytes of the stage's weights (what holding it costs a robot, before ORT's arenas). */
  weightBytes: number;
  /** Estimated share of the model's compute in this stage. */
  share: number;
  /** Bytes of the boundary the stage gives (0 for the last). */
  outBytes: number;
  /**
   * The tensors the stage gives, exactly: a requester checks a holder's answer against them
   * before forwarding it, so a robot answering malformed tensors is caught, not the next one
   * blamed for refusing them. Absent where the shapes are not fixed.
   */
  outputs?: { name: string; dtype: DType; dims: number[] }[];
}

export interface ChainManifest {
  v: 1;
  /** sha256 of the whole model the stages come from. */
  model: string;
  inputShapes: Record<string, number[]>;
  stages: ChainStage[];
}

export const CHAIN_LIMITS = { maxStages: 16, maxBytes: 64 * 1024 };

export type ChainManifestErrorCode = 'BAD_MANIFEST';

export class ChainManifestError extends RobomeshError<ChainManifestErrorCode> {
  constructor(code: ChainManifestErrorCode, message: string) {
    super(code, message);
  }
}

const HASH = /^[0-9a-f]{64}$/;
const CUT_ID = /^[A-Za-z0-9_.:-]{1,64}$/;
const PRECISIONS: readonly string[] = ['fp32', 'fp16', 'int8'];

/** Parses and checks a manifest (JSON text); anything off is a ChainManifestError naming it. */
export function decodeChainManifest(text: string, source = 'chain manifest'): ChainManifest {
  const fail = (why: string): never => {
    throw new ChainManifestError('BAD_MANIFEST', `${source}: ${why}`);
  };
  if (text.length > CHAIN_LIMITS.maxBytes) fail(`larger than ${CHAIN_LIMITS.maxBytes} bytes`);
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    fail('not JSON');
  }
  const m = raw as Partial<ChainManifest>;
  if (typeof m !== 'object' || m === null) fail('not an object');
  if (m.v !== 1) fail(`unknown version ${String(m.v)}`);
  if (typeof m.model !== 'string' || !HASH.test(m.model)) fail('model is not 64 hex digits');
  const shapes = m.inputShapes as unknown;
  if (typeof shapes !== 'object' || shapes === null || Array.isArray(shapes)) fail('inputShapes is not a map');
  for (const [name, dims] of Object.entries(shapes as Record<string, unknown>))
    if (!Array.isArray(dims) || dims.length > 8 || !dims.every((d) => Number.isSafeInteger(d) && d > 0))
      fail(`input '${name.slice(0, 64)}' has no positive integer dims`);
  if (!Array.isArray(m.stages) || m.stages.length < 1 || m.stages.length > CHAIN_LIMITS.maxStages)
    fail(`stages is not a list of 1..${CHAIN_LIMITS.maxStages}`);
  const stages = m.stages as Partial<ChainStage>[];
  stages.forEach((s, k) => {
    const at = `stage ${k + 1}`;
    if (typeof s !== 'object' || s === null) fail(`${at} is not an object`);
    if (typeof s.hash !== 'string' || !HASH.test(s.hash)) fail(`${at}: hash is not 64 hex digits`);
    if (typeof s.from !== 'string' || !CUT_ID.test(s.from)) fail(`${at}: bad 'from'`);
    if (typeof s.to !== 'string' || !CUT_ID.test(s.to)) fail(`${at}: bad 'to'`);
    if (!PRECISIONS.includes(s.inPrecision as string) || !PRECISIONS.includes(s.outPrecision as string))
      fail(`${at}: precisions must be fp32, fp16 or int8`);
    for (const key of ['weightBytes', 'outBytes'] as const)
      if (!Number.isSafeInteger(s[key]) || (s[key] as number) < 0) fail(`${at}: ${key} is not a byte count`);
    if (typeof s.share !== 'number' || !(s.share >= 0 && s.share <= 1)) fail(`${at}: share is not in 0..1`);
    if (s.outputs !== undefined) {
      if (!Array.isArray(s.outputs) || s.outputs.length > 16) fail(`${at}: outputs is not a list of at most 16`);
      for (const o of s.outputs as Partial<NonNullable<ChainStage['outputs']>[number]>[])
        if (
          typeof o !== 'object' ||
          o === null ||
          typeof o.name !== 'string' ||
          o.name.length > 256 ||
          typeof o.dtype !== 'string' ||
          !isDType(o.dtype) ||
          !Array.isArray(o.dims) ||
          o.dims.length > 8 ||
          !o.dims.every((d) => Number.isSafeInteger(d) && d > 0)
        )
          fail(`${at}: an output is not {name, dtype, dims}`);
    }
    const prev = stages[k - 1];
    if (k === 0 ? s.from !== 'input' : s.from !== prev.to || s.inPrecision !== prev.outPrecision)
      fail(`${at} does not start where the stage before it stops`);
  });
  if (stages[stages.length - 1].to !== 'output') fail('the last stage does not end at the output');
  return m as ChainManifest;
}

export function encodeChainManifest(manifest: ChainManifest): string {
  return `${JSON.stringify(manifest, null, 2)}\n`;
}

/** A manifest's identity (what a logged task records): the sha256 of its encoding above. */
export function chainManifestHash(manifest: ChainManifest): Hex {
  return toHex(sha256(new TextEncoder().encode(encodeChainManifest(manifest))));
}
