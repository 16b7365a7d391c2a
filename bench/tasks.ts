import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isDecided, MemoryBlobStore, lie } from '../nodes/tasks/index.js';
import { signerFromSeed } from '../protocol/ed25519.js';
import { signEntry, toHex } from '../protocol/log-entry.js';
import { fingerprintsAgree, resultFingerprint } from '../protocol/result-fingerprint.js';
import { type Tensor, decodeFrame } from '../protocol/tensor-frame.js';
import { builtinInputShape, textLikeImage } from '../nodes/inference/index.js';
import { MemoryLogStore } from '../nodes/ledger/index.js';
import { identityFromSeed, LinkShaper } from '../nodes/mesh/index.js';
import { Robot } from '../nodes/robot/index.js';
import { type Row, table, writeResults } from './report.js';

/**
 * bench:tasks — logged tasks decided by the task contract, against the unreplicated split run of
 * the same plan, on five robots running the PaddleOCR detector (1×3×320×320) with every link
 * shaped to RATE_MBIT in-process (LinkShaper: each robot paces what it sends). For f = 1 and
 * f = 2, with 0, 1 and 2 lying executors (r3, r4: consistent 'wrong' answers), without and with
 * a partition ({r0, r1} | {r2, r3, r4} while the tasks are posted, healed after the last).
 * Each scenario starts a fresh fleet (reputations from zero). All five robots share this process
 * (2 cores here): every executor's tail competes for the same CPU, which an actual fleet does not.
 */
const RATE_MBIT = Number(process.env.BENCH_RATE_MBIT ?? 20);
const TASKS = Number(process.env.BENCH_TASKS ?? 8);
const ROBOTS = 5;
const DETECTOR = { arg: 'builtin:ocr-det', inputShape: builtinInputShape('builtin:ocr-det') };

interface Scenario {
  f: number;
  liars: number;
  partition: boolean;
}

interface TaskSample {
  status: string;
  correct: boolean;
  /** Post to the log's final decision (partition runs: heal to final). */
  finalMs?: number;
  /** Post to the requester holding the answer's outputs (provisional in a partition). */
  answerMs: number;
  reassigned: number;
  splitMs: number;
}

const image = (seed: number): Tensor[] => [
  { name: 'x', dtype: 'float32', dims: [1, 3, 320, 320], data: textLikeImage(320, 320, seed) },
];
const median = (xs: number[]): number => percentile(xs, 0.5);
function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * (s.length - 1)))];
}

const blobsOf = new Map<Robot, MemoryBlobStore>();

async function startFleet(cache: string, run: number): Promise<Robot[]> {
  const identities = await Promise.all(
    Array.from({ length: ROBOTS }, (_, i) => identityFromSeed(new Uint8Array(32).fill(60 + i))),
  );
  const members = identities.map((i) => i.peerId.toString());
  const keys = identities.map((i) => toHex(i.privateKey.publicKey.raw));
  const genesis = signEntry(
    { seq: 1, lamport: 1, parents: [], payload: { type: 'genesis', fleet: 'bench', members: keys, admins: [keys[0]] } },
    signerFromSeed(identities[0].seed),
  ).bytes;
  const robots: Robot[] = [];
  for (const [i, identity] of identities.entries()) {
    const blobs = new MemoryBlobStore();
    const shaper = new LinkShaper();
    for (const m of members)
      if (m !== identity.peerId.toString()) shaper.set(m, { bytesPerSecond: (RATE_MBIT * 1e6) / 8, delayMs: 2 });
    robots.push(
      await Robot.start({
        name: `r${i}`,
        identity,
        fleet: { name: 'bench', members, bootstrap: robots.flatMap((r) => r.host.addresses()) },
        models: [DETECTOR],
        profileRuns: 3,
        cacheDir: cache,
        dataDir: join(cache, `run${run}-r${i}`),
        advertPeriodMs: 500,
        probeIntervalMs: 0,
        linkShaper: shaper,
        linkBytesPerSecond: (RATE_MBIT * 1e6) / 8,
        ledger: { store: new MemoryLogStore(), genesis, antiEntropyMs: 1000 },
        tasks: { blobs, tickMs: 100 },
      }),
    );
    blobsOf.set(robots[i], blobs);
  }
  const deadline = Date.now() + 60_000;
  while (!robots.every((r) => r.adverts.fresh().length === ROBOTS - 1) && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 100));
  return robots;
}

async function partition(robots: Robot[], groups: Robot[][]): Promise<void> {
  for (const g of groups) {
    const others = robots.filter((r) => !g.includes(r)).map((r) => r.peerId);
    for (const r of g) await r.host.partition(others);
  }
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline && !groups.every((g) => g.every((r) => r.host.connectedPeers().length === g.length - 1)))
    await new Promise((r) => setTimeout(r, 50));
}

async function runScenario(s: Scenario, cache: string, run: number): Promise<TaskSample[]> {
  const robots = await startFleet(cache, run);
  const [requester] = robots;
  const model = requester.models.hashes()[0];
  for (const liar of robots.slice(ROBOTS - s.liars)) liar.taskExecutor!.misbehave = lie('wrong');
  const samples: TaskSample[] = [];
  const pending: { task: string; postedAt: number; truth: ReturnType<typeof resultFingerprint>; sample: TaskSample }[] =
    [];
  try {
    // Warm every robot's sessions for the plans the tasks will use: first runs build sessions.
    for (let k = 0; k < 2; k++) await requester.inferTask(model, image(900 + k), { f: s.f, deadlineMs: 30_000 });
    if (s.partition) await partition(robots, [robots.slice(0, 2), robots.slice(2)]);
    for (let k = 0; k < TASKS; k++) {
      const inputs = image(k + 1);
      const postedAt = performance.now();
      const out = await requester.inferTask(model, inputs, { f: s.f, deadlineMs: 30_000 });
      const answerMs = performance.now() - postedAt;
      // Let every executor finish (the slowest answer comes after the decision) before timing the
      // unreplicated run, so it does not queue behind them.
      const t = requester.ledger!.state.tasks.get(out.task)!;
      await requester
        .ledger!.until(
          (st) => (st.tasks.get(out.task)?.results.length ?? 0) >= t.executors.length,
          AbortSignal.timeout(s.partition ? 100 : 10_000),
        )
        .catch(() => undefined); // an executor that never answers is what some rows measure
      // The honest answer: the task's tail run here on the input it committed to.
      const committed = decodeFrame((await blobsOf.get(requester)!.get(t.input))!);
      const truth = resultFingerprint(
        out.task,
        await requester.models.runFrom(model, t.cut, t.precision, 'channel', committed),
      );
      // The same plan unreplicated: one executor, no log.
      const t0 = performance.now();
      await requester.infer(model, inputs, {
        force: { kind: out.plan.kind, cut: out.plan.cut, precision: out.plan.precision },
        deadlineMs: 30_000,
      });
      const splitMs = performance.now() - t0;
      const sample: TaskSample = {
        status: out.status,
        correct: false,
        answerMs,
        reassigned: out.reassigned,
        splitMs,
      };
      if (!s.partition && out.decidedMs !== undefined) sample.finalMs = out.decidedMs;
      pending.push({ task: out.task, postedAt, truth, sample });
      samples.push(sample);
    }
    const healedAt = performance.now();
    if (s.partition) for (const r of robots) r.host.heal();
    // Wait (bounded) for every task to be decided in the requester's log.
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline && !pending.every((p) => isDecided(requester.ledger!.state.tasks.get(p.task))))
      await new Promise((r) => setTimeout(r, 20));
    for (const p of pending) {
      const t = requester.ledger!.state.tasks.get(p.task)!;
      p.sample.status = t.status;
      if (isDecided(t)) {
        p.sample.correct = fingerprintsAgree(t.decision!, p.truth);
        p.sample.finalMs ??= performance.now() - (s.partition ? healedAt : p.postedAt);
        p.sample.reassigned = t.assignments.length - 1;
      }
    }
  } finally {
    await Promise.allSettled(robots.map((r) => r.stop()));
  }
  return samples;
}

const cache = await mkdtemp(join(tmpdir(), 'rm-bench-tasks-'));
const rows: Row[] = [];
const scenarios: Scenario[] = [];
for (const f of [1, 2])
  for (const partition of [false, true]) for (const liars of [0, 1, 2]) scenarios.push({ f, liars, partition });
let run = 0;
try {
  for (const s of scenarios) {
    const samples = await runScenario(s, cache, run++);
    const decided = samples.filter((x) => x.status === 'final' || x.status === 'overturned');
    const finals = decided.map((x) => x.finalMs!).filter((x) => x !== undefined);
    const split = median(samples.map((x) => x.splitMs));
    const row: Row = {
      f: s.f,
      liars: s.liars,
      partition: s.partition ? 'yes' : 'no',
      tasks: samples.length,
      'decided %': (100 * decided.length) / samples.length,
      'correct %': (100 * decided.filter((x) => x.correct).length) / samples.length,
      reassignments: samples.reduce((a, x) => a + x.reassigned, 0),
      'answer p50 ms': median(samples.map((x) => x.answerMs)),
      'final p50 ms': median(finals),
      'final p95 ms': percentile(finals, 0.95),
      'split p50 ms': split,
      'final ÷ split': s.partition ? 'n/a' : median(finals) / split,
      'answer ÷ split': s.partition ? 'n/a' : median(samples.map((x) => x.answerMs)) / split,
    };
    rows.push(row);
    process.stdout.write(`${JSON.stringify(row)}\n`);
  }
} finally {
  await rm(cache, { recursive: true, force: true });
}
const heading =
  `bench:tasks — 5 robots in one process, PaddleOCR detector 1×3×320×320, links ${RATE_MBIT} Mbit/s ` +
  `(in-process shaping), ${TASKS} tasks per row after 2 warm-up tasks; liars r3, r4 answer 'wrong'; ` +
  'partition {r0, r1} | {r2, r3, r4} while the tasks are posted, healed after the last';
process.stdout.write(`\n${heading}\n\n${table(rows)}\n\n`);
process.stdout.write(
  'decided = final or overturned in the requester\u2019s log; correct = the decision ' +
    'agrees with the task\u2019s tail run by the requester on the committed input; ' +
    'final = until the requester\u2019s log decided the task (partition ' +
    'rows: from the heal); answer = until the requester held the ' +
    'outputs of an executor that agrees with it (the decision often comes ' +
    'first: results are small signed entries, outputs are tensors); ' +
    'split = the same plan (kind, cut, precision) run once on one executor without the log; ratios are of medians\n',
);
const path = await writeResults('tasks', { rateMbit: RATE_MBIT, tasksPerRow: TASKS, rows });
process.stdout.write(`results: ${path}\n`);
