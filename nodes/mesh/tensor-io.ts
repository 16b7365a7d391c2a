import type { Stream } from '@libp2p/interface';
import type { LengthPrefixedStream } from '@libp2p/utils';
import {
  CHUNK_BYTES,
  CHUNK_KIND,
  type InferHeader,
  decodeHeader,
  encodeHeader,
  expectChunk,
} from '../../protocol/infer-messages.js';
import { type Tensor, checkFrameStart } from '../../protocol/tensor-frame.js';
import { BudgetError } from './peer-budget.js';

/** How much of a frame's first chunk is enough to check its headers (8,000 per-axis channels). */
const FRAME_START_BYTES = 64 * 1024;

/**
 * Largest piece of a frame handed to the stream at once: one yamux frame (12-byte header) then
 * fills one noise message (65,519 bytes of plaintext). Yamux sends whatever sits in a stream's
 * buffer as one frame of up to its whole send window and the receiver grants more window only
 * once a frame has fully arrived, so handing it a 1 MiB chunk made the transfer stop-and-wait
 * per window, and the first byte of each chunk waited for the whole chunk to be encrypted.
 * Pieces this size keep window updates flowing while the link is busy and let copying and
 * encryption overlap the transfer (bench:split, 100 Mbit/s tc-shaped, 1 / 2 / 4 MB frames:
 * 0.73–0.93 of raw TCP before, 1.00 / 0.95 / 0.99 after).
 */
export const SEND_PIECE_BYTES = 65_519 - 12;

/** Reads one header message, or null when the remote closed the stream cleanly between requests. */
export async function readHeader(
  lp: LengthPrefixedStream,
  maxFrameBytes: number,
  signal?: AbortSignal,
): Promise<InferHeader | null> {
  let message;
  try {
    message = await lp.read({ signal });
  } catch (err) {
    if ((err as Error).name === 'UnexpectedEOFError') return null;
    throw err;
  }
  return decodeHeader(message.subarray(), maxFrameBytes);
}

export interface FrameReadOptions {
  signal?: AbortSignal;
  /** Each chunk must arrive within this many ms (a peer that stalls mid-frame is cut off). */
  chunkTimeoutMs?: number;
  /** Called with each chunk's size before it is kept (a budget may refuse by throwing). */
  onBytes?: (n: number) => void;
  /**
   * Called with the tensors the frame's headers describe, once its first chunk holds them: a
   * receiver that cannot take them throws, and the rest of the frame is never read.
   */
  onStart?: (tensors: Omit<Tensor, 'data'>[]) => void;
  /** Awaited with each chunk's size, before the chunk is used (a pacer slows the sender). */
  pace?: (n: number) => Promise<void>;
}

async function readChunk(lp: LengthPrefixedStream, options: FrameReadOptions) {
  const timeout = options.chunkTimeoutMs;
  const deadline = timeout === undefined ? undefined : AbortSignal.timeout(timeout);
  const signals = [options.signal, deadline].filter((x): x is AbortSignal => x !== undefined);
  try {
    return await lp.read({ signal: signals.length ? AbortSignal.any(signals) : undefined });
  } catch (err) {
    if (deadline?.aborted && !options.signal?.aborted)
      throw new BudgetError('STALLED', `no frame chunk within ${timeout} ms`);
    throw err;
  }
}

/**
 * Reads `chunks` frame chunks holding `bytes` in all. Memory follows what arrives, not what was
 * announced: chunks are kept as they come until half the frame is here, then the frame is
 * allocated whole and filled (at most twice the bytes received are ever held).
 */
export async function readFrame(
  lp: LengthPrefixedStream,
  chunks: number,
  bytes: number,
  options: FrameReadOptions = {},
): Promise<Uint8Array> {
  let frame: Uint8Array | undefined;
  const early: Uint8Array[] = [];
  let offset = 0;
  for (let i = 0; i < chunks; i++) {
    const message = await readChunk(lp, options);
    expectChunk(message.byteLength > 0 ? message.get(0) : undefined);
    const size = message.byteLength - 1;
    if (offset + size > bytes) throw new RangeError(`frame chunks exceed the announced ${bytes} bytes`);
    options.onBytes?.(size);
    await options.pace?.(size);
    // A frame of garbage is refused at its first chunk, not after all of it arrived.
    if (i === 0) {
      const described = checkFrameStart(
        message.subarray(1, Math.min(message.byteLength, 1 + FRAME_START_BYTES)),
        bytes,
      );
      if (described) options.onStart?.(described);
    }
    if (!frame && (offset + size) * 2 >= bytes) {
      frame = new Uint8Array(bytes);
      let at = 0;
      for (const part of early) {
        frame.set(part, at);
        at += part.length;
      }
      early.length = 0;
    }
    // The message arrives as many buffers: copy each straight to its place, never joined first.
    for (const part of message.sublist(1)) {
      if (frame) frame.set(part, offset);
      else early.push(part.slice());
      offset += part.length;
    }
  }
  if (offset !== bytes) throw new RangeError(`frame chunks hold ${offset} bytes, ${bytes} announced`);
  return frame ?? new Uint8Array(0);
}

/** Reads and drops the `chunks` frame chunks of a request that was refused (the stream goes on). */
export async function skipFrame(
  lp: LengthPrefixedStream,
  chunks: number,
  bytes: number,
  options: FrameReadOptions = {},
): Promise<void> {
  let seen = 0;
  for (let i = 0; i < chunks; i++) {
    const message = await readChunk(lp, options);
    expectChunk(message.byteLength > 0 ? message.get(0) : undefined);
    seen += message.byteLength - 1;
    if (seen > bytes) throw new RangeError(`frame chunks exceed the announced ${bytes} bytes`);
  }
  if (seen !== bytes) throw new RangeError(`frame chunks hold ${seen} bytes, ${bytes} announced`);
}

/** Unsigned varint, the length prefix of lpStream's messages. */
function varint(n: number): number[] {
  const out: number[] = [];
  for (; n >= 0x80; n = Math.floor(n / 0x80)) out.push((n % 0x80) | 0x80);
  out.push(n);
  return out;
}

/** Hands bytes to the stream (never copied), then waits while its buffer is full (backpressure). */
async function send(stream: Stream, bytes: Uint8Array, signal?: AbortSignal): Promise<void> {
  signal?.throwIfAborted();
  if (!stream.send(bytes)) await stream.onDrain({ signal });
}

/**
 * Writes a header and its frame, given as consecutive pieces (a frame encoded without joining
 * its tensors). On the wire the frame is the protocol's chunk messages of CHUNK_BYTES, exactly
 * as if written through `lp`; each is handed to `stream` (the one `lp` wraps) in pieces of at
 * most SEND_PIECE_BYTES, waiting for the stream to drain between them (backpressure).
 */
export async function writeMessage(
  lp: LengthPrefixedStream,
  stream: Stream,
  header: InferHeader,
  frame: readonly Uint8Array[] | undefined,
  signal?: AbortSignal,
): Promise<void> {
  await lp.write(encodeHeader(header), { signal });
  if (!frame) return;
  const total = frame.reduce((n, p) => n + p.length, 0);
  let piece = 0;
  let at = 0;
  for (let o = 0; o < total; o += CHUNK_BYTES) {
    const length = Math.min(CHUNK_BYTES, total - o);
    await send(stream, Uint8Array.from([...varint(1 + length), CHUNK_KIND]), signal);
    for (let left = length; left > 0;) {
      while (at === frame[piece].length) {
        piece++;
        at = 0;
      }
      const n = Math.min(left, SEND_PIECE_BYTES, frame[piece].length - at);
      await send(stream, frame[piece].subarray(at, at + n), signal);
      at += n;
      left -= n;
    }
  }
}
