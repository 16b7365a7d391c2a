import { hash } from 'node:crypto';
import * as cbor from '@ipld/dag-cbor';
import { type Signer, verifySignature } from './ed25519.js';
import { RobomeshError } from './errors.js';
import { MerkleTree, rootFromInclusion } from './merkle.js';

/**
 * Entries of the signed, replicated log. Canonical bytes are DAG-CBOR (deterministic map order,
 * no floats where integers go, no undefined). The id is the sha256 of the entry's content (a
 * domain tag + the DAG-CBOR of everything but the signature), so an entry can name the one
 * signed with it as its parent.
 *
 * Signatures cover batches, as Hypercore signs tree roots rather than blocks: an author signs
 * the Merkle root (merkle.ts) over the ids of the entries it appends together, and each entry
 * carries that signature plus its inclusion path. Every entry still verifies on its own; a
 * verifier that has seen the batch's signature once checks the rest with hashes only, which
 * makes catching up after a partition cost one Ed25519 verification per batch, not per entry.
 */
export type Hex = string;

export type Payload =
  | { type: 'genesis'; fleet: string; members: Hex[]; admins: Hex[] }
  | { type: 'admit'; member: Hex }
  | { type: 'revoke'; member: Hex }
  | { type: 'task'; task: string; model: Hex; input: Hex; k: number; timeout: number }
  | { type: 'assign'; task: string; executors: Hex[] }
  | { type: 'claim'; task: string }
  | { type: 'result'; task: string; digest: Hex; values: number[] }
  | { type: 'tile'; tile: string; version: number; digest: Hex }
  /** The author found `robot`'s map contributions in conflict with most peers' (evidence: tile digests). */
  | { type: 'flag'; robot: Hex; evidence: Hex[] }
  /**
   * A Merkle root over every entry reachable from `heads` (sorted by lamport, id), committed on
   * IOTA in transaction `tx` (its signed bytes and signature kept here so anyone can check it
   * offline) and final at `checkpoint`.
   */
  | { type: 'anchor'; root: Hex; count: number; heads: Hex[]; tx: string; checkpoint: number; txBytes: Uint8Array; txSig: string };

export type PayloadType = Payload['type'];

export interface UnsignedEntry {
  v: 2;
  /** Raw Ed25519 public key of the author (its PeerId key). */
  author: Uint8Array;
  /** 1, 2, 3… per author. Two entries with one (author, seq) are equivocation. */
  seq: number;
  /** Greater than every parent's clock: sorting by (lamport, id) is a topological order. */
  lamport: number;
  /** Ids of the author's view of the heads, sorted. */
  parents: Uint8Array[];
  payload: Payload;
}

export interface Entry extends UnsignedEntry {
  /** Ed25519 over ROOT_DOMAIN + the Merkle root of the ids signed together. */
  sig: Uint8Array;
  /** Where this entry's id sits in that tree: index, count and sibling hashes. */
  batch: { index: number; count: number; path: Uint8Array[] };
}

export interface DecodedEntry {
  entry: Entry;
  id: Uint8Array;
  idHex: Hex;
  bytes: Uint8Array;
}

export type EntryErrorCode = 'MALFORMED' | 'OVERSIZE' | 'BAD_SIGNATURE' | 'UNKNOWN_AUTHOR' | 'WRONG_SEQUENCE' | 'WRONG_CLOCK';

export class EntryError extends RobomeshError {
  constructor(
    override readonly code: EntryErrorCode,
    message: string,
  ) {
    super(code, message);
  }
}

export const MAX_ENTRY_BYTES = 16 * 1024;
/** Largest number of entries one signature may cover (a path of at most 12 hashes). */
export const MAX_BATCH = 4096;
const DOMAIN = new TextEncoder().encode('robomesh-log-v2\n');
const ROOT_DOMAIN = new TextEncoder().encode('robomesh-log-v2-batch\n');
const HEX64 = /^[0-9a-f]{64}$/;
const TASK_ID = /^[A-Za-z0-9_.:-]{1,80}$/;

export const toHex = (b: Uint8Array): Hex => Buffer.from(b).toString('hex');
export const fromHex = (h: Hex): Uint8Array => new Uint8Array(Buffer.from(h, 'hex'));
export const sha256 = (b: Uint8Array): Uint8Array => new Uint8Array(hash('sha256', b, 'buffer'));

function contentBytes(u: UnsignedEntry): Uint8Array {
  const body = cbor.encode(u);
  const out = new Uint8Array(DOMAIN.length + body.length);
  out.set(DOMAIN);
  out.set(body, DOMAIN.length);
  return out;
}

/** What a batch signature covers: the domain, the batch size (so a path cannot claim another), the root. */
function rootMessage(root: Uint8Array, count: number): Uint8Array {
  const out = new Uint8Array(ROOT_DOMAIN.length + 4 + root.length);
  out.set(ROOT_DOMAIN);
  new DataView(out.buffer).setUint32(ROOT_DOMAIN.length, count);
  out.set(root, ROOT_DOMAIN.length + 4);
  return out;
}

export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  return Buffer.compare(a, b);
}

export type EntryDraft = Omit<UnsignedEntry, 'v' | 'author'>;

/** The id an entry will have once signed: lets the next entry of a batch name it as parent. */
export function entryId(draft: EntryDraft, author: Uint8Array): Uint8Array {
  return sha256(contentBytes(unsignedOf(draft, author)));
}

const unsignedOf = (draft: EntryDraft, author: Uint8Array): UnsignedEntry => ({
  v: 2,
  author,
  seq: draft.seq,
  lamport: draft.lamport,
  parents: [...draft.parents].sort(compareBytes),
  payload: draft.payload,
});

export function signEntry(draft: EntryDraft, signer: Signer): DecodedEntry {
  return signBatch([draft], signer)[0];
}

/** Signs entries appended together with one signature over the Merkle root of their ids. */
export function signBatch(drafts: EntryDraft[], signer: Signer): DecodedEntry[] {
  if (drafts.length < 1 || drafts.length > MAX_BATCH) throw new RangeError(`a signed batch holds 1..${MAX_BATCH} entries, not ${drafts.length}`);
  const units = drafts.map((d) => unsignedOf(d, signer.publicKey));
  units.forEach(checkShape);
  const ids = units.map((u) => sha256(contentBytes(u)));
  const tree = new MerkleTree(ids);
  const sig = signer.sign(rootMessage(tree.root, tree.count));
  return units.map((u, i) => {
    const { index, count, siblings } = tree.prove(i);
    const entry: Entry = { ...u, sig, batch: { index, count, path: siblings } };
    const bytes = cbor.encode(entry);
    if (bytes.length > MAX_ENTRY_BYTES) throw new EntryError('OVERSIZE', `entry of ${bytes.length} bytes exceeds ${MAX_ENTRY_BYTES}`);
    return { entry, id: ids[i], idHex: toHex(ids[i]), bytes };
  });
}

/**
 * Roots whose signature verified, per author: the other entries of a batch then cost hashes
 * only. A pure memo of verifySignature (same inputs, same answer), bounded.
 */
const verifiedRoots = new Set<string>();

function verifyRoot(author: Uint8Array, root: Uint8Array, count: number, sig: Uint8Array): boolean {
  const key = `${toHex(author)}${toHex(root)}${count}:${toHex(sig)}`;
  if (verifiedRoots.has(key)) return true;
  if (!verifySignature(author, rootMessage(root, count), sig)) return false;
  if (verifiedRoots.size >= 8192) verifiedRoots.clear();
  verifiedRoots.add(key);
  return true;
}

/**
 * Decodes and checks one entry on its own: canonical DAG-CBOR, schema, size, signature.
 * Membership, sequence and clock need the log and are checked at ingestion.
 */
export function decodeEntry(bytes: Uint8Array): DecodedEntry {
  const parsed = parseEntry(bytes);
  verifyEntry(parsed);
  return parsed;
}

/** decodeEntry without the signature check: learn the id first, verify only what is new. */
export function parseEntry(bytes: Uint8Array): DecodedEntry {
  if (bytes.length > MAX_ENTRY_BYTES) throw new EntryError('OVERSIZE', `entry of ${bytes.length} bytes exceeds ${MAX_ENTRY_BYTES}`);
  let raw: unknown;
  try {
    raw = cbor.decode(bytes);
  } catch (err) {
    throw new EntryError('MALFORMED', `not DAG-CBOR: ${(err as Error).message}`);
  }
  const e = raw as Entry;
  if (typeof e !== 'object' || e === null) throw new EntryError('MALFORMED', 'entry is not a map');
  const keys = Object.keys(e).sort().join(',');
  if (keys !== 'author,batch,lamport,parents,payload,seq,sig,v') throw new EntryError('MALFORMED', `unexpected fields: ${keys}`);
  if (!(e.sig instanceof Uint8Array) || e.sig.length !== 64) throw new EntryError('MALFORMED', 'signature is not 64 bytes');
  checkBatch(e.batch);
  const unsigned: UnsignedEntry = { v: e.v, author: e.author, seq: e.seq, lamport: e.lamport, parents: e.parents, payload: e.payload };
  checkShape(unsigned);
  // Re-encoding must give the same bytes: rejects non-canonical encodings of the same entry.
  if (compareBytes(cbor.encode(e), bytes) !== 0) throw new EntryError('MALFORMED', 'entry is not in canonical form');
  const id = sha256(contentBytes(unsigned));
  return { entry: e, id, idHex: toHex(id), bytes };
}

/** Throws BAD_SIGNATURE unless the entry's batch signature covers its id. */
export function verifyEntry(d: DecodedEntry): void {
  const { batch, sig, author } = d.entry;
  const root = rootFromInclusion(d.id, { index: batch.index, count: batch.count, siblings: batch.path });
  if (!root) throw new EntryError('MALFORMED', 'batch path does not fit its index and count');
  if (!verifyRoot(author, root, batch.count, sig)) throw new EntryError('BAD_SIGNATURE', 'signature does not verify');
}

function fail(why: string): never {
  throw new EntryError('MALFORMED', why);
}

const uint = (v: unknown, max = Number.MAX_SAFE_INTEGER): boolean => Number.isSafeInteger(v) && (v as number) >= 0 && (v as number) <= max;
const hexKey = (v: unknown): boolean => typeof v === 'string' && HEX64.test(v);

function checkBatch(b: Entry['batch']): void {
  if (typeof b !== 'object' || b === null || Object.keys(b).sort().join(',') !== 'count,index,path') fail('batch must hold index, count and path');
  if (!uint(b.count, MAX_BATCH) || b.count < 1 || !uint(b.index) || b.index >= b.count) fail('batch index must lie in 0..count-1, count in 1..' + MAX_BATCH);
  if (!Array.isArray(b.path) || b.path.length > 12 || !b.path.every((h) => h instanceof Uint8Array && h.length === 32)) fail('batch path must be ≤ 12 hashes of 32 bytes');
}

function checkShape(u: UnsignedEntry): void {
  if (u.v !== 2) fail(`unknown log entry version ${String(u.v)} (this robomesh reads version 2)`);
  if (!(u.author instanceof Uint8Array) || u.author.length !== 32) fail('author is not a 32-byte key');
  if (!uint(u.seq) || u.seq < 1) fail('seq must be a positive integer');
  if (!uint(u.lamport) || u.lamport < 1) fail('lamport must be a positive integer');
  if (!Array.isArray(u.parents) || u.parents.length > 64) fail('parents must be a list of at most 64 ids');
  for (let i = 0; i < u.parents.length; i++) {
    const p = u.parents[i];
    if (!(p instanceof Uint8Array) || p.length !== 32) fail('a parent is not a 32-byte id');
    if (i > 0 && compareBytes(u.parents[i - 1], p) >= 0) fail('parents must be sorted and distinct');
  }
  checkPayload(u.payload);
}

function checkPayload(p: Payload): void {
  if (typeof p !== 'object' || p === null) fail('payload is not a map');
  const exact = (...fields: string[]): void => {
    const keys = Object.keys(p).sort().join(',');
    const want = ['type', ...fields].sort().join(',');
    if (keys !== want) fail(`${p.type} payload has fields ${keys}, expected ${want}`);
  };
  switch (p.type) {
    case 'genesis':
      exact('fleet', 'members', 'admins');
      if (typeof p.fleet !== 'string' || p.fleet.length === 0 || p.fleet.length > 64) fail('bad fleet name');
      if (!Array.isArray(p.members) || p.members.length > 1000 || !p.members.every(hexKey)) fail('members must be hex keys');
      if (!Array.isArray(p.admins) || p.admins.length > 100 || !p.admins.every(hexKey)) fail('admins must be hex keys');
      return;
    case 'admit':
    case 'revoke':
      exact('member');
      if (!hexKey(p.member)) fail('member must be a hex key');
      return;
    case 'task':
      exact('task', 'model', 'input', 'k', 'timeout');
      if (typeof p.task !== 'string' || !TASK_ID.test(p.task)) fail('bad task id');
      if (!hexKey(p.model) || !hexKey(p.input)) fail('model and input must be sha256 hex');
      if (!uint(p.k, 16) || p.k < 1) fail('k must be 1..16');
      if (!uint(p.timeout, 1_000_000) || p.timeout < 1) fail('timeout must be a positive clock span');
      return;
    case 'assign':
      exact('task', 'executors');
      if (typeof p.task !== 'string' || !TASK_ID.test(p.task)) fail('bad task id');
      if (!Array.isArray(p.executors) || p.executors.length < 1 || p.executors.length > 16 || !p.executors.every(hexKey)) fail('bad executors');
      return;
    case 'claim':
      exact('task');
      if (typeof p.task !== 'string' || !TASK_ID.test(p.task)) fail('bad task id');
      return;
    case 'result':
      exact('task', 'digest', 'values');
      if (typeof p.task !== 'string' || !TASK_ID.test(p.task)) fail('bad task id');
      if (!hexKey(p.digest)) fail('digest must be sha256 hex');
      // Integers (fixed point, 1e-6 units) keep the bytes canonical: DAG-CBOR floats are not compared reliably.
      if (!Array.isArray(p.values) || p.values.length > 64 || !p.values.every((v) => Number.isSafeInteger(v))) fail('values must be ≤ 64 integers');
      return;
    case 'tile':
      exact('tile', 'version', 'digest');
      if (typeof p.tile !== 'string' || !TASK_ID.test(p.tile)) fail('bad tile id');
      if (!uint(p.version) || !hexKey(p.digest)) fail('bad tile version or digest');
      return;
    case 'flag':
      exact('robot', 'evidence');
      if (!hexKey(p.robot)) fail('flag robot must be a hex key');
      if (!Array.isArray(p.evidence) || p.evidence.length > 64 || !p.evidence.every(hexKey)) fail('flag evidence must be ≤ 64 digests');
      return;
    case 'anchor':
      exact('root', 'count', 'heads', 'tx', 'checkpoint', 'txBytes', 'txSig');
      if (!hexKey(p.root) || !uint(p.count) || p.count < 1 || !uint(p.checkpoint)) fail('bad anchor');
      if (!Array.isArray(p.heads) || p.heads.length < 1 || p.heads.length > 64 || !p.heads.every(hexKey)) fail('anchor heads must be 1..64 ids');
      if (typeof p.tx !== 'string' || p.tx.length === 0 || p.tx.length > 128) fail('bad anchor tx');
      if (!(p.txBytes instanceof Uint8Array) || p.txBytes.length > 8192) fail('anchor txBytes must be ≤ 8 KiB');
      if (typeof p.txSig !== 'string' || p.txSig.length > 256) fail('bad anchor txSig');
      return;
    default:
      fail(`unknown payload type ${String((p as { type?: unknown }).type)}`);
  }
}
