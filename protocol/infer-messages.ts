import { RobomeshError } from './errors.js';

/**
 * Messages of `/robomesh/infer/1.0.0`, each one length-prefixed message on a reused stream:
 *   kind u8 = 1: a JSON header (request, response or error), then `chunks` messages of
 *   kind u8 = 2: raw bytes of the tensor frame, in order, CHUNK_BYTES each but the last.
 * Chunking bounds what a receiver buffers per message. Senders hand each chunk to the stream
 * in smaller pieces (nodes/mesh/tensor-io.ts), so the muxer's frames stay small and pings and
 * other streams interleave with a multi-megabyte tensor instead of queueing behind it.
 */
export const INFER_PROTOCOL = '/robomesh/infer/2.0.0';
export const CHUNK_BYTES = 1024 * 1024;
export const MAX_MESSAGE_BYTES = CHUNK_BYTES + 16;
const HEADER = 1;
/** First byte of every frame chunk message; the frame's bytes follow it. */
export const CHUNK_KIND = 2;

/**
 * A frame as its chunk messages, each copied whole (for senders that hold them, like tests and
 * scenario attacks; the robot's own writer streams the frame without copying it).
 */
export function chunkMessages(frame: Uint8Array): Uint8Array[] {
  const chunks: Uint8Array[] = [];
  for (let at = 0; at < frame.length; at += CHUNK_BYTES) {
    const part = frame.subarray(at, at + CHUNK_BYTES);
    const chunk = new Uint8Array(1 + part.length);
    chunk[0] = CHUNK_KIND;
    chunk.set(part, 1);
    chunks.push(chunk);
  }
  return chunks;
}

export type Precision = 'fp32' | 'fp16' | 'int8';

/** Run the tail from `cut` (or the whole model when cut is "input") on the attached frame. */
export interface InferRequest {
  t: 'req';
  id: string;
  model: string;
  cut: string;
  precision: Precision;
  granularity: 'tensor' | 'channel';
  /** Budget the requester still allows, ms, from when the executor has read the request. */
  budgetMs: number;
  chunks: number;
  bytes: number;
  /**
   * Set when the run is a task of the replicated log. The executor serves it only when the
   * connection is authenticated as the task's poster, the log assigns the task to the executor,
   * model, cut and precision are the task's and the frame's sha256 is the task's `input` (the
   * poster's commitment, logged before anyone runs it); then it records its result in the log.
   */
  task?: string;
  /**
   * The task's signed entries (the task and the assignment naming this executor), base64: the
   * executor ingests them first, so a request never waits for them to arrive by gossip.
   */
  entries?: string[];
}

export interface InferResponse {
  t: 'res';
  id: string;
  computeMs: number;
  chunks: number;
  bytes: number;
  /** For a task: the executor's signed result entry (base64), whose digest is the frame's sha256. */
  entry?: string;
}

export type InferErrorCode =
  | 'UNKNOWN_MODEL'
  | 'UNKNOWN_CUT'
  | 'BAD_FRAME'
  | 'BAD_TENSORS'
  | 'DEADLINE'
  | 'OVERLOADED'
  | 'INTERNAL'
  /** The task is not in the executor's log (and its entries did not come with the request). */
  | 'UNKNOWN_TASK'
  /** The connection is not authenticated as the task's poster. */
  | 'NOT_AUTHORISED'
  /** The log does not assign the task to this executor. */
  | 'NOT_ASSIGNED'
  /** Model, cut or precision differ from the task's. */
  | 'TASK_MISMATCH'
  /** The frame is not the one the poster committed to (its sha256 or size differ). */
  | 'INPUT_MISMATCH'
  /** The task is decided already: nothing to run. */
  | 'TASK_DECIDED';

/** Signed entries a request may carry, and how large each may be once decoded. */
export const MAX_REQUEST_ENTRIES = 4;
const MAX_ENTRY_BASE64 = Math.ceil((16 * 1024) / 3) * 4;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

export interface InferErrorReply {
  t: 'err';
  id: string;
  code: InferErrorCode;
  message: string;
}

export type InferHeader = InferRequest | InferResponse | InferErrorReply;

export type InferProtocolErrorCode = 'BAD_MESSAGE';

export class InferProtocolError extends RobomeshError<InferProtocolErrorCode> {
  constructor(code: InferProtocolErrorCode, message: string, options?: ErrorOptions) {
    super(code, message, options);
  }
}

export function encodeHeader(header: InferHeader): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(1 + json.length);
  out[0] = HEADER;
  out.set(json, 1);
  return out;
}

/** Throws unless `kind`, a message's first byte (undefined: empty message), opens a frame chunk. */
export function expectChunk(kind: number | undefined): void {
  if (kind !== CHUNK_KIND)
    throw new InferProtocolError('BAD_MESSAGE', `expected a frame chunk, got message kind ${kind}`);
}

const ID = /^[A-Za-z0-9_-]{1,64}$/;
const fail = (why: string): never => {
  throw new InferProtocolError('BAD_MESSAGE', why);
};
const count = (v: unknown, max: number): boolean =>
  Number.isSafeInteger(v) && (v as number) >= 0 && (v as number) <= max;

/** Parses a header message; anything off is an InferProtocolError (the stream is reset). */
export function decodeHeader(message: Uint8Array, maxFrameBytes: number): InferHeader {
  if (message[0] !== HEADER) fail(`expected a header, got message kind ${message[0]}`);
  let h: Record<string, unknown>;
  try {
    h = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(message.subarray(1))) as Record<string, unknown>;
  } catch {
    return fail('header is not UTF-8 JSON');
  }
  if (typeof h !== 'object' || h === null) fail('header is not an object');
  if (typeof h.id !== 'string' || !ID.test(h.id)) fail('bad request id');
  const maxChunks = Math.ceil(maxFrameBytes / CHUNK_BYTES);
  const checkBody = (): void => {
    if (!count(h.bytes, maxFrameBytes)) fail(`frame of ${String(h.bytes)} bytes exceeds ${maxFrameBytes}`);
    if (!count(h.chunks, maxChunks) || h.chunks !== Math.ceil((h.bytes as number) / CHUNK_BYTES))
      fail('chunk count does not match bytes');
  };
  switch (h.t) {
    case 'req':
      if (typeof h.model !== 'string' || !/^[0-9a-f]{64}$/.test(h.model)) fail('model is not a sha256 hex');
      if (typeof h.cut !== 'string' || !/^[A-Za-z0-9_.:-]{1,64}$/.test(h.cut)) fail('bad cut id');
      if (h.precision !== 'fp32' && h.precision !== 'fp16' && h.precision !== 'int8') fail('bad precision');
      if (h.granularity !== 'tensor' && h.granularity !== 'channel') fail('bad granularity');
      if (typeof h.budgetMs !== 'number' || !(h.budgetMs > 0) || h.budgetMs > 600_000) fail('budget out of range');
      if (h.task !== undefined && (typeof h.task !== 'string' || !/^[A-Za-z0-9_.:-]{1,80}$/.test(h.task)))
        fail('bad task id');
      if (h.entries !== undefined) {
        if (h.task === undefined) fail('entries without a task');
        if (!Array.isArray(h.entries) || h.entries.length > MAX_REQUEST_ENTRIES || !h.entries.every(isEntryBase64))
          fail(`entries must be at most ${MAX_REQUEST_ENTRIES} base64 entries`);
      }
      checkBody();
      return h as unknown as InferRequest;
    case 'res':
      if (typeof h.computeMs !== 'number' || !(h.computeMs >= 0)) fail('bad computeMs');
      if (h.entry !== undefined && !isEntryBase64(h.entry)) fail('entry must be one base64 entry');
      checkBody();
      return h as unknown as InferResponse;
    case 'err':
      if (typeof h.code !== 'string' || typeof h.message !== 'string') fail('bad error reply');
      return {
        t: 'err',
        id: h.id as string,
        code: h.code as InferErrorCode,
        message: (h.message as string).slice(0, 500),
      };
    default:
      return fail(`unknown header type ${String(h.t)}`);
  }
}

function isEntryBase64(v: unknown): v is string {
  return typeof v === 'string' && v.length > 0 && v.length <= MAX_ENTRY_BASE64 && BASE64.test(v);
}
