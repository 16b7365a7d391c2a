import type { FleetView, LinkView } from './view.js';

/**
 * The page's script. It runs in the browser, not in Node: page.ts inlines its source text, so it must
 * reference nothing outside its own body (type imports are erased and fine).
 */
export function dashboardClient(): void {
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const PALETTE = ['#4e9bff', '#f0b93a', '#3ecf8e', '#c77dff', '#2fd0d0', '#ff8c42', '#9bd14b', '#ff6fb5'];
  const FLAGGED = '#ff3b3b';
  const DOWN = '#6b7280';
  const CELL_RGB: Record<number, [number, number, number]> = {
    [-1]: [238, 240, 242],
    0: [138, 143, 152],
    1: [17, 19, 24],
  };
  const MAP_PX = 720;

  const byId = <T extends Element>(id: string): T => document.getElementById(id) as unknown as T;
  const mapCanvas = byId<HTMLCanvasElement>('map-canvas');
  const mesh = byId<SVGSVGElement>('mesh-graph');
  const banner = byId<HTMLElement>('partition-banner');
  const feed = byId<HTMLOListElement>('log-feed');
  const plot = byId<SVGSVGElement>('latency-plot');
  const breakdown = byId<HTMLElement>('plan-breakdown');
  let mapImage: { states: string; image: HTMLCanvasElement; known: number } | undefined;
  let updates = 0;

  function svg(parent: Element, tag: string, attrs: Record<string, string | number>, text?: string): SVGElement {
    const el = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
    if (text !== undefined) el.textContent = text;
    parent.appendChild(el);
    return el;
  }

  function el(tag: string, className: string, text: string): HTMLElement {
    const node = document.createElement(tag);
    node.className = className;
    node.textContent = text;
    return node;
  }

  function colours(view: FleetView): Map<string, string> {
    return new Map(view.robots.map((r, i) => [r.name, PALETTE[i % PALETTE.length]]));
  }

  function seconds(ms: number): string {
    return `${(ms / 1000).toFixed(1)} s`;
  }

  function renderMapImage(map: NonNullable<FleetView['map']>): { image: HTMLCanvasElement; known: number } {
    const bin = atob(map.states);
    const states = new Int8Array(bin.length);
    for (let i = 0; i < bin.length; i++) states[i] = (bin.charCodeAt(i) << 24) >> 24;
    const image = document.createElement('canvas');
    image.width = map.width;
    image.height = map.height;
    const ctx = image.getContext('2d')!;
    const pixels = ctx.createImageData(map.width, map.height);
    let known = 0;
    for (let y = 0; y < map.height; y++) {
      for (let x = 0; x < map.width; x++) {
        const s = states[y * map.width + x] ?? 0;
        if (s !== 0) known++;
        const [r, g, b] = CELL_RGB[s] ?? CELL_RGB[0];
        const o = ((map.height - 1 - y) * map.width + x) * 4;
        pixels.data[o] = r;
        pixels.data[o + 1] = g;
        pixels.data[o + 2] = b;
        pixels.data[o + 3] = 255;
      }
    }
    ctx.putImageData(pixels, 0, 0);
    return { image, known };
  }

  function drawMap(view: FleetView): void {
    const ctx = mapCanvas.getContext('2d')!;
    const { map } = view;
    if (!map || map.width === 0 || map.height === 0) {
      mapCanvas.width = 480;
      mapCanvas.height = 120;
      ctx.fillStyle = '#9aa3b2';
      ctx.font = '16px sans-serif';
      ctx.fillText('waiting for the merged map…', 20, 60);
      mapCanvas.dataset.mapCells = '0';
      return;
    }
    if (mapImage?.states !== map.states) mapImage = { states: map.states, ...renderMapImage(map) };
    const scale = Math.min(8, MAP_PX / Math.max(map.width, map.height));
    mapCanvas.width = Math.round(map.width * scale);
    mapCanvas.height = Math.round(map.height * scale);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(mapImage.image, 0, 0, mapCanvas.width, mapCanvas.height);
    const palette = colours(view);
    ctx.font = 'bold 13px sans-serif';
    ctx.lineWidth = 2;
    for (const robot of view.robots) {
      if (!robot.pose) continue;
      const px = ((robot.pose.x - map.origin.x) / map.resolution) * scale;
      const py = (map.height - (robot.pose.y - map.origin.y) / map.resolution) * scale;
      const colour = robot.flagged ? FLAGGED : robot.up ? palette.get(robot.name)! : DOWN;
      ctx.save();
      ctx.translate(px, py);
      ctx.rotate(-robot.pose.theta);
      ctx.beginPath();
      ctx.moveTo(12, 0);
      ctx.lineTo(-7, 7);
      ctx.lineTo(-3, 0);
      ctx.lineTo(-7, -7);
      ctx.closePath();
      ctx.fillStyle = colour;
      ctx.strokeStyle = '#0b0d12';
      ctx.fill();
      ctx.stroke();
      ctx.restore();
      ctx.strokeStyle = '#0b0d12';
      ctx.strokeText(robot.name, px + 10, py - 10);
      ctx.fillStyle = colour;
      ctx.fillText(robot.name, px + 10, py - 10);
    }
    mapCanvas.dataset.mapCells = String(mapImage.known);
  }

  function drawMesh(view: FleetView): void {
    mesh.replaceChildren();
    const palette = colours(view);
    const n = view.robots.length;
    const at = new Map(
      view.robots.map((r, i) => {
        const a = -Math.PI / 2 + (2 * Math.PI * i) / Math.max(1, n);
        return [r.name, { x: 200 + 120 * Math.cos(a), y: 140 + 100 * Math.sin(a) }];
      }),
    );
    for (const link of view.links) {
      const p = at.get(link.a);
      const q = at.get(link.b);
      if (!p || !q) continue;
      const line = svg(mesh, 'line', {
        x1: p.x,
        y1: p.y,
        x2: q.x,
        y2: q.y,
        class: `link ${link.connected ? 'connected' : 'partitioned'}`,
        'data-a': link.a,
        'data-b': link.b,
        stroke: link.connected ? '#2ecc71' : '#e74c3c',
        'stroke-width': link.connected ? 3 : 2,
        ...(link.connected ? {} : { 'stroke-dasharray': '7 6' }),
      });
      const rtt = link.rttMs === undefined ? '' : `, rtt ${link.rttMs.toFixed(1)} ms`;
      svg(line, 'title', {}, `${link.a}–${link.b}: ${link.connected ? 'connected' : 'partitioned'}${rtt}`);
      if (link.connected && link.bandwidthBps !== undefined) {
        svg(
          mesh,
          'text',
          { x: (p.x + q.x) / 2, y: (p.y + q.y) / 2 - 4, class: 'bw', 'text-anchor': 'middle' },
          `${(link.bandwidthBps / 1e6).toFixed(1)} Mbit/s` +
            (link.shapedBps ? ` (shaped ${(link.shapedBps / 1e6).toFixed(1)})` : ''),
        );
      }
    }
    for (const robot of view.robots) {
      const { x, y } = at.get(robot.name)!;
      const node = svg(mesh, 'g', {
        class: `robot${robot.flagged ? ' flagged' : ''}${robot.up ? '' : ' down'}`,
        'data-robot': robot.name,
      });
      svg(node, 'circle', {
        cx: x,
        cy: y,
        r: 17,
        fill: robot.up ? palette.get(robot.name)! : DOWN,
        stroke: robot.flagged ? FLAGGED : '#0b0d12',
        'stroke-width': robot.flagged ? 4 : 2,
      });
      svg(node, 'text', { x, y: y + 5, 'text-anchor': 'middle', class: 'name' }, robot.name);
      // A robot's own view knows its peers' links, not their logs: an empty state hash is unknown.
      const sub = robot.stateHash ? `log ${robot.logSize}` : robot.up ? 'connected' : 'down';
      svg(
        node,
        'text',
        { x, y: y + 32, 'text-anchor': 'middle', class: 'sub' },
        `${sub}${robot.flagged ? ' · FLAGGED' : ''}`,
      );
      svg(
        node,
        'title',
        {},
        `${robot.peerId}${robot.stateHash ? `\nstate ${robot.stateHash}` : ''}${robot.up ? '' : '\ndown'}`,
      );
    }
    const known = view.robots.filter((r) => r.up && r.stateHash);
    const hashes = new Set(known.map((r) => r.stateHash));
    const first = [...hashes][0] ?? '';
    const verdict =
      known.length < 2
        ? `log state ${first.slice(0, 10)}`
        : hashes.size === 1
          ? `logs converged ${first.slice(0, 10)}`
          : `logs diverged: ${hashes.size} state hashes`;
    svg(mesh, 'text', { x: 8, y: 294, class: `verdict ${hashes.size <= 1 ? 'ok' : 'bad'}` }, verdict);
  }

  function showPartition(view: FleetView): void {
    const down = view.links.filter((l) => !l.connected);
    if (down.length === 0) {
      banner.hidden = true;
      banner.textContent = '';
      return;
    }
    const parent = new Map(view.robots.map((r) => [r.name, r.name]));
    const find = (x: string): string => {
      while (parent.get(x) !== x) x = parent.get(x)!;
      return x;
    };
    for (const l of view.links) if (l.connected && parent.has(l.a) && parent.has(l.b)) parent.set(find(l.a), find(l.b));
    const groups = new Map<string, string[]>();
    for (const r of view.robots) groups.set(find(r.name), [...(groups.get(find(r.name)) ?? []), r.name]);
    const split = [...groups.values()].map((g) => g.join(' ')).join(' | ');
    const cut = down.map((l: LinkView) => `${l.a}–${l.b}`).join(', ');
    banner.textContent = groups.size > 1 ? `PARTITION ${split} (links down: ${cut})` : `PARTITION links down: ${cut}`;
    banner.hidden = false;
  }

  function drawLog(view: FleetView): void {
    const items = view.log
      .slice(-200)
      .reverse()
      .map((line) => {
        const li = document.createElement('li');
        li.append(
          el('time', 'at', seconds(line.at)),
          el('span', `tag tag-${line.kind.replace(/[^a-z0-9-]/gi, '')}`, line.kind),
          el('span', 'who', line.robot),
          el('span', 'detail', line.detail),
        );
        return li;
      });
    feed.replaceChildren(...items);
  }

  function drawLatency(view: FleetView): void {
    plot.replaceChildren();
    const samples = view.latency;
    const palette = colours(view);
    const [L, R, T, B] = [44, 392, 12, 176];
    svg(plot, 'line', { x1: L, y1: B, x2: R, y2: B, class: 'axis' });
    svg(plot, 'line', { x1: L, y1: T, x2: L, y2: B, class: 'axis' });
    if (samples.length > 0) {
      const t0 = Math.min(...samples.map((s) => s.at));
      const t1 = Math.max(t0 + 1, ...samples.map((s) => s.at));
      const top = Math.max(1, ...samples.map((s) => s.ms)) * 1.1;
      svg(plot, 'text', { x: L - 4, y: T + 8, 'text-anchor': 'end', class: 'tick' }, `${top.toFixed(0)} ms`);
      svg(plot, 'text', { x: L - 4, y: B, 'text-anchor': 'end', class: 'tick' }, '0');
      svg(plot, 'text', { x: L, y: B + 16, class: 'tick' }, seconds(t0));
      svg(plot, 'text', { x: R, y: B + 16, 'text-anchor': 'end', class: 'tick' }, seconds(t1));
      for (const s of samples) {
        const dot = svg(plot, 'circle', {
          cx: L + ((s.at - t0) / (t1 - t0)) * (R - L),
          cy: B - (s.ms / top) * (B - T),
          r: 3,
          class: 'sample',
          fill: palette.get(s.robot) ?? '#ddd',
        });
        const predicted = s.predictedMs === undefined ? '' : `, predicted ${s.predictedMs.toFixed(1)} ms`;
        svg(dot, 'title', {}, `${s.robot} ${s.ms.toFixed(1)} ms (${s.plan}${predicted}) at ${seconds(s.at)}`);
      }
    } else {
      svg(plot, 'text', { x: 218, y: 100, 'text-anchor': 'middle', class: 'tick' }, 'no inferences yet');
    }
    const counts = new Map<string, number>([
      ['local', 0],
      ['offload', 0],
      ['split', 0],
    ]);
    for (const s of samples) {
      const kind = /^[a-z]+/i.exec(s.plan)?.[0].toLowerCase() ?? s.plan;
      counts.set(kind, (counts.get(kind) ?? 0) + 1);
    }
    const total = Math.max(1, samples.length);
    breakdown.replaceChildren(
      ...[...counts].map(([plan, count]) => {
        const row = el('div', 'plan', '');
        row.dataset.plan = plan;
        const bar = el('span', 'bar', '');
        bar.style.width = `${(100 * count) / total}%`;
        row.append(el('span', 'label', plan), el('span', 'track', ''), el('span', 'count', String(count)));
        row.children[1].append(bar);
        return row;
      }),
    );
    const legend = byId<HTMLElement>('latency-legend');
    legend.replaceChildren(
      ...view.robots.map((r) => {
        const item = el('span', 'key', r.name);
        item.style.setProperty('--c', palette.get(r.name)!);
        return item;
      }),
    );
    // How far each robot's scheduler is off, and how loaded its CPU is (what it plans with).
    const known = view.robots.filter((r) => r.predictionErrorPct !== undefined || r.slowdown !== undefined);
    byId<HTMLElement>('prediction').replaceChildren(
      ...known.map((r) => {
        const error = r.predictionErrorPct === undefined ? 'no decision yet' : `${r.predictionErrorPct.toFixed(0)} %`;
        const cpu = r.slowdown === undefined ? '' : `, compute ${r.slowdown.toFixed(1)}× its unloaded time`;
        const exits = r.exits?.asked
          ? `, early exit answered ${((100 * r.exits.taken) / r.exits.asked).toFixed(0)} % of ${r.exits.asked}`
          : '';
        const c = r.chains;
        const chains = c
          ? `, chains: ${c.delivered} of ${c.offered} frames` +
            (c.fps === undefined ? '' : ` (last stream ${c.fps.toFixed(1)} frames/s)`) +
            `, ${c.dropped} dropped, ${c.failed} failed, ${c.replaced} stages replaced`
          : '';
        const row = el('div', 'prediction-row', `${r.name}: prediction error ${error}${cpu}${exits}${chains}`);
        row.dataset.robot = r.name;
        return row;
      }),
    );
  }

  function render(view: FleetView): void {
    byId<HTMLElement>('phase').textContent = view.phase;
    byId<HTMLElement>('clock').textContent = seconds(view.time);
    drawMap(view);
    drawMesh(view);
    showPartition(view);
    drawLog(view);
    drawLatency(view);
    const t = view.tasks;
    if (t)
      byId<HTMLElement>('task-decisions').textContent =
        `logged tasks: ${t.final} final, ${t.provisional} provisional, ${t.overturned} overturned, ` +
        `${t.assigned + t.open} undecided`;
  }

  const status = byId<HTMLElement>('status');
  const setStatus = (live: boolean): void => {
    status.textContent = live ? 'live' : 'disconnected';
    status.className = live ? 'live' : 'down';
  };
  const events = new EventSource('/events');
  events.addEventListener('open', () => setStatus(true));
  events.addEventListener('error', () => setStatus(false));
  events.addEventListener('update', (e) => {
    setStatus(true);
    render(JSON.parse((e as MessageEvent<string>).data) as FleetView);
    document.body.dataset.updates = String(++updates);
  });
}
