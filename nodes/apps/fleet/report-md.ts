import type { FleetReport } from './fleet-report.js';

const pct = (x: number): string => `${(x * 100).toFixed(1)} %`;

/** The fleet report as Markdown (the JSON next to it holds the same figures). */
export function reportMarkdown(r: FleetReport): string {
  const a = r.audit;
  const groups = r.placement.map((g) => g.length).join(', ');
  const processes =
    r.processes === 'separate'
      ? 'one process each'
      : r.processes === 'sharded'
        ? `in ${r.placement.length} shared processes of ${groups} robots, round-robin`
        : 'in one process';
  const ms = r.inference.latencyMs;
  const plans =
    Object.entries(r.inference.plans)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ') || '—';
  const audited = a?.report?.live.checked
    ? `checked on the node (checkpoint ${a.report.live.checkpoint})`
    : 'not verified live';
  const lines = [
    `# robomesh fleet report`,
    '',
    `${r.robots.length} robots ` +
      `(${processes}), ` +
      `world ${r.scenario.world}, ${r.scenario.duration} s, seed ${r.scenario.seed}.`,
    '',
    '## Inference (logged tasks, k executors each)',
    '',
    `| tasks | failed | p50 ms | p90 ms | p99 ms | max ms | plans |`,
    `|---|---|---|---|---|---|---|`,
    `| ${r.inference.tasks} | ${r.inference.failed} | ${ms.p50.toFixed(1)} | ${ms.p90.toFixed(1)} | ` +
      `${ms.p99.toFixed(1)} | ${ms.max.toFixed(1)} | ${plans} |`,
    '',
    ...(r.inference.errors.length ? ['', `Failures: ${r.inference.errors.join('; ')}`] : []),
    '',
    `Logged task decisions in r0's log at the end: ${r.inference.decisions.final} final, ` +
      `${r.inference.decisions.provisional} provisional, ${r.inference.decisions.overturned} overturned, ` +
      `${r.inference.decisions.assigned + r.inference.decisions.open} undecided.`,
    '',
    r.exits.length
      ? `Early exits: ${r.exits
          .map((e) => `${e.robot} answered ${e.taken} of ${e.asked} (${pct(e.taken / e.asked)})`)
          .join(', ')}.`
      : 'Early exits: no request ran one (no exits attached, or none paid).',
    '',
    ...chainSection(r.chain),
    '## Partitions',
    '',
    r.heals.length ? '| heal at (s) | logs and maps converged after |\n|---|---|' : 'No partition in this scenario.',
    ...r.heals.map(
      (h) => `| ${h.at.toFixed(0)} | ${h.convergedMs === null ? 'not within 60 s' : `${h.convergedMs} ms`} |`,
    ),
    '',
    '## Links',
    '',
    r.links.length
      ? '| shaped at (s) | shaping | link end | shaped to | the robot estimates (transfers and probes) ' +
        '| estimate ÷ shaped | RTT |\n|---|---|---|---|---|---|---|'
      : 'No link shaping in this scenario (loopback at full speed).',
    ...r.links.flatMap((l) =>
      l.measured.length === 0
        ? [`| ${l.at.toFixed(0)} | ${l.shaping} | — | — | not measured yet | — | — |`]
        : l.measured.map(
            (m) =>
              `| ${l.at.toFixed(0)} | ${l.shaping} | ${m.from} → ${m.to} | ${m.shapedMbit.toFixed(2)} Mbit/s ` +
              `| ${m.measuredMbit.toFixed(2)} Mbit/s | ${(m.measuredMbit / m.shapedMbit).toFixed(2)} ` +
              `| ${m.rttMs.toFixed(0)} ms |`,
          ),
    ),
    '',
    '## Map',
    '',
    `Merged map against the simulator's ground truth: accuracy ${pct(r.map.accuracy)} of known ` +
      `cells, occupied IoU ${r.map.iou.toFixed(3)}, free space covered ${pct(r.map.coverage)}.`,
    '',
    '## Byzantine robots',
    '',
    `Scheduled: ${r.liars.scheduled.join(', ') || 'none'}. Flagged for ` +
      `their maps in the log: ${r.liars.flaggedInLog.join(', ') || 'none'}. ` +
      `Excluded by the log's reputation (from the map, assignments and quorums): ` +
      `${r.liars.excludedInLog.join(', ') || 'none'}; equivocations on record ${r.liars.equivocations}; ` +
      `forged entries rejected on gossip ${r.liars.forgedEntriesRejected}. Isolated ` +
      `by peers for bad answers: ${r.liars.isolatedByPeers.join(', ') || 'none'}.`,
    '',
    '## Anchoring and audit',
    '',
    `Anchored on ${r.anchoring.on}: ${r.anchoring.anchors} anchor(s) in r0's log.`,
    '',
    a?.report
      ? `Task \`${a.task}\` audited end to end: assigned to ` +
        `${a.report.assignments.reduce((n, x) => n + x.added.length, 0)} executors, ` +
        `${a.report.results.length} results with verified signatures, decision ` +
        `${a.report.decision.status} (digest ${a.report.decision.digest?.slice(0, 12)}…), ` +
        `${a.report.merkle.entries} entries proven in Merkle root ` +
        `${a.report.merkle.root.slice(0, 12)}… over ${a.report.merkle.count}, anchor tx ` +
        `${a.report.anchor.tx} ${audited}.`
      : a
        ? `Audit of task \`${a.task}\` failed: ${a.error}`
        : 'No final task to audit.',
    '',
    '## Resources',
    '',
    `RSS per robot ${r.resources.rssMbPerRobot.toFixed(0)} MB (max process ` +
      `${r.resources.maxRssMb.toFixed(0)} MB), CPU ${r.resources.cpuSeconds.toFixed(1)} s.`,
    '',
  ];
  return lines.join('\n');
}

/** The scenario's chain: stage holders, and the camera stream's fate, frame by frame. */
function chainSection(c: FleetReport['chain']): string[] {
  if (!c) return ['## Chain', '', 'No chain in this scenario.', ''];
  const st = c.stream;
  const runs = Object.entries(st.runs)
    .map(([robot, n]) => `${robot} ${n}`)
    .join(', ');
  return [
    '## Chain (pipelined stream)',
    '',
    `${c.from}'s camera offered ${c.fps} frames/s to the model as ${c.stages} ${c.precision} stages, held by ` +
      `${c.holders.map((h, k) => `stage ${k + 1}: ${h.join(', ')}`).join('; ')}.`,
    '',
    '| offered | delivered | dropped (oldest first) | failed | stage runs replaced | frames/s | p50 ms | p95 ms |',
    '|---|---|---|---|---|---|---|---|',
    `| ${st.offered} | ${st.delivered} | ${st.dropped} | ${st.failed} | ${st.replaced} | ${st.fps.toFixed(2)} | ` +
      `${st.p50Ms.toFixed(0)} | ${st.p95Ms.toFixed(0)} |`,
    '',
    `Stage runs per robot: ${runs || 'none'}.`,
    '',
  ];
}
