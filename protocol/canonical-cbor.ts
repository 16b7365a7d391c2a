import { RobomeshError } from './errors.js';

export class CborError extends RobomeshError<'MALFORMED'> {
  constructor(message: string) {
    super('MALFORMED', message);
  }
}

function fail(why: string): never {
  throw new CborError(why);
}

/**
 * Strict decoder for the DAG-CBOR subset entries use (unsigned and negative integers within the
 * safe range, byte and text strings, lists, maps with text keys): definite lengths, minimal
 * integer and length headers, map keys in DAG-CBOR order (length, then bytes) without
 * duplicates, valid UTF-8, nothing after the item. Accepting exactly the canonical encodings of
 * such values, it replaces decode + re-encode + compare; anything outside the subset (floats,
 * tags, booleans, null) is no valid field and is refused. Ours rather than @ipld/dag-cbor's
 * decoder because that one neither reports where `sig` and `batch` sit (the id is a hash of the
 * bytes without them) nor proves an encoding canonical without encoding it again: ~30 µs an
 * entry against ~5 µs, most of a heal's CPU. @ipld/dag-cbor still writes every entry.
 */
export type Spans = { sig?: [number, number]; batch?: [number, number] };
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const MAX_DEPTH = 8;

export class Reader {
  pos = 0;
  /** Items read so far; past `maxItems` the input is refused (before a list or map is allocated). */
  private items = 0;

  constructor(
    readonly b: Uint8Array,
    private readonly maxItems = Infinity,
  ) {}

  private count(n: number): void {
    this.items += n;
    if (this.items > this.maxItems) fail(`more than ${this.maxItems} CBOR items`);
  }

  /** Major type of the header head() read last. */
  major = 0;

  /** Reads a header; returns its value (its major type is left in `major`: no pair allocated per header). */
  head(): number {
    const b = this.b;
    if (this.pos >= b.length) fail('CBOR ends early');
    const first = b[this.pos++];
    const major = (this.major = first >> 5);
    const info = first & 31;
    if (major === 7) fail('floats and simple values are not fields');
    if (info < 24) return info;
    let v: number;
    let min: number;
    if (info === 24) {
      v = this.byte();
      min = 24;
    } else if (info === 25) {
      v = (this.byte() << 8) | this.byte();
      min = 0x100;
    } else if (info === 26) {
      v = ((this.byte() << 24) >>> 0) + ((this.byte() << 16) | (this.byte() << 8) | this.byte());
      min = 0x10000;
    } else if (info === 27) {
      const hi = ((this.byte() << 24) >>> 0) + ((this.byte() << 16) | (this.byte() << 8) | this.byte());
      const lo = ((this.byte() << 24) >>> 0) + ((this.byte() << 16) | (this.byte() << 8) | this.byte());
      if (hi > 0x1fffff) fail('integer beyond the safe range');
      v = hi * 0x100000000 + lo;
      min = 0x100000000;
    } else return fail('indefinite or reserved CBOR length');
    if (v < min) fail('CBOR integer or length not in its shortest form');
    return v;
  }

  byte(): number {
    if (this.pos >= this.b.length) fail('CBOR ends early');
    return this.b[this.pos++];
  }

  /**
   * The next `n` bytes as their own Uint8Array: a copy of a plain Uint8Array, but a view when the
   * input is a Buffer (Buffer#slice shares memory, as `DecodedEntry.bytes` does anyway).
   */
  copy(n: number): Uint8Array {
    if (n > this.b.length - this.pos) fail('CBOR ends early');
    const out = this.b.slice(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  item(depth: number): unknown {
    if (depth > MAX_DEPTH) fail('CBOR nested too deep');
    const v = this.head();
    switch (this.major) {
      case 0:
        return v;
      case 1:
        if (v >= Number.MAX_SAFE_INTEGER) fail('integer beyond the safe range');
        return -1 - v;
      case 2:
        return this.copy(v);
      case 3: {
        const at = this.pos;
        if (v > this.b.length - at) fail('CBOR ends early');
        this.pos += v;
        return text(this.b, at, v);
      }
      case 4: {
        if (v > this.b.length - this.pos) fail('CBOR ends early');
        this.count(v);
        const out: unknown[] = new Array(v);
        for (let i = 0; i < v; i++) out[i] = this.item(depth + 1);
        return out;
      }
      case 5:
        return this.map(v, depth);
      default:
        return fail('CBOR tags are not fields');
    }
  }

  /** A map of `n` pairs; `spans` (if given) receives the [start, end) offsets of the `sig` and `batch` pairs. */
  map(n: number, depth: number, spans?: Spans): Record<string, unknown> {
    if (n > this.b.length - this.pos) fail('CBOR ends early');
    this.count(n);
    const b = this.b;
    const out: Record<string, unknown> = {};
    let prevAt = 0;
    let prevLen = -1;
    for (let i = 0; i < n; i++) {
      const start = this.pos;
      const len = this.head();
      if (this.major !== 3) fail('map keys must be text');
      const at = this.pos;
      if (len > b.length - at) fail('CBOR ends early');
      this.pos += len;
      if (prevLen > len) fail('map keys not in canonical order');
      if (prevLen === len) {
        let k = 0;
        while (k < len && b[prevAt + k] === b[at + k]) k++;
        if (k === len || b[prevAt + k] > b[at + k]) fail('map keys not in canonical order');
      }
      prevAt = at;
      prevLen = len;
      const key = text(b, at, len);
      if (key === '__proto__') fail('map key __proto__');
      out[key] = this.item(depth + 1);
      if (spans && (key === 'sig' || key === 'batch')) spans[key] = [start, this.pos];
    }
    return out;
  }
}

function text(b: Uint8Array, at: number, len: number): string {
  let out = '';
  for (let i = at; i < at + len; i++) {
    const c = b[i];
    if (c >= 0x80) {
      try {
        return utf8.decode(b.subarray(at, at + len));
      } catch {
        return fail('text is not valid UTF-8');
      }
    }
    out += String.fromCharCode(c);
  }
  return out;
}
