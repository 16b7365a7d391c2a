import * as cbor from '@ipld/dag-cbor';
import { type Hex, compareBytes, equalBytes, fromHex, isHexKey, sha256, toHex } from './bytes.js';
import { CborError, Reader, type Spans } from './canonical-cbor.js';
import { type Signer, verifySignature } from './ed25519.js';
import { EntryError, type EntryErrorCode } from './errors.js';
import { type Payload, type PayloadType, checkPayload } from './log-payloads.js';
import { MerkleTree, rootFromInclusion } from './merkle.js';

export { type Hex, type Payload, type PayloadType, EntryError, type EntryErrorCode };
export { compareBytes, equalBytes, fromHex, isHexKey, sha256, toHex };

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

export const MAX_ENTRY_BYTES = 16 * 1024;
/** Largest number of entries one signature may cover (a path of at most 12 hashes). */
export const MAX_BATCH = 4096;
const DOMAIN = new TextEncoder().encode('robomesh-log-v2\n');
const ROOT_DOMAIN = new TextEncoder().encode('robomesh-log-v2-batch\n');
/** Where parseEntry assembles content bytes to hash (synchronously, so one buffer serves all). */
const contentScratch = new Uint8Array(DOMAIN.length + MAX_ENTRY_BYTES);
contentScratch.set(DOMAIN);

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
  if (drafts.length < 1 || drafts.length > MAX_BATCH)
    throw new RangeError(`a signed batch holds 1..${MAX_BATCH} entries, not ${drafts.length}`);
  const units = drafts.map((d) => unsignedOf(d, signer.publicKey));
  units.forEach(checkShape);
  const ids = units.map((u) => sha256(contentBytes(u)));
  const tree = new MerkleTree(ids);
  const sig = signer.sign(rootMessage(tree.root, tree.count));
  return units.map((u, i) => {
    const { index, count, siblings } = tree.prove(i);
    const entry: Entry = { ...u, sig, batch: { index, count, path: siblings } };
    const bytes = cbor.encode(entry);
    if (bytes.length > MAX_ENTRY_BYTES)
      throw new EntryError('OVERSIZE', `entry of ${bytes.length} bytes exceeds ${MAX_ENTRY_BYTES}`);
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

/**
 * decodeEntry without the signature check: learn the id first, verify only what is new.
 * One strict pass over the bytes (no re-encoding): the content's bytes are the entry's with the
 * `sig` and `batch` pairs cut out, since canonical key order puts them together after `seq`.
 */
export function parseEntry(bytes: Uint8Array): DecodedEntry {
  if (bytes.length > MAX_ENTRY_BYTES)
    throw new EntryError('OVERSIZE', `entry of ${bytes.length} bytes exceeds ${MAX_ENTRY_BYTES}`);
  const spans: Spans = {};
  let e: Entry;
  try {
    const r = new Reader(bytes);
    const pairs = r.head();
    if (r.major !== 5) fail('entry is not a map');
    e = r.map(pairs, 0, spans) as unknown as Entry;
    if (r.pos !== bytes.length) fail('bytes after the entry');
  } catch (err) {
    if (err instanceof CborError) fail(err.message);
    throw err;
  }
  if (!hasExactly(e, ENTRY_FIELDS))
    throw new EntryError('MALFORMED', `unexpected fields: ${Object.keys(e).sort().join(',')}`);
  if (!(e.sig instanceof Uint8Array) || e.sig.length !== 64)
    throw new EntryError('MALFORMED', 'signature is not 64 bytes');
  checkBatch(e.batch);
  const unsigned: UnsignedEntry = {
    v: e.v,
    author: e.author,
    seq: e.seq,
    lamport: e.lamport,
    parents: e.parents,
    payload: e.payload,
  };
  checkShape(unsigned);
  const { sig, batch } = spans;
  if (!sig || !batch || sig[1] !== batch[0]) fail('sig and batch are not where canonical order puts them');
  const length = DOMAIN.length + 1 + (sig[0] - 1) + (bytes.length - batch[1]);
  contentScratch[DOMAIN.length] = 0xa6; // a map of the 6 content fields
  contentScratch.set(bytes.subarray(1, sig[0]), DOMAIN.length + 1);
  contentScratch.set(bytes.subarray(batch[1]), DOMAIN.length + sig[0]);
  const id = sha256(contentScratch.subarray(0, length));
  return { entry: e, id, idHex: toHex(id), bytes };
}

/** Throws BAD_SIGNATURE unless the entry's batch signature covers its id. */
export function verifyEntry(d: DecodedEntry): void {
  const { batch, sig, author } = d.entry;
  const root = rootFromInclusion(d.id, { index: batch.index, count: batch.count, siblings: batch.path });
  if (!root) throw new EntryError('MALFORMED', 'batch path does not fit its index and count');
  if (!verifyRoot(author, root, batch.count, sig)) throw new EntryError('BAD_SIGNATURE', 'signature does not verify');
}

/**
 * verifyEntry for many entries at once. Where every entry of a signed batch is present, the
 * tree is rebuilt from their ids (≈ 2n hashes instead of n paths of log n) and each entry's
 * path must equal that tree's: then each would verify alone too. Entries of incomplete batches,
 * and any that do not match, are checked one by one. Returns per entry the error, if any.
 */
export function verifyEntries(list: DecodedEntry[]): (EntryError | undefined)[] {
  const out: (EntryError | undefined)[] = new Array(list.length).fill(undefined);
  const alone: number[] = [];
  const groups = new Map<string, number[]>();
  let run: { sig: Uint8Array; group: number[] } | undefined;
  list.forEach((d, i) => {
    const { batch, sig } = d.entry;
    if (batch.count === 1) return alone.push(i);
    // Entries of a batch usually come one after another: name the group once per run.
    if (run && equalBytes(run.sig, sig)) return run.group.push(i);
    const key = toHex(sig);
    let g = groups.get(key);
    if (g) g.push(i);
    else groups.set(key, (g = [i]));
    run = { sig, group: g };
  });
  for (const g of groups.values()) {
    const { batch: first, author } = list[g[0]].entry;
    const count = first.count;
    const byIndex: DecodedEntry[] = new Array(count);
    // One signature, one batch: entries claiming it with another author or size go alone.
    for (const i of g) {
      const e = list[i].entry;
      if (e.batch.count === count && equalBytes(e.author, author)) byIndex[e.batch.index] ??= list[i];
    }
    if (g.length < count || byIndex.includes(undefined as unknown as DecodedEntry)) {
      alone.push(...g);
      continue;
    }
    const tree = new MerkleTree(byIndex.map((d) => d.id));
    if (!verifyRoot(author, tree.root, count, byIndex[0].entry.sig)) {
      alone.push(...g);
      continue;
    }
    for (const i of g) {
      const { index, path } = list[i].entry.batch;
      if (byIndex[index] !== list[i] || !tree.provesWith(index, path)) alone.push(i);
    }
  }
  for (const i of alone) {
    try {
      verifyEntry(list[i]);
    } catch (err) {
      if (!(err instanceof EntryError)) throw err;
      out[i] = err;
    }
  }
  return out;
}

function fail(why: string): never {
  throw new EntryError('MALFORMED', why);
}

const ENTRY_FIELDS = ['author', 'batch', 'lamport', 'parents', 'payload', 'seq', 'sig', 'v'];
const BATCH_FIELDS = ['count', 'index', 'path'];

/** `o` has these own fields and no others (without sorting its keys: this runs per field map). */
function hasExactly(o: object, fields: readonly string[]): boolean {
  let n = 0;
  for (const key in o) {
    if (!Object.hasOwn(o, key)) return false;
    n++;
  }
  return n === fields.length && fields.every((f) => Object.hasOwn(o, f));
}

const uint = (v: unknown, max = Number.MAX_SAFE_INTEGER): boolean =>
  Number.isSafeInteger(v) && (v as number) >= 0 && (v as number) <= max;

function checkBatch(b: Entry['batch']): void {
  if (typeof b !== 'object' || b === null || !hasExactly(b, BATCH_FIELDS))
    fail('batch must hold index, count and path');
  if (!uint(b.count, MAX_BATCH) || b.count < 1 || !uint(b.index) || b.index >= b.count)
    fail('batch index must lie in 0..count-1, count in 1..' + MAX_BATCH);
  if (!Array.isArray(b.path) || b.path.length > 12 || !b.path.every((h) => h instanceof Uint8Array && h.length === 32))
    fail('batch path must be ≤ 12 hashes of 32 bytes');
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
