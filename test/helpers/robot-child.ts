import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { loadCalibration, textLikeImage } from '../../nodes/inference/index.js';
import type { Tensor } from '../../protocol/tensor-frame.js';
import { type ChainManifest, decodeChainManifest } from '../../protocol/chain-manifest.js';
import { identityFromSeed } from '../../nodes/mesh/identity.js';
import { probe } from '../../nodes/mesh/probe.js';
import { LinkShaper } from '../../nodes/mesh/link-shaper.js';
import { Robot } from '../../nodes/robot/robot.js';
import type { InferOptions } from '../../nodes/scheduler/index.js';

/**
 * A robot in its own process, for tests that need one apart: in a network namespace, or pinned
 * to a CPU another process loads. argv: one JSON object {name, seed (hex), members, listen,
 * bootstrap, model, inputShape, cacheDir, prewarm?, profileRuns?, exits?, images?}. Prints `ready {peerId,
 * addrs}`, then answers commands on stdin with one JSON line each: `link PEER` (its estimate of
 * that link), `plan` / `plans N` (its best plan / N best plans now), `adverts` (the slowdown each
 * peer advertises), `infer [FORCE-JSON]` (one request, as the scheduler chooses or forced),
 * `ask OPTIONS-JSON` ({image?: index into `images`, noExits?, force?}: one request, answering
 * with its exit, bytes and the output's top class),
 * `shape PEER MBIT DELAY-MS` (its own sending toward PEER; MBIT 0 lifts it),
 * `chain FILE` (one request through the chain in manifest FILE: stages, robots, ms),
 * `stream {manifest, fps, frames, maxQueue?, window?}` (a pipelined stream: its StreamStats,
 * and the order frames came out in), `quit`. Without `model`, it holds only its `stages`.
 * bench:adapt and bench:pipeline drive it too.
 */
interface ChildConfig {
  name: string;
  seed: string;
  members: string[];
  listen: string[];
  bootstrap: string[];
  model?: string;
  inputShape?: Record<string, number[]>;
  /** Chain stage files to hold, and the weight budget (MB). */
  stages?: string[];
  memoryBudgetMb?: number;
  inferenceThread?: boolean;
  /** Print `request {peer, model}` as each request to serve arrives. */
  traceRequests?: boolean;
  cacheDir: string;
  prewarm?: 'head' | 'tail' | 'both';
  profileRuns?: number;
  /** Exit files to attach to the model. */
  exits?: string[];
  /** A directory of images (`ask` requests pick one by index) instead of one synthetic input. */
  images?: string;
}

const config = JSON.parse(process.argv[2]) as ChildConfig;
const out = (tag: string, value: unknown): void => void process.stdout.write(`${tag} ${JSON.stringify(value)}\n`);

const linkShaper = new LinkShaper();
const robot = await Robot.start({
  linkShaper,
  name: config.name,
  identity: await identityFromSeed(Buffer.from(config.seed, 'hex')),
  fleet: { name: 'test', members: config.members, bootstrap: config.bootstrap },
  listen: config.listen,
  models: config.model ? [{ arg: config.model, inputShape: config.inputShape, exits: config.exits }] : [],
  stages: config.stages,
  memoryBudgetMb: config.memoryBudgetMb,
  inferenceThread: config.inferenceThread,
  profileRuns: config.profileRuns ?? 2,
  prewarm: config.prewarm,
  cacheDir: config.cacheDir,
  dataDir: await mkdtemp(join(tmpdir(), `robomesh-child-${config.name}-`)),
  advertPeriodMs: 300,
});
const model = robot.models.hashes()[0];
const [[input, dims]] = Object.entries(config.inputShape ?? { x: [1, 3, 32, 32] });
const image = [{ name: input, dtype: 'float32' as const, dims, data: textLikeImage(dims[2], dims[3], 7) }];
const images: Tensor[][] = config.images
  ? (await loadCalibration(config.images, { name: input, shape: dims })).map((f) => [
      { name: input, dtype: 'float32' as const, dims, data: f[input].data as Float32Array },
    ])
  : [];
out('ready', { peerId: robot.peerId, addrs: robot.host.addresses() });
if (config.traceRequests)
  robot.service.on('request', (peer, request) => out('request', { peer, model: request.model }));

const quit = async (): Promise<void> => {
  await robot.stop().catch(() => undefined); // exiting either way: the parent sees the exit
  process.exit(0);
};
process.on('SIGTERM', () => void quit());
/** Commands run concurrently (a link query is answered while a request runs); `quit` ends them. */
async function command(line: string): Promise<void> {
  const [cmd, arg] = line.split(' ');
  try {
    if (cmd === 'link') out('link', robot.links.get(arg));
    else if (cmd === 'plan') out('plan', robot.scheduler.plans(model, image)[0]);
    else if (cmd === 'plans') out('plans', robot.scheduler.plans(model, image).slice(0, Number(arg)));
    else if (cmd === 'adverts')
      out('adverts', Object.fromEntries(robot.adverts.fresh().map((a) => [a.robot, a.slowdown ?? 1])));
    else if (cmd === 'infer') {
      const force = line.length > 6 ? (JSON.parse(line.slice(6)) as InferOptions['force']) : undefined;
      const { decision: d } = await robot.infer(model, image, { force, deadlineMs: 60_000 });
      out('infer', { plan: d.plan, executor: d.executor, ms: d.actualMs, failovers: d.failovers.length });
    } else if (cmd === 'ask') {
      const o = JSON.parse(line.slice(4)) as { image?: number; noExits?: boolean; force?: InferOptions['force'] };
      const inputs = o.image === undefined ? image : images[o.image % images.length];
      const { decision: d, outputs } = await robot.infer(model, inputs, {
        force: o.force,
        noExits: o.noExits,
        deadlineMs: 60_000,
      });
      const scores = outputs[0].data as Float32Array;
      out('ask', {
        plan: d.plan,
        executor: d.executor,
        ms: d.actualMs,
        failovers: d.failovers.length,
        exit: d.exit,
        bytes: d.bytes,
        top: scores.indexOf(Math.max(...scores)),
      });
    } else if (cmd === 'chain') {
      const manifest = decodeChainManifest(await readFile(arg, 'utf8'), arg);
      const result = await robot.chains.run(manifest, chainInput(manifest, 7));
      out('chain', { ms: result.ms, stages: result.stages, checksum: checksum(result.outputs) });
    } else if (cmd === 'stream') {
      const o = JSON.parse(line.slice(7)) as {
        pinned?: string[][];
        manifest: string;
        fps: number;
        frames: number;
        maxQueue?: number;
        window?: number;
      };
      const manifest = decodeChainManifest(await readFile(o.manifest, 'utf8'), o.manifest);
      const order: number[] = [];
      const stats = await robot.chains.stream(manifest, paced(manifest, o.fps, o.frames), (seq) => order.push(seq), {
        maxQueue: o.maxQueue,
        pinned: o.pinned,
        window: o.window,
      });
      out('stream', { ...stats, order });
    } else if (cmd === 'probe') {
      // A measurement of the link as it is (bench:adapt's truth), in the work queue as the
      // robot's own probes are, so never beside one of them.
      const [, peer, bytes] = line.split(' ');
      out('probe', await robot.service.queue.run(() => probe(robot.host.node, peer, Number(bytes), 30_000)));
    } else if (cmd === 'backlog') {
      out('backlog', { bytes: linkShaper.backlog() });
    } else if (cmd === 'shape') {
      const [, peer, mbit, delay] = line.split(' ');
      const rate = (Number(mbit) * 1e6) / 8;
      linkShaper.set(peer, rate > 0 ? { bytesPerSecond: rate, delayMs: Number(delay ?? 0) } : null);
      out('shape', { peer, mbit: Number(mbit) });
    }
  } catch (err) {
    out('error', { message: (err as Error).message });
  }
}

const chainInputs = new Map<string, Tensor[]>();
/**
 * The chain's input: a text-like image at the manifest's input shape, made once per seed (a
 * camera hands frames over; making them is not the robot's work to time).
 */
function chainInput(manifest: ChainManifest, seed: number): Tensor[] {
  const key = `${JSON.stringify(manifest.inputShapes)}:${seed}`;
  let input = chainInputs.get(key);
  if (!input) {
    input = Object.entries(manifest.inputShapes).map(([name, d]) => ({
      name,
      dtype: 'float32' as const,
      dims: d,
      data: textLikeImage(d[2], d[3], seed),
    }));
    chainInputs.set(key, input);
  }
  return input;
}

/** `frames` inputs at `fps`, on a clock (a late frame is not made up for by a burst). */
async function* paced(manifest: ChainManifest, fps: number, frames: number): AsyncGenerator<Tensor[]> {
  for (let seed = 0; seed < 8; seed++) chainInput(manifest, seed);
  const start = performance.now();
  for (let i = 0; i < frames; i++) {
    const due = start + (1000 * i) / fps;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    yield chainInput(manifest, i % 8);
  }
}

function checksum(tensors: Tensor[]): number {
  let sum = 0;
  for (const t of tensors) for (const v of t.data as Float32Array) sum += v;
  return sum;
}

for await (const line of createInterface({ input: process.stdin })) {
  if (line === 'quit') break;
  void command(line);
}
await quit();
