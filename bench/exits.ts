import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ModelSlicer,
  SessionCache,
  builtinInputShape,
  fitExits,
  loadCalibration,
  loadModelArg,
  renderTextLines,
} from '../nodes/inference/index.js';
import { identityFromSeed } from '../nodes/mesh/index.js';
import type { Plan } from '../nodes/scheduler/index.js';
import { type Child, ask, startRobotChild } from '../test/helpers/child.js';
import { type Row, table, writeResults } from './report.js';
import { cpuCgroup } from './split-common.js';

/**
 * bench:exits — PaddleOCR's text-direction classifier (builtin:ocr-cls, pretrained) on text
 * lines rendered in the installed fonts, half upside down. Exits are fitted here on CALIB lines
 * (target 99 % agreement), then a weak requester (a CFS quota of CPU_LIMIT % of one core, as in
 * bench:split and bench:adapt, pinned to core 0) holding the exits and a full-speed peer (core 1)
 * run EVAL other lines at links shaped in-process both ways to 1, 5 and 20 Mbit/s (+2 ms).
 * Each line is asked twice in a row, with exits and without (the scheduler choosing everything
 * else both times), so machine drift hits both alike. Per rate: exit rate, agreement of the
 * answers with the whole model's, p50 latency and tensor bytes per request with exits ÷ without.
 * Goal: p50 −30 % or better at 5 Mbit/s with ≥ 99 % agreement.
 */
const CPU_LIMIT = Number(process.env.BENCH_CPU_LIMIT ?? 25);
const RATES = (process.env.BENCH_RATES ?? '1,5,20').split(',').map(Number);
const CALIB = Number(process.env.BENCH_CALIB ?? 400);
const EVAL = Number(process.env.BENCH_EVAL ?? 200);
const DELAY_MS = 2;
const CGROUP = '/sys/fs/cgroup/cpu/rmbench-exits';
const MODEL = 'builtin:ocr-cls';
const SHAPE = { x: [1, 3, 48, 192] };

interface Asked {
  plan: Plan;
  executor: string;
  ms: number;
  failovers: number;
  exit?: { cut: string; taken: boolean; confidence: number };
  bytes?: { sent: number; received: number };
  top: number;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
const planName = (a: Asked, requester: string): string =>
  `${a.plan.exit ? `exit@${a.plan.cut} then ` : ''}${a.plan.kind}` +
  `${a.plan.kind === 'split' ? ` ${a.plan.cut} ${a.plan.precision}` : ''}` +
  `${a.plan.peer && a.plan.peer !== requester ? ' → peer' : ''}`;

const dir = await mkdtemp(join(tmpdir(), 'rm-bench-exits-'));
const children: Child[] = [];
try {
  process.stdout.write(`rendering ${CALIB} calibration and ${EVAL} evaluation lines\n`);
  const calibDir = join(dir, 'calib');
  const evalDir = join(dir, 'eval');
  await renderTextLines(calibDir, { count: CALIB, seed: 5 });
  await renderTextLines(evalDir, { count: EVAL, seed: 77 });

  const sessions = new SessionCache({ threads: 1 });
  const slicer = await ModelSlicer.open(await loadModelArg(MODEL), sessions, {
    inputShapes: builtinInputShape(MODEL),
  });
  const input = { name: 'x', shape: SHAPE.x };
  const exits = await fitExits(slicer, await loadCalibration(calibDir, input), { seed: 1 });
  const files: string[] = [];
  for (const e of exits.filter((x) => x.info.exitRate > 0)) {
    const file = join(dir, `exit-${e.info.cut}.onnx`);
    await writeFile(file, e.bytes);
    files.push(file);
  }
  const evalFeeds = await loadCalibration(evalDir, input);
  const output = slicer.analysis.index.outputs[0];
  const wholeTop: number[] = [];
  for (const f of evalFeeds) {
    const s = (await slicer.runWhole(f))[output].data as Float32Array;
    wholeTop.push(s.indexOf(Math.max(...s)));
  }
  await sessions.close();
  const shares = new Map(slicer.analysis.cuts.map((c) => [c.id, c.headShare]));
  const fitted: Row[] = exits.map((e) => ({
    cut: e.info.cut,
    'head share': shares.get(e.info.cut) ?? NaN,
    'exit rate (fit test share)': e.info.exitRate,
    'agreement (fit test share)': e.info.agreement,
    threshold: e.info.threshold > 1 ? 'never' : e.info.threshold,
  }));
  process.stdout.write(`${table(fitted)}\n`);

  const ids = await Promise.all([1, 2].map((i) => identityFromSeed(new Uint8Array(32).fill(220 + i))));
  const members = ids.map((i) => i.peerId.toString());
  const [reqId, peerId] = members;
  const cgroup = await cpuCgroup(CGROUP, CPU_LIMIT);
  const limited = cgroup ? ['sh', '-c', `echo $$ > ${cgroup}/cgroup.procs && exec "$@"`, 'sh'] : [];
  const seed = (k: number): string => Buffer.from(ids[k].seed).toString('hex');
  const common = { members, model: MODEL, inputShape: SHAPE, profileRuns: 10 };
  const requester = await startRobotChild(
    'requester',
    ['taskset', '-c', '0', ...limited],
    {
      ...common,
      seed: seed(0),
      cacheDir: join(dir, 'cache-requester'),
      listen: ['/ip4/127.0.0.1/tcp/0'],
      bootstrap: [],
      prewarm: 'head',
      exits: files,
      images: evalDir,
    },
    600_000,
  );
  children.push(requester);
  const { addrs } = requester.lines.find((l) => l.tag === 'ready')!.value as { addrs: string[] };
  const bootstrap = addrs.map((x) => (x.includes('/p2p/') ? x : `${x}/p2p/${reqId}`));
  const peer = await startRobotChild(
    'peer',
    ['taskset', '-c', '1'],
    { ...common, seed: seed(1), cacheDir: join(dir, 'cache-peer'), listen: [], bootstrap, prewarm: 'tail' },
    600_000,
  );
  children.push(peer);
  for (let i = 0; i < 600; i++) {
    const adverts = await ask<Record<string, number>>(requester, 'adverts', 'adverts');
    if (Object.keys(adverts).length === 1) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const tidy = (c: Child): void => void c.lines.splice(0, Math.max(0, c.lines.length - 50));
  const request = (image: number, noExits: boolean): Promise<Asked> =>
    ask<Asked>(requester, `ask ${JSON.stringify({ image, noExits })}`, 'ask', 120_000);

  const rows: Row[] = [];
  for (const mbit of RATES) {
    await Promise.all([
      ask(requester, `shape ${peerId} ${mbit} ${DELAY_MS}`, 'shape'),
      ask(peer, `shape ${reqId} ${mbit} ${DELAY_MS}`, 'shape'),
    ]);
    for (let i = 0; i < 10; i++) await request(i, i % 2 === 0); // sessions and the link estimate settle
    const withExits: Asked[] = [];
    const without: Asked[] = [];
    for (let i = 0; i < EVAL; i++) {
      withExits.push(await request(i, false));
      without.push(await request(i, true));
      if (i % 20 === 19) tidy(requester);
    }
    const bytes = (xs: Asked[]): number => mean(xs.map((a) => (a.bytes ? a.bytes.sent + a.bytes.received : 0)));
    const agreement = (xs: Asked[]): number => xs.filter((a, i) => a.top === wholeTop[i]).length / xs.length;
    const usual = (xs: Asked[]): string => {
      const counts = new Map<string, number>();
      for (const a of xs) counts.set(planName(a, reqId), (counts.get(planName(a, reqId)) ?? 0) + 1);
      const [name, n] = [...counts].sort((a, b) => b[1] - a[1])[0];
      return `${name} (${n})`;
    };
    const p50With = median(withExits.map((a) => a.ms));
    const p50Without = median(without.map((a) => a.ms));
    const bytesWith = bytes(withExits);
    const bytesWithout = bytes(without);
    rows.push({
      'link Mbit/s': mbit,
      requests: EVAL,
      'exit rate': withExits.filter((a) => a.exit?.taken).length / EVAL,
      'agreement with exits': agreement(withExits),
      'agreement without': agreement(without),
      'p50 ms with exits': p50With,
      'p50 ms without': p50Without,
      'p50 with ÷ without': p50With / p50Without,
      'bytes/request with': bytesWith,
      'bytes/request without': bytesWithout,
      'bytes with ÷ without': bytesWithout > 0 ? bytesWith / bytesWithout : bytesWith > 0 ? 'inf' : '0 / 0',
      'usual plan with exits': usual(withExits),
      'usual plan without': usual(without),
    });
    process.stdout.write(
      `  ${mbit} Mbit/s: p50 ${p50With.toFixed(2)} ms with exits, ${p50Without.toFixed(2)} without\n`,
    );
  }
  const heading =
    `bench:exits — ${MODEL} on ${EVAL} rendered text lines (exits fitted on ${CALIB} others), requester ` +
    `${cgroup ? `under a CFS quota of ${CPU_LIMIT} % of a core` : 'NOT CPU-limited: no cgroup'}, one full-speed ` +
    `peer, links shaped in-process both ways (+${DELAY_MS} ms); goal: p50 with ÷ without ≤ 0.7 at 5 Mbit/s, ` +
    `agreement ≥ 99 %`;
  process.stdout.write(`\n${heading}\n\n${table(rows)}\n`);
  const path = await writeResults('exits', {
    cpuLimit: cgroup ? CPU_LIMIT : null,
    calibration: CALIB,
    evaluation: EVAL,
    fitted,
    rows,
  });
  process.stdout.write(`results: ${path}\n`);
} finally {
  await Promise.all(children.map((c) => c.stop()));
  await rm(dir, { recursive: true, force: true });
}
