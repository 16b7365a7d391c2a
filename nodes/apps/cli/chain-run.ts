import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeChainManifest } from '../../../protocol/chain-manifest.js';
import type { Tensor } from '../../../protocol/tensor-frame.js';
import { parseModel, textLikeImage } from '../../inference/index.js';
import { loadOrCreateIdentity } from '../../mesh/index.js';
import { Robot, robotPaths } from '../../robot/index.js';
import { UsageError } from './options.js';

export interface ChainRunArgs {
  fps: number;
  seconds: number;
}

/**
 * Tries a chain on this machine: one robot per stage on loopback (real libp2p, real ONNX), each
 * holding only its stage file from DIR, and the first one streaming text-like frames through the
 * chain at `fps`, with a line a second and a summary (what each stage took, and where).
 */
export async function chainRunCommand(dir: string, args: ChainRunArgs): Promise<void> {
  let text: string;
  let files: string[];
  try {
    text = await readFile(join(dir, 'chain.json'), 'utf8');
    files = (await readdir(dir)).filter((f) => f.endsWith('.onnx')).map((f) => join(dir, f));
  } catch (err) {
    throw new UsageError(`cannot read a chain in ${dir} (robomesh chain build writes one): ${(err as Error).message}`);
  }
  const manifest = decodeChainManifest(text, join(dir, 'chain.json'));
  const byHash = new Map<string, string>();
  for (const file of files) byHash.set(parseModel(new Uint8Array(await readFile(file)), file).hash, file);
  const missing = manifest.stages.findIndex((s) => !byHash.has(s.hash));
  if (missing >= 0)
    throw new UsageError(`${dir} has no file for stage ${missing + 1} (${manifest.stages[missing].hash})`);
  const log = (s: string): void => void process.stdout.write(`${s}\n`);
  const data = await mkdtemp(join(tmpdir(), 'robomesh-chain-run-'));
  const robots: Robot[] = [];
  try {
    const n = manifest.stages.length;
    const identities = await Promise.all(
      Array.from({ length: n }, (_, i) => loadOrCreateIdentity(robotPaths(join(data, `s${i + 1}`)).identity)),
    );
    const members = identities.map((i) => i.peerId.toString());
    const names = new Map(members.map((m, i) => [m, `s${i + 1}`]));
    for (const [i, identity] of identities.entries()) {
      robots.push(
        await Robot.start({
          name: `s${i + 1}`,
          identity,
          dataDir: join(data, `s${i + 1}`),
          cacheDir: data,
          fleet: { name: 'chain-run', members, bootstrap: robots.flatMap((r) => r.host.addresses()) },
          listen: ['/ip4/127.0.0.1/tcp/0'],
          mdns: false,
          models: [],
          stages: [byHash.get(manifest.stages[i].hash)!],
          advertPeriodMs: 300,
          probeIntervalMs: 0,
        }),
      );
      log(`  s${i + 1} up, holding stage ${i + 1} (${manifest.stages[i].from} → ${manifest.stages[i].to})`);
    }
    for (let waited = 0; robots.some((r) => r.adverts.fresh().length < n - 1); waited += 100) {
      if (waited > 30_000) throw new UsageError('the robots did not hear each other within 30 s');
      await new Promise((r) => setTimeout(r, 100));
    }
    const frames = Math.max(1, Math.round(args.fps * args.seconds));
    const inputs = Object.entries(manifest.inputShapes);
    const frame = (seed: number): Tensor[] =>
      inputs.map(([name, dims]) => ({
        name,
        dtype: 'float32',
        dims,
        data:
          dims.length === 4 ? textLikeImage(dims[2], dims[3], seed) : new Float32Array(dims.reduce((a, b) => a * b)),
      }));
    const made = Array.from({ length: 8 }, (_, k) => frame(k));
    async function* source(): AsyncGenerator<Tensor[]> {
      const start = performance.now();
      for (let i = 0; i < frames; i++) {
        const wait = start + (1000 * i) / args.fps - performance.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        yield made[i % made.length];
      }
    }
    log(`streaming ${frames} frames at ${args.fps} fps through ${n} stages from s1`);
    const order: number[] = [];
    let last = 0;
    const ticker = setInterval(() => {
      const c = robots[0].chains.counters;
      log(`  ${order.length} delivered (+${order.length - last}), ${c.dropped} dropped so far`);
      last = order.length;
    }, 1000);
    const stats = await robots[0].chains
      .stream(manifest, source(), (seq) => order.push(seq), { maxQueue: 2 })
      .finally(() => clearInterval(ticker));
    const inOrder = order.every((x, i) => i === 0 || x > order[i - 1]);
    const sorted = [...stats.latencies].sort((a, b) => a - b);
    const q = (p: number): string =>
      (sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? NaN).toFixed(0);
    log(
      `\n${stats.delivered} of ${stats.offered} frames delivered (${stats.dropped} dropped oldest-first, ` +
        `${stats.failed} failed), ${((1000 * stats.delivered) / stats.elapsedMs).toFixed(1)} frames/s, ` +
        `latency p50 ${q(0.5)} ms, p95 ${q(0.95)} ms; results ${inOrder ? 'in frame order' : 'OUT OF ORDER'}; ` +
        `deepest queue ${stats.maxDepth}`,
    );
    stats.stages.forEach((s, k) => {
      const where = Object.entries(s.robots)
        .map(([robot, runs]) => `${names.get(robot) ?? robot.slice(-6)} ×${runs}`)
        .join(', ');
      log(`  stage ${k + 1}: median ${s.medianMs.toFixed(1)} ms as seen from s1 (transfers included), on ${where}`);
    });
  } finally {
    for (const r of robots.reverse()) await r.stop().catch(() => undefined);
    await rm(data, { recursive: true, force: true });
  }
}
