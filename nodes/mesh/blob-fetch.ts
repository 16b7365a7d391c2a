import { createHash } from 'node:crypto';
import { peerIdFromString } from '@libp2p/peer-id';
import { lpStream } from '@libp2p/utils';
import {
  BLOB_MAX_MESSAGE,
  BLOB_PIECE_BYTES,
  BLOB_PROTOCOL,
  BLOB_STREAMS_PER_PEER,
  MAX_BLOB_BYTES,
  decodeBlobRequest,
  decodeBlobSize,
  encodeBlobRequest,
  encodeBlobSize,
} from '../../protocol/blob-messages.js';
import { RobomeshError } from '../../protocol/errors.js';
import { LIMITS } from '../../protocol/limits.js';
import type { Logger, Startable } from '../util/index.js';
import type { MeshNode } from './host.js';
import { RateLimit } from './peer-budget.js';

export type BlobFetchErrorCode = 'NOT_HELD' | 'TOO_LARGE' | 'BAD_REPLY' | 'HASH_MISMATCH' | 'TIMEOUT';

export class BlobFetchError extends RobomeshError<BlobFetchErrorCode> {
  constructor(code: BlobFetchErrorCode, message: string) {
    super(code, message);
  }
}

export interface BlobServiceComponents {
  node: MeshNode;
  /** The bytes held under `digest` (a model or a task input), if any. */
  bytesOf: (digest: string) => Uint8Array | undefined | Promise<Uint8Array | undefined>;
  logger: Logger;
}

/** Serves content by sha256 over BLOB_PROTOCOL (protocol/blob-messages.ts). */
export class BlobService implements Startable {
  private readonly rate = new RateLimit(LIMITS.blob.requestsPerSecond, LIMITS.blob.burst);

  constructor(
    private readonly components: BlobServiceComponents,
    private readonly init: { requestTimeoutMs?: number } = {},
  ) {}

  async start(): Promise<void> {
    const { node, bytesOf, logger: log } = this.components;
    await node.handle(
      BLOB_PROTOCOL,
      async (stream, connection) => {
        const lp = lpStream(stream, { maxDataLength: BLOB_MAX_MESSAGE });
        const peer = connection.remotePeer.toString();
        try {
          if (!this.rate.take(peer))
            throw new Error(`more than ${LIMITS.blob.requestsPerSecond} blob requests a second`);
          const signal = AbortSignal.timeout(this.init.requestTimeoutMs ?? LIMITS.blob.requestTimeoutMs);
          const digest = decodeBlobRequest((await lp.read({ signal })).subarray());
          const bytes = digest ? await bytesOf(digest) : undefined;
          await lp.write(encodeBlobSize(bytes?.length ?? 0), { signal });
          // One noise message per piece: a 1 MiB message went out as one yamux frame of the whole
          // window, stop-and-wait per window (see SEND_PIECE_BYTES in tensor-io.ts).
          for (let o = 0; bytes && o < bytes.length; o += BLOB_PIECE_BYTES)
            await lp.write(bytes.subarray(o, o + BLOB_PIECE_BYTES));
          await stream.close();
        } catch (err) {
          log('blob request from %s failed: %s', connection.remotePeer, (err as Error).message);
          stream.abort(err as Error);
        }
      },
      { maxInboundStreams: BLOB_STREAMS_PER_PEER },
    );
  }

  async stop(): Promise<void> {
    await this.components.node.unhandle(BLOB_PROTOCOL);
  }
}

/**
 * Fetches the content whose sha256 is `digest` from `peer`, refusing more than `maxBytes`. Memory
 * grows with the bytes that arrive, never with the size announced.
 */
export async function fetchBlob(
  node: MeshNode,
  peer: string,
  digest: string,
  options: { maxBytes?: number; timeoutMs?: number; signal?: AbortSignal } = {},
): Promise<Uint8Array> {
  const maxBytes = Math.min(options.maxBytes ?? MAX_BLOB_BYTES, MAX_BLOB_BYTES);
  const deadline = AbortSignal.timeout(options.timeoutMs ?? 60_000);
  const signal = options.signal ? AbortSignal.any([deadline, options.signal]) : deadline;
  const stream = await node.dialProtocol(peerIdFromString(peer), BLOB_PROTOCOL, { signal });
  const lp = lpStream(stream, { maxDataLength: BLOB_MAX_MESSAGE, maxBufferSize: 4 * BLOB_MAX_MESSAGE });
  try {
    await lp.write(encodeBlobRequest(digest), { signal });
    const size = decodeBlobSize((await lp.read({ signal })).subarray());
    if (size === undefined) throw new BlobFetchError('BAD_REPLY', `${peer} answered without a size`);
    if (size === 0) throw new BlobFetchError('NOT_HELD', `${peer} does not hold ${digest.slice(0, 12)}…`);
    if (size > maxBytes) throw new BlobFetchError('TOO_LARGE', `${peer} offers ${size} bytes, more than ${maxBytes}`);
    const parts: Uint8Array[] = [];
    for (let got = 0; got < size;) {
      const part = (await lp.read({ signal })).subarray();
      if (got + part.length > size) throw new BlobFetchError('BAD_REPLY', `${peer} sent more than ${size} bytes`);
      parts.push(part);
      got += part.length;
    }
    await stream.close({ signal });
    const bytes = Buffer.concat(parts);
    const got = createHash('sha256').update(bytes).digest('hex');
    if (got !== digest)
      throw new BlobFetchError(
        'HASH_MISMATCH',
        `${peer} sent bytes hashing to ${got.slice(0, 12)}…, not ${digest.slice(0, 12)}…`,
      );
    return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  } catch (err) {
    stream.abort(err as Error);
    if (deadline.aborted && !(err instanceof BlobFetchError))
      throw new BlobFetchError('TIMEOUT', `${peer} did not send ${digest.slice(0, 12)}… in time`);
    throw err;
  }
}
