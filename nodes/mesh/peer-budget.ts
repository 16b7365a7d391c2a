import { RobomeshError } from '../../protocol/errors.js';

/** A peer over one of its budgets: what it sent is refused, and it is penalised and reported. */
export type BudgetErrorCode = 'RATE' | 'IN_FLIGHT' | 'STALLED';

export class BudgetError extends RobomeshError<BudgetErrorCode> {
  constructor(code: BudgetErrorCode, message: string) {
    super(code, message);
  }
}

/** Requests per second per peer: a token bucket each, refilled continuously. */
export class RateLimit {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    private readonly perSecond: number,
    private readonly burst: number,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Takes `n` tokens (default one) for `peer`; false (nothing taken) when its bucket holds fewer. */
  take(peer: string, n = 1): boolean {
    const now = this.now();
    const b = this.buckets.get(peer) ?? { tokens: this.burst, at: now };
    b.tokens = Math.min(this.burst, b.tokens + ((now - b.at) * this.perSecond) / 1000);
    b.at = now;
    this.buckets.set(peer, b);
    if (this.buckets.size > 4096) this.buckets.delete(this.buckets.keys().next().value!);
    if (b.tokens < n) return false;
    b.tokens -= n;
    return true;
  }
}

/**
 * Bytes received from peers and not yet done with (a frame being read, then computed on), per
 * peer and in all: allocation follows data that arrived, and no peer, nor all together, can make
 * a robot hold more than its share.
 */
export class ByteBudget {
  private readonly held = new Map<string, number>();
  private total = 0;

  constructor(
    readonly perPeer: number,
    readonly overall: number,
  ) {}

  /** Counts `n` more bytes for `peer`, or throws IN_FLIGHT (nothing counted) when over a budget. */
  reserve(peer: string, n: number): void {
    const mine = this.held.get(peer) ?? 0;
    if (mine + n > this.perPeer)
      throw new BudgetError('IN_FLIGHT', `${peer} has ${mine + n} bytes in flight, more than ${this.perPeer}`);
    if (this.total + n > this.overall)
      throw new BudgetError('IN_FLIGHT', `${this.total + n} bytes in flight from all peers, more than ${this.overall}`);
    this.held.set(peer, mine + n);
    this.total += n;
  }

  release(peer: string, n: number): void {
    const mine = (this.held.get(peer) ?? 0) - n;
    if (mine <= 0) this.held.delete(peer);
    else this.held.set(peer, mine);
    this.total = Math.max(0, this.total - n);
  }

  of(peer: string): number {
    return this.held.get(peer) ?? 0;
  }

  get inFlight(): number {
    return this.total;
  }
}

/**
 * Bytes per second per peer, as a token bucket that makes the reader wait instead of refusing:
 * a legitimate burst only slows down, and a member streaming without end gets no more than its
 * rate of the robot's attention.
 */
export class BytePacer {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    private readonly perSecond: number,
    private readonly burst: number,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Takes `n` bytes for `peer`, waiting until its bucket holds them (or `signal` aborts). */
  async take(peer: string, n: number, signal?: AbortSignal): Promise<void> {
    const now = this.now();
    const b = this.buckets.get(peer) ?? { tokens: this.burst, at: now };
    b.tokens = Math.min(this.burst, b.tokens + ((now - b.at) * this.perSecond) / 1000) - n;
    b.at = now;
    this.buckets.set(peer, b);
    if (this.buckets.size > 4096) this.buckets.delete(this.buckets.keys().next().value!);
    if (b.tokens >= 0) return;
    const waitMs = (-b.tokens * 1000) / this.perSecond;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(resolve, waitMs);
      signal?.addEventListener(
        'abort',
        () => {
          clearTimeout(timer);
          reject(signal.reason as Error);
        },
        { once: true },
      );
    });
  }
}
