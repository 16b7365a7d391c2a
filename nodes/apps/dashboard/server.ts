import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { type AddressInfo, isIP } from 'node:net';
import { DashboardError } from './errors.js';
import { toPng } from '../../mapping/index.js';
import { DASHBOARD_HTML } from './page.js';
import { Broadcaster, sseEvent } from './sse.js';
import {
  LATENCY_LIMIT,
  LOG_FEED_LIMIT,
  decodeStates,
  type FleetView,
  type FleetViewSource,
  type MapView,
} from './view.js';

export interface DashboardOptions {
  port?: number;
  host?: string;
  /** Minimum gap between two update events per client; updates in between are coalesced into the latest. */
  minIntervalMs?: number;
  /** Open /events streams at most (default 32): more are refused with 503. */
  maxStreams?: number;
}

export interface Dashboard {
  url: string;
  /** Open /events streams. */
  streams(): number;
  close(): Promise<void>;
}

/** Update events are bounded however long the fleet runs; /state.json stays the full view. */
function streamed(view: FleetView): string {
  const trimmed = { ...view, log: view.log.slice(-LOG_FEED_LIMIT), latency: view.latency.slice(-LATENCY_LIMIT) };
  return sseEvent('update', JSON.stringify(trimmed));
}

function mapPng(map: MapView): Buffer {
  return toPng({ ...map, origin: { ...map.origin }, cell0: { cx: 0, cy: 0 }, states: decodeStates(map) });
}

function send(res: ServerResponse, status: number, type: string, body: string | Buffer): void {
  res.writeHead(status, {
    'content-type': type,
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
  });
  res.end(body);
}

export async function startDashboard(
  source: FleetViewSource,
  { port = 0, host = '127.0.0.1', minIntervalMs = 200, maxStreams = 32 }: DashboardOptions = {},
): Promise<Dashboard> {
  const broadcaster = new Broadcaster({ minIntervalMs });
  let boundPort = -1;
  const hostAllowed = (header: string | undefined): boolean => {
    const m = /^(\[[0-9a-f:.]+\]|[^:]+):(\d+)$/i.exec(header ?? '');
    if (!m || Number(m[2]) !== boundPort) return false;
    const name = m[1].toLowerCase();
    return isIP(name.replace(/^\[|\]$/g, '')) !== 0 || name === 'localhost' || name === host.toLowerCase();
  };
  let png: { states: string; body: Buffer } | undefined;

  const routes: Record<string, (req: IncomingMessage, res: ServerResponse) => void> = {
    '/': (_req, res) => send(res, 200, 'text/html; charset=utf-8', DASHBOARD_HTML),
    '/state.json': (_req, res) => send(res, 200, 'application/json', JSON.stringify(source.current())),
    '/events': (_req, res) => {
      if (broadcaster.size >= maxStreams)
        return send(res, 503, 'text/plain; charset=utf-8', `at most ${maxStreams} live streams\n`);
      broadcaster.add(res, streamed(source.current()));
    },
    '/map.png': (_req, res) => {
      const { map } = source.current();
      if (!map) return send(res, 404, 'text/plain; charset=utf-8', 'no map yet\n');
      if (png?.states !== map.states) png = { states: map.states, body: mapPng(map) };
      send(res, 200, 'image/png', png.body);
    },
  };

  const server = createServer((req, res) => {
    req.on('error', () => res.destroy());
    res.on('error', () => res.destroy());
    // DNS rebinding: a page from elsewhere whose name now resolves to this address would be
    // same-origin with the dashboard; its requests carry that name as Host. Served: an address
    // written as such, localhost, or the host name the dashboard was told to bind.
    if (!hostAllowed(req.headers.host)) return send(res, 421, 'text/plain; charset=utf-8', 'unknown host\n');
    const path = new URL(req.url ?? '/', 'http://dashboard').pathname;
    const route = Object.hasOwn(routes, path) ? routes[path] : undefined;
    if (!route) return send(res, 404, 'text/plain; charset=utf-8', 'not found\n');
    if (req.method !== 'GET') {
      res.setHeader('allow', 'GET');
      return send(res, 405, 'text/plain; charset=utf-8', 'method not allowed\n');
    }
    try {
      route(req, res);
    } catch (err) {
      if (res.headersSent) res.destroy();
      else send(res, 500, 'text/plain; charset=utf-8', `${err instanceof Error ? err.message : String(err)}\n`);
    }
  });
  server.on('clientError', (_err, socket) => socket.destroy());

  const onUpdate = (view: FleetView): void => broadcaster.publish(() => streamed(view));
  source.on('update', onUpdate);

  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    source.off('update', onUpdate);
    broadcaster.close();
    throw new DashboardError(
      'DASHBOARD_LISTEN',
      `dashboard cannot listen on ${host}:${port}: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
  server.on('error', () => undefined);

  const address = server.address() as AddressInfo;
  const hostPart = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  boundPort = address.port;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${hostPart}:${address.port}/`,
    streams: () => broadcaster.size,
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        source.off('update', onUpdate);
        broadcaster.close();
        server.close(() => resolve());
        server.closeAllConnections();
      })),
  };
}
