import type { ServerResponse } from 'node:http';

interface Client {
  res: ServerResponse;
  /** The latest frame not yet written because the socket's buffer is full. */
  backlog?: string;
}

export interface BroadcastOptions {
  /** Minimum gap between two frames; updates in between are coalesced into the latest. */
  minIntervalMs?: number;
  heartbeatMs?: number;
}

/** Server-Sent Events fan-out: at most one frame per interval, always the latest, slow clients skip stale frames. */
export class Broadcaster {
  private readonly clients = new Set<Client>();
  private readonly minIntervalMs: number;
  private readonly heartbeat: NodeJS.Timeout;
  private pending?: () => string;
  private timer?: NodeJS.Timeout;
  private lastSent = -Infinity;

  constructor({ minIntervalMs = 200, heartbeatMs = 15_000 }: BroadcastOptions = {}) {
    this.minIntervalMs = minIntervalMs;
    this.heartbeat = setInterval(() => this.writeAll(': heartbeat\n\n'), heartbeatMs).unref();
  }

  get size(): number {
    return this.clients.size;
  }

  /** Starts a stream on `res` and sends it `first` right away. */
  add(res: ServerResponse, first: string): void {
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    res.flushHeaders();
    const client: Client = { res };
    this.clients.add(client);
    const drop = (): void => {
      this.clients.delete(client);
    };
    res.on('close', drop);
    res.on('error', drop);
    res.on('drain', () => {
      const frame = client.backlog;
      client.backlog = undefined;
      if (frame !== undefined) this.write(client, frame);
    });
    this.write(client, `retry: 2000\n\n${first}`);
  }

  /** Queues an event; `data` is called only when the frame is actually sent, so coalesced updates cost nothing. */
  publish(data: () => string): void {
    this.pending = data;
    if (this.timer) return;
    const wait = this.lastSent + this.minIntervalMs - Date.now();
    if (wait <= 0) this.flush();
    else this.timer = setTimeout(() => this.flush(), wait);
  }

  close(): void {
    clearInterval(this.heartbeat);
    clearTimeout(this.timer);
    this.timer = undefined;
    this.pending = undefined;
    for (const { res } of this.clients) res.end();
    this.clients.clear();
  }

  private flush(): void {
    this.timer = undefined;
    const data = this.pending;
    this.pending = undefined;
    if (!data) return;
    this.lastSent = Date.now();
    if (this.clients.size === 0) return;
    let frame: string;
    try {
      frame = data();
    } catch {
      // A view that cannot be serialised is skipped; the next update replaces it.
      return;
    }
    this.writeAll(frame);
  }

  private writeAll(frame: string): void {
    for (const client of this.clients) this.write(client, frame);
  }

  private write(client: Client, frame: string): void {
    const { res } = client;
    if (res.destroyed || res.writableEnded) {
      this.clients.delete(client);
      return;
    }
    if (res.writableNeedDrain) {
      if (!frame.startsWith(':')) client.backlog = frame;
      return;
    }
    res.write(frame);
  }
}

/** One SSE event; `data` must hold no newline (JSON.stringify output never does). */
export function sseEvent(event: string, data: string): string {
  return `event: ${event}\ndata: ${data}\n\n`;
}
