import { type AddressInfo, type Server, type Socket, connect, createServer } from 'node:net';
import { Transform, type TransformCallback, pipeline } from 'node:stream';

/**
 * Link emulation without root (bench:split's fallback when it cannot use tc): a relay on
 * loopback, inside the bench process, whose two directions each pass through a token bucket at
 * the emulated rate, like `tc tbf` on both ends of a veth. Every connection through it (the
 * robots' libp2p connection and the raw TCP baseline alike) shares the same two buckets, as
 * traffic on one radio link would; it shapes every byte either side writes, protocol framing
 * and control traffic included, so neither side of the comparison is favoured.
 */

/** Largest piece released at once: small against the burst, so pacing stays smooth. */
const PIECE_BYTES = 16 * 1024;

/** Bucket depth for a rate, as bench:split gives tbf: 10 ms of the rate, at least 32 KiB. */
export function burstFor(bytesPerSecond: number): number {
  return Math.max(32 * 1024, Math.round(bytesPerSecond / 100));
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** `rate` bytes/s with at most `burst` bytes of credit; takers are served in order. Infinity: no limit. */
export class TokenBucket {
  private tokens: number;
  private last = performance.now();
  private tail: Promise<void> = Promise.resolve();

  constructor(
    private rate = Infinity,
    private burst = 64 * 1024,
  ) {
    this.tokens = burst;
  }

  set(rate: number, burst = Number.isFinite(rate) ? burstFor(rate) : 64 * 1024): void {
    this.refill();
    this.rate = rate;
    this.burst = burst;
    this.tokens = burst; // a fresh link starts with a full bucket, like a new tbf qdisc
  }

  /** Resolves when `bytes` (at most the burst) may pass. */
  take(bytes: number): Promise<void> {
    const turn = this.tail.then(() => this.wait(bytes));
    this.tail = turn.catch(() => undefined); // only the order matters: the caller hears the failure
    return turn;
  }

  private refill(): void {
    const now = performance.now();
    if (Number.isFinite(this.rate))
      this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) * this.rate) / 1000);
    this.last = now;
  }

  private async wait(bytes: number): Promise<void> {
    const need = Math.min(bytes, this.burst);
    // Bounded: each round sleeps until enough credit has accrued, so two or three rounds suffice.
    for (let round = 0; round < 1000; round++) {
      if (!Number.isFinite(this.rate)) return;
      this.refill();
      if (this.tokens >= need) {
        this.tokens -= need;
        return;
      }
      await sleep(Math.max(1, Math.ceil(((need - this.tokens) / this.rate) * 1000)));
    }
    throw new Error(`token bucket: ${need} bytes never became available at ${this.rate} B/s`);
  }
}

/** Passes bytes through only as fast as `bucket` allows; its small buffer pushes back on the writer. */
export class Throttle extends Transform {
  constructor(private readonly bucket: TokenBucket) {
    super({ highWaterMark: PIECE_BYTES });
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    void (async () => {
      for (let o = 0; o < chunk.length; o += PIECE_BYTES) {
        const piece = chunk.subarray(o, Math.min(chunk.length, o + PIECE_BYTES));
        await this.bucket.take(piece.length);
        this.push(piece);
      }
    })().then(() => callback(), callback);
  }
}

/** An emulated link: relays on loopback whose traffic shares one bucket per direction. */
export class ThrottledLink {
  /** Towards the relayed service (requester → peer). */
  readonly up = new TokenBucket();
  /** Back from it. */
  readonly down = new TokenBucket();
  private readonly servers: Server[] = [];
  private readonly sockets = new Set<Socket>();

  /** Sets both directions to `bytesPerSecond` (undefined: unlimited). */
  setRate(bytesPerSecond: number | undefined): void {
    for (const b of [this.up, this.down]) b.set(bytesPerSecond ?? Infinity);
  }

  /** Relays connections to 127.0.0.1:<port returned> on to host:port through the link. */
  async relay(host: string, port: number): Promise<number> {
    const server = createServer((client) => {
      const upstream = connect(port, host);
      for (const s of [client, upstream]) {
        s.setNoDelay(true);
        this.sockets.add(s);
        s.once('close', () => this.sockets.delete(s));
      }
      const done = (): void => {
        client.destroy();
        upstream.destroy();
      };
      pipeline(client, new Throttle(this.up), upstream, done);
      pipeline(upstream, new Throttle(this.down), client, done);
    });
    this.servers.push(server);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    return (server.address() as AddressInfo).port;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await Promise.all(this.servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }
}
