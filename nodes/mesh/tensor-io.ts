import type { LengthPrefixedStream } from '@libp2p/utils';
import { type InferHeader, chunkFrame, chunkPayload, decodeHeader, encodeHeader } from '../../protocol/infer-messages.js';

/** Reads one header message, or null when the remote closed the stream cleanly between requests. */
export async function readHeader(lp: LengthPrefixedStream, maxFrameBytes: number, signal?: AbortSignal): Promise<InferHeader | null> {
  let message;
  try {
    message = await lp.read({ signal });
  } catch (err) {
    if ((err as Error).name === 'UnexpectedEOFError') return null;
    throw err;
  }
  return decodeHeader(message.subarray(), maxFrameBytes);
}

/** Reads `chunks` frame chunks into one buffer of exactly `bytes` (one copy, into its final place). */
export async function readFrame(lp: LengthPrefixedStream, chunks: number, bytes: number, signal?: AbortSignal): Promise<Uint8Array> {
  const frame = new Uint8Array(bytes);
  let offset = 0;
  for (let i = 0; i < chunks; i++) {
    const part = chunkPayload((await lp.read({ signal })).subarray());
    if (offset + part.length > bytes) throw new RangeError(`frame chunks exceed the announced ${bytes} bytes`);
    frame.set(part, offset);
    offset += part.length;
  }
  if (offset !== bytes) throw new RangeError(`frame chunks hold ${offset} bytes, ${bytes} announced`);
  return frame;
}

/** Writes a header and its frame; each write waits for the stream to drain (backpressure). */
export async function writeMessage(lp: LengthPrefixedStream, header: InferHeader, frame: Uint8Array | undefined, signal?: AbortSignal): Promise<void> {
  await lp.write(encodeHeader(header), { signal });
  if (frame) for (const chunk of chunkFrame(frame)) await lp.write(chunk, { signal });
}
