import { writeFile } from 'node:fs/promises';
import { type Socket, connect } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { peerIdFromString } from '@libp2p/peer-id';
import { multiaddr } from '@multiformats/multiaddr';
import type { Tensor } from '../protocol/tensor-frame.js';
import { type Precision, median, textLikeImage } from '../nodes/inference/index.js';
import { identityFromSeed } from '../nodes/mesh/index.js';
import { Robot } from '../nodes/robot/index.js';
import type { InferOptions } from '../nodes/scheduler/index.js';
import { RAW_PORT_OFFSET, arg, sinkModel } from './split-common.js';

/**
 * The requesting (weaker) robot of bench:split. Driven line by line on stdin by bench/split.ts;
 * answers each command with one JSON line on stdout.
 */
interface Measured {
  config: string;
  kind: string;
  cut?: string;
  precision?: Precision;
  predictedMs: number;
  medianMs?: number;
  runs: number;
  skipped?: string;
  executors: string[];
  /** Median of each part of the measured time (see Decision.timings). */
  parts?: Record<string, number>;
}

const out = (tag: string, value: unknown): void => void process.stdout.write(`${tag} ${JSON.stringify(value)}\n`);

async function main(): Promise<void> {
  const dir = arg('dir');
  const sinkPath = join(dir, 'sink-a.onnx');
  await writeFile(sinkPath, sinkModel());
  const peerHost = arg('peer-host');
  const peerPort = Number(arg('peer-port'));
  const peerRawPort = Number(arg('peer-raw-port', String(peerPort + RAW_PORT_OFFSET)));
  const peerId = arg('peer-id');
  // Behind bench:split's in-process link (a relay on loopback) the requester must reach the peer
  // only through the relay: it listens nowhere (the peer cannot dial it back directly) and pins
  // the peer's address to the relay's, whatever identify says (below).
  const viaRelay = arg('via-relay', '0') === '1';
  const robot = await Robot.start({
    name: 'requester',
    identity: await identityFromSeed(Buffer.from(arg('seed'), 'hex')),
    fleet: {
      name: 'bench',
      members: arg('members').split(','),
      bootstrap: [`/ip4/${peerHost}/tcp/${peerPort}/p2p/${peerId}`],
    },
    listen: viaRelay ? [] : [`/ip4/${arg('host')}/tcp/0`],
    models: [{ arg: 'builtin:ocr-det', inputShape: { x: [1, 3, 320, 320] } }, { arg: sinkPath }],
    cacheDir: join(dir, 'requester-cache'),
    dataDir: join(dir, 'requester'),
    profileRuns: 5,
    prewarm: 'head',
    advertPeriodMs: 500,
    probeIntervalMs: 0,
    linkBytesPerSecond: Number(arg('window', String(512 * 1024))),
  });
  if (viaRelay) {
    const relay = `/ip4/${peerHost}/tcp/${peerPort}`;
    const pin = async (): Promise<void> => {
      await robot.host.addPeerAddresses(peerId, [`${relay}/p2p/${peerId}`]);
      await robot.host.node.peerStore.patch(peerIdFromString(peerId), { multiaddrs: [multiaddr(relay)] });
    };
    robot.host.node.addEventListener('peer:identify', (evt) => {
      // pinned again at the next identify
      if (evt.detail.peerId.toString() === peerId) void pin().catch(() => undefined);
    });
    await pin();
  }
  const [model, sink] = robot.models.hashes();
  const deadline = Date.now() + 60_000;
  while (!robot.adverts.get(peerId) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  out('ready', { peerId: robot.peerId, wholeMs: robot.models.profile(model)!.wholeMs });
  const input: Tensor[] = [{ name: 'x', dtype: 'float32', dims: [1, 3, 320, 320], data: textLikeImage(320, 320, 9) }];

  const measure = async (
    force: InferOptions['force'],
    reps: number,
  ): Promise<{ ms: number[]; executors: string[]; parts: Record<string, number> }> => {
    const ms: number[] = [];
    const executors: string[] = [];
    const parts: Record<string, number[]> = {};
    for (let i = reps > 1 ? -1 : 0; i < reps; i++) {
      const r = await robot.infer(model, input, { force, deadlineMs: 120_000 });
      if (i < 0) continue; // one untimed warm-up run (skipped for slow plans: sessions are prewarmed)
      ms.push(r.decision.actualMs);
      executors.push(r.decision.executor === robot.peerId ? 'local' : 'peer');
      for (const [k, v] of Object.entries(r.decision.timings)) (parts[k] ??= []).push(v);
    }
    return { ms, executors, parts: Object.fromEntries(Object.entries(parts).map(([k, v]) => [k, median(v)])) };
  };

  const round = async (reps: number, budgetMs: number): Promise<unknown> => {
    // Learn the link first: a probe, then one offload and one split transfer feed the EWMA.
    await robot.probeIdleLinks().catch(() => undefined); // warm-up only: the timed runs learn the link
    const warm = robot.scheduler.plans(model, input).find((p) => p.kind === 'split' && p.precision === 'int8');
    // Warm-up only: a failure here shows in the timed runs.
    if (warm) await measure({ kind: 'split', cut: warm.cut, precision: 'int8' }, 1).catch(() => undefined);
    const ranked = robot.scheduler.plans(model, input);
    const best = ranked[0].predictedMs;
    const results: Measured[] = [];
    for (const plan of ranked) {
      const config = plan.kind === 'split' ? `split ${plan.cut} ${plan.precision}` : plan.kind;
      const always = plan.kind !== 'split';
      const m: Measured = {
        config,
        kind: plan.kind,
        cut: plan.cut,
        precision: plan.precision,
        predictedMs: plan.predictedMs,
        runs: 0,
        executors: [],
      };
      if (!always && plan.predictedMs > Math.max(8 * best, budgetMs)) {
        m.skipped = `predicted ${plan.predictedMs.toFixed(0)} ms > max(8 × best prediction, ${budgetMs} ms)`;
      } else if (!always && plan.predictedMs > 2000 && plan.precision === 'fp32') {
        m.skipped = `fp32 predicted ${plan.predictedMs.toFixed(0)} ms: int8/fp16 of this cut measured instead`;
      } else {
        const n = plan.predictedMs > 3000 ? 1 : reps; // plus one untimed warm-up run
        try {
          const { ms, executors, parts } = await measure(
            { kind: plan.kind, cut: plan.cut, precision: plan.precision, peer: plan.peer },
            n,
          );
          m.medianMs = median(ms);
          m.parts = parts;
          m.runs = n;
          m.executors = executors;
        } catch (err) {
          m.skipped = `failed: ${(err as Error).message}`;
        }
      }
      results.push(m);
    }
    // The scheduler against the best static plan, runs alternated so drift and noise hit both alike.
    const measured = results.filter(
      (r) => r.medianMs !== undefined && r.executors.every((e) => e === (r.kind === 'local' ? 'local' : 'peer')),
    );
    const bestStatic = measured.reduce((x, y) => (x.medianMs! <= y.medianMs! ? x : y));
    const chosen: string[] = [];
    const schedulerMs: number[] = [];
    const bestMs: number[] = [];
    const pairs = bestStatic.medianMs! > 3000 ? 1 : reps + 2;
    for (let i = 0; i < pairs; i++) {
      const forced = await measure(
        { kind: bestStatic.kind as 'local', cut: bestStatic.cut, precision: bestStatic.precision },
        1,
      ).catch(() => undefined); // a forced plan can miss its deadline on a slow link: not counted
      if (forced) bestMs.push(...forced.ms);
      const r = await robot.infer(model, input, { deadlineMs: 120_000 });
      schedulerMs.push(r.decision.actualMs);
      const p = r.decision.plan;
      chosen.push(p.kind === 'split' ? `split ${p.cut} ${p.precision}` : p.kind);
    }
    const link = robot.links.get(peerId);
    const stray = bypass();
    if (stray) throw new Error(stray);
    return {
      results,
      scheduler: { medianMs: median(schedulerMs), chosen, best: bestStatic.config, bestMs: median(bestMs), pairs },
      link,
    };
  };

  // One persistent raw connection, like libp2p's: neither side pays a handshake or slow start per frame.
  let rawSocket: Socket | undefined;
  const rawConnect = (): Promise<Socket> =>
    new Promise((resolve, reject) => {
      const socket = connect(peerRawPort, peerHost);
      socket.setNoDelay(true);
      socket.once('error', reject);
      socket.once('connect', () => resolve(socket));
    });
  const rawSend = async (bytes: number): Promise<number> => {
    rawSocket ??= await rawConnect();
    const socket = rawSocket;
    return new Promise((resolve) => {
      const header = Buffer.alloc(4);
      header.writeUInt32LE(bytes, 0);
      const t0 = performance.now();
      socket.once('data', () => resolve(performance.now() - t0));
      socket.write(header);
      socket.write(Buffer.alloc(bytes, 7));
    });
  };

  // Behind the relay, every connection to the peer must be one we dialled through it; anything
  // else bypasses the shaping and is reported. Between namespaces every path crosses the shaped veth.
  const bypass = (): string | undefined => {
    if (!viaRelay) return undefined;
    const stray = robot.host.node
      .getConnections(peerIdFromString(peerId))
      .filter(
        (c) => c.direction !== 'outbound' || !c.remoteAddr.toString().startsWith(`/ip4/${peerHost}/tcp/${peerPort}`),
      );
    return stray.length
      ? `connection bypasses the emulated link: ` +
          `${stray.map((c) => `${c.direction} ${c.remoteAddr.toString()}`).join(', ')}`
      : undefined;
  };

  // Before each timed transfer the link idles `settleMs`, long enough for the shaper's token
  // bucket to refill (split.ts: burst ÷ rate): both sides then start with the same burst credit.
  // Back to back, robomesh followed the raw ack within ~0.3 ms while raw followed robomesh's
  // reply (2–5 ms), so raw started with more credit: up to 10 % of a 1 MB frame at 100 Mbit/s.
  const settle = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
  const throughput = async (sizesMb: number[], reps: number, settleMs: number): Promise<unknown> => {
    const rows = [];
    for (const mb of sizesMb) {
      const bytes = Math.round(mb * 1024 * 1024);
      const tensor: Tensor[] = [
        { name: 'x', dtype: 'float32', dims: [bytes / 4], data: new Float32Array(bytes / 4).fill(0.5) },
      ];
      const raw: number[] = [];
      const ours: number[] = [];
      await rawSend(bytes); // warm both paths once
      await robot.client
        .infer(peerId, { model: sink, cut: 'input', precision: 'fp32', granularity: 'channel' }, tensor, 300_000)
        .catch(() => undefined); // warm-up only
      let error = bypass();
      for (let i = 0; i < reps; i++) {
        await settle(settleMs);
        raw.push(bytes / 1000 / (await rawSend(bytes)));
        await settle(settleMs);
        try {
          const r = await robot.client.infer(
            peerId,
            { model: sink, cut: 'input', precision: 'fp32', granularity: 'channel' },
            tensor,
            300_000,
          );
          ours.push(r.sentBytes / 1000 / (r.elapsedMs - r.computeMs));
        } catch (err) {
          error = (err as Error).message;
        }
      }
      rows.push({
        mb,
        rawMBps: median(raw),
        oursMBps: ours.length ? median(ours) : 0,
        ratio: ours.length ? median(ours) / median(raw) : 0,
        error,
      });
    }
    return rows;
  };

  for await (const line of createInterface({ input: process.stdin })) {
    const [cmd, json] = [line.split(' ')[0], line.slice(line.indexOf(' ') + 1)];
    try {
      if (cmd === 'round') {
        const { reps, budgetMs } = JSON.parse(json) as { reps: number; budgetMs: number };
        out('result', await round(reps, budgetMs));
      } else if (cmd === 'throughput') {
        const { sizesMb, reps, settleMs } = JSON.parse(json) as { sizesMb: number[]; reps: number; settleMs?: number };
        out('throughput', await throughput(sizesMb, reps, settleMs ?? 0));
      } else if (cmd === 'pid') {
        out('pid', { pid: process.pid });
      } else if (cmd === 'quit') {
        break;
      }
    } catch (err) {
      out('error', { message: (err as Error).message });
    }
  }
  await robot.stop();
  process.exit(0);
}

await main();
