import { mkdtemp, rm, rmdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ChainManifest, encodeChainManifest } from '../protocol/chain-manifest.js';
import {
  ModelSlicer,
  SessionCache,
  buildChain,
  buildStage,
  builtinInputShape,
  loadModelArg,
  parseModel,
  profileModel,
  weightBytes,
} from '../nodes/inference/index.js';
import { identityFromSeed } from '../nodes/mesh/index.js';
import type { StreamStats } from '../nodes/scheduler/index.js';
import { prng } from '../nodes/util/index.js';
import { type Child, ask, dialAddrs, startRobotChild, waitForAdverts } from '../test/helpers/child.js';
import { type Row, table, writeResults } from './report.js';
import { cpuCgroup } from './split-common.js';

/**
 * bench:pipeline — a detector stream over 3 robots of equal speed (each its own process under a
 * CFS quota, as bench:split limits its requester), links shaped in-process at 20 Mbit/s + 2 ms.
 * Robot A takes the camera. Five arms, each a stream through a chain A routes:
 *   single          — the whole model on A;
 *   split           — the best two-party split (A then B), pipelined like the chain;
 *   pipeline        — three stages on A, B and C;
 *   pipeline, 2 × B/C — three stages, the middle one held by both B and C (frames alternate), the
 *                     first and last on A: where the link allows no balanced cuts, the heavy stage
 *                     is shared instead;
 *   pipeline, 3 × mid — the same, with A sharing the middle stage too (frames go to whichever
 *                     of A, B, C is expected to finish first).
 * Cuts are chosen for the link: boundaries are weighed as pipeline stages of their own. Each round
 * runs every arm in a fresh seeded order, at the stream's rate and at a rate that saturates the
 * arm (its capacity), at each CPU quota in turn (the quota changed live, the same robots).
 * Medians over rounds; ratios are within one run.
 */
const QUOTAS = (process.env.BENCH_CPU_LIMITS ?? '25,12').split(',').map(Number);
const CPU_LIMIT = QUOTAS[0];
const MBIT = Number(process.env.BENCH_MBIT ?? 20);
const FPS = Number(process.env.BENCH_FPS ?? 10);
const SATURATE_FPS = Number(process.env.BENCH_SATURATE_FPS ?? 40);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 15);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const PRECISION = 'int8' as const;
const DELAY_MS = 2;
const MODEL = 'builtin:ocr-det';
const CGROUP = '/sys/fs/cgroup/cpu/rmbench-pipeline';

type Stats = StreamStats & { order: number[] };
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const quantile = (xs: number[], q: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? NaN;
};

const dir = await mkdtemp(join(tmpdir(), 'rm-bench-pipeline-'));
const children: Child[] = [];
const cgroups: string[] = [];
try {
  const model = await loadModelArg(MODEL);
  const sessions = new SessionCache({ threads: 1 });
  const slicer = await ModelSlicer.open(model, sessions, { inputShapes: builtinInputShape(MODEL) });
  process.stdout.write('profiling the detector on a full core, to balance the stages\n');
  const profile = await profileModel(slicer, { runs: 5, warmup: 1, precision: PRECISION, threads: 1 });
  await sessions.close();
  // Under the quota every part is slower by about the same factor; the link is not.
  const scale = 100 / CPU_LIMIT;
  const plan = {
    precision: PRECISION,
    wholeMs: profile.wholeMs * scale,
    headMs: Object.fromEntries(profile.cuts.map((c) => [c.id, c.headMs * scale])),
    bytesPerSecond: (MBIT * 1e6) / 8,
  };
  const whole = buildStage(slicer.analysis, 'input', 'output', { in: 'fp32', out: 'fp32' }, { index: 0, of: 1 });
  const wholeParsed = parseModel(whole.bytes);
  const single: ChainManifest = {
    v: 1,
    model: model.hash,
    inputShapes: slicer.analysis.inputShapes,
    stages: [
      {
        hash: wholeParsed.hash,
        from: 'input',
        to: 'output',
        inPrecision: 'fp32',
        outPrecision: 'fp32',
        weightBytes: weightBytes(wholeParsed.proto),
        share: 1,
        outBytes: 0,
      },
    ],
  };
  const two = buildChain(slicer.analysis, { ...plan, stages: 2 });
  const three = buildChain(slicer.analysis, { ...plan, stages: 3 });
  // A holds the first and last stages of these: the outputs stay on A.
  const shared = buildChain(slicer.analysis, { ...plan, stages: 3, replicas: [1, 2, 1], outputsShipped: false });
  const shared3 = buildChain(slicer.analysis, { ...plan, stages: 3, replicas: [1, 3, 1], outputsShipped: false });
  const write = async (name: string, bytes: Uint8Array): Promise<string> => {
    const file = join(dir, name);
    await writeFile(file, bytes);
    return file;
  };
  const manifests: Record<string, string> = {};
  for (const [name, m] of [
    ['single', single],
    ['split', two.manifest],
    ['pipeline', three.manifest],
    ['pipeline, 2 × B/C', shared.manifest],
    ['pipeline, 3 × mid', shared3.manifest],
  ] as const) {
    manifests[name] = join(dir, `${name.replace(/\W+/g, '-')}.json`);
    await writeFile(manifests[name], encodeChainManifest(m));
  }
  // Who runs each stage of each arm. Arms may share a stage file (same span and precisions, so the
  // same hash): its robots hold it for every arm, and each stream pins its stages to its own.
  const placement: [string, { stages: { bytes: Uint8Array }[] }, ('a' | 'b' | 'c')[][]][] = [
    ['single', { stages: [whole] }, [['a']]],
    ['split', two, [['a'], ['b']]],
    ['pipeline', three, [['a'], ['b'], ['c']]],
    ['pipeline, 2 × B/C', shared, [['a'], ['b', 'c'], ['a']]],
    ['pipeline, 3 × mid', shared3, [['a'], ['a', 'b', 'c'], ['a']]],
  ];
  const holds = { a: [] as string[], b: [] as string[], c: [] as string[] };
  const pins: Record<string, ('a' | 'b' | 'c')[][]> = {};
  for (const [arm, chain, robots] of placement) {
    pins[arm] = robots;
    for (const [k, stage] of chain.stages.entries()) {
      const file = await write(`${parseModel(stage.bytes).hash.slice(0, 12)}.onnx`, stage.bytes);
      for (const r of robots[k]) if (!holds[r].includes(file)) holds[r].push(file);
    }
  }
  const spans = (m: ChainManifest): string =>
    m.stages.map((s) => `${s.from}→${s.to} ${(100 * s.share).toFixed(0)} %`).join(', ');
  process.stdout.write(
    `whole ${profile.wholeMs.toFixed(1)} ms on a full core; split: ${spans(two.manifest)}; ` +
      `pipeline: ${spans(three.manifest)}; 2 × B/C: ${spans(shared.manifest)}; 3 × mid: ${spans(shared3.manifest)}\n`,
  );

  const ids = await Promise.all([1, 2, 3].map((i) => identityFromSeed(new Uint8Array(32).fill(230 + i))));
  const members = ids.map((i) => i.peerId.toString());
  const seed = (k: number): string => Buffer.from(ids[k].seed).toString('hex');
  const names = ['a', 'b', 'c'] as const;
  let bootstrap: string[] = [];
  for (const [k, name] of names.entries()) {
    const cgroup = await cpuCgroup(`${CGROUP}-${name}`, CPU_LIMIT);
    if (cgroup) cgroups.push(cgroup);
    const limited = cgroup ? ['sh', '-c', `echo $$ > ${cgroup}/cgroup.procs && exec "$@"`, 'sh'] : [];
    const child = await startRobotChild(
      name,
      limited,
      { members, seed: seed(k), listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap, stages: holds[name] },
      300_000,
    );
    children.push(child);
    if (k === 0) bootstrap = dialAddrs(child, members[0]);
  }
  const [a] = children;
  for (const [k, child] of children.entries())
    for (const [j] of children.entries())
      if (j !== k) await ask(child, `shape ${members[j]} ${MBIT} ${DELAY_MS}`, 'shape');
  await waitForAdverts(a, 2);
  for (const m of Object.values(manifests)) await ask(a, `chain ${m}`, 'chain', 120_000);

  const arms = ['single', 'split', 'pipeline', 'pipeline, 2 × B/C', 'pipeline, 3 × mid'] as const;
  // BENCH_ARMS='name;…' runs only those (the summary then lacks the ratios that need the others).
  const only = process.env.BENCH_ARMS?.split(';');
  const chosen = arms.filter((arm) => !only || only.includes(arm));
  const pinned = (arm: string): string[][] => pins[arm].map((robots) => robots.map((r) => members[names.indexOf(r)]));
  type Arm = (typeof arms)[number];
  const rates = [
    { label: `${FPS} fps stream`, fps: FPS },
    { label: `offered ${SATURATE_FPS} fps (capacity)`, fps: SATURATE_FPS },
  ];
  const runs = new Map<string, Stats[]>();
  const random = prng(7);
  const setQuota = async (percent: number): Promise<void> => {
    for (const cgroup of cgroups) await writeFile(join(cgroup, 'cpu.cfs_quota_us'), String(Math.round(100 * percent)));
  };
  const levels = cgroups.length === 3 ? QUOTAS : [0];
  for (let round = 0; round < ROUNDS; round++) {
    for (const quota of levels) {
      await setQuota(quota);
      for (const rate of rates) {
        const order = chosen.map((arm) => ({ arm, r: random() })).sort((x, y) => x.r - y.r);
        for (const { arm } of order) {
          const frames = Math.round(rate.fps * SECONDS);
          const command = {
            manifest: manifests[arm],
            fps: rate.fps,
            frames,
            maxQueue: 2,
            window: 2,
            pinned: pinned(arm),
          };
          const stats = await ask<Stats>(a, `stream ${JSON.stringify(command)}`, 'stream', SECONDS * 1000 + 300_000);
          const key = `${quota}|${rate.label}|${arm}`;
          runs.set(key, [...(runs.get(key) ?? []), stats]);
          const fps = (1000 * stats.delivered) / stats.elapsedMs;
          const stages = stats.stages.map((x) => `${x.medianMs.toFixed(0)} (${Object.values(x.robots).join('/')})`);
          process.stdout.write(
            `round ${round + 1} quota ${quota} % ${rate.label} ${arm}: ${fps.toFixed(2)} fps, ` +
              `dropped ${stats.dropped}, failed ${stats.failed}; stage ms (runs per robot) ${stages.join(', ')}\n`,
          );
          a.lines.splice(0, Math.max(0, a.lines.length - 20));
        }
      }
    }
  }

  const rows: Row[] = [];
  const summary: Record<string, Record<Arm, { fps: number; p95: number }>> = {};
  const cases = levels.flatMap((quota) => rates.map((rate) => ({ quota, rate, key: `${quota}|${rate.label}` })));
  for (const { quota, rate, key } of cases) {
    summary[key] = {} as Record<Arm, { fps: number; p95: number }>;
    for (const arm of arms) {
      const list = runs.get(`${key}|${arm}`)!;
      const fps = median(list.map((s) => (1000 * s.delivered) / s.elapsedMs));
      const p95 = median(list.map((s) => quantile(s.latencies, 0.95)));
      const inOrder = list.every((s) => s.order.every((x, i) => i === 0 || x > s.order[i - 1]));
      summary[key][arm] = { fps, p95 };
      rows.push({
        quota: quota ? `${quota} %` : 'none',
        offered: rate.label,
        arm,
        'frames/s': fps,
        'p95 ms': p95,
        'p50 ms': median(list.map((s) => quantile(s.latencies, 0.5))),
        dropped: list.reduce((n, s) => n + s.dropped, 0),
        failed: list.reduce((n, s) => n + s.failed, 0),
        'max queue': Math.max(...list.map((s) => s.maxDepth)),
        'in order': inOrder ? 'yes' : 'NO',
      });
    }
  }
  const ratios: Row[] = cases.flatMap(({ quota, rate, key }) => {
    const s = summary[key];
    return (['pipeline', 'pipeline, 2 × B/C', 'pipeline, 3 × mid'] as const).map((arm) => ({
      quota: quota ? `${quota} %` : 'none',
      offered: rate.label,
      arm,
      '÷ single, frames/s': s[arm].fps / s.single.fps,
      '÷ split, frames/s': s[arm].fps / s.split.fps,
      '÷ single, p95': s[arm].p95 / s.single.p95,
      '÷ split, p95': s[arm].p95 / s.split.p95,
    }));
  });
  const throttle =
    cgroups.length === 3 ? `CFS quota ${QUOTAS.join(' then ')} % of a core each (cgroup, 10 ms period)` : 'NOT limited';
  process.stdout.write(
    `\n${throttle}; links ${MBIT} Mbit/s + ${DELAY_MS} ms; ${ROUNDS} rounds of ${SECONDS} s per arm and rate; ` +
      `medians over rounds\n${table(rows)}\n\n${table(ratios)}\n` +
      `goal: pipeline throughput ≥ 1.8× the best single robot\n`,
  );
  const path = await writeResults('pipeline', {
    throttle,
    link: `${MBIT} Mbit/s + ${DELAY_MS} ms, in-process shaper`,
    rounds: ROUNDS,
    secondsPerWindow: SECONDS,
    precision: PRECISION,
    wholeMsFullCore: profile.wholeMs,
    chains: {
      split: two.manifest.stages,
      pipeline: three.manifest.stages,
      shared: shared.manifest.stages,
      shared3: shared3.manifest.stages,
    },
    rows,
    ratios,
  });
  process.stdout.write(`wrote ${path}\n`);
} finally {
  await Promise.all(children.map((c) => c.stop()));
  await rm(dir, { recursive: true, force: true });
  // A cgroup goes once its processes have: retried for up to 5 s after the robots stop.
  for (const cgroup of cgroups)
    for (let i = 0; i < 50; i++) {
      try {
        await rmdir(cgroup);
        break;
      } catch {
        await new Promise((r) => setTimeout(r, 100));
      }
    }
}
