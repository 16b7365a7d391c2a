import { DTYPES, type DType, type TensorData, dtypeFromCode, expectedArrayName, viewAs } from './dtypes.js';
import { FrameError } from './errors.js';

/**
 * Tensor frame v1: one or more named tensors in one little-endian buffer.
 *
 *   magic "RMTF" | version u8 | flags u8 (0) | count u16 | headersEnd u32
 *   per tensor: nameLen u16, name utf8, dtype u8, rank u8, dims u32×rank,
 *               quant u8 (0 none | 1 per-tensor | 2 per-axis)
 *                 per-tensor: scale f32, zeroPoint i32
 *                 per-axis:   axis u8, scale f32×dims[axis], zeroPoint i32×dims[axis]
 *               payloadBytes u32
 *   payloads, each starting on an 8-byte boundary of the frame, in header order.
 *
 * Payload alignment lets the decoder hand out typed-array views into the received buffer
 * instead of copies whenever the buffer itself sits on an aligned offset.
 */
export const FRAME_MAGIC = 0x46544d52; // "RMTF" read as little-endian u32
export const FRAME_VERSION = 1;
const FIXED_HEADER = 12;
const ALIGN = 8;

export interface Quantization {
  /** One scale per tensor, or one per slice along `axis`. */
  scale: Float32Array;
  zeroPoint: Int32Array;
  /** Present for per-axis quantization. */
  axis?: number;
}

export interface Tensor {
  name: string;
  dtype: DType;
  dims: number[];
  data: TensorData;
  quant?: Quantization;
}

export interface FrameLimits {
  maxFrameBytes: number;
  maxTensors: number;
  maxRank: number;
  maxNameBytes: number;
}

export const DEFAULT_FRAME_LIMITS: FrameLimits = {
  maxFrameBytes: 256 * 1024 * 1024,
  maxTensors: 64,
  maxRank: 8,
  maxNameBytes: 256,
};

if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
  throw new Error('robomesh tensor frames need a little-endian host');
}

const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder('utf-8', { fatal: true });

const pad = (n: number): number => (ALIGN - (n % ALIGN)) % ALIGN;

export function elementCount(dims: readonly number[]): number {
  let n = 1;
  for (const d of dims) n *= d;
  return n;
}

function checkDims(dims: readonly number[], dtype: DType, limits: FrameLimits, where: string): number {
  if (dims.length > limits.maxRank) {
    throw new FrameError('BAD_DIMS', `${where}: rank ${dims.length} exceeds the limit of ${limits.maxRank}`);
  }
  let elements = 1;
  for (const d of dims) {
    if (!Number.isInteger(d) || d < 0 || d > 0xffffffff) {
      throw new FrameError('BAD_DIMS', `${where}: dimension ${d} is not an integer in [0, 2^32)`);
    }
    elements *= d;
    if (elements * DTYPES[dtype].bytes > limits.maxFrameBytes) {
      throw new FrameError(
        'TOO_LARGE',
        `${where}: dims [${dims.join(', ')}] exceed the frame limit of ${limits.maxFrameBytes} bytes`,
      );
    }
  }
  return elements;
}

function quantBytes(t: Tensor): number {
  if (!t.quant) return 1;
  return t.quant.axis === undefined ? 1 + 8 : 1 + 1 + 8 * t.quant.scale.length;
}

function checkQuant(t: Tensor, where: string): void {
  const q = t.quant;
  if (!q) return;
  if (q.scale.length !== q.zeroPoint.length) {
    throw new FrameError('BAD_QUANT', `${where}: ${q.scale.length} scales but ${q.zeroPoint.length} zero points`);
  }
  if (q.axis === undefined) {
    if (q.scale.length !== 1) throw new FrameError('BAD_QUANT', `${where}: per-tensor quantization needs one scale`);
  } else {
    if (!Number.isInteger(q.axis) || q.axis < 0 || q.axis >= t.dims.length || q.axis > 255) {
      throw new FrameError('BAD_QUANT', `${where}: quantization axis ${q.axis} outside rank ${t.dims.length}`);
    }
    if (q.scale.length !== t.dims[q.axis]) {
      throw new FrameError(
        'BAD_QUANT',
        `${where}: ${q.scale.length} scales for axis ${q.axis} of size ${t.dims[q.axis]}`,
      );
    }
  }
  for (const s of q.scale) {
    if (!Number.isFinite(s) || s <= 0) throw new FrameError('BAD_QUANT', `${where}: scale ${s} is not positive`);
  }
}

interface Planned {
  name: Uint8Array;
  tensor: Tensor;
  bytes: Uint8Array;
}

function plan(tensors: readonly Tensor[], limits: FrameLimits): { planned: Planned[]; headersEnd: number } {
  if (tensors.length > limits.maxTensors || tensors.length > 0xffff) {
    throw new FrameError('TOO_LARGE', `${tensors.length} tensors exceed the limit of ${limits.maxTensors}`);
  }
  let headersEnd = FIXED_HEADER;
  const planned: Planned[] = [];
  const names = new Set<string>();
  for (const tensor of tensors) {
    const where = `tensor '${tensor.name}'`;
    const name = utf8.encode(tensor.name);
    if (name.length === 0 || name.length > limits.maxNameBytes) {
      throw new FrameError('BAD_NAME', `${where}: name must be 1..${limits.maxNameBytes} bytes`);
    }
    if (names.has(tensor.name)) throw new FrameError('BAD_NAME', `${where}: name appears twice`);
    names.add(tensor.name);
    if (!Object.prototype.hasOwnProperty.call(DTYPES, tensor.dtype)) {
      throw new FrameError('UNKNOWN_DTYPE', `${where}: unknown dtype '${String(tensor.dtype)}'`);
    }
    const elements = checkDims(tensor.dims, tensor.dtype, limits, where);
    if (tensor.data.constructor.name !== expectedArrayName(tensor.dtype)) {
      throw new FrameError(
        'UNKNOWN_DTYPE',
        `${where}: dtype ${tensor.dtype} needs a ` +
          `${expectedArrayName(tensor.dtype)}, got ${tensor.data.constructor.name}`,
      );
    }
    if (tensor.data.length !== elements) {
      throw new FrameError(
        'SIZE_MISMATCH',
        `${where}: dims [${tensor.dims.join(', ')}] hold ${elements} elements but data has ${tensor.data.length}`,
      );
    }
    checkQuant(tensor, where);
    headersEnd += 2 + name.length + 2 + 4 * tensor.dims.length + quantBytes(tensor) + 4;
    const bytes = new Uint8Array(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength);
    planned.push({ name, tensor, bytes });
  }
  return { planned, headersEnd };
}

/**
 * Encodes tensors as a list of chunks: one header chunk, then each payload as a view of the
 * caller's data (never copied) followed by its padding. Writers that accept several buffers
 * (streams, sockets) send these as they are.
 */
export function encodeFrameChunks(
  tensors: readonly Tensor[],
  limits: FrameLimits = DEFAULT_FRAME_LIMITS,
): Uint8Array[] {
  const { planned, headersEnd } = plan(tensors, limits);
  let total = headersEnd + pad(headersEnd);
  for (const p of planned) total += p.bytes.length + pad(p.bytes.length);
  if (total > limits.maxFrameBytes) {
    throw new FrameError('TOO_LARGE', `frame of ${total} bytes exceeds the limit of ${limits.maxFrameBytes}`);
  }
  const header = new Uint8Array(headersEnd + pad(headersEnd));
  const view = new DataView(header.buffer);
  view.setUint32(0, FRAME_MAGIC, true);
  view.setUint8(4, FRAME_VERSION);
  view.setUint8(5, 0);
  view.setUint16(6, planned.length, true);
  view.setUint32(8, headersEnd, true);
  let o = FIXED_HEADER;
  for (const { name, tensor, bytes } of planned) {
    view.setUint16(o, name.length, true);
    header.set(name, o + 2);
    o += 2 + name.length;
    view.setUint8(o++, DTYPES[tensor.dtype].code);
    view.setUint8(o++, tensor.dims.length);
    for (const d of tensor.dims) {
      view.setUint32(o, d, true);
      o += 4;
    }
    const q = tensor.quant;
    if (!q) {
      view.setUint8(o++, 0);
    } else if (q.axis === undefined) {
      view.setUint8(o++, 1);
      view.setFloat32(o, q.scale[0], true);
      view.setInt32(o + 4, q.zeroPoint[0], true);
      o += 8;
    } else {
      view.setUint8(o++, 2);
      view.setUint8(o++, q.axis);
      for (const s of q.scale) {
        view.setFloat32(o, s, true);
        o += 4;
      }
      for (const z of q.zeroPoint) {
        view.setInt32(o, z, true);
        o += 4;
      }
    }
    view.setUint32(o, bytes.length, true);
    o += 4;
  }
  const chunks: Uint8Array[] = [header];
  for (const { bytes } of planned) {
    if (bytes.length > 0) chunks.push(bytes);
    const p = pad(bytes.length);
    if (p > 0) chunks.push(new Uint8Array(p));
  }
  return chunks;
}

/** Encodes tensors into one contiguous buffer (one copy of each payload). */
export function encodeFrame(tensors: readonly Tensor[], limits: FrameLimits = DEFAULT_FRAME_LIMITS): Uint8Array {
  const chunks = encodeFrameChunks(tensors, limits);
  let total = 0;
  for (const c of chunks) total += c.length;
  const out = new Uint8Array(total);
  let o = 0;
  for (const c of chunks) {
    out.set(c, o);
    o += c.length;
  }
  return out;
}

class Reader {
  private readonly view: DataView;
  o = FIXED_HEADER;
  constructor(
    readonly bytes: Uint8Array,
    readonly end: number,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  need(n: number, what: string): void {
    if (this.o + n > this.end) {
      throw new FrameError('TRUNCATED', `frame header ends before ${what} (offset ${this.o}, need ${n} bytes)`);
    }
  }
  u8(what: string): number {
    this.need(1, what);
    return this.view.getUint8(this.o++);
  }
  u16(what: string): number {
    this.need(2, what);
    const v = this.view.getUint16(this.o, true);
    this.o += 2;
    return v;
  }
  u32(what: string): number {
    this.need(4, what);
    const v = this.view.getUint32(this.o, true);
    this.o += 4;
    return v;
  }
  i32(what: string): number {
    this.need(4, what);
    const v = this.view.getInt32(this.o, true);
    this.o += 4;
    return v;
  }
  f32(what: string): number {
    this.need(4, what);
    const v = this.view.getFloat32(this.o, true);
    this.o += 4;
    return v;
  }
}

/**
 * Decodes a frame. Tensor data are views into `bytes` when the payload is aligned for its
 * element type; otherwise (an unaligned receive buffer) the payload is copied once.
 */
interface FrameHeaders {
  headers: { tensor: Omit<Tensor, 'data'>; payloadBytes: number }[];
  headersEnd: number;
}

/**
 * Reads a frame's headers from `bytes` (the frame, or at least its first headersEnd bytes) for a
 * frame of `total` bytes; with `fixedOnly`, only the fixed header (`bytes` may be that short).
 */
function frameHeaders(bytes: Uint8Array, total: number, limits: FrameLimits, fixedOnly = false): FrameHeaders {
  if (total > limits.maxFrameBytes) {
    throw new FrameError('TOO_LARGE', `frame of ${total} bytes exceeds the limit of ${limits.maxFrameBytes}`);
  }
  if (total < FIXED_HEADER) {
    throw new FrameError('TRUNCATED', `frame of ${total} bytes is shorter than its ${FIXED_HEADER}-byte header`);
  }
  const head = new DataView(bytes.buffer, bytes.byteOffset, FIXED_HEADER);
  if (head.getUint32(0, true) !== FRAME_MAGIC) throw new FrameError('BAD_MAGIC', 'not a robomesh tensor frame');
  const version = head.getUint8(4);
  if (version !== FRAME_VERSION) {
    throw new FrameError('UNSUPPORTED_VERSION', `frame version ${version}; this build reads version ${FRAME_VERSION}`);
  }
  if (head.getUint8(5) !== 0) throw new FrameError('RESERVED_FLAGS', `reserved flags set: ${head.getUint8(5)}`);
  const count = head.getUint16(6, true);
  if (count > limits.maxTensors) {
    throw new FrameError('TOO_LARGE', `${count} tensors exceed the limit of ${limits.maxTensors}`);
  }
  const headersEnd = head.getUint32(8, true);
  if (headersEnd > total) {
    throw new FrameError('TRUNCATED', `headers claim ${headersEnd} bytes, frame has ${total}`);
  }
  if (fixedOnly) return { headers: [], headersEnd };
  const r = new Reader(bytes, headersEnd);
  const headers: { tensor: Omit<Tensor, 'data'>; payloadBytes: number }[] = [];
  const names = new Set<string>();
  for (let i = 0; i < count; i++) {
    const nameLen = r.u16('name length');
    if (nameLen === 0 || nameLen > limits.maxNameBytes) {
      throw new FrameError('BAD_NAME', `tensor ${i}: name length ${nameLen} outside 1..${limits.maxNameBytes}`);
    }
    r.need(nameLen, 'name');
    let name: string;
    try {
      name = utf8Strict.decode(bytes.subarray(r.o, r.o + nameLen));
    } catch {
      throw new FrameError('BAD_NAME', `tensor ${i}: name is not valid UTF-8`);
    }
    r.o += nameLen;
    if (names.has(name)) throw new FrameError('BAD_NAME', `tensor '${name}' appears twice`);
    names.add(name);
    const where = `tensor '${name}'`;
    const code = r.u8('dtype');
    const dtype = dtypeFromCode(code);
    if (!dtype) throw new FrameError('UNKNOWN_DTYPE', `${where}: unknown dtype code ${code}`);
    const rank = r.u8('rank');
    if (rank > limits.maxRank) {
      throw new FrameError('BAD_DIMS', `${where}: rank ${rank} exceeds the limit of ${limits.maxRank}`);
    }
    const dims: number[] = [];
    for (let d = 0; d < rank; d++) dims.push(r.u32('dims'));
    const elements = checkDims(dims, dtype, limits, where);
    const quantKind = r.u8('quantization kind');
    let quant: Quantization | undefined;
    if (quantKind === 1) {
      quant = { scale: Float32Array.of(r.f32('scale')), zeroPoint: Int32Array.of(r.i32('zero point')) };
    } else if (quantKind === 2) {
      const axis = r.u8('quantization axis');
      if (axis >= rank) throw new FrameError('BAD_QUANT', `${where}: quantization axis ${axis} outside rank ${rank}`);
      const n = dims[axis];
      r.need(8 * n, 'per-axis quantization parameters');
      const scale = new Float32Array(n);
      const zeroPoint = new Int32Array(n);
      for (let k = 0; k < n; k++) scale[k] = r.f32('scale');
      for (let k = 0; k < n; k++) zeroPoint[k] = r.i32('zero point');
      quant = { scale, zeroPoint, axis };
    } else if (quantKind !== 0) {
      throw new FrameError('BAD_QUANT', `${where}: unknown quantization kind ${quantKind}`);
    }
    const payloadBytes = r.u32('payload length');
    if (payloadBytes !== elements * DTYPES[dtype].bytes) {
      throw new FrameError(
        'SIZE_MISMATCH',
        `${where}: dims [${dims.join(', ')}] of ${dtype} need ` +
          `${elements * DTYPES[dtype].bytes} bytes, payload has ${payloadBytes}`,
      );
    }
    const tensor: Omit<Tensor, 'data'> = { name, dtype, dims };
    if (quant) {
      tensor.quant = quant;
      checkQuant({ ...tensor, data: new Float32Array(0) }, where);
    }
    headers.push({ tensor, payloadBytes });
  }
  if (r.o !== headersEnd) {
    throw new FrameError('SIZE_MISMATCH', `headers end at ${r.o} but the frame says ${headersEnd}`);
  }
  return { headers, headersEnd };
}

/**
 * Checks the start of a frame still arriving against the size its sender announced, so a frame
 * of garbage is refused at its first chunk rather than after all of it was received: the fixed
 * header, and once `prefix` holds them the tensor headers, whose payloads must add up to `total`.
 * Throws what decodeFrame would (FrameError); a prefix too short to tell passes. Returns the
 * tensors as the headers describe them (no data), when the prefix holds the headers.
 */
export function checkFrameStart(
  prefix: Uint8Array,
  total: number,
  limits: FrameLimits = DEFAULT_FRAME_LIMITS,
): Omit<Tensor, 'data'>[] | undefined {
  if (prefix.length < FIXED_HEADER) return undefined;
  const headersEnd = new DataView(prefix.buffer, prefix.byteOffset, FIXED_HEADER).getUint32(8, true);
  if (headersEnd > prefix.length) {
    frameHeaders(prefix, total, limits, true);
    return undefined;
  }
  const { headers } = frameHeaders(prefix, total, limits);
  let end = headersEnd + pad(headersEnd);
  for (const h of headers) end += h.payloadBytes + pad(h.payloadBytes);
  if (end !== total)
    throw new FrameError('SIZE_MISMATCH', `the frame's headers describe ${end} bytes, its sender announced ${total}`);
  return headers.map((h) => h.tensor);
}

export function decodeFrame(bytes: Uint8Array, limits: FrameLimits = DEFAULT_FRAME_LIMITS): Tensor[] {
  const { headers, headersEnd } = frameHeaders(bytes, bytes.length, limits);
  let o = headersEnd + pad(headersEnd);
  const out: Tensor[] = [];
  for (const { tensor, payloadBytes } of headers) {
    if (o + payloadBytes > bytes.length) {
      throw new FrameError(
        'TRUNCATED',
        `tensor '${tensor.name}': payload needs ${payloadBytes} bytes at ${o}, frame has ${bytes.length}`,
      );
    }
    const elementBytes = DTYPES[tensor.dtype].bytes;
    const absolute = bytes.byteOffset + o;
    const length = payloadBytes / elementBytes;
    const data =
      absolute % elementBytes === 0
        ? viewAs(tensor.dtype, bytes.buffer, absolute, length)
        : viewAs(tensor.dtype, bytes.slice(o, o + payloadBytes).buffer, 0, length);
    out.push({ ...tensor, data });
    o += payloadBytes + pad(payloadBytes);
  }
  if (o !== bytes.length) {
    throw new FrameError('TRAILING_BYTES', `${bytes.length - o} bytes after the last payload`);
  }
  return out;
}
