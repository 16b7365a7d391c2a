import { EventEmitter } from 'node:events';
import type { Connection, Stream } from '@libp2p/interface';
import { type LengthPrefixedStream, lpStream } from '@libp2p/utils';
import { FrameError, RobomeshError } from '../../protocol/errors.js';
import {
  CHUNK_BYTES,
  INFER_PROTOCOL,
  type InferErrorCode,
  type InferErrorReply,
  InferProtocolError,
  type InferRequest,
  MAX_MESSAGE_BYTES,
} from '../../protocol/infer-messages.js';
import { DEFAULT_FRAME_LIMITS, type Tensor, decodeFrame, encodeFrame } from '../../protocol/tensor-frame.js';
import { LIMITS } from '../../protocol/limits.js';
import { INPUT_CUT, type ModelRegistry, BoundaryError } from '../inference/index.js';
import type { Logger, Startable } from '../util/index.js';
import type { MeshNode } from './host.js';
import type { PeerReputation } from './reputation.js';
import { BudgetError, ByteBudget, BytePacer, RateLimit } from './peer-budget.js';
import { type FrameReadOptions, readFrame, readHeader, skipFrame, writeMessage } from './tensor-io.js';
import { WorkError, type WorkQueue } from './work-queue.js';

type InferLimits = { -readonly [K in keyof (typeof LIMITS)['infer']]: number };

export interface InferServiceInit {
  maxFrameBytes?: number;
  /** Overrides of LIMITS.infer (tests use short deadlines). */
  limits?: Partial<InferLimits>;
}

/**
 * Where requests for logged tasks go (nodes/tasks implements it): `admit` refuses, by throwing a
 * RobomeshError whose code is an InferErrorCode, any request its poster did not authorise; `serve`
 * checks the frame against the task's commitment, runs it once and logs the result.
 */
export interface TaskGate<Admitted = unknown> {
  admit(peer: string, request: InferRequest, signal: AbortSignal): Promise<Admitted>;
  serve(admitted: Admitted, frame: Uint8Array): Promise<{ frame: Uint8Array; entry: Uint8Array; computeMs: number }>;
}

export interface InferServiceComponents {
  node: MeshNode;
  models: ModelRegistry;
  queue: WorkQueue;
  reputation: PeerReputation;
  tasks?: TaskGate;
  /**
   * Asked for a model this robot does not hold: fetch it if it may (a stage of a chain it helps
   * serve, within its memory budget) and say whether it now holds it. Absent: never.
   */
  fetchStage?: (hash: string, signal: AbortSignal) => Promise<boolean>;
  logger: Logger;
}

type Reply = {
  header: Parameters<typeof writeMessage>[2];
  frame?: Uint8Array;
  outputs?: Tensor[];
  fatal?: boolean;
  reason?: string;
};

/** Refusals that say the requester tried something its task does not allow. */
const MISBEHAVIOUR: ReadonlySet<string> = new Set(['NOT_AUTHORISED', 'INPUT_MISMATCH', 'TASK_MISMATCH']);

/**
 * Serves INFER_PROTOCOL: runs the tail of a held model on a frame a peer sends. A stream carries
 * any number of requests in turn. Malformed input gets a typed error reply, then the stream is
 * reset and the sender penalised; a refused task request gets a typed error and the stream goes on.
 */
export class InferService
  extends EventEmitter<{ request: [peer: string, request: InferRequest] }>
  implements Startable
{
  private readonly maxFrameBytes: number;
  private readonly limits: InferLimits;
  private readonly rate: RateLimit;
  /** Frame bytes received and not yet answered, per peer and in all. */
  readonly inFlight: ByteBudget;
  private readonly pacer: BytePacer;
  served = 0;
  /**
   * Fault injection for scenarios and tests: rewrites the output frame of a request that is not a
   * logged task before it is sent (a robot answering garbage). Never set in normal operation.
   */
  tamper: ((request: InferRequest, outputs: Uint8Array) => Uint8Array) | undefined;
  /** Output tensor bytes served to peers. */
  bytesOut = 0;

  constructor(
    private readonly components: InferServiceComponents,
    init: InferServiceInit = {},
  ) {
    super();
    this.limits = { ...LIMITS.infer, ...init.limits };
    this.maxFrameBytes = init.maxFrameBytes ?? this.limits.maxFrameBytes;
    this.rate = new RateLimit(this.limits.requestsPerSecond, this.limits.burst);
    this.inFlight = new ByteBudget(this.limits.inFlightBytesPerPeer, this.limits.inFlightBytesTotal);
    this.pacer = new BytePacer(this.limits.bytesPerSecondPerPeer, this.limits.burstBytesPerPeer);
  }

  get queue(): WorkQueue {
    return this.components.queue;
  }

  async start(): Promise<void> {
    await this.components.node.handle(INFER_PROTOCOL, (stream, connection) => void this.serve(stream, connection), {
      maxInboundStreams: this.limits.streamsPerPeer,
    });
  }

  async stop(): Promise<void> {
    await this.components.node.unhandle(INFER_PROTOCOL);
  }

  private async serve(stream: Stream, connection: Connection): Promise<void> {
    const { reputation, logger: log } = this.components;
    const peer = connection.remotePeer.toString();
    const lp = lpStream(stream, { maxDataLength: MAX_MESSAGE_BYTES, maxBufferSize: 4 * MAX_MESSAGE_BYTES });
    const closed = new AbortController();
    stream.addEventListener('close', () => closed.abort(new Error('stream closed')), { once: true });
    let id = '-';
    let held = 0;
    const read: FrameReadOptions = {
      signal: closed.signal,
      chunkTimeoutMs: this.limits.chunkTimeoutMs,
      onBytes: (n) => {
        this.inFlight.reserve(peer, n);
        held += n;
      },
      pace: (n) => this.pacer.take(peer, n, closed.signal),
    };
    try {
      for (;;) {
        let header;
        try {
          header = await readHeader(lp, this.maxFrameBytes, AbortSignal.timeout(this.limits.idleTimeoutMs));
        } catch (err) {
          // A reused stream left idle: closed quietly, the requester opens another when it needs one.
          if ((err as Error).name === 'AbortError' || (err as Error).name === 'TimeoutError')
            return stream.abort(err as Error);
          throw err;
        }
        if (header === null) return;
        if (header.t !== 'req') throw new InferProtocolError('BAD_MESSAGE', `expected a request, got '${header.t}'`);
        id = header.id;
        if (!this.rate.take(peer))
          throw new BudgetError('RATE', `more than ${this.limits.requestsPerSecond} requests a second`);
        const received = performance.now();
        this.emit('request', peer, header);
        try {
          const reply = header.task
            ? await this.answerTask(lp, peer, header, received, closed.signal, read)
            : await this.answerPlain(lp, header, received, closed.signal, read);
          await writeMessage(lp, stream, reply.header, reply.frame && [reply.frame]);
          if (reply.fatal) {
            reputation.penalise(
              peer,
              `${reply.header.t === 'err' ? reply.header.code : ''}: ${reply.reason}`,
              5,
              'malformed',
            );
            stream.abort(new Error(reply.reason));
            return;
          }
        } finally {
          this.inFlight.release(peer, held);
          held = 0;
        }
      }
    } catch (err) {
      if (closed.signal.aborted) return; // the requester gave up or went away: nothing to answer
      const kind = err instanceof BudgetError ? (err.code === 'STALLED' ? 'stall' : 'flood') : 'malformed';
      reputation.penalise(peer, `request stream: ${(err as Error).message}`, 5, kind);
      log('request stream from %s reset: %s', peer, (err as Error).message);
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
        // The stream may already be gone: the reset below is all that is left to do.
      }
      stream.abort(err as Error);
    }
  }

  /** A plain request: the model and cut are checked before the frame is read (a refusal skips it). */
  private async answerPlain(
    lp: LengthPrefixedStream,
    req: InferRequest,
    received: number,
    cancelled: AbortSignal,
    read: FrameReadOptions,
  ): Promise<Reply> {
    const { models } = this.components;
    const skip = () => skipFrame(lp, req.chunks, req.bytes, { ...read, onBytes: undefined });
    const fetchStage = this.components.fetchStage;
    if (!models.has(req.model) && req.cut === INPUT_CUT && fetchStage) {
      const budget = AbortSignal.any([cancelled, AbortSignal.timeout(req.budgetMs)]);
      await fetchStage(req.model, budget).catch(() => false);
    }
    if (!models.has(req.model)) {
      await skip();
      return error(req, 'UNKNOWN_MODEL', `model ${req.model.slice(0, 12)}… is not held here`);
    }
    if (req.cut !== INPUT_CUT && !models.get(req.model).analysis.cuts.some((c) => c.id === req.cut)) {
      await skip();
      return error(req, 'UNKNOWN_CUT', `no cut '${req.cut}' in model ${req.model.slice(0, 12)}…`);
    }
    let frame;
    try {
      // Tensors the model cannot take are refused at the frame's first chunk; the stream is reset.
      const onStart = (t: Omit<Tensor, 'data'>[]) =>
        models.checkFrom(req.model, req.cut, req.precision, req.granularity, t);
      frame = await readFrame(lp, req.chunks, req.bytes, { ...read, onStart });
    } catch (err) {
      if (err instanceof BoundaryError) return error(req, 'BAD_TENSORS', err.message, true);
      throw err;
    }
    return this.answer(req, frame, received, cancelled);
  }

  /** A logged task: authorised before its frame is read; a refusal skips the frame and answers. */
  private async answerTask(
    lp: LengthPrefixedStream,
    peer: string,
    req: InferRequest,
    received: number,
    cancelled: AbortSignal,
    read: FrameReadOptions,
  ): Promise<Reply> {
    const { tasks, reputation } = this.components;
    const budget = AbortSignal.any([cancelled, AbortSignal.timeout(req.budgetMs)]);
    const skip = () => skipFrame(lp, req.chunks, req.bytes, { ...read, signal: budget, onBytes: undefined });
    const refuse = async (err: unknown, frameRead: boolean): Promise<Reply> => {
      this.components.logger('task request %s from %s refused: %s', req.task, peer, (err as Error).message);
      if (!(err instanceof RobomeshError)) throw err;
      if (!frameRead) await skip();
      if (MISBEHAVIOUR.has(err.code)) reputation.penalise(peer, `task request refused: ${err.message}`);
      return error(req, err.code as InferErrorCode, err.message);
    };
    if (!tasks) {
      await skip();
      return error(req, 'UNKNOWN_TASK', 'this robot keeps no log');
    }
    let admitted: unknown;
    try {
      admitted = await tasks.admit(peer, req, budget);
    } catch (err) {
      return refuse(err, false);
    }
    const frame = await readFrame(lp, req.chunks, req.bytes, { ...read, signal: budget });
    try {
      const run = await tasks.serve(admitted, frame);
      this.served++;
      this.bytesOut += run.frame.length;
      return {
        header: {
          t: 'res',
          id: req.id,
          computeMs: run.computeMs,
          chunks: Math.ceil(run.frame.length / CHUNK_BYTES),
          bytes: run.frame.length,
          entry: Buffer.from(run.entry).toString('base64'),
        },
        frame: run.frame,
      };
    } catch (err) {
      if (err instanceof BoundaryError) return error(req, 'BAD_TENSORS', err.message, true);
      if (performance.now() - received > req.budgetMs) return error(req, 'DEADLINE', 'the task ran past its budget');
      return refuse(err, true);
    }
  }

  private async answer(req: InferRequest, frame: Uint8Array, received: number, cancelled: AbortSignal): Promise<Reply> {
    const { models, queue } = this.components;
    if (!models.has(req.model)) return error(req, 'UNKNOWN_MODEL', `model ${req.model.slice(0, 12)}… is not held here`);
    let tensors;
    try {
      tensors = decodeFrame(frame, { ...DEFAULT_FRAME_LIMITS, maxFrameBytes: this.maxFrameBytes });
    } catch (err) {
      if (err instanceof FrameError) return error(req, 'BAD_FRAME', err.message, true);
      throw err;
    }
    const deadline = received + req.budgetMs;
    let outputs;
    try {
      outputs = await queue.run(async () => {
        if (cancelled.aborted) throw new WorkError('CANCELLED', 'requester went away');
        if (performance.now() > deadline) throw new WorkError('DEADLINE', 'deadline passed while queued');
        const t0 = performance.now();
        const out = await models.runFrom(req.model, req.cut, req.precision, req.granularity, tensors);
        return { out, computeMs: performance.now() - t0 };
      });
    } catch (err) {
      if (err instanceof BoundaryError) return error(req, 'BAD_TENSORS', err.message, true);
      if (err instanceof RobomeshError) {
        const code = (
          ['UNKNOWN_CUT', 'DEADLINE', 'OVERLOADED'].includes(err.code) ? err.code : 'INTERNAL'
        ) as InferErrorCode;
        return error(req, code, err.message);
      }
      return error(req, 'INTERNAL', (err as Error).message);
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

function error(req: InferRequest, code: InferErrorCode, message: string, fatal = false): Reply {
  const header: InferErrorReply = { t: 'err', id: req.id, code, message };
  return { header, fatal, reason: message };
}
