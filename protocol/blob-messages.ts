import { LIMITS } from './limits.js';

/**
 * `/robomesh/blob/1.0.0`: content by sha256 — models a robot lacks and task inputs an executor
 * assigned later must fetch. One request per stream:
 *   asker → 64 lowercase hex characters (the sha256), one length-prefixed message;
 *   holder → u32 little-endian size (0: not held), then the bytes in messages of at most
 *            BLOB_PIECE_BYTES; then it closes.
 * The asker verifies the sha256, so a lying holder cannot plant content; it allocates only as
 * bytes arrive and refuses sizes above its own limit before reading any.
 */
export const BLOB_PROTOCOL = '/robomesh/blob/1.0.0';
/** One noise message of plaintext less yamux's header (see nodes/mesh/tensor-io.ts). */
export const BLOB_PIECE_BYTES = 65_519 - 12;
/** Largest message on the protocol (pieces, and what older peers sent: 1 MiB). */
export const BLOB_MAX_MESSAGE = 1024 * 1024 + 16;
/** Largest blob served or fetched: a model. */
export const MAX_BLOB_BYTES = LIMITS.blob.maxBytes;
/** Concurrent blob streams a robot serves per connection. */
export const BLOB_STREAMS_PER_PEER = LIMITS.blob.streamsPerPeer;

const DIGEST = /^[0-9a-f]{64}$/;

export function encodeBlobRequest(digest: string): Uint8Array {
  return new TextEncoder().encode(digest);
}

/** The digest asked for, or undefined when the request is not one. */
export function decodeBlobRequest(message: Uint8Array): string | undefined {
  if (message.length !== 64) return undefined;
  const digest = new TextDecoder().decode(message);
  return DIGEST.test(digest) ? digest : undefined;
}

export function encodeBlobSize(size: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, size, true);
  return out;
}

/** The announced size, or undefined when the message is not a 4-byte size. */
export function decodeBlobSize(message: Uint8Array): number | undefined {
  if (message.length !== 4) return undefined;
  return new DataView(message.buffer, message.byteOffset, 4).getUint32(0, true);
}
