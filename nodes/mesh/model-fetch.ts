import { createHash } from 'node:crypto';
import { peerIdFromString } from '@libp2p/peer-id';
import { lpStream } from '@libp2p/utils';
import { RobomeshError } from '../../protocol/errors.js';
import type { MeshNode } from './host.js';
import { SEND_PIECE_BYTES } from './tensor-io.js';

export const MODEL_PROTOCOL = '/robomesh/model/1.0.0';
/** Largest message accepted (what peers before 64 KiB pieces sent). */
const CHUNK = 1024 * 1024;
const MAX_MODEL_BYTES = 512 * 1024 * 1024;

export class ModelFetchError extends RobomeshError {}

/**
 * Serves model bytes by hash: request = 64 hex chars; reply = u32 size (0 = not held), then
 * the bytes in messages of one noise frame each. The asker verifies the sha256, so a lying peer cannot plant a model.
 */
export async function serveModels(node: MeshNode, bytesOf: (hash: string) => Uint8Array | undefined): Promise<void> {
  await node.handle(
    MODEL_PROTOCOL,
    async (stream) => {
      const lp = lpStream(stream, { maxDataLength: CHUNK + 16 });
      try {
        const hash = new TextDecoder().decode((await lp.read({ signal: AbortSignal.timeout(10_000) })).subarray());
        const bytes = /^[0-9a-f]{64}$/.test(hash) ? bytesOf(hash) : undefined;
        const size = new Uint8Array(4);
        new DataView(size.buffer).setUint32(0, bytes?.length ?? 0, true);
        await lp.write(size);
        // One noise message per piece: a 1 MiB message went out as one yamux frame of the whole
        // window, stop-and-wait per window (see SEND_PIECE_BYTES).
        for (let o = 0; bytes && o < bytes.length; o += SEND_PIECE_BYTES)
          await lp.write(bytes.subarray(o, o + SEND_PIECE_BYTES));
        await stream.close();
      } catch (err) {
        stream.abort(err as Error);
      }
    },
    { maxInboundStreams: 4 },
  );
}

export async function fetchModel(node: MeshNode, peer: string, hash: string, timeoutMs = 60_000): Promise<Uint8Array> {
  const signal = AbortSignal.timeout(timeoutMs);
  const stream = await node.dialProtocol(peerIdFromString(peer), MODEL_PROTOCOL, { signal });
  const lp = lpStream(stream, { maxDataLength: CHUNK + 16, maxBufferSize: 4 * CHUNK });
  try {
    await lp.write(new TextEncoder().encode(hash), { signal });
    const sizeMsg = (await lp.read({ signal })).subarray();
    const size = new DataView(sizeMsg.buffer, sizeMsg.byteOffset, 4).getUint32(0, true);
    if (size === 0) throw new ModelFetchError('NOT_HELD', `${peer} does not hold model ${hash.slice(0, 12)}…`);
    if (size > MAX_MODEL_BYTES) throw new ModelFetchError('TOO_LARGE', `${peer} offers a ${size}-byte model`);
    const bytes = new Uint8Array(size);
    for (let o = 0; o < size;) {
      const part = (await lp.read({ signal })).subarray();
      if (o + part.length > size) throw new ModelFetchError('BAD_MODEL', `${peer} sent more than ${size} bytes`);
      bytes.set(part, o);
      o += part.length;
    }
    await stream.close();
    const got = createHash('sha256').update(bytes).digest('hex');
    if (got !== hash)
      throw new ModelFetchError(
        'HASH_MISMATCH',
        `${peer} sent bytes hashing to ${got.slice(0, 12)}…, not ${hash.slice(0, 12)}…`,
      );
    return bytes;
  } catch (err) {
    stream.abort(err as Error);
    throw err;
  }
}
