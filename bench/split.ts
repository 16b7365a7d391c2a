import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, rmdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { identityFromSeed } from '../nodes/mesh/index.js';
import { ThrottledLink, burstFor } from './link-throttle.js';
import { type Row, table, writeResults } from './report.js';
import { RAW_PORT_OFFSET, cpuCgroup } from './split-common.js';

/**
 * bench:split — a weaker requesting robot (its process under a real CPU limit: a CFS bandwidth
 * quota in its own cgroup, 10 ms period, or Debian's cpulimit where cgroups are not writable)
 * and a full-speed peer, joined by a link shaped to each rate. For every rate: all-local, full
 * offload, every static (cut, precision) and the scheduler's own choice; then protocol
 * throughput vs raw TCP.
 * Link shaping, as root: two network namespaces joined by a veth pair, both ends shaped with tc
 * tbf. Without root (or with BENCH_SHAPING=inprocess): both robots on loopback, the requester
 * reaching the peer through a relay in this process whose token buckets shape both directions
 * to the same rate (bench/link-throttle.ts), raw TCP baseline included. Tables and JSON say which.
 */
const RATES_MBIT = (process.env.BENCH_RATES ?? '1,5,20,100').split(',').map(Number);
/**
 * Both robots' yamux window (linkBytesPerSecond): ~1 s of the slowest link, 256 KiB at least
 * (host.ts). The robots keep it across every rate, so it is sized for the slowest: with 1 MiB, a
 * 1 Mbit/s link queued 8 s of tensor ahead of the connection monitor's ping and the connection
 * was aborted mid-round.
 */
const WINDOW = Math.max(256 * 1024, Math.round((Math.min(...RATES_MBIT) * 1e6) / 8));

/** Idle time for either shaper's token bucket (same burst) to refill, before each timed frame. */
const settleMs = (mbit: number | undefined): number =>
  mbit === undefined ? 0 : Math.ceil((1000 * burstFor((mbit * 1e6) / 8)) / ((mbit * 1e6) / 8)) + 10;
const CPU_LIMIT = Number(process.env.BENCH_CPU_LIMIT ?? 25);
const REPS = Number(process.env.BENCH_REPS ?? 3);
const NS_A = 'rmbench-a';
const NS_B = 'rmbench-b';
const IP_A = '10.77.0.1';
const IP_B = '10.77.0.2';
const PORT = 4100;
const CGROUP = '/sys/fs/cgroup/cpu/rmbench-requester';

const here = (f: string): string => fileURLToPath(new URL(f, import.meta.url));
const sh = (cmd: string, args: string[]): string =>
  execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

function haveTool(tool: string): boolean {
  try {
    sh('sh', ['-c', `command -v ${tool}`]);
    return true;
  } catch {
    return false;
  }
}

function teardown(): void {
  for (const ns of [NS_A, NS_B]) {
    try {
      sh('ip', ['netns', 'del', ns]);
    } catch {
      // not there
    }
  }
}

function setupNamespaces(): void {
  teardown();
  const steps: string[][] = [
    ['netns', 'add', NS_A],
    ['netns', 'add', NS_B],
    ['link', 'add', 'rmb-va', 'type', 'veth', 'peer', 'name', 'rmb-vb'],
    ['link', 'set', 'rmb-va', 'netns', NS_A],
    ['link', 'set', 'rmb-vb', 'netns', NS_B],
    ['-n', NS_A, 'addr', 'add', `${IP_A}/24`, 'dev', 'rmb-va'],
    ['-n', NS_B, 'addr', 'add', `${IP_B}/24`, 'dev', 'rmb-vb'],
    ['-n', NS_A, 'link', 'set', 'rmb-va', 'up'],
    ['-n', NS_B, 'link', 'set', 'rmb-vb', 'up'],
    ['-n', NS_A, 'link', 'set', 'lo', 'up'],
    ['-n', NS_B, 'link', 'set', 'lo', 'up'],
  ];
  for (const s of steps) sh('ip', s);
}

function shape(mbit: number | undefined): void {
  for (const [ns, dev] of [
    [NS_A, 'rmb-va'],
    [NS_B, 'rmb-vb'],
  ]) {
    try {
      sh('ip', ['netns', 'exec', ns, 'tc', 'qdisc', 'del', 'dev', dev, 'root']);
    } catch {
      // no qdisc yet
    }
    if (mbit !== undefined) {
      const burst = burstFor((mbit * 1e6) / 8);
      sh('ip', [
        'netns',
        'exec',
        ns,
        'tc',
        'qdisc',
        'add',
        'dev',
        dev,
        'root',
        'tbf',
        'rate',
        `${mbit}mbit`,
        'burst',
        String(burst),
        'latency',
        '200ms',
      ]);
    }
  }
}

interface Proc {
  child: ChildProcess;
  next: (tag: string) => Promise<unknown>;
  send: (line: string) => void;
}

function start(cmd: string, args: string[]): Proc {
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'inherit'] });
  const waiting: { tag: string; resolve: (v: unknown) => void; reject: (e: Error) => void }[] = [];
  createInterface({ input: child.stdout! }).on('line', (line) => {
    const tag = line.split(' ')[0];
    const w = waiting[0];
    if (!w) return;
    if (tag === 'error') {
      waiting.shift();
      w.reject(new Error(line));
    } else if (tag === w.tag) {
      waiting.shift();
      w.resolve(JSON.parse(line.slice(tag.length + 1)));
    }
  });
  child.on('exit', (code) => {
    for (const w of waiting.splice(0)) w.reject(new Error(`${cmd} exited with ${code}`));
  });
  return {
    child,
    next: (tag) => new Promise((resolve, reject) => waiting.push({ tag, resolve, reject })),
    send: (line) => void child.stdin!.write(`${line}\n`),
  };
}

interface RoundResult {
  results: {
    config: string;
    kind: string;
    predictedMs: number;
    medianMs?: number;
    runs: number;
    skipped?: string;
    executors: string[];
    parts?: Record<string, number>;
  }[];
  scheduler: { medianMs: number; chosen: string[]; best: string; bestMs: number; pairs: number };
  link: { bandwidth: number; rttMs: number };
}

type Shaping = 'tc' | 'inprocess';

/** tc where we can (root, iproute2); BENCH_SHAPING=inprocess forces the fallback, =tc insists on tc. */
function chooseShaping(): Shaping {
  const isRoot = process.getuid?.() === 0;
  const canTc = isRoot && haveTool('tc') && haveTool('ip');
  const wanted = process.env.BENCH_SHAPING;
  if (wanted === 'inprocess') return 'inprocess';
  if (wanted === 'tc') {
    if (!canTc) throw new Error('BENCH_SHAPING=tc needs root and iproute2 (ip, tc)');
    return 'tc';
  }
  if (wanted) throw new Error(`BENCH_SHAPING must be tc or inprocess, not '${wanted}'`);
  return canTc ? 'tc' : 'inprocess';
}

async function main(): Promise<void> {
  const shaping = chooseShaping();
  const netns = shaping === 'tc'; // robots in namespaces behind tc; otherwise loopback behind the relay
  const isRoot = process.getuid?.() === 0;
  const cgroup = isRoot ? await cpuCgroup(CGROUP, CPU_LIMIT) : undefined;
  const cpulimit = !cgroup && haveTool('cpulimit');
  const throttle = cgroup
    ? `CFS quota ${CPU_LIMIT} % of a core (cgroup, 10 ms period)`
    : cpulimit
      ? `cpulimit ${CPU_LIMIT} %`
      : 'NOT limited (no cgroup, no cpulimit)';
  const why =
    process.env.BENCH_SHAPING === 'inprocess' ? 'forced by BENCH_SHAPING=inprocess' : 'no root or no iproute2';
  const mode = netns
    ? 'network namespaces, veth shaped with tc tbf'
    : `loopback through an in-process token-bucket relay, both directions shaped (${why}; no kernel shaping)`;
  const shapingLabel = netns ? 'tc tbf (veth)' : 'in-process token bucket';
  process.stderr.write(`bench:split — ${mode}; requester CPU: ${throttle}\n`);
  const dir = await mkdtemp(join(tmpdir(), 'robomesh-bench-split-'));
  const seeds = [randomBytes(32), randomBytes(32)];
  const ids = await Promise.all(seeds.map((s) => identityFromSeed(s)));
  const members = ids.map((i) => i.peerId.toString()).join(',');
  const node = process.execPath;
  const inNs = (ns: string, argv: string[]): [string, string[]] =>
    netns ? ['ip', ['netns', 'exec', ns, ...argv]] : [argv[0], argv.slice(1)];
  const hostA = netns ? IP_A : '127.0.0.1';
  const hostB = netns ? IP_B : '127.0.0.1';
  if (netns) setupNamespaces();
  const link = netns ? undefined : new ThrottledLink();
  const setRate = (mbit: number | undefined): void => {
    if (netns) shape(mbit);
    else link!.setRate(mbit === undefined ? undefined : (mbit * 1e6) / 8);
  };
  const procs: Proc[] = [];
  const cleanup = (): void => {
    for (const p of procs) p.child.kill('SIGTERM');
    if (netns) teardown();
  };
  const removeCgroup = async (): Promise<void> => {
    for (let i = 0; cgroup && i < 50; i++) {
      try {
        await rmdir(cgroup);
        return;
      } catch {
        await new Promise((r) => setTimeout(r, 100)); // its process is still exiting
      }
    }
  };
  process.on('SIGINT', () => {
    cleanup();
    process.exit(130);
  });
  try {
    const peer = start(
      ...inNs(NS_B, [
        node,
        here('./split-peer.js'),
        '--host',
        hostB,
        '--port',
        String(PORT),
        '--dir',
        dir,
        '--seed',
        seeds[1].toString('hex'),
        '--members',
        members,
        '--window',
        String(WINDOW),
      ]),
    );
    procs.push(peer);
    await peer.next('ready');
    process.stderr.write('peer ready; starting the requester (it profiles the detector under its CPU limit)\n');
    // Without tc, the requester reaches both of the peer's ports only through the shaping relay.
    const [peerPort, peerRawPort] = link
      ? [await link.relay(hostB, PORT), await link.relay(hostB, PORT + RAW_PORT_OFFSET)]
      : [PORT, PORT + RAW_PORT_OFFSET];
    if (link) link.setRate(undefined);
    const requesterArgv = [
      ...[
        node,
        here('./split-requester.js'),
        '--host',
        hostA,
        '--dir',
        dir,
        '--seed',
        seeds[0].toString('hex'),
        '--members',
        members,
      ],
      ...[
        '--peer-host',
        hostB,
        '--peer-port',
        String(peerPort),
        '--peer-raw-port',
        String(peerRawPort),
        '--peer-id',
        ids[1].peerId.toString(),
      ],
      ...['--via-relay', link ? '1' : '0', '--window', String(WINDOW)],
    ];
    const [cmd, argv] = inNs(
      NS_A,
      cpulimit ? ['cpulimit', '-l', String(CPU_LIMIT), '-f', '-q', '--', ...requesterArgv] : requesterArgv,
    );
    const quote = (a: string): string => `'${a.replace(/'/g, `'\\''`)}'`;
    const requester = cgroup
      ? start('sh', ['-c', `echo $$ > ${CGROUP}/cgroup.procs && exec ${[cmd, ...argv].map(quote).join(' ')}`])
      : start(cmd, argv);
    procs.push(requester);
    const ready = (await requester.next('ready')) as { wholeMs: number };
    requester.send('pid');
    const { pid } = (await requester.next('pid')) as { pid: number };
    // Throughput compares protocols, not CPUs: the requester runs it outside its CPU quota.
    const cpuQuota = async (on: boolean): Promise<void> => {
      if (cgroup) await writeFile(on ? join(cgroup, 'cgroup.procs') : '/sys/fs/cgroup/cpu/cgroup.procs', String(pid));
    };
    process.stderr.write(`requester ready: whole detector ${ready.wholeMs.toFixed(1)} ms at its CPU limit\n`);

    const rounds: { rate: string; round: RoundResult; throughput: unknown }[] = [];
    for (const rate of RATES_MBIT) {
      const label = `${rate} Mbit/s`;
      setRate(rate);
      process.stderr.write(`link ${label}: measuring every plan…\n`);
      requester.send(`round ${JSON.stringify({ reps: REPS, budgetMs: 20_000 })}`);
      let round: RoundResult;
      try {
        round = (await requester.next('result')) as RoundResult;
      } catch (err) {
        process.stderr.write(`link ${label}: round failed: ${(err as Error).message}\n`);
        continue;
      }
      const sizesMb = rate <= 1 ? [1] : [1, 2, 4];
      await cpuQuota(false);
      requester.send(`throughput ${JSON.stringify({ sizesMb, reps: rate <= 5 ? 1 : REPS, settleMs: settleMs(rate) })}`);
      const throughput = await requester.next('throughput');
      await cpuQuota(true);
      rounds.push({ rate: label, round, throughput });
    }
    const unshapedLabel = netns ? 'veth, unshaped' : 'loopback relay, unshaped';
    setRate(undefined);
    process.stderr.write(`${unshapedLabel}: throughput\n`);
    await cpuQuota(false);
    requester.send(`throughput ${JSON.stringify({ sizesMb: [1, 2, 4], reps: REPS })}`);
    const unshaped = await requester.next('throughput');
    requester.send('quit');

    const summary: Row[] = [];
    const detail: Row[] = [];
    const tput: Row[] = [];
    for (const { rate, round, throughput } of rounds) {
      const measured = round.results.filter((r) => r.medianMs !== undefined);
      const local = measured.find((r) => r.kind === 'local')!;
      const offload = measured.find((r) => r.kind === 'offload');
      const statics = measured.filter((r) => r.executors.every((e) => e === (r.kind === 'local' ? 'local' : 'peer')));
      const best = statics.reduce((a, b) => (a.medianMs! <= b.medianMs! ? a : b));
      const splits = statics.filter((r) => r.kind === 'split');
      const bestSplit = splits.length ? splits.reduce((a, b) => (a.medianMs! <= b.medianMs! ? a : b)) : undefined;
      const worse = Math.max(local.medianMs!, offload?.medianMs ?? 0);
      summary.push({
        link: rate,
        'local ms': local.medianMs!,
        'offload ms': offload?.medianMs ?? 'n/a',
        'best static': best.config,
        'best static ms': best.medianMs!,
        'paired: best static ms': round.scheduler.bestMs,
        'paired: scheduler ms': round.scheduler.medianMs,
        'scheduler ÷ best (paired)': round.scheduler.medianMs / round.scheduler.bestMs,
        'scheduler chose': [...new Set(round.scheduler.chosen)].join(' / '),
        'split wins': best.kind === 'split' ? 'yes' : 'no',
        'best split ÷ worse(local, offload)': bestSplit ? worse / bestSplit.medianMs! : 'n/a',
        'link est. MB/s': round.link.bandwidth / 1000,
      });
      for (const r of round.results) {
        const part = (k: string): number | string => r.parts?.[k] ?? '';
        detail.push({
          link: rate,
          plan: r.config,
          'predicted ms': r.predictedMs,
          'median ms': r.medianMs ?? r.skipped ?? '',
          'head ms': part('headMs'),
          'remote ms': part('remoteMs'),
          'remote compute ms': part('remoteComputeMs'),
          'local ms': part('localMs'),
          'ran on': [...new Set(r.executors)].join('/'),
          runs: r.runs,
        });
      }
      for (const t of throughput as {
        mb: number;
        rawMBps: number;
        oursMBps: number;
        ratio: number;
        error?: string;
      }[]) {
        tput.push({
          link: rate,
          shaping: shapingLabel,
          'frame MB': t.mb,
          'raw TCP MB/s': t.rawMBps,
          'robomesh MB/s': t.oursMBps,
          'robomesh ÷ raw': t.ratio,
          error: t.error ?? '',
        });
      }
    }
    for (const t of unshaped as { mb: number; rawMBps: number; oursMBps: number; ratio: number; error?: string }[]) {
      tput.push({
        link: unshapedLabel,
        shaping: 'none',
        'frame MB': t.mb,
        'raw TCP MB/s': t.rawMBps,
        'robomesh MB/s': t.oursMBps,
        'robomesh ÷ raw': t.ratio,
        error: t.error ?? '',
      });
    }
    const heading =
      `bench:split — ${mode}; requester CPU: ${throttle}; yamux window ` +
      `${WINDOW} B; PaddleOCR detector 1×3×320×320; medians of ${REPS}`;
    process.stdout.write(
      `\n${heading}\n\n${table(summary)}\n\nThroughput of one tensor frame (one way + ack), each timed frame ` +
        `after the link idled until its token bucket refilled\n\n${table(tput)}\n\nEvery plan\n\n${table(detail)}\n`,
    );
    const linkShaping = netns
      ? {
          kind: 'tc',
          how: 'tc tbf on both ends of a veth between two network namespaces',
          burst: 'max(32 KiB, 10 ms of the rate)',
          tbfLatency: '200ms',
        }
      : {
          kind: 'inprocess',
          how: 'loopback relay in the bench process, one token bucket per direction (bench/link-throttle.ts)',
          burst: `max(32 KiB, 10 ms of the rate), e.g. ${burstFor(12.5e6)} B at 100 Mbit/s`,
          why,
        };
    const settle =
      'throughput: each timed frame (raw and robomesh) starts after the ' +
      'link idled burst ÷ rate + 10 ms, so both start with a full bucket';
    const path = await writeResults('split', {
      mode,
      shaping: { ...linkShaping, settle },
      throttle,
      windowBytes: WINDOW,
      reps: REPS,
      summary,
      throughput: tput,
      plans: detail,
    });
    process.stdout.write(`\nwrote ${path}\n`);
  } finally {
    cleanup();
    await link?.close();
    await removeCgroup();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
