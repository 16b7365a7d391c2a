import { hash as oneShotHash } from 'node:crypto';

/** Byte helpers shared by the wire formats: hex, comparison, sha256. */
export type Hex = string;

export const toHex = (b: Uint8Array): Hex => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
export const fromHex = (h: Hex): Uint8Array => new Uint8Array(Buffer.from(h, 'hex'));

export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  return Buffer.compare(a, b);
}

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * sha256 into a fresh 32-byte array, through a latin1 string rather than a Buffer: a Buffer made
 * by native code gets a backing store of its own (measured here: 1.0 µs per 65-byte hash against
 * 0.4 µs, before its extra garbage-collection cost); a 32-byte Uint8Array lives on the JS heap.
 */
export const digest = (data: Uint8Array): Uint8Array => {
  const s = oneShotHash('sha256', data, 'binary');
  const out = new Uint8Array(32);
  for (let i = 0; i < 32; i++) out[i] = s.charCodeAt(i);
  return out;
};

export const sha256 = digest;

const HEX64 = /^[0-9a-f]{64}$/;
/** A 64-character lowercase hex string: a key, an id or a sha256 as the log writes them. */
export const isHexKey = (v: unknown): v is Hex => typeof v === 'string' && HEX64.test(v);
