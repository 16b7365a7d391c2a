import { EventEmitter } from 'node:events';
import type { Connection, Stream } from '@libp2p/interface';
import { lpStream } from '@libp2p/utils';
import { FrameError, RobomeshError } from '../../protocol/errors.js';
import {
  CHUNK_BYTES,
  INFER_PROTOCOL,
  type InferErrorCode,
  InferProtocolError,
  type InferRequest,
  MAX_MESSAGE_BYTES,
} from '../../protocol/infer-messages.js';
import { DEFAULT_FRAME_LIMITS, type Tensor, decodeFrame, encodeFrame } from '../../protocol/tensor-frame.js';
import type { ModelRegistry } from '../inference/model-registry.js';
import { BoundaryError } from '../inference/wire.js';
import type { MeshNode } from './host.js';
import type { PeerReputation } from './reputation.js';
import { readFrame, readHeader, writeMessage } from './tensor-io.js';
import { WorkQueue } from './work-queue.js';

export interface InferServiceOptions {
  maxFrameBytes?: number;
  /** Requests accepted but not finished beyond this are refused with OVERLOADED. */
  maxQueue?: number;
}

/**
 * Serves `/robomesh/infer/1.0.0`: runs the tail of a held model on a frame a peer sends. A
 * stream carries any number of requests in turn. Malformed input gets a typed error reply,
 * then the stream is reset and the sender penalised; the robot goes on serving everyone else.
 */
export class InferService extends EventEmitter<{
  request: [peer: string, request: InferRequest];
  served: [peer: string, request: InferRequest, outputs: Tensor[]];
}> {
  readonly queue: WorkQueue;
  private readonly maxFrameBytes: number;
  served = 0;
  /**
   * Fault injection for scenarios and tests: rewrites the output frame before it is sent
   * (a Byzantine robot answering garbage). Never set in normal operation.
   */
  tamper: ((request: InferRequest, outputs: Uint8Array) => Uint8Array) | undefined;
  /** Output tensor bytes served to peers. */
  bytesOut = 0;

  constructor(
    private readonly node: MeshNode,
    private readonly models: ModelRegistry,
    private readonly reputation: PeerReputation,
    private readonly options: InferServiceOptions = {},
  ) {
    super();
    this.maxFrameBytes = options.maxFrameBytes ?? DEFAULT_FRAME_LIMITS.maxFrameBytes;
    this.queue = new WorkQueue(1, options.maxQueue ?? 16);
  }

  async start(): Promise<void> {
    await this.node.handle(INFER_PROTOCOL, (stream, connection) => void this.serve(stream, connection), {
      maxInboundStreams: 32,
    });
  }

  async stop(): Promise<void> {
    await this.node.unhandle(INFER_PROTOCOL);
  }

  private async serve(stream: Stream, connection: Connection): Promise<void> {
    const peer = connection.remotePeer.toString();
    const lp = lpStream(stream, { maxDataLength: MAX_MESSAGE_BYTES, maxBufferSize: 4 * MAX_MESSAGE_BYTES });
    const closed = new AbortController();
    stream.addEventListener('close', () => closed.abort(new Error('stream closed')), { once: true });
    let id = '-';
    try {
      for (;;) {
        const header = await readHeader(lp, this.maxFrameBytes);
        if (header === null) return;
        if (header.t !== 'req') throw new InferProtocolError('BAD_MESSAGE', `expected a request, got '${header.t}'`);
        id = header.id;
        const received = performance.now();
        this.emit('request', peer, header);
        const frame = await readFrame(lp, header.chunks, header.bytes);
        const reply = await this.answer(header, frame, received, closed.signal);
        if (reply.outputs) this.emit('served', peer, header, reply.outputs);
        await writeMessage(lp, stream, reply.header, reply.frame && [reply.frame]);
        if (reply.fatal) {
          this.reputation.penalise(peer, `${reply.header.t === 'err' ? reply.header.code : ''}: ${reply.reason}`);
          stream.abort(new Error(reply.reason));
          return;
        }
      }
    } catch (err) {
      if (closed.signal.aborted) return; // the requester gave up or went away: nothing to answer
      this.reputation.penalise(peer, `malformed request stream: ${(err as Error).message}`);
      try {
        const code: InferErrorCode = 'BAD_FRAME';
        await writeMessage(
          lp,
          stream,
          { t: 'err', id, code, message: (err as Error).message },
          undefined,
          AbortSignal.timeout(1000),
        );
      } catch {
        // the stream may already be gone
      }
      stream.abort(err as Error);
    }
  }

  private async answer(
    req: InferRequest,
    frame: Uint8Array,
    received: number,
    cancelled: AbortSignal,
  ): Promise<{
    header: Parameters<typeof writeMessage>[2];
    frame?: Uint8Array;
    outputs?: Tensor[];
    fatal?: boolean;
    reason?: string;
  }> {
    const error = (code: InferErrorCode, message: string, fatal = false) => ({
      header: { t: 'err' as const, id: req.id, code, message },
      fatal,
      reason: message,
    });
    if (!this.models.has(req.model)) return error('UNKNOWN_MODEL', `model ${req.model.slice(0, 12)}… is not held here`);
    let tensors;
    try {
      tensors = decodeFrame(frame, { ...DEFAULT_FRAME_LIMITS, maxFrameBytes: this.maxFrameBytes });
    } catch (err) {
      if (err instanceof FrameError) return error('BAD_FRAME', err.message, true);
      throw err;
    }
    const deadline = received + req.budgetMs;
    let outputs;
    try {
      outputs = await this.queue.run(async () => {
        if (cancelled.aborted) throw new RobomeshError('CANCELLED', 'requester went away');
        if (performance.now() > deadline) throw new RobomeshError('DEADLINE', 'deadline passed while queued');
        const t0 = performance.now();
        const out = await this.models.runFrom(req.model, req.cut, req.precision, req.granularity, tensors);
        return { out, computeMs: performance.now() - t0 };
      });
    } catch (err) {
      if (err instanceof BoundaryError) return error('BAD_TENSORS', err.message, true);
      if (err instanceof RobomeshError) {
        const code = (
          ['UNKNOWN_CUT', 'DEADLINE', 'OVERLOADED'].includes(err.code) ? err.code : 'INTERNAL'
        ) as InferErrorCode;
        return error(code, err.message);
      }
      return error('INTERNAL', (err as Error).message);
    }
    let bytes = encodeFrame(outputs.out);
    if (this.tamper) bytes = this.tamper(req, bytes);
    this.served++;
    this.bytesOut += bytes.length;
    return {
      header: {
        t: 'res',
        id: req.id,
        computeMs: outputs.computeMs,
        chunks: Math.ceil(bytes.length / CHUNK_BYTES),
        bytes: bytes.length,
      },
      frame: bytes,
      outputs: outputs.out,
    };
  }
}
