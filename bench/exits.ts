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
import { prng } from '../nodes/util/index.js';
import type { Plan } from '../nodes/scheduler/index.js';
import { type Child, ask, dialAddrs, startRobotChild, waitForAdverts } from '../test/helpers/child.js';
import { type Row, table, writeResults } from './report.js';
import { cpuCgroup } from './split-common.js';

/**
 * bench:exits — PaddleOCR's text-direction classifier (builtin:ocr-cls, pretrained) on text
 * lines rendered in the installed fonts, half upside down. Exits are fitted here on CALIB lines
 * (target 99 % agreement), then a weak requester (a CFS quota of CPU_LIMIT % of one core, as in
 * bench:split and bench:adapt, pinned to core 0) holding the exits and a full-speed peer (core 1)
 * run EVAL other lines at links shaped in-process both ways to 1, 5 and 20 Mbit/s (+2 ms).
 * The three attached exits are those that skip most compute (exit rate × share after the cut).
 * Every line goes through every arm, in a fresh seeded order, before the next line: the
 * scheduler with and without exits, and static plans (all-local; a split at each exit's cut at
 * int8, without and with the exit; the exit with its misses finished locally). Per rate: exit
 * rate, agreement of the answers with the whole model's, p50 latency and tensor bytes per
 * request with exits ÷ without, for the scheduler and for the best static arms of each kind.
 * Goal: p50 −30 % or better at 5 Mbit/s with ≥ 99 % agreement.
 */
const CPU_LIMIT = Number(process.env.BENCH_CPU_LIMIT ?? 25);
const RATES = (process.env.BENCH_RATES ?? '1,5,20').split(',').map(Number);
const CALIB = Number(process.env.BENCH_CALIB ?? 1000);
const EVAL = Number(process.env.BENCH_EVAL ?? 200);
const DELAY_MS = 2;
const MAX_EXITS = 3;
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
  // The exits worth attaching: the most compute skipped per request (exit rate × share after the
  // cut), three at most. Each attached exit is one more head session in the robot's cache.
  const shareOf = new Map(slicer.analysis.cuts.map((c) => [c.id, c.headShare]));
  const saving = (e: (typeof exits)[number]): number => e.info.exitRate * (1 - (shareOf.get(e.info.cut) ?? 1));
  const attached = [...exits].sort((a, b) => saving(b) - saving(a)).slice(0, MAX_EXITS);
  if (!attached.some((x) => x.info.exitRate > 0))
    throw new Error(`no exit answers at 99 % agreement from ${CALIB} calibration lines: BENCH_CALIB of 750 or more`);
  const files: string[] = [];
  for (const e of attached.filter((x) => x.info.exitRate > 0)) {
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
  const fitted: Row[] = exits.map((e) => ({
    cut: e.info.cut,
    'head share': shareOf.get(e.info.cut) ?? NaN,
    attached: attached.includes(e) ? 'yes' : '',
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
  const bootstrap = dialAddrs(requester, reqId);
  const peer = await startRobotChild(
    'peer',
    ['taskset', '-c', '1'],
    { ...common, seed: seed(1), cacheDir: join(dir, 'cache-peer'), listen: [], bootstrap, prewarm: 'tail' },
    600_000,
  );
  children.push(peer);
  await waitForAdverts(requester, 1);
  const tidy = (c: Child): void => void c.lines.splice(0, Math.max(0, c.lines.length - 50));
  const request = (image: number, noExits: boolean): Promise<Asked> =>
    ask<Asked>(requester, `ask ${JSON.stringify({ image, noExits })}`, 'ask', 120_000);

  const rows: Row[] = [];
  const armRows: Row[] = [];
  const attachedCuts = attached.filter((x) => x.info.exitRate > 0).map((e) => e.info.cut);
  for (const mbit of RATES) {
    await Promise.all([
      ask(requester, `shape ${peerId} ${mbit} ${DELAY_MS}`, 'shape'),
      ask(peer, `shape ${reqId} ${mbit} ${DELAY_MS}`, 'shape'),
    ]);
    for (let i = 0; i < 10; i++) await request(i, i % 2 === 0); // sessions and the link estimate settle
    // Arms, each asked every line in turn (line i goes through every arm before line i + 1): the
    // scheduler with and without exits, and static plans — all-local and a split at each attached
    // exit's cut (int8), each without and with the exit. The static arms show what exits can
    // give where the scheduler's noisy times (a 25 % quota makes every measured time bimodal)
    // mislead it.
    type Force = { kind: Plan['kind']; cut?: string; precision?: Plan['precision']; exit?: boolean };
    const arms: { name: string; exits: boolean; force?: Force }[] = [
      { name: 'scheduler', exits: true },
      { name: 'scheduler', exits: false },
      { name: 'local', exits: false, force: { kind: 'local', exit: false } },
      ...attachedCuts.flatMap((cut) => [
        { name: `local, exit@${cut}`, exits: true, force: { kind: 'local' as const, cut, exit: true } },
        {
          name: `split ${cut} int8`,
          exits: false,
          force: { kind: 'split' as const, cut, precision: 'int8' as const, exit: false },
        },
        {
          name: `exit@${cut}, split ${cut} int8`,
          exits: true,
          force: { kind: 'split' as const, cut, precision: 'int8' as const, exit: true },
        },
      ]),
    ];
    const results = arms.map(() => [] as Asked[]);
    const random = prng(mbit);
    for (let i = 0; i < EVAL; i++) {
      // A fresh order per line: under a CFS quota the arm that crosses the period's budget waits
      // ~7 ms, and a fixed order would hand that wait to the same arms every time.
      const order = arms.map((arm, k) => ({ arm, k, r: random() })).sort((a, b) => a.r - b.r);
      for (const { arm, k } of order)
        results[k].push(
          await ask<Asked>(
            requester,
            `ask ${JSON.stringify({ image: i, noExits: !arm.exits, force: arm.force })}`,
            'ask',
            120_000,
          ),
        );
      if (i % 10 === 9) tidy(requester);
    }
    const bytes = (xs: Asked[]): number => mean(xs.map((a) => (a.bytes ? a.bytes.sent + a.bytes.received : 0)));
    const agreement = (xs: Asked[]): number => xs.filter((a, i) => a.top === wholeTop[i]).length / xs.length;
    const usual = (xs: Asked[]): string => {
      const counts = new Map<string, number>();
      for (const a of xs) counts.set(planName(a, reqId), (counts.get(planName(a, reqId)) ?? 0) + 1);
      const [name, n] = [...counts].sort((a, b) => b[1] - a[1])[0];
      return `${name} (${n})`;
    };
    const summary = results.map((xs, k) => ({
      arm: arms[k],
      p50: median(xs.map((a) => a.ms)),
      exitRate: xs.filter((a) => a.exit?.taken).length / xs.length,
      agreement: agreement(xs),
      bytes: bytes(xs),
      usual: usual(xs),
    }));
    for (const x of summary)
      process.stdout.write(
        `  ${mbit} Mbit/s ${x.arm.force ? x.arm.name : `scheduler ${x.arm.exits ? 'with' : 'without'} exits`}: ` +
          `p50 ${x.p50.toFixed(2)} ms, exit rate ${x.exitRate.toFixed(2)}, agreement ${x.agreement.toFixed(3)}, ` +
          `${x.bytes.toFixed(0)} B/request${x.arm.force ? '' : `, usually ${x.usual}`}\n`,
      );
    const [withExits, without] = summary;
    const statics = summary.slice(2);
    // The fastest static arm of each kind whose answers keep the target agreement.
    const best = (exits: boolean) =>
      statics.filter((x) => x.arm.exits === exits && x.agreement >= 0.99).sort((a, b) => a.p50 - b.p50)[0] ??
      statics.filter((x) => x.arm.exits === exits)[0];
    const bestWith = best(true);
    const bestWithout = best(false);
    rows.push({
      'link Mbit/s': mbit,
      requests: EVAL,
      'scheduler: exit rate': withExits.exitRate,
      'scheduler: agreement with exits': withExits.agreement,
      'scheduler: p50 with ÷ without': withExits.p50 / without.p50,
      'scheduler: bytes with ÷ without':
        without.bytes > 0 ? withExits.bytes / without.bytes : withExits.bytes > 0 ? 'inf' : '0 / 0',
      'scheduler: usual plan with exits': withExits.usual,
      'best static with exits': bestWith.arm.name,
      'its exit rate': bestWith.exitRate,
      'its agreement': bestWith.agreement,
      'p50 ms': bestWith.p50,
      'best static without': bestWithout.arm.name,
      'p50 ms without': bestWithout.p50,
      'best p50 with ÷ without': bestWith.p50 / bestWithout.p50,
      'bytes with ÷ without':
        bestWithout.bytes > 0 ? bestWith.bytes / bestWithout.bytes : bestWith.bytes > 0 ? 'inf' : '0 / 0',
    });
    arms.forEach((arm, k) =>
      armRows.push({
        'link Mbit/s': mbit,
        arm: arm.force ? arm.name : `scheduler, exits ${arm.exits ? 'on' : 'off'}`,
        'p50 ms': summary[k].p50,
        'exit rate': summary[k].exitRate,
        agreement: summary[k].agreement,
        'bytes/request': summary[k].bytes,
      }),
    );
  }
  const heading =
    `bench:exits — ${MODEL} on ${EVAL} rendered text lines (exits fitted on ${CALIB} others), requester ` +
    `${cgroup ? `under a CFS quota of ${CPU_LIMIT} % of a core` : 'NOT CPU-limited: no cgroup'}, one full-speed ` +
    `peer, links shaped in-process both ways (+${DELAY_MS} ms); goal: p50 with ÷ without ≤ 0.7 at 5 Mbit/s, ` +
    `agreement ≥ 99 %`;
  process.stdout.write(`\n${heading}\n\n${table(rows)}\n\nEvery arm:\n\n${table(armRows)}\n`);
  const path = await writeResults('exits', {
    cpuLimit: cgroup ? CPU_LIMIT : null,
    calibration: CALIB,
    evaluation: EVAL,
    fitted,
    rows,
    arms: armRows,
  });
  process.stdout.write(`results: ${path}\n`);
} finally {
  await Promise.all(children.map((c) => c.stop()));
  await rm(dir, { recursive: true, force: true });
}
