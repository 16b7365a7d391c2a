import { type Signer, verifySignature } from './ed25519.js';
import { RobomeshError } from './errors.js';

/**
 * What a robot tells the fleet on gossipsub, every few seconds and on change: the models it
 * holds (by hash), which cuts it can run tails from, its measured times, and its queue.
 * An advert is signed by the robot it describes (64-byte Ed25519 signature, then the JSON):
 * gossipsub itself does not sign (every message we gossip authenticates itself).
 */
export interface ModelCapability {
  /** sha256 of the ONNX bytes, hex. */
  hash: string;
  /** Median whole-model time on this robot, ms. */
  wholeMs: number;
  /** Median tail time per cut id on this robot, ms. */
  tailMs: Record<string, number>;
}

export interface CapabilityAdvert {
  v: 2;
  /** The advertising robot's PeerId; the advert must be signed by its key. */
  robot: string;
  /** Increases with every advert from this robot, across restarts; older ones are ignored. */
  seq: number;
  models: ModelCapability[];
  /** Requests waiting or running on this robot now. */
  queue: number;
  /**
   * How much slower this robot computes now than unloaded (1 = unloaded; its advertised times
   * are to be multiplied by it): another process taking its CPU shows here. Absent means 1.
   */
  slowdown?: number;
}

export type AdvertErrorCode = 'FORGED' | 'MALFORMED' | 'TOO_LARGE';

export class AdvertError extends RobomeshError<AdvertErrorCode> {
  constructor(code: AdvertErrorCode, message: string, options?: ErrorOptions) {
    super(code, message, options);
  }
}

export const ADVERT_LIMITS = { maxBytes: 64 * 1024, maxModels: 32, maxCuts: 512, minSlowdown: 0.05, maxSlowdown: 100 };

const HASH = /^[0-9a-f]{64}$/;
const CUT_ID = /^[A-Za-z0-9_.:-]{1,64}$/;
const PEER_ID = /^[1-9A-HJ-NP-Za-km-z]{32,128}$/;

const isTime = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v >= 0 && v < 3_600_000;

const DOMAIN = new TextEncoder().encode('robomesh-advert-v2\n');
const SIG_BYTES = 64;

const signed = (json: Uint8Array): Uint8Array => {
  const out = new Uint8Array(DOMAIN.length + json.length);
  out.set(DOMAIN);
  out.set(json, DOMAIN.length);
  return out;
};

export function encodeAdvert(advert: CapabilityAdvert, signer: Signer): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(advert));
  if (SIG_BYTES + json.length > ADVERT_LIMITS.maxBytes)
    throw new AdvertError('TOO_LARGE', `advert of ${SIG_BYTES + json.length} bytes`);
  const out = new Uint8Array(SIG_BYTES + json.length);
  out.set(signer.sign(signed(json)));
  out.set(json, SIG_BYTES);
  return out;
}

/**
 * Parses, validates and authenticates an advert: `keyOf` gives the raw Ed25519 key of the robot
 * it names (undefined if unknown). Anything off is an AdvertError (the sender gets penalised).
 */
export function decodeAdvert(bytes: Uint8Array, keyOf: (robot: string) => Uint8Array | undefined): CapabilityAdvert {
  if (bytes.length > ADVERT_LIMITS.maxBytes) throw new AdvertError('TOO_LARGE', `advert of ${bytes.length} bytes`);
  if (bytes.length <= SIG_BYTES) throw new AdvertError('MALFORMED', 'advert shorter than its signature');
  const json = bytes.subarray(SIG_BYTES);
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(json));
  } catch {
    throw new AdvertError('MALFORMED', 'advert is not UTF-8 JSON');
  }
  const a = raw as Partial<CapabilityAdvert>;
  const fail = (why: string): never => {
    throw new AdvertError('MALFORMED', `advert: ${why}`);
  };
  if (typeof a !== 'object' || a === null) fail('not an object');
  if (a.v !== 2) fail(`unknown version ${String(a.v)}`);
  if (typeof a.robot !== 'string' || !PEER_ID.test(a.robot)) fail('robot is not a peer id');
  if (!Number.isSafeInteger(a.seq) || (a.seq as number) < 0) fail('seq is not a non-negative integer');
  if (!Number.isSafeInteger(a.queue) || (a.queue as number) < 0 || (a.queue as number) > 1_000_000)
    fail('queue out of range');
  if (
    a.slowdown !== undefined &&
    (typeof a.slowdown !== 'number' ||
      !(a.slowdown >= ADVERT_LIMITS.minSlowdown && a.slowdown <= ADVERT_LIMITS.maxSlowdown))
  )
    fail(`slowdown is not a number in ${ADVERT_LIMITS.minSlowdown}..${ADVERT_LIMITS.maxSlowdown}`);
  if (!Array.isArray(a.models) || a.models.length > ADVERT_LIMITS.maxModels) fail('models is not a list of at most 32');
  const models: ModelCapability[] = [];
  for (const m of a.models as unknown[]) {
    const c = m as Partial<ModelCapability>;
    if (typeof c !== 'object' || c === null) fail('model entry is not an object');
    if (typeof c.hash !== 'string' || !HASH.test(c.hash)) fail('model hash is not 64 hex digits');
    if (!isTime(c.wholeMs)) fail(`model ${c.hash}: wholeMs out of range`);
    if (typeof c.tailMs !== 'object' || c.tailMs === null || Array.isArray(c.tailMs)) fail('tailMs is not a map');
    const entries = Object.entries(c.tailMs as Record<string, unknown>);
    if (entries.length > ADVERT_LIMITS.maxCuts) fail('too many cuts');
    for (const [cut, ms] of entries) {
      if (!CUT_ID.test(cut)) fail(`bad cut id '${cut.slice(0, 70)}'`);
      if (!isTime(ms)) fail(`cut ${cut}: time out of range`);
    }
    models.push({
      hash: c.hash as string,
      wholeMs: c.wholeMs as number,
      tailMs: Object.fromEntries(entries) as Record<string, number>,
    });
  }
  const key = keyOf(a.robot as string);
  if (!key || !verifySignature(key, signed(json), bytes.subarray(0, SIG_BYTES)))
    throw new AdvertError('FORGED', `advert not signed by ${a.robot}`);
  const advert: CapabilityAdvert = {
    v: 2,
    robot: a.robot as string,
    seq: a.seq as number,
    queue: a.queue as number,
    models,
  };
  if (a.slowdown !== undefined) advert.slowdown = a.slowdown;
  return advert;
}
