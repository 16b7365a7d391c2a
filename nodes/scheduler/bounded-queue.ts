/**
 * A FIFO of at most `capacity` items between two async loops: `put` waits for room, `take` for
 * an item (undefined once closed and empty), `offerDroppingOldest` never waits.
 */
export class BoundedQueue<T> {
  private readonly items: T[] = [];
  private readonly takers: ((item: T | undefined) => void)[] = [];
  private readonly putters: (() => void)[] = [];
  private closed = false;

  constructor(readonly capacity: number) {
    if (!(capacity >= 1)) throw new RangeError(`queue capacity must be at least 1, not ${capacity}`);
  }

  get length(): number {
    return this.items.length;
  }

  async put(item: T): Promise<void> {
    while (this.items.length >= this.capacity && !this.closed) await new Promise<void>((r) => this.putters.push(r));
    this.push(item);
  }

  /** Adds `item`, dropping the oldest waiting one if full: returns the one dropped. */
  offerDroppingOldest(item: T): T | undefined {
    const dropped = this.items.length >= this.capacity ? this.items.shift() : undefined;
    this.push(item);
    return dropped;
  }

  private push(item: T): void {
    const taker = this.takers.shift();
    if (taker) taker(item);
    else this.items.push(item);
  }

  async take(): Promise<T | undefined> {
    if (this.items.length > 0) {
      const item = this.items.shift()!;
      this.putters.shift()?.();
      return item;
    }
    if (this.closed) return undefined;
    return new Promise((resolve) => this.takers.push(resolve));
  }

  /** No more puts: takers get what is left, then undefined. */
  close(): void {
    this.closed = true;
    for (const t of this.takers.splice(0)) t(undefined);
    for (const p of this.putters.splice(0)) p();
  }
}
