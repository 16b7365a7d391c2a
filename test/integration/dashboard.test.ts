import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { existsSync } from 'node:fs';
import { get } from 'node:http';
import { connect } from 'node:net';
import { PNG } from 'pngjs';
import { chromium, type Browser, type Page } from 'playwright-core';
import { startDashboard, type Dashboard } from '../../nodes/apps/dashboard/server.js';
import {
  decodeStates,
  mapView,
  type FleetView,
  type FleetViewSource,
  type LinkView,
} from '../../nodes/apps/dashboard/view.js';
import { waitFor } from '../helpers/wait.js';

const WAIT = { timeout: 10_000 };
const [W, H] = [40, 30];

class ScriptedSource extends EventEmitter<{ update: [FleetView] }> implements FleetViewSource {
  constructor(private view: FleetView) {
    super();
  }

  current(): FleetView {
    return this.view;
  }

  set(patch: Partial<FleetView>): void {
    this.view = { ...this.view, ...patch, time: this.view.time + 100 };
    this.emit('update', this.view);
  }
}

/** A walled room whose columns left of `knownCols` are mapped. */
function room(knownCols: number): FleetView['map'] {
  const states = new Int8Array(W * H);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < knownCols; x++) states[y * W + x] = x === 0 || y === 0 || y === H - 1 || x === W - 1 ? 1 : -1;
  }
  return mapView({ width: W, height: H, resolution: 0.05, origin: { x: -1, y: -0.5 }, states });
}

const links = (down: string[] = []): LinkView[] =>
  [
    ['r0', 'r1'],
    ['r0', 'r2'],
    ['r1', 'r2'],
  ].map(([a, b]) => ({ a, b, connected: !down.includes(`${a}-${b}`), bandwidthBps: 40e6, rttMs: 0.8 }));

const initial: FleetView = {
  time: 0,
  phase: 'explore',
  robots: ['r0', 'r1', 'r2'].map((name, i) => ({
    name,
    peerId: `12D3KooWtest${i}`,
    pose: { x: -0.8 + 0.3 * i, y: 0, theta: i },
    up: true,
    flagged: false,
    logSize: 3,
    stateHash: 'abc123',
  })),
  links: links(),
  log: [{ at: 10, robot: 'r0', kind: 'task', detail: 'ocr frame 1' }],
  latency: [],
  map: room(8),
};

describe('live dashboard (chromium)', function () {
  this.timeout(60_000);
  const executablePath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
  let source: ScriptedSource;
  let dashboard: Dashboard;
  let browser: Browser;
  let page: Page;
  const pageErrors: string[] = [];
  const url = (path: string): string => new URL(path, dashboard.url).href;
  const updates = (): Promise<number> => page.evaluate(() => Number(document.body.dataset.updates));

  before(async () => {
    if (!existsSync(executablePath))
      assert.fail(`no chromium at ${executablePath}: apt-get install chromium (or set CHROMIUM_PATH)`);
    source = new ScriptedSource(initial);
    dashboard = await startDashboard(source, {});
    browser = await chromium.launch({ executablePath, args: ['--no-sandbox'] });
    page = await browser.newPage();
    page.on('pageerror', (err) => pageErrors.push(err.message));
    await page.goto(dashboard.url, WAIT);
  });

  after(async () => {
    await browser?.close();
    await dashboard?.close();
  });

  it('serves the page, bound to 127.0.0.1, and draws the map it streams', async () => {
    assert.match(dashboard.url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
    assert.match(await page.title(), /robomesh/);
    await page.waitForFunction(
      () => Number(document.getElementById('map-canvas')!.dataset.mapCells) > 0,
      undefined,
      WAIT,
    );
    const cells = Number(await page.locator('#map-canvas').getAttribute('data-map-cells'));
    assert.equal(cells, decodeStates(initial.map!).filter((s) => s !== 0).length);
    assert.equal(await page.locator('#phase').textContent(), 'explore');
    assert.equal(await page.locator('#partition-banner').isVisible(), false);
    assert.equal(await page.locator('#mesh-graph line.link.connected').count(), 3);
    assert.match((await page.locator('#mesh-graph').textContent()) ?? '', /40\.0 Mbit\/s/);
  });

  it('redraws a growing map', async () => {
    const before = Number(await page.locator('#map-canvas').getAttribute('data-map-cells'));
    source.set({ map: room(30) });
    await page.waitForFunction(
      (n) => Number(document.getElementById('map-canvas')!.dataset.mapCells) > n,
      before,
      WAIT,
    );
  });

  it('shows a partition with the split and dashed red links, and hides it after the heal', async () => {
    source.set({ phase: 'partition r0 r1 | r2', links: links(['r0-r2', 'r1-r2']) });
    const banner = page.locator('#partition-banner');
    await banner.waitFor({ state: 'visible', ...WAIT });
    const text = (await banner.textContent()) ?? '';
    assert.match(text, /PARTITION/);
    assert.match(text, /r0 r1 \| r2/);
    const cut = page.locator('#mesh-graph line.partitioned');
    assert.equal(await cut.count(), 2);
    assert.equal(await cut.first().getAttribute('stroke'), '#e74c3c');
    assert.ok(await cut.first().getAttribute('stroke-dasharray'));
    assert.equal(await page.locator('#phase').textContent(), 'partition r0 r1 | r2');

    source.set({ phase: 'healed', links: links() });
    await banner.waitFor({ state: 'hidden', ...WAIT });
    assert.equal(await page.locator('#mesh-graph line.partitioned').count(), 0);
  });

  it('puts new log entries on top of the feed with their kind as a tag', async () => {
    source.set({
      log: [...source.current().log, { at: 420, robot: 'r2', kind: 'flag', detail: 'r1 drew a fake wall' }],
    });
    const top = page.locator('#log-feed li').first();
    await top.filter({ hasText: 'r1 drew a fake wall' }).waitFor(WAIT);
    assert.equal(await top.locator('.tag').textContent(), 'flag');
    assert.equal(await page.locator('#log-feed li').count(), 2);
  });

  it('plots inference latencies and counts plans', async () => {
    const plans = ['local', 'offload', 'split@2', 'split@3'];
    source.set({ latency: plans.map((plan, i) => ({ at: 500 + 100 * i, robot: `r${i % 3}`, ms: 20 + 10 * i, plan })) });
    await page.waitForFunction(
      () => document.querySelectorAll('#latency-plot circle.sample').length === 4,
      undefined,
      WAIT,
    );
    assert.equal(await page.locator('#plan-breakdown [data-plan="split"] .count').textContent(), '2');
    assert.equal(await page.locator('#plan-breakdown [data-plan="local"] .count').textContent(), '1');
  });

  it('coalesces a burst of updates into a few events that end with the latest', async () => {
    const before = await updates();
    for (let i = 0; i < 50; i++) source.set({ phase: `burst ${i}` });
    await page.waitForFunction(() => document.getElementById('phase')!.textContent === 'burst 49', undefined, WAIT);
    const got = (await updates()) - before;
    assert.ok(got >= 1 && got <= 3, `${got} events for 50 updates`);
  });

  it('/state.json is the current view; /map.png is the map in map_server greys; anything else is 404', async () => {
    const state = await fetch(url('/state.json'));
    assert.equal(state.status, 200);
    assert.deepEqual(await state.json(), JSON.parse(JSON.stringify(source.current())));

    const res = await fetch(url('/map.png'));
    assert.equal(res.headers.get('content-type'), 'image/png');
    const png = PNG.sync.read(Buffer.from(await res.arrayBuffer()));
    assert.deepEqual([png.width, png.height], [W, H]);
    const grey = (x: number, y: number): number => png.data[((H - 1 - y) * W + x) * 4];
    assert.equal(grey(0, 5), 0, 'wall occupied');
    assert.equal(grey(5, 5), 254, 'inside free');
    assert.equal(grey(35, 5), 205, 'unmapped unknown');

    for (const path of ['/nope', '/state.json/x', '/events.png'])
      assert.equal((await fetch(url(path))).status, 404, path);
    assert.equal((await fetch(url('/state.json'), { method: 'POST' })).status, 405);
  });

  it('survives clients that vanish mid-stream or mid-request, and keeps updating the page', async () => {
    await waitFor(() => dashboard.streams() === 1, 'only the page streaming', 10_000);
    await new Promise<void>((resolve, reject) => {
      const req = get(url('/events'), (res) => {
        res.on('error', () => undefined);
        res.once('data', () => {
          req.destroy();
          resolve();
        });
      });
      req.on('error', (err) => (req.destroyed ? undefined : reject(err)));
    });
    source.set({ phase: 'after hangup' });
    const half = connect(Number(new URL(dashboard.url).port), '127.0.0.1');
    half.on('error', () => undefined);
    await new Promise<void>((resolve) => half.once('connect', resolve));
    half.write('GET /state.json HTTP/1.1\r\nHo');
    half.destroy();
    await waitFor(() => dashboard.streams() === 1, 'the hung-up stream removed', 10_000);

    const before = await updates();
    source.set({ phase: 'still alive' });
    await page.waitForFunction(() => document.getElementById('phase')!.textContent === 'still alive', undefined, WAIT);
    assert.ok((await updates()) > before);
    assert.equal((await fetch(url('/state.json'))).status, 200);
    assert.equal(await page.locator('#status').textContent(), 'live');
    assert.deepEqual(pageErrors, [], 'no script errors on the page');
  });

  it('shows "disconnected" when the stream drops', async () => {
    const closed = dashboard.close();
    await page.locator('#status', { hasText: 'disconnected' }).waitFor(WAIT);
    await closed;
  });
});

describe('dashboard: what a page from elsewhere or a crowd of clients can do', () => {
  let dashboard: Dashboard;
  before(async () => {
    dashboard = await startDashboard(new ScriptedSource(initial), { maxStreams: 3 });
  });
  after(() => dashboard.close());

  const request = (path: string, host: string): Promise<{ status: number; close: () => void }> =>
    new Promise((resolve, reject) => {
      const url = new URL(dashboard.url);
      const req = get({ host: url.hostname, port: url.port, path, headers: { host } }, (res) => {
        resolve({ status: res.statusCode ?? 0, close: () => res.destroy() });
        if (path !== '/events') res.resume();
      });
      req.on('error', reject);
    });

  it('answers only requests naming it by address or localhost (a DNS-rebound name gets 421)', async () => {
    const { port } = new URL(dashboard.url);
    assert.equal((await request('/state.json', `127.0.0.1:${port}`)).status, 200);
    assert.equal((await request('/state.json', `localhost:${port}`)).status, 200);
    assert.equal((await request('/state.json', `evil.example:${port}`)).status, 421);
    assert.equal((await request('/state.json', `127.0.0.1:${Number(port) + 1}`)).status, 421);
    assert.equal((await request('/state.json', 'evil.example')).status, 421);
  });

  it('holds at most maxStreams /events streams; one more is refused, and a slot frees when one closes', async () => {
    const { port } = new URL(dashboard.url);
    const host = `127.0.0.1:${port}`;
    const open = await Promise.all([1, 2, 3].map(() => request('/events', host)));
    assert.deepEqual(
      open.map((o) => o.status),
      [200, 200, 200],
    );
    await waitFor(() => dashboard.streams() === 3, 'three streams');
    assert.equal((await request('/events', host)).status, 503);
    open[0].close();
    await waitFor(() => dashboard.streams() === 2, 'a stream closed');
    const again = await request('/events', host);
    assert.equal(again.status, 200);
    for (const o of [...open, again]) o.close();
  });
});
