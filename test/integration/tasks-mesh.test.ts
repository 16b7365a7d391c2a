import assert from 'node:assert/strict';
import { REPUTATION } from '../../contracts/fleet-state.js';
import type { TaskState } from '../../contracts/tasks.js';
import { builtinInputShape } from '../../nodes/inference/bundled-models.js';
import { INPUT_CUT } from '../../nodes/inference/model-registry.js';
import { textLikeImage } from '../../nodes/inference/sample-images.js';
import { MemoryLogStore } from '../../nodes/ledger/store.js';
import { InferError } from '../../nodes/mesh/infer-client.js';
import type { Robot } from '../../nodes/robot/robot.js';
import { MemoryBlobStore, blobDigest } from '../../nodes/tasks/blob-store.js';
import { type LieKind, lie, stall } from '../../nodes/tasks/faults.js';
import { fingerprintsAgree, resultFingerprint } from '../../protocol/result-fingerprint.js';
import { type Tensor, encodeFrame } from '../../protocol/tensor-frame.js';
import { startFleet, testGenesis, testIdentities } from '../helpers/fleet.js';
import { waitFor } from '../helpers/wait.js';

const CNN = { arg: 'builtin:cnn', inputShape: builtinInputShape('builtin:cnn') };

const image = (seed: number): Tensor[] => [
  { name: 'image', dtype: 'float32', dims: [1, 3, 64, 64], data: textLikeImage(64, 64, seed) },
];

/** The honest answer, computed on `robot` itself (no log, no mesh). */
async function honest(robot: Robot, inputs: Tensor[], task: string) {
  const model = robot.models.hashes()[0];
  return resultFingerprint(task, await robot.models.runFrom(model, INPUT_CUT, 'fp32', 'channel', inputs));
}

const stateOf = (r: Robot, task: string): TaskState | undefined => r.ledger!.state.tasks.get(task);

/** Every robot's log holds `task` in one of `statuses`, with one and the same answer. */
async function decidedEverywhere(robots: Robot[], task: string, statuses = ['final']): Promise<TaskState> {
  await waitFor(
    () => robots.every((r) => statuses.includes(stateOf(r, task)?.status ?? '')),
    `task ${task} ${statuses.join('/')} on every robot`,
    30_000,
  );
  await waitFor(() => new Set(robots.map((r) => r.ledger!.stateHash())).size === 1, 'one state on every robot', 30_000);
  return stateOf(robots[0], task)!;
}

describe(
  'logged tasks over real libp2p: authorised execution, ' + 'liars, partitions (5 robots, generated CNN)',
  function () {
    this.timeout(300_000);
    let robots: Robot[];
    const blobs = new Map<Robot, MemoryBlobStore>();
    let seed = 100;

    before(async () => {
      const identities = await testIdentities(5, 140);
      const genesis = testGenesis(identities);
      const stores = identities.map(() => new MemoryBlobStore());
      robots = await startFleet(identities, [CNN], (i) => ({
        ledger: { store: new MemoryLogStore(), genesis, antiEntropyMs: 1000 },
        tasks: { blobs: stores[i], pushGraceMs: 500, volunteerDelayMs: 2000, tickMs: 100 },
      }));
      robots.forEach((r, i) => blobs.set(r, stores[i]));
    });
    afterEach(() => {
      for (const r of robots) r.taskExecutor!.misbehave = undefined;
    });
    after(async () => {
      await Promise.allSettled(robots.map((r) => r.stop()));
    });

    it(
      'a member cannot decide another\u2019s task: its ' + 'input for that task is refused and nothing is written',
      async () => {
        const [r, v, w, x, attacker] = robots;
        const model = r.models.hashes()[0];
        // R commits to its input and assigns v, w, x; the attacker races R to them with its own input.
        const rInputs = image(seed++);
        const mine = encodeFrame(rInputs);
        const input = await blobs.get(r)!.put(mine);
        const task = 'hijack-1';
        const [taskEntry, assignEntry] = r.ledger!.appendBatch([
          {
            type: 'task',
            task,
            model,
            cut: INPUT_CUT,
            precision: 'fp32',
            input,
            bytes: mine.length,
            f: 1,
            timeout: 5000,
          },
          { type: 'assign', task, executors: [v, w, x].map((e) => e.ledger!.self!) },
        ]);
        const entries = [taskEntry, assignEntry].map((e) => Buffer.from(e.bytes).toString('base64'));
        const theirs = image(seed++);
        const before = [v, w, x].map((e) => e.ledger!.summary().get(e.ledger!.self!)?.maxSeq ?? 0);
        await waitFor(() => [v, w, x].every((e) => stateOf(e, task)), 'the task entries by gossip');
        const request = { model, cut: INPUT_CUT, precision: 'fp32' as const, granularity: 'channel' as const, task };
        const refused = (e: unknown): boolean => e instanceof InferError && e.code === 'NOT_AUTHORISED';
        // The attacker's own input, with R's signed entries and without them; then R's own bytes: each
        // refused as not R, before any work (one attempt per executor: two offences isolate a peer).
        await assert.rejects(attacker.client.infer(v.peerId, { ...request, entries }, theirs, 10_000), refused);
        await assert.rejects(attacker.client.infer(w.peerId, request, theirs, 10_000), refused);
        await assert.rejects(attacker.client.infer(x.peerId, { ...request, entries }, rInputs, 10_000), refused);
        // A member asking for a task that is not assigned to the executor it asks.
        await assert.rejects(
          r.client.infer(
            attacker.peerId,
            { model, cut: INPUT_CUT, precision: 'fp32', granularity: 'channel', task, entries },
            image(1),
            10_000,
          ),
          (e: unknown) => e instanceof InferError && e.code === 'NOT_ASSIGNED',
        );
        // R itself with other bytes than it committed to.
        await assert.rejects(
          r.client.infer(
            v.peerId,
            { model, cut: INPUT_CUT, precision: 'fp32', granularity: 'channel', task, entries },
            theirs,
            10_000,
          ),
          (e: unknown) => e instanceof InferError && e.code === 'INPUT_MISMATCH',
        );
        [v, w, x].forEach((e, i) =>
          assert.equal(e.ledger!.summary().get(e.ledger!.self!)?.maxSeq ?? 0, before[i], `${e.name} wrote nothing`),
        );
        for (const e of [v, w, x]) assert.ok(e.reputation.score(attacker.peerId) < 0, 'the attempt cost the attacker');
        // The executors fetch R's committed input by digest and decide the task on it.
        const t = await decidedEverywhere(robots, task);
        assert.ok(fingerprintsAgree(t.decision!, await honest(r, rInputs, task)), 'decided on R\u2019s input');
        assert.ok(t.results.every((res) => res.digest === t.results[0].digest || fingerprintsAgree(t.results[0], res)));
      },
    );

    for (const fault of ['wrong', 'permuted', 'scaled', 'garbage'] as LieKind[]) {
      it(
        `one liar of three executors (f = 1) answering ${fault} ` +
          `results: decided correctly, the liar penalised in every log`,
        async () => {
          const [r, liar, h1, h2] = robots;
          liar.taskExecutor!.misbehave = lie(fault);
          const before = liar.ledger!.state.reputation.get(liar.ledger!.self!) ?? 0;
          const inputs = image(seed++);
          const out = await r.inferTask(r.models.hashes()[0], inputs, {
            f: 1,
            peers: [liar.peerId, h1.peerId, h2.peerId],
          });
          assert.equal(out.status, 'final', JSON.stringify(out.attempts));
          const t = await decidedEverywhere(robots, out.task);
          assert.ok(fingerprintsAgree(t.decision!, await honest(r, inputs, out.task)));
          assert.deepEqual(t.decision!.executors, [h1, h2].map((x) => x.ledger!.self!).sort());
          await waitFor(() => t.losers.includes(liar.ledger!.self!), 'the liar judged');
          for (const x of robots)
            assert.equal(x.ledger!.state.reputation.get(liar.ledger!.self!), before + REPUTATION.losingResult);
          assert.ok(out.outputs, 'the requester got the decided outputs');
        },
      );
    }

    it(
      'one executor stalls, another hangs up mid-request: the ' +
        'honest pair decides, both are penalised by the requester',
      async () => {
        const [r, staller, h1, h2, quitter] = robots;
        staller.taskExecutor!.misbehave = stall();
        const inputs = image(seed++);
        const t0 = staller.ledger!.size;
        const out = await r.inferTask(r.models.hashes()[0], inputs, {
          f: 1,
          peers: [staller.peerId, h1.peerId, h2.peerId],
          timeoutMs: 1500,
        });
        assert.equal(out.status, 'final');
        await waitFor(() => r.reputation.score(staller.peerId) < 0, 'the stall to cost reputation with the requester');
        assert.equal(staller.ledger!.size >= t0, true);
        // A robot that drops the connection when the request arrives.
        quitter.service.once('request', () => void quitter.host.partition([r.peerId]));
        const hung = await r.inferTask(r.models.hashes()[0], image(seed++), {
          f: 1,
          peers: [quitter.peerId, h1.peerId, h2.peerId],
          timeoutMs: 1500,
        });
        assert.equal(hung.status, 'final');
        await waitFor(() => r.reputation.score(quitter.peerId) < 0, 'hanging up to cost reputation with the requester');
        quitter.host.heal();
        await waitFor(() => r.host.connectedPeers().includes(quitter.peerId), 'the quitter back');
      },
    );

    it(
      'a liar and a staller among three: no quorum, the ' + 'requester assigns one more and the task is decided',
      async () => {
        const [r, staller, liar, h1, h2] = robots;
        liar.taskExecutor!.misbehave = lie('wrong');
        staller.taskExecutor!.misbehave = stall();
        const inputs = image(seed++);
        const out = await r.inferTask(r.models.hashes()[0], inputs, {
          f: 1,
          peers: [liar.peerId, staller.peerId, h1.peerId],
          timeoutMs: 1500,
          deadlineMs: 20_000,
        });
        assert.equal(out.status, 'final', JSON.stringify(out.attempts));
        assert.ok(out.reassigned >= 1, 'more executors were assigned');
        const t = await decidedEverywhere(robots, out.task);
        assert.ok(t.executors.includes(h2.ledger!.self!), 'the spare robot was assigned');
        assert.deepEqual(t.decision!.executors, [h1, h2].map((x) => x.ledger!.self!).sort());
        assert.ok(fingerprintsAgree(t.decision!, await honest(r, inputs, out.task)));
      },
    );

    it('f = 2: two liars of five that collude on the same wrong answer lose to three honest results', async () => {
      const [r, , a, b] = robots;
      a.taskExecutor!.misbehave = lie('wrong');
      b.taskExecutor!.misbehave = lie('wrong');
      const inputs = image(seed++);
      const out = await r.inferTask(r.models.hashes()[0], inputs, { f: 2, deadlineMs: 20_000 });
      assert.equal(out.status, 'final', JSON.stringify(out.attempts));
      const t = await decidedEverywhere(robots, out.task);
      assert.equal(t.executors.length, 5, 'four peers and the requester');
      const liars = [a, b].map((x) => x.ledger!.self!);
      const wrong = t.results.filter((x) => liars.includes(x.author));
      assert.equal(wrong.length, 2);
      assert.ok(fingerprintsAgree(wrong[0], wrong[1]), 'the liars agree with each other');
      assert.ok(fingerprintsAgree(t.decision!, await honest(r, inputs, out.task)));
      await waitFor(() => liars.every((l) => t.losers.includes(l)), 'both liars judged');
    });

    it(
      'a 2|2 partition: provisional decisions in both ' + 'halves, final after the heal, the same on every robot',
      async () => {
        const four = robots.slice(0, 4);
        const [a, b, c, d] = four;
        const cut = async (group: Robot[], others: Robot[]) => {
          for (const x of group) await x.host.partition(others.map((o) => o.peerId).concat(robots[4].peerId));
        };
        await cut([a, b], [c, d]);
        await cut([c, d], [a, b]);
        await robots[4].host.partition(four.map((x) => x.peerId));
        await waitFor(() => four.every((x) => x.host.connectedPeers().length === 1), 'two halves of two');
        const inA = image(seed++);
        const inC = image(seed++);
        const [left, right] = await Promise.all([
          a.inferTask(a.models.hashes()[0], inA, { f: 1, timeoutMs: 1000 }),
          c.inferTask(c.models.hashes()[0], inC, { f: 1, timeoutMs: 1000 }),
        ]);
        assert.equal(left.status, 'provisional');
        assert.equal(right.status, 'provisional');
        assert.ok(left.outputs && right.outputs, 'each requester has an answer in its half');
        assert.equal(stateOf(b, left.task)?.status, 'provisional');
        assert.equal(stateOf(c, left.task), undefined, 'the other half never heard of it');
        for (const x of robots) x.host.heal();
        const healed = robots.slice(0, 5);
        const tl = await decidedEverywhere(healed, left.task);
        const tr = await decidedEverywhere(healed, right.task);
        assert.ok(fingerprintsAgree(tl.decision!, await honest(a, inA, left.task)));
        assert.ok(fingerprintsAgree(tr.decision!, await honest(c, inC, right.task)));
        assert.ok(tl.executors.length >= 3 && tr.executors.length >= 3);
        assert.ok(tl.provisional && tr.provisional, 'the provisional answers stay on record');
      },
    );

    it(
      'a task whose poster left: members volunteer in rank ' + 'order, fetch the input from an executor, decide it',
      async () => {
        const [r, v] = robots;
        const rest = robots.slice(1);
        const model = r.models.hashes()[0];
        const frame = encodeFrame(image(seed++));
        const input = blobDigest(frame);
        const task = 'orphan-1';
        // Posted and assigned to one executor only, which got the input; then the poster leaves.
        await blobs.get(v)!.put(frame);
        r.ledger!.appendBatch([
          {
            type: 'task',
            task,
            model,
            cut: INPUT_CUT,
            precision: 'fp32',
            input,
            bytes: frame.length,
            f: 1,
            timeout: 800,
          },
          { type: 'assign', task, executors: [v.ledger!.self!] },
        ]);
        await waitFor(() => rest.every((x) => stateOf(x, task) !== undefined), 'the task everywhere');
        await r.stop();
        const t = await decidedEverywhere(rest, task);
        const volunteers = t.assignments.filter((x) => x.kind === 'volunteer');
        assert.ok(volunteers.length >= 2, 'volunteers joined');
        assert.ok(volunteers.every((x) => x.added.length === 1 && x.added[0] === x.by));
        assert.ok(t.executors.length >= 3);
        assert.ok(fingerprintsAgree(t.decision!, await honest(v, image(seed - 1), task)));
      },
    );
  },
);
