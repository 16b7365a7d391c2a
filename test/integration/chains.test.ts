import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ChainManifest, chainManifestHash, encodeChainManifest } from '../../protocol/chain-manifest.js';
import { MemoryLogStore } from '../../nodes/ledger/store.js';
import { MemoryBlobStore } from '../../nodes/tasks/blob-store.js';
import { lie } from '../../nodes/tasks/faults.js';
import { type Tensor, decodeFrame, encodeFrame } from '../../protocol/tensor-frame.js';
import { ModelRegistry, SessionCache, buildChain, outputsToTensors, weightBytes } from '../../nodes/inference/index.js';
import { Robot } from '../../nodes/robot/robot.js';
import { ChainError } from '../../nodes/scheduler/index.js';
import { type Child, dialAddrs, startRobotChild } from '../helpers/child.js';
import { sharedCache, startFleet, testGenesis, testIdentities } from '../helpers/fleet.js';
import { inputsFor, slicerFor } from '../helpers/models.js';

/**
 * The detector as a chain of 3 stages on 3 robots (real libp2p on loopback, real ONNX): each robot
 * holds only its stage under a weight budget the whole model does not fit, a middle stage killed
 * mid-request is replaced, and a stream is pipelined through the chain in order.
 */
describe('chains: a model run as stages on several robots', function () {
  this.timeout(300_000);
  let dir: string;
  let manifest: ChainManifest;
  let files: string[];
  let input: Tensor[];
  let whole: Tensor[];
  let wholeWeights: number;
  /** Between the largest stage's weights and the whole model's. */
  let budgetMb: number;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'robomesh-chain-'));
    const slicer = await slicerFor('ocr-det');
    const built = buildChain(slicer.analysis, { stages: 3, precision: 'fp32' });
    manifest = built.manifest;
    files = [];
    for (const [k, s] of built.stages.entries()) {
      const file = join(dir, `stage-${k + 1}.onnx`);
      await writeFile(file, s.bytes);
      files.push(file);
    }
    await writeFile(join(dir, 'chain.json'), encodeChainManifest(manifest));
    input = outputsToTensors(inputsFor(slicer, 'ocr-det', 3));
    whole = outputsToTensors(await slicer.runWhole(inputsFor(slicer, 'ocr-det', 3)));
    wholeWeights = weightBytes(slicer.analysis.model.proto);
    const largest = Math.max(...manifest.stages.map((s) => s.weightBytes));
    budgetMb = (largest + wholeWeights) / 2 / 1e6;
    assert.ok(largest < wholeWeights, 'every stage is lighter than the model');
  });
  after(() => rm(dir, { recursive: true, force: true }));

  const maxDiff = (a: Tensor[], b: Tensor[]): number => {
    assert.deepEqual(
      a.map((t) => [t.name, t.dims]),
      b.map((t) => [t.name, t.dims]),
    );
    let max = 0;
    a.forEach((t, k) => {
      const x = t.data as Float32Array;
      const y = b[k].data as Float32Array;
      for (let i = 0; i < x.length; i++) max = Math.max(max, Math.abs(x[i] - y[i]));
    });
    return max;
  };

  describe('four robots in one process', () => {
    let robots: Robot[];
    /** The stage each robot holds: r3 holds the middle one too; r4 none, but it helps run the chain. */
    const holds = [0, 1, 2, 1, undefined];
    before(async () => {
      const ids = await testIdentities(5, 150);
      robots = await startFleet(ids, [], (i) => ({
        stages: holds[i] === undefined ? [] : [files[holds[i]!]],
        chains: holds[i] === undefined ? [join(dir, 'chain.json')] : [],
        memoryBudgetMb: budgetMb,
      }));
    });
    after(() => Promise.all(robots.map((r) => r.stop())));

    it('runs the 3-stage chain equal to the whole model within 1e-4, each robot holding only its stage', async () => {
      for (const [i, r] of robots.entries()) {
        assert.deepEqual(r.models.hashes(), holds[i] === undefined ? [] : [manifest.stages[holds[i]!].hash]);
        assert.ok(r.models.heldBytes <= budgetMb * 1e6);
      }
      const result = await robots[0].chains.run(manifest, input);
      const [first, middle, last] = result.stages.map((s) => s.robot);
      assert.equal(first, robots[0].peerId);
      assert.ok([robots[1].peerId, robots[3].peerId].includes(middle));
      assert.equal(last, robots[2].peerId);
      assert.ok(maxDiff(result.outputs, whole) <= 1e-4);
      assert.ok(result.stages[1].sentBytes > 0 && result.stages[0].sentBytes === 0);
    });

    it('pipelines a 10 fps stream in frame order with bounded queues, counting what it drops', async () => {
      const stream = async (fps: number, frames: number) => {
        const order: number[] = [];
        const outputs: Tensor[][] = [];
        async function* source(): AsyncGenerator<Tensor[]> {
          const start = performance.now();
          for (let i = 0; i < frames; i++) {
            const wait = start + (1000 * i) / fps - performance.now();
            if (wait > 0) await new Promise((r) => setTimeout(r, wait));
            yield input;
          }
        }
        const stats = await robots[0].chains.stream(
          manifest,
          source(),
          (seq, out) => {
            order.push(seq);
            outputs.push(out);
          },
          { maxQueue: 2 },
        );
        assert.equal(stats.offered, frames);
        assert.equal(stats.delivered + stats.dropped + stats.failed, frames, JSON.stringify(stats));
        assert.equal(stats.failed, 0);
        assert.equal(order.length, stats.delivered);
        for (let i = 1; i < order.length; i++) assert.ok(order[i] > order[i - 1], `order ${order.join(',')}`);
        assert.ok(stats.maxDepth <= 2, `a queue held ${stats.maxDepth}`);
        assert.ok(maxDiff(outputs[outputs.length - 1], whole) <= 1e-4);
        return { stats, order };
      };
      const before = { ...robots[0].chains.counters };
      const paced = await stream(10, 20);
      const after = robots[0].chains.counters;
      assert.equal(after.offered - before.offered, 20);
      assert.equal(after.delivered - before.delivered, paced.stats.delivered);
      assert.ok(after.lastStream && after.lastStream.fps > 0);
      assert.ok(paced.stats.delivered >= 1);
      // Offered far faster than three robots on two cores can run it: the entry drops, oldest first.
      const flood = await stream(1000, 30);
      assert.ok(flood.stats.dropped > 0, JSON.stringify(flood.stats));
      assert.equal(flood.order[flood.order.length - 1], 29, 'the newest frame is never the one dropped');
    });

    it('refuses the whole model under the same budget, and a stage no robot holds', async () => {
      const registry = new ModelRegistry(new SessionCache({ threads: 1 }), budgetMb * 1e6);
      const slicer = await slicerFor('ocr-det');
      await assert.rejects(registry.add(slicer.analysis.model), { code: 'OVER_BUDGET' });
      assert.equal(registry.heldBytes, 0);
      const missing: ChainManifest = {
        ...manifest,
        stages: manifest.stages.map((s, k) => (k === 1 ? { ...s, hash: 'ab'.repeat(32) } : s)),
      };
      await assert.rejects(robots[0].chains.run(missing, input), (err: unknown) => {
        assert.ok(err instanceof ChainError);
        assert.equal(err.code, 'NO_HOLDER');
        return true;
      });
      // A stage fed tensors of the wrong shape is refused by the robot holding it, not run.
      const wrong = [{ ...input[0], dims: [1, 3, 64, 64], data: new Float32Array(3 * 64 * 64) }];
      await assert.rejects(robots[2].chains.run({ ...manifest, stages: [manifest.stages[0]] }, wrong), {
        code: 'STAGE_FAILED',
      });
    });

    it('catches holders answering malformed tensors; a robot helping with the chain fetches the stage', async () => {
      const reshape = (_req: unknown, frame: Uint8Array): Uint8Array => {
        const [t, ...rest] = decodeFrame(frame);
        return encodeFrame([{ ...t, dims: [t.dims.reduce((a, b) => a * b, 1)] }, ...rest]);
      };
      const liars = [robots[1], robots[3]];
      for (const r of liars) r.service.tamper = reshape;
      const servedByLast = robots[2].service.served;
      let result;
      try {
        result = await robots[0].chains.run(manifest, input);
      } finally {
        for (const r of liars) r.service.tamper = undefined;
      }
      const middle = result.stages[1];
      const failed = new Map(middle.failed.map((f) => [f.robot, f.code]));
      for (const r of liars) {
        assert.equal(failed.get(r.peerId), 'STAGE_FAILED', 'the liar failed its stage');
        assert.ok(robots[0].reputation.score(r.peerId) < 0, 'the liar is penalised');
      }
      // r2 (holding the last stage, not helping with this chain) refuses; r4 fetches stage 2 and runs it.
      assert.equal(middle.robot, robots[4].peerId);
      assert.ok(robots[4].models.has(manifest.stages[1].hash), 'r4 holds the stage now');
      assert.ok(maxDiff(result.outputs, whole) <= 1e-4);
      assert.equal(robots[2].service.served, servedByLast + 1, 'only the good boundary reached the last stage');
      assert.equal(robots[2].reputation.score(robots[0].peerId), 0, 'the requester is not blamed');
      // Asked for the first stage, which does not fit beside the second: the stage it fetched
      // earlier gives way (within its budget, on demand, oldest first).
      const first = manifest.stages[0].hash;
      const task = { model: first, cut: 'input', precision: 'fp32', granularity: 'channel' } as const;
      const out = await robots[0].client.infer(robots[4].peerId, task, input, 30_000);
      assert.equal(out.outputs.length, manifest.stages[0].outputs!.length);
      assert.deepEqual(robots[4].models.hashes(), [first]);
      assert.ok(robots[4].models.heldBytes <= budgetMb * 1e6);
      // A stage of no chain r4 helps run is never fetched.
      await assert.rejects(
        robots[0].client.infer(
          robots[4].peerId,
          { model: 'ab'.repeat(32), cut: 'input', precision: 'fp32', granularity: 'channel' },
          input,
          10_000,
        ),
        { code: 'UNKNOWN_MODEL' },
      );
    });

    it('lets the scheduler plan a model no robot holds whole, through the chain it knows', async () => {
      const r4 = robots[4];
      assert.ok(!r4.models.has(manifest.model));
      const plans = r4.scheduler.plans(manifest.model, input);
      assert.deepEqual(
        plans.map((p) => p.kind),
        ['chain'],
      );
      assert.ok(plans[0].predictedMs > 0);
      const { outputs, decision } = await r4.infer(manifest.model, input, { deadlineMs: 30_000 });
      assert.equal(decision.plan.kind, 'chain');
      assert.ok(maxDiff(outputs, whole) <= 1e-4);
      assert.equal(decision.executor, robots[2].peerId, 'the last stage ran on its holder');
      // A robot that knows no chain for the model cannot plan it.
      assert.throws(() => robots[1].scheduler.plans(manifest.model, input), { code: 'UNKNOWN_MODEL' });
    });
  });

  describe('a chain whose last stage is a logged task', () => {
    let robots: Robot[];
    /** r2, r3 and r4 hold the last stage: its 2f + 1 executors for f = 1. */
    const holds = [0, 1, 2, 2, 2];
    before(async () => {
      const ids = await testIdentities(5, 170);
      const genesis = testGenesis(ids);
      robots = await startFleet(ids, [], (i) => ({
        stages: [files[holds[i]]],
        memoryBudgetMb: budgetMb,
        ledger: { store: new MemoryLogStore(), genesis, antiEntropyMs: 1000 },
        tasks: { blobs: new MemoryBlobStore(), pushGraceMs: 500, volunteerDelayMs: 2000, tickMs: 100 },
      }));
    });
    after(() => Promise.all(robots.map((r) => r.stop())));

    it('records the chain in the task and decides the last stage by quorum, a liar among its executors', async () => {
      const [r0, r1, liar] = robots;
      liar.taskExecutor!.misbehave = lie('wrong');
      try {
        const outcome = await r0.inferChainTask(manifest, input, { f: 1, deadlineMs: 60_000 });
        assert.equal(outcome.status, 'final');
        assert.deepEqual(
          outcome.stages.map((s) => s.robot),
          [r0.peerId, r1.peerId],
        );
        assert.ok(outcome.outputs && maxDiff(outcome.outputs, whole) <= 1e-4);
        const task = r0.ledger!.state.tasks.get(outcome.task)!;
        assert.equal(task.chain, chainManifestHash(manifest));
        assert.equal(task.model, manifest.stages[2].hash);
        assert.equal(task.executors.length, 3);
        assert.ok(!outcome.decision!.executors.includes(liar.ledger!.self!), 'the liar is not in the quorum');
      } finally {
        liar.taskExecutor!.misbehave = undefined;
      }
    });
  });

  describe('a middle stage killed mid-request', () => {
    const children: Child[] = [];
    let requester: Robot | undefined;
    after(async () => {
      await requester?.stop();
      await Promise.all(children.map((c) => c.stop()));
    });

    it('is replaced by another robot holding it, and the request completes', async () => {
      const ids = await testIdentities(4, 160);
      const members = ids.map((i) => i.peerId.toString());
      const seed = (k: number) => Buffer.from(ids[k].seed).toString('hex');
      requester = await Robot.start({
        name: 'c0',
        identity: ids[0],
        fleet: { name: 'test', members, bootstrap: [] },
        listen: ['/ip4/127.0.0.1/tcp/0'],
        models: [],
        stages: [files[0]],
        memoryBudgetMb: budgetMb,
        cacheDir: await sharedCache(),
        dataDir: join(dir, 'c0'),
        advertPeriodMs: 300,
        probeIntervalMs: 0,
      });
      const bootstrap = requester.host.addresses();
      const holds = [1, 1, 2];
      for (const [k, stage] of holds.entries()) {
        children.push(
          await startRobotChild(`c${k + 1}`, [], {
            seed: seed(k + 1),
            members,
            listen: ['/ip4/127.0.0.1/tcp/0'],
            bootstrap,
            stages: [files[stage]],
            memoryBudgetMb: budgetMb,
            cacheDir: await sharedCache(),
            traceRequests: true,
          }),
        );
      }
      const peerOf = (c: Child) => (c.lines.find((l) => l.tag === 'ready')!.value as { peerId: string }).peerId;
      assert.ok(dialAddrs(children[0], peerOf(children[0])).length > 0);
      const deadline = Date.now() + 60_000;
      while (requester.adverts.fresh().length < 3 || requester.host.connectedPeers().length < 3) {
        assert.ok(Date.now() < deadline, 'adverts from the three children within 60 s');
        await new Promise((r) => setTimeout(r, 100));
      }
      let killed: string | undefined;
      const result = await requester.chains.run(manifest, input, {
        onStage: (k, robot) => {
          if (k !== 1 || killed) return;
          killed = robot;
          const victim = children.find((c) => peerOf(c) === robot)!;
          // Killed once the robot has read the request: its frame is on the way or being computed.
          void victim
            .until('the stage request', (l) => l.tag === 'request', 30_000)
            .then(() => victim.proc.kill('SIGKILL'));
        },
      });
      assert.ok(killed);
      const middle = result.stages[1];
      assert.deepEqual(
        middle.failed.map((f) => f.robot),
        [killed],
      );
      assert.notEqual(middle.robot, killed);
      assert.equal(middle.robot, peerOf(children.find((c) => peerOf(c) !== killed && c.name !== 'c3')!));
      assert.ok(maxDiff(result.outputs, whole) <= 1e-4);
    });
  });
});
