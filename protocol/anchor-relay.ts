import * as cbor from '@ipld/dag-cbor';
import { type Hex, isHexKey } from './bytes.js';
import { CborError, Reader } from './canonical-cbor.js';
import { WireError } from './errors.js';
import { LIMITS } from './limits.js';
import { TASK_ID } from './log-payloads.js';

/**
 * `robomesh/<fleet>/anchor-relay/1` gossip: a robot with no IOTA node publishes the anchor
 * transaction it signed offline, for any peer with a node to submit. The transaction's own
 * signature and content are checked by the receiver (nodes/ledger/anchor-relay.ts); this codec
 * checks the message's shape and bounds.
 */
export const anchorRelayTopic = (fleet: string): string => `robomesh/${fleet}/anchor-relay/1`;

export interface RelayMessage {
  /** The Merkle root the transaction commits (32 bytes). */
  root: Uint8Array;
  count: number;
  heads: Hex[];
  first: number;
  last: number;
  results: { task: string; digest: Hex }[];
  /** The signed transaction's bytes and its signature (base64, as IOTA serialises it). */
  tx: Uint8Array;
  sig: string;
}

const fail = (why: string): never => {
  throw new WireError('anchor-relay', 'MALFORMED', why);
};

export const encodeRelayMessage = (m: RelayMessage): Uint8Array => cbor.encode(m);

export function decodeRelayMessage(bytes: Uint8Array): RelayMessage {
  const { maxBytes, maxHeads, maxResults } = LIMITS.relay;
  if (bytes.length > maxBytes) fail(`a relay message of ${bytes.length} bytes`);
  let m: Record<string, unknown>;
  try {
    const r = new Reader(bytes, 16 + maxHeads + 5 * maxResults);
    m = r.item(0) as Record<string, unknown>;
    if (r.pos !== bytes.length) fail('bytes after the message');
  } catch (err) {
    if (err instanceof CborError) return fail(err.message);
    throw err;
  }
  if (typeof m !== 'object' || m === null || Array.isArray(m)) return fail('not a map');
  if (Object.keys(m).sort().join() !== 'count,first,heads,last,results,root,sig,tx')
    fail(`fields ${Object.keys(m).sort().join()}`);
  const uint = (v: unknown): boolean => Number.isSafeInteger(v) && (v as number) >= 0;
  if (!(m.root instanceof Uint8Array) || m.root.length !== 32) fail('root is not 32 bytes');
  if (!uint(m.count) || !uint(m.first) || !uint(m.last)) fail('count, first and last are counts');
  if (!Array.isArray(m.heads) || m.heads.length > maxHeads || !m.heads.every(isHexKey))
    fail(`heads: at most ${maxHeads} ids`);
  const results = m.results as { task?: unknown; digest?: unknown }[];
  if (!Array.isArray(results) || results.length > maxResults) return fail(`results: at most ${maxResults}`);
  for (const r of results)
    if (
      typeof r !== 'object' ||
      r === null ||
      typeof r.task !== 'string' ||
      !TASK_ID.test(r.task) ||
      !isHexKey(r.digest)
    )
      fail('a result is {task, digest}');
  if (!(m.tx instanceof Uint8Array) || m.tx.length === 0) fail('tx is the transaction bytes');
  if (typeof m.sig !== 'string' || m.sig.length > 256) fail('sig is a signature string');
  return m as unknown as RelayMessage;
}
