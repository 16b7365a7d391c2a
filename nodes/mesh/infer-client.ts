import type { Stream } from '@libp2p/interface';
import { peerIdFromString } from '@libp2p/peer-id';
import { type LengthPrefixedStream, lpStream } from '@libp2p/utils';
import { settleBy } from '../util/index.js';
import { FrameError, RobomeshError } from '../../protocol/errors.js';
import { LIMITS } from '../../protocol/limits.js';
import {
  CHUNK_BYTES,
  INFER_PROTOCOL,
  type InferErrorCode as RemoteErrorCode,
  type InferRequest,
  MAX_MESSAGE_BYTES,
} from '../../protocol/infer-messages.js';
import { DEFAULT_FRAME_LIMITS, type Tensor, decodeFrame, encodeFrameChunks } from '../../protocol/tensor-frame.js';
import type { MeshNode } from './host.js';
import type { PeerReputation } from './reputation.js';
import { readFrame, readHeader, writeMessage } from './tensor-io.js';

/** A remote run that did not give a usable result; `code` says why (remote codes pass through). */
/** Local failures, and the codes an executor's error reply carries (passed through). */
export type InferClientErrorCode =
  'BAD_REPLY' | 'CANCELLED' | 'DEADLINE' | 'STREAM_CLOSED' | 'UNREACHABLE' | 'WRONG_REPLY' | RemoteErrorCode;

export class InferError extends RobomeshError<InferClientErrorCode> {
  constructor(code: InferClientErrorCode, message: string, options?: ErrorOptions) {
    super(code, message, options);
  }
}

export interface RemoteTask {
  model: string;
  cut: string;
  precision: InferRequest['precision'];
  granularity: InferRequest['granularity'];
  task?: string;
  /** The task's signed entries (base64), carried so the executor need not wait for gossip. */
  entries?: string[];
}

export interface RemoteResult {
  outputs: Tensor[];
  /** The output frame as received (a task's result entry records its sha256). */
  frame: Uint8Array;
  /** For a task: the executor's signed result entry. */
  entry?: Uint8Array;
  /** Time the executor spent computing, as it reports. */
  computeMs: number;
  elapsedMs: number;
  sentBytes: number;
  receivedBytes: number;
}

interface PooledStream {
  stream: Stream;
  lp: LengthPrefixedStream;
}

let counter = 0;
const newId = (): string =>
  `${Date.now().toString(36)}-${(counter++).toString(36)}-${Math.random().toString(36).slice(2, 8)}`;

/**
 * Sends tails to peers over `/robomesh/infer/1.0.0`, reusing idle streams (a new stream costs
 * ~2 ms). A stream that saw any error is reset, never reused. Replies for another request,
 * malformed frames or protocol violations cost the peer reputation.
 */
export class InferClient {
  private readonly idle = new Map<string, PooledStream[]>();
  private readonly running = new Map<string, number>();

  constructor(
    private readonly node: MeshNode,
    private readonly reputation: PeerReputation,
    private readonly maxFrameBytes = DEFAULT_FRAME_LIMITS.maxFrameBytes,
  ) {}

  async infer(
    peer: string,
    task: RemoteTask,
    tensors: Tensor[],
    budgetMs: number,
    signal?: AbortSignal,
  ): Promise<RemoteResult> {
    const t0 = performance.now();
    const deadline = AbortSignal.timeout(Math.max(1, Math.ceil(budgetMs)));
    const abort = signal ? AbortSignal.any([deadline, signal]) : deadline;
    // The frame as its pieces (tensor data as views, never joined): sending starts at once.
    const frame = encodeFrameChunks(tensors);
    const bytes = frame.reduce((n, p) => n + p.length, 0);
    const request: InferRequest = {
      t: 'req',
      id: newId(),
      ...task,
      budgetMs: Math.max(1, budgetMs),
      chunks: Math.ceil(bytes / CHUNK_BYTES),
      bytes,
    };
    let pooled: PooledStream | undefined;
    this.running.set(peer, this.inFlight(peer) + 1);
    const exchange = async (): Promise<RemoteResult> => {
      pooled = await this.take(peer, abort);
      await writeMessage(pooled.lp, pooled.stream, request, frame, abort);
      const header = await readHeader(pooled.lp, this.maxFrameBytes, abort);
      if (header === null) throw new InferError('STREAM_CLOSED', `${peer} closed the stream without answering`);
      if (header.id !== request.id) {
        this.reputation.penalise(peer, `answered request ${header.id} instead of ${request.id}`);
        throw new InferError('WRONG_REPLY', `reply for request ${header.id}, expected ${request.id}`);
      }
      if (header.t === 'err') throw new InferError(header.code, `${peer}: ${header.message}`);
      if (header.t !== 'res') throw new InferError('BAD_REPLY', `expected a response, got '${header.t}'`);
      const body = await readFrame(pooled.lp, header.chunks, header.bytes, {
        signal: abort,
        chunkTimeoutMs: LIMITS.infer.chunkTimeoutMs,
      });
      let outputs: Tensor[];
      try {
        outputs = decodeFrame(body, { ...DEFAULT_FRAME_LIMITS, maxFrameBytes: this.maxFrameBytes });
      } catch (err) {
        if (err instanceof FrameError)
          this.reputation.penalise(peer, `malformed output frame: ${err.message}`, 5, 'malformed');
        throw new InferError('BAD_REPLY', `${peer} sent a malformed output frame: ${(err as Error).message}`);
      }
      this.release(peer, pooled);
      pooled = undefined;
      return {
        outputs,
        frame: body,
        entry: header.entry === undefined ? undefined : new Uint8Array(Buffer.from(header.entry, 'base64')),
        computeMs: header.computeMs,
        elapsedMs: performance.now() - t0,
        sentBytes: bytes,
        receivedBytes: body.length,
      };
    };
    const running = exchange();
    // Past a lost race nobody reads it: a stream it opened late goes.
    running.catch(() => pooled?.stream.abort(new Error('request cut off')));
    try {
      // Opening a stream did not always heed the signal: a request must settle by its deadline.
      return await settleBy(running, abort);
    } catch (err) {
      pooled?.stream.abort(err instanceof Error ? err : new Error(String(err)));
      if (deadline.aborted) throw new InferError('DEADLINE', `${peer} did not answer within ${budgetMs.toFixed(0)} ms`);
      if (signal?.aborted) throw new InferError('CANCELLED', 'request cancelled');
      if (err instanceof InferError) throw err;
      if (err instanceof RobomeshError) {
        this.reputation.penalise(peer, `protocol violation: ${err.message}`);
        throw new InferError('BAD_REPLY', `${peer}: ${err.message}`);
      }
      // Stream helpers reject with the 'close' Event itself when a stream dies mid-write.
      const why = err instanceof Error ? err.message : `stream ${(err as Event)?.type ?? String(err)}`;
      throw new InferError('UNREACHABLE', `${peer}: ${why}`);
    } finally {
      const left = this.inFlight(peer) - 1;
      if (left > 0) this.running.set(peer, left);
      else this.running.delete(peer);
    }
  }

  /** Requests to `peer` not yet answered: its link is busy with them. */
  inFlight(peer: string): number {
    return this.running.get(peer) ?? 0;
  }

  private async take(peer: string, signal: AbortSignal): Promise<PooledStream> {
    const pool = this.idle.get(peer);
    while (pool?.length) {
      const s = pool.pop()!;
      if (s.stream.status === 'open' && s.stream.writeStatus === 'writable') return s;
    }
    const stream = await this.node.dialProtocol(peerIdFromString(peer), INFER_PROTOCOL, { signal });
    return { stream, lp: lpStream(stream, { maxDataLength: MAX_MESSAGE_BYTES, maxBufferSize: 4 * MAX_MESSAGE_BYTES }) };
  }

  private release(peer: string, s: PooledStream): void {
    const pool = this.idle.get(peer) ?? [];
    if (pool.length < 4) pool.push(s);
    // A spare stream beyond the pool: if closing it fails the muxer has already dropped it.
    else void s.stream.close().catch(() => undefined);
    this.idle.set(peer, pool);
  }

  /** Drops pooled streams to a peer (after a partition or failure). */
  forget(peer: string): void {
    for (const s of this.idle.get(peer) ?? []) s.stream.abort(new Error('peer forgotten'));
    this.idle.delete(peer);
  }
}
