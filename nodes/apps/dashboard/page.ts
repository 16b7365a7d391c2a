import { dashboardClient } from './client.js';

const STYLE = `
* { box-sizing: border-box; }
[hidden] { display: none !important; }
body { margin: 0; font: 14px/1.4 system-ui, sans-serif; background: #0f1218; color: #dfe3ea; }
header { display: flex; gap: 16px; align-items: baseline; padding: 10px 16px; background: #161b24;
  border-bottom: 1px solid #262d3a; }
header h1 { margin: 0; font-size: 18px; }
#phase { font-weight: 600; color: #f0b93a; }
#clock { color: #9aa3b2; font-variant-numeric: tabular-nums; }
#status { margin-left: auto; padding: 2px 10px; border-radius: 10px; background: #394150; }
#status.live { background: #1f6f45; }
#status.down { background: #8b1e1e; }
#partition-banner { margin: 10px 16px 0; padding: 8px 12px; border-radius: 6px; background: #8b1e1e; color:
  #fff; font-weight: 700; letter-spacing: 0.02em; }
main { display: grid; grid-template-columns: minmax(0, 1.2fr) minmax(0, 1fr); gap: 12px; padding: 12px 16px; }
section { background: #161b24; border: 1px solid #262d3a; border-radius: 8px; padding: 10px 12px; min-height: 0; }
section h2 { margin: 0 0 8px; font-size: 13px; text-transform: uppercase; letter-spacing: 0.08em; color: #9aa3b2; }
#map-canvas { display: block; max-width: 100%; max-height: 62vh; image-rendering: pixelated; background: #8a8f98; }
#mesh-graph, #latency-plot { width: 100%; height: auto; display: block; }
#mesh-graph text { fill: #dfe3ea; font-size: 12px; }
#mesh-graph text.name { font-weight: 700; fill: #0b0d12; }
#mesh-graph text.bw { fill: #8be0b0; font-size: 11px; }
#mesh-graph text.sub { fill: #9aa3b2; font-size: 10px; }
#mesh-graph .flagged text.sub { fill: #ff6b6b; font-weight: 700; }
#mesh-graph text.verdict.ok { fill: #3ecf8e; }
#mesh-graph text.verdict.bad { fill: #ff6b6b; }
#log-feed { list-style: none; margin: 0; padding: 0; max-height: 44vh; overflow-y: auto; font: 12px/1.5
  ui-monospace, monospace; }
#log-feed li { display: flex; gap: 8px; padding: 2px 0; border-bottom: 1px solid #1e2430; }
#log-feed .at { color: #6b7280; min-width: 56px; text-align: right; }
#log-feed .who { color: #c3cad6; min-width: 28px; }
#log-feed .detail { overflow-wrap: anywhere; }
.tag { padding: 0 6px; border-radius: 4px; background: #394150; color: #0b0d12; font-weight: 700; min-width:
  52px; text-align: center; }
.tag-task { background: #4e9bff; } .tag-assign { background: #c77dff; } .tag-result { background: #3ecf8e; }
.tag-tile { background: #f0b93a; } .tag-flag { background: #ff5d5d; } .tag-anchor { background: #2fd0d0; }
.tag-anchor-failed { background: #ff5d5d; }
.tag-quorum { background: #9bd14b; } .tag-equivocation { background: #ff8c42; } .tag-genesis, .tag-admit,
  .tag-revoke { background: #c3cad6; }
#latency-plot .axis { stroke: #4b5563; }
#latency-plot .tick { fill: #9aa3b2; font-size: 10px; }
#latency-plot .sample { stroke: #0b0d12; stroke-width: 0.5; }
#latency-legend .key { margin-right: 10px; font-size: 12px; }
#latency-legend .key::before { content: ''; display: inline-block; width: 9px; height: 9px; margin-right: 4px;
  border-radius: 50%; background: var(--c); }
#plan-breakdown .plan { display: grid; grid-template-columns: 64px 1fr 40px; gap: 8px; align-items: center;
  font-size: 12px; margin-top: 4px; }
#plan-breakdown .track { height: 8px; background: #262d3a; border-radius: 4px; overflow: hidden; }
#plan-breakdown .bar { display: block; height: 100%; background: #4e9bff; }
#plan-breakdown .count { text-align: right; font-variant-numeric: tabular-nums; }
`;

/** The whole dashboard: one page, no external resources. */
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>robomesh fleet dashboard</title>
<style>${STYLE}</style>
</head>
<body data-updates="0">
<header><h1>robomesh</h1><span id="phase">connecting…</span><span id="clock"></span>
<span id="status">connecting</span></header>
<div id="partition-banner" role="alert" hidden></div>
<main>
<section><h2>Merged map</h2><canvas id="map-canvas" data-map-cells="0" width="480" height="120"></canvas></section>
<section><h2>Mesh</h2><svg id="mesh-graph" viewBox="0 0 400 300" role="img" aria-label="mesh graph"></svg></section>
<section><h2>Log</h2><ol id="log-feed"></ol></section>
<section><h2>Inference latency</h2>
<svg id="latency-plot" viewBox="0 0 400 200" role="img" aria-label="latency plot"></svg>
<div id="latency-legend"></div><div id="plan-breakdown"></div><div id="prediction"></div>
<p id="task-decisions">logged tasks: none yet</p></section>
</main>
<script>(${dashboardClient.toString()})();</script>
</body>
</html>
`;
