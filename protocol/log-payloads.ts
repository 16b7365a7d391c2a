import { type Hex, isHexKey } from './bytes.js';
import { EntryError } from './errors.js';
import { MAX_FINGERPRINT_BYTES } from './result-fingerprint.js';

/** The typed payloads of log entries, and their schema check. */
export type Payload =
  | { type: 'genesis'; fleet: string; members: Hex[]; admins: Hex[] }
  | { type: 'admit'; member: Hex }
  | { type: 'revoke'; member: Hex }
  /**
   * A logged inference: run `model` from `cut` (the tail, or the whole model when cut is "input")
   * in `precision` on the tensor frame of `bytes` bytes whose sha256 is `input`, on n = 2f + 1
   * executors; f + 1 agreeing results decide it (contracts/tasks.ts). `timeout` (ms) is how long
   * robots wait for a quorum before assigning more executors: a liveness hint, never read by the
   * contract.
   *
   * The commitment to the input is this entry itself, not a separate requester signature over
   * (task, digest) sent with the request: the entry is signed, replicated and ordered with the
   * assignments, so every robot — an executor pushed the tensor, one assigned after a partition
   * heals that fetches it by digest from anyone, an auditor — checks an input against the log
   * alone, and a member that sends other bytes for the task is caught by any executor.
   */
  | {
      type: 'task';
      task: string;
      model: Hex;
      cut: string;
      precision: 'fp32' | 'fp16' | 'int8';
      input: Hex;
      bytes: number;
      f: number;
      timeout: number;
      /**
       * Set when the task is the last stage of a chain (protocol/chain-manifest.ts): the sha256 of
       * the chain's manifest, whose last stage `model` is. Earlier stages ran unlogged; the quorum
       * decides the last stage's result on the boundary the poster committed to as `input`.
       */
      chain?: Hex;
    }
  | { type: 'assign'; task: string; executors: Hex[] }
  | { type: 'claim'; task: string }
  /** What the author computed for a task: sha256 of its output frame and its fingerprint (result-fingerprint.ts). */
  | { type: 'result'; task: string; digest: Hex; fingerprint: Uint8Array }
  | { type: 'tile'; tile: string; version: number; digest: Hex }
  /**
   * The author caught `robot` misbehaving on a direct protocol (malformed messages, a flood past
   * its budget, a stall mid-transfer) and cut it off; `detail` says what, in words. One report
   * proves nothing alone; the contract excludes a robot reported by f + 1 distinct members.
   */
  | { type: 'offence'; robot: Hex; kind: 'malformed' | 'flood' | 'stall'; detail: string }
  /** The author found `robot`'s map contributions in conflict with most peers' (evidence: tile digests). */
  | { type: 'flag'; robot: Hex; evidence: Hex[] }
  /**
   * A Merkle root over every entry reachable from `heads` (sorted by lamport, id), committed on
   * IOTA in transaction `tx` (its signed bytes and signature kept here so anyone can check it
   * offline) and final at `checkpoint`.
   */
  | {
      type: 'anchor';
      root: Hex;
      count: number;
      heads: Hex[];
      tx: string;
      checkpoint: number;
      txBytes: Uint8Array;
      txSig: string;
    };

export type PayloadType = Payload['type'];

export const TASK_ID = /^[A-Za-z0-9_.:-]{1,80}$/;
const CUT_ID = /^[A-Za-z0-9_.:-]{1,64}$/;
/** Largest task input (the tensor frame executors fetch by digest). */
export const MAX_TASK_INPUT_BYTES = 64 * 1024 * 1024;
/** Largest f a task may state: n = 2f + 1 ≤ 9 executors. */
export const MAX_F = 4;

const uint = (v: unknown, max = Number.MAX_SAFE_INTEGER): boolean =>
  Number.isSafeInteger(v) && (v as number) >= 0 && (v as number) <= max;

function fail(why: string): never {
  throw new EntryError('MALFORMED', why);
}

/** Throws EntryError (MALFORMED) unless `p` is one of the payloads above, exactly. */
export function checkPayload(p: Payload): void {
  if (typeof p !== 'object' || p === null) fail('payload is not a map');
  const exact = (...fields: string[]): void => {
    // A trailing '?' marks a field that may be absent.
    const required = fields.filter((f) => !f.endsWith('?'));
    const allowed = new Set(['type', ...fields.map((f) => f.replace(/\?$/, ''))]);
    if (required.every((f) => Object.hasOwn(p, f)) && Object.keys(p).every((k) => allowed.has(k))) return;
    fail(
      `${p.type} payload has fields ${Object.keys(p).sort().join(',')}, ` +
        `expected ${['type', ...fields].sort().join(',')}`,
    );
  };
  switch (p.type) {
    case 'genesis':
      exact('fleet', 'members', 'admins');
      if (typeof p.fleet !== 'string' || p.fleet.length === 0 || p.fleet.length > 64) fail('bad fleet name');
      if (!Array.isArray(p.members) || p.members.length > 1000 || !p.members.every(isHexKey))
        fail('members must be hex keys');
      if (!Array.isArray(p.admins) || p.admins.length > 100 || !p.admins.every(isHexKey))
        fail('admins must be hex keys');
      return;
    case 'admit':
    case 'revoke':
      exact('member');
      if (!isHexKey(p.member)) fail('member must be a hex key');
      return;
    case 'task':
      exact('task', 'model', 'cut', 'precision', 'input', 'bytes', 'f', 'timeout', 'chain?');
      if (p.chain !== undefined && !isHexKey(p.chain)) fail('chain must be a sha256 hex');
      if (typeof p.task !== 'string' || !TASK_ID.test(p.task)) fail('bad task id');
      if (!isHexKey(p.model) || !isHexKey(p.input)) fail('model and input must be sha256 hex');
      if (typeof p.cut !== 'string' || !CUT_ID.test(p.cut)) fail('bad cut id');
      if (p.precision !== 'fp32' && p.precision !== 'fp16' && p.precision !== 'int8') fail('bad precision');
      if (!uint(p.bytes, MAX_TASK_INPUT_BYTES) || p.bytes < 1) fail(`input bytes must be 1..${MAX_TASK_INPUT_BYTES}`);
      if (!uint(p.f, MAX_F)) fail(`f must be 0..${MAX_F}`);
      if (!uint(p.timeout, 3_600_000) || p.timeout < 1) fail('timeout must be 1..3,600,000 ms');
      return;
    case 'assign':
      exact('task', 'executors');
      if (typeof p.task !== 'string' || !TASK_ID.test(p.task)) fail('bad task id');
      if (
        !Array.isArray(p.executors) ||
        p.executors.length < 1 ||
        p.executors.length > 16 ||
        !p.executors.every(isHexKey)
      )
        fail('bad executors');
      return;
    case 'claim':
      exact('task');
      if (typeof p.task !== 'string' || !TASK_ID.test(p.task)) fail('bad task id');
      return;
    case 'result':
      exact('task', 'digest', 'fingerprint');
      if (typeof p.task !== 'string' || !TASK_ID.test(p.task)) fail('bad task id');
      if (!isHexKey(p.digest)) fail('digest must be sha256 hex');
      // Floats travel as bytes: DAG-CBOR floats are not compared reliably.
      if (!(p.fingerprint instanceof Uint8Array) || p.fingerprint.length > MAX_FINGERPRINT_BYTES)
        fail(`fingerprint must be at most ${MAX_FINGERPRINT_BYTES} bytes`);
      return;
    case 'tile':
      exact('tile', 'version', 'digest');
      if (typeof p.tile !== 'string' || !TASK_ID.test(p.tile)) fail('bad tile id');
      if (!uint(p.version) || !isHexKey(p.digest)) fail('bad tile version or digest');
      return;
    case 'offence':
      exact('robot', 'kind', 'detail');
      if (!isHexKey(p.robot)) fail('offence robot must be a hex key');
      if (p.kind !== 'malformed' && p.kind !== 'flood' && p.kind !== 'stall') fail('bad offence kind');
      if (typeof p.detail !== 'string' || p.detail.length > 200) fail('offence detail must be ≤ 200 characters');
      return;
    case 'flag':
      exact('robot', 'evidence');
      if (!isHexKey(p.robot)) fail('flag robot must be a hex key');
      if (!Array.isArray(p.evidence) || p.evidence.length > 64 || !p.evidence.every(isHexKey))
        fail('flag evidence must be ≤ 64 digests');
      return;
    case 'anchor':
      exact('root', 'count', 'heads', 'tx', 'checkpoint', 'txBytes', 'txSig');
      if (!isHexKey(p.root) || !uint(p.count) || p.count < 1 || !uint(p.checkpoint)) fail('bad anchor');
      if (!Array.isArray(p.heads) || p.heads.length < 1 || p.heads.length > 64 || !p.heads.every(isHexKey))
        fail('anchor heads must be 1..64 ids');
      if (typeof p.tx !== 'string' || p.tx.length === 0 || p.tx.length > 128) fail('bad anchor tx');
      if (!(p.txBytes instanceof Uint8Array) || p.txBytes.length > 8192) fail('anchor txBytes must be ≤ 8 KiB');
      if (typeof p.txSig !== 'string' || p.txSig.length > 256) fail('bad anchor txSig');
      return;
    default:
      fail(`unknown payload type ${String((p as { type?: unknown }).type)}`);
  }
}
