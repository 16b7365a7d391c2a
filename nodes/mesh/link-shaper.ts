import type {
  AbortOptions,
  ConnectionProtector,
  MessageStream,
  StreamCloseEvent,
  StreamMessageEvent,
} from '@libp2p/interface';
import { AbstractMessageStream, type SendResult } from '@libp2p/utils';
import type { Multiaddr } from '@multiformats/multiaddr';

/**
 * A simulated radio link, one direction: what this robot sends to a peer goes out at this rate and
 * arrives this late.
 */
export interface LinkShape {
  bytesPerSecond: number;
  delayMs: number;
}

type Bytes = Parameters<AbstractMessageStream['sendData']>[0];

/** Bytes released to the socket at once: small enough that pacing stays smooth at 1 Mbit/s (16 ms). */
const PIECE_BYTES = 2048;

const addressKey = (addr: Multiaddr): string =>
  addr
    .getComponents()
    .filter((c) => c.name !== 'p2p')
    .map((c) => `${c.name}/${c.value ?? ''}`)
    .join('/');

/**
 * Shapes what this robot sends to chosen peers (rate and latency), below encryption so every
 * byte of the connection counts: tensors, gossip, log sync, pings. Each robot shapes its own
 * egress, so a link is shaped both ways when both ends are told. tc/netem would be the tool on
 * a real machine, but needs root and one network namespace per robot; a local fleet of dozens
 * of robots on one loopback needs it in-process.
 *
 * Hooked in as libp2p's connection protector (the only layer that sees the raw connection).
 * The protector does not learn the remote peer; an outbound address names it, an inbound
 * connection is matched to its peer once libp2p reports it open (`bind`).
 */
export class LinkShaper {
  private readonly shapes = new Map<string, LinkShape>();
  private readonly unbound = new Map<string, ShapedStream>();
  private readonly live = new Set<ShapedStream>();

  set(peer: string, shape: LinkShape | null): void {
    if (shape)
      this.shapes.set(peer, { bytesPerSecond: Math.max(1, shape.bytesPerSecond), delayMs: Math.max(0, shape.delayMs) });
    else this.shapes.delete(peer);
  }

  clear(): void {
    this.shapes.clear();
  }

  shapeFor(peer: string | undefined): LinkShape | undefined {
    return peer === undefined ? undefined : this.shapes.get(peer);
  }

  /** Bytes sent into simulated links and not yet out of them. */
  backlog(): number {
    let bytes = 0;
    for (const s of this.live) bytes += s.backlog();
    return bytes;
  }

  /** Shaped links now, for status reports. */
  shaped(): Map<string, LinkShape> {
    return new Map(this.shapes);
  }

  protector(): ConnectionProtector {
    return {
      protect: async (connection: MessageStream & { remoteAddr?: Multiaddr }) => {
        const peer = connection.remoteAddr
          ?.getComponents()
          .filter((c) => c.name === 'p2p')
          .at(-1)?.value;
        const stream = new ShapedStream(connection, this, peer);
        this.live.add(stream);
        connection.addEventListener('close', () => this.live.delete(stream), { once: true });
        if (peer === undefined && connection.remoteAddr) {
          const key = addressKey(connection.remoteAddr);
          this.unbound.set(key, stream);
          connection.addEventListener('close', () => this.unbound.get(key) === stream && this.unbound.delete(key), {
            once: true,
          });
        }
        return stream;
      },
    };
  }

  /** libp2p opened a connection: an inbound one now has a known peer. */
  bind(remoteAddr: Multiaddr, peer: string): void {
    const key = addressKey(remoteAddr);
    const stream = this.unbound.get(key);
    if (!stream) return;
    this.unbound.delete(key);
    stream.peer = peer;
  }
}

interface Pending {
  bytes: Bytes;
  dueAt: number;
}

class ShapedStream extends AbstractMessageStream {
  /** When the simulated link finishes sending everything handed to it so far. */
  private linkFreeAt = 0;
  private readonly pending: Pending[] = [];
  private pendingBytes = 0;
  private timer: NodeJS.Timeout | undefined;
  private flushed: (() => void) | undefined;
  /** We told the layer above to hold back: it waits for our 'drain'. */
  private heldBack = false;

  constructor(
    private readonly inner: MessageStream,
    private readonly shaper: LinkShaper,
    public peer: string | undefined,
  ) {
    super({
      log: inner.log,
      inactivityTimeout: inner.inactivityTimeout,
      maxReadBufferLength: inner.maxReadBufferLength,
      direction: inner.direction,
    });
    inner.addEventListener('message', (evt: StreamMessageEvent) => this.onData(evt.data));
    inner.addEventListener('close', (evt: StreamCloseEvent) => {
      this.discard();
      if (evt.error == null) this.onTransportClosed();
      else if (evt.local === true) this.abort(evt.error);
      else this.onRemoteReset();
    });
    inner.addEventListener('drain', () => this.pendingBytes === 0 && this.safeDispatchEvent('drain'));
    inner.addEventListener('remoteCloseWrite', () => this.onRemoteCloseWrite());
  }

  backlog(): number {
    return this.pendingBytes;
  }

  /** What may wait in the simulated link before the sender is asked to hold back. */
  private limit(shape: LinkShape | undefined): number {
    return shape ? Math.max(4 * PIECE_BYTES, (shape.bytesPerSecond * 50) / 1000) : Infinity;
  }

  sendData(data: Bytes): SendResult {
    const shape = this.shaper.shapeFor(this.peer);
    if (!shape && this.pending.length === 0) return { sentBytes: data.byteLength, canSendMore: this.inner.send(data) };
    const bytesPerMs = (shape?.bytesPerSecond ?? Infinity) / 1000;
    const now = performance.now();
    for (let at = 0; at < data.byteLength; at += PIECE_BYTES) {
      const piece = data.sublist(at, Math.min(data.byteLength, at + PIECE_BYTES));
      this.linkFreeAt = Math.max(now, this.linkFreeAt) + piece.byteLength / bytesPerMs;
      this.pending.push({ bytes: piece, dueAt: this.linkFreeAt + (shape?.delayMs ?? 0) });
      this.pendingBytes += piece.byteLength;
    }
    this.schedule();
    const canSendMore = this.pendingBytes < this.limit(shape);
    if (!canSendMore) this.heldBack = true;
    return { sentBytes: data.byteLength, canSendMore };
  }

  private schedule(): void {
    if (this.timer || this.pending.length === 0) return;
    this.timer = setTimeout(() => this.release(), Math.max(0, this.pending[0].dueAt - performance.now()));
  }

  private release(): void {
    this.timer = undefined;
    const now = performance.now();
    const shape = this.shaper.shapeFor(this.peer);
    // Shaping lifted meanwhile: what waits goes out now.
    // The connection closed under the link (the far end hung up): what waits is lost, as on a
    // radio link that went away. Sending now would throw from this timer and end the process
    // (seen in bench:tasks: "Cannot write to a stream that is closing").
    if (this.inner.status !== 'open') return this.discard();
    while (this.pending.length && (!shape || this.pending[0].dueAt <= now)) {
      const { bytes } = this.pending.shift()!;
      this.pendingBytes -= bytes.byteLength;
      try {
        this.inner.send(bytes);
      } catch {
        return this.discard(); // its write side closed (a close racing this timer): same as above
      }
    }
    if (this.pending.length === 0) {
      this.linkFreeAt = 0;
      this.flushed?.();
    }
    if (this.heldBack && this.pendingBytes < this.limit(shape)) {
      this.heldBack = false;
      this.safeDispatchEvent('drain');
    }
    this.schedule();
  }

  private discard(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.pending.length = 0;
    this.pendingBytes = 0;
    this.heldBack = false;
    this.flushed?.();
  }

  async close(options?: AbortOptions): Promise<void> {
    if (this.pending.length) await new Promise<void>((resolve) => (this.flushed = resolve));
    await this.inner.close(options);
  }

  sendReset(err: Error): void {
    this.discard();
    this.inner.abort(err);
  }

  sendPause(): void {
    this.inner.pause();
  }

  sendResume(): void {
    this.inner.resume();
  }
}
