import assert from 'node:assert/strict';
import { REPUTATION, isExcluded } from '../../contracts/fleet-state.js';
import { executorBudget } from '../../contracts/tasks.js';
import { toHex } from '../../protocol/log-entry.js';
import { TOLERANCE, fingerprintsAgree, resultFingerprint } from '../../protocol/result-fingerprint.js';
import type { Tensor } from '../../protocol/tensor-frame.js';
import type { Ledger } from '../../nodes/ledger/ledger.js';
import { type LieKind, lie } from '../../nodes/tasks/faults.js';
import { executorsWanted, volunteerPosition } from '../../nodes/tasks/policy.js';
import { chooseExecutors } from '../../nodes/tasks/task-requester.js';
import type { Plan } from '../../nodes/scheduler/planner.js';
import { memoryFleet } from '../helpers/ledger-fleet.js';
import { answerTensor, resultPayload, taskPayload } from '../helpers/tasks.js';

/** Copies every entry `from` holds to every other ledger (a connected fleet). */
function share(ledgers: Ledger[], from: Ledger): void {
  for (const other of ledgers)
    if (other !== from) for (const id of from.ids()) if (!other.has(id)) other.ingest(from.get(id)!);
}

function fleet(n: number) {
  const { ledgers, signers } = memoryFleet(n, 9);
  const keys = signers.map((s) => toHex(s.publicKey));
  const append = (i: number, ...payloads: Parameters<Ledger['append']>[0][]): void => {
    ledgers[i].appendBatch(payloads);
    share(ledgers, ledgers[i]);
  };
  const task = (name: string) => ledgers[0].state.tasks.get(name)!;
  return { ledgers, keys, append, task };
}

describe('task contract: f + 1 agreeing of 2f + 1 assigned decide, the same on every robot', () => {
  it('two agreeing results (rounding apart) of three decide; the dissenter loses reputation everywhere', () => {
    const { ledgers, keys, append, task } = fleet(4);
    append(0, taskPayload('t1'), { type: 'assign', task: 't1', executors: keys.slice(1) });
    append(1, resultPayload('t1', 1));
    assert.equal(task('t1').status, 'assigned');
    append(3, resultPayload('t1', 2));
    assert.equal(task('t1').status, 'assigned', 'one of each: no quorum');
    append(2, resultPayload('t1', 1, 1e-6));
    for (const l of ledgers) {
      const t = l.state.tasks.get('t1')!;
      assert.equal(t.status, 'final');
      assert.deepEqual(t.decision!.executors, [keys[1], keys[2]].sort());
      assert.deepEqual(t.losers, [keys[3]]);
      assert.equal(l.state.reputation.get(keys[3]), REPUTATION.losingResult);
      assert.equal(l.state.reputation.get(keys[1]), REPUTATION.acceptedResult);
    }
  });

  it('credit earned by honest work is capped, and never shields a convicted robot from exclusion', () => {
    const { ledgers, keys, append } = fleet(4);
    // keys[3] agrees on 30 tasks: its credit stops at REPUTATION.maxCredit.
    for (let i = 0; i < 30; i++) {
      append(0, taskPayload(`c${i}`), { type: 'assign', task: `c${i}`, executors: keys.slice(1) });
      append(3, resultPayload(`c${i}`, 1));
      append(1, resultPayload(`c${i}`, 1));
    }
    assert.equal(ledgers[0].state.reputation.get(keys[3]), REPUTATION.maxCredit);
    // Offences reported by f + 1 = 2 members convict it: excluded whatever it earned.
    append(1, { type: 'offence', robot: keys[3], kind: 'flood', detail: 'bench' });
    assert.ok(!isExcluded(ledgers[0].state, keys[3]), 'one reporter is not enough');
    append(2, { type: 'offence', robot: keys[3], kind: 'flood', detail: 'bench' });
    for (const l of ledgers) {
      assert.equal(l.state.reputation.get(keys[3]), REPUTATION.offender);
      assert.ok(isExcluded(l.state, keys[3]));
    }
  });

  it('a robot with full credit is excluded by its seventh lie', () => {
    const { ledgers, keys, append } = fleet(4);
    let n = 0;
    const round = (liarAnswer: number) => {
      const t = `l${n++}`;
      append(0, taskPayload(t), { type: 'assign', task: t, executors: keys.slice(1) });
      append(1, resultPayload(t, 1));
      append(2, resultPayload(t, 1));
      append(3, resultPayload(t, liarAnswer));
    };
    for (let i = 0; i < 25; i++) round(1);
    assert.equal(ledgers[0].state.reputation.get(keys[3]), REPUTATION.maxCredit);
    const lies = (REPUTATION.maxCredit - REPUTATION.excludeAt) / -REPUTATION.losingResult;
    for (let i = 0; i < lies; i++) {
      assert.ok(!isExcluded(ledgers[0].state, keys[3]), `excluded after ${i} lies`);
      round(7);
    }
    for (const l of ledgers) assert.ok(isExcluded(l.state, keys[3]), `excluded after ${lies} lies`);
  });

  it('a late result is judged as it comes: agreeing gains, disagreeing loses', () => {
    const { ledgers, keys, append, task } = fleet(4);
    append(0, taskPayload('t1'), { type: 'assign', task: 't1', executors: keys.slice(1) });
    append(1, resultPayload('t1', 1));
    append(2, resultPayload('t1', 1));
    assert.equal(task('t1').status, 'final');
    append(3, resultPayload('t1', 5));
    assert.equal(ledgers[2].state.reputation.get(keys[3]), REPUTATION.losingResult);
    assert.equal(task('t1').decision!.executors.length, 2, 'the decision does not change');
  });

  it('results of authors not assigned are recorded and never counted', () => {
    const { keys, append, task } = fleet(5);
    append(0, taskPayload('t1'), { type: 'assign', task: 't1', executors: keys.slice(1, 4) });
    append(4, resultPayload('t1', 9));
    append(1, resultPayload('t1', 9));
    assert.equal(task('t1').status, 'assigned', 'robot 4 is not assigned: one counted result');
    assert.equal(task('t1').results.length, 2);
    append(2, resultPayload('t1', 9));
    assert.equal(task('t1').status, 'final');
    assert.deepEqual(task('t1').decision!.executors, [keys[1], keys[2]].sort());
  });

  it('only the poster (or an admin) assigns others; a member volunteers itself alone, within the budget', () => {
    const { ledgers, keys, append, task } = fleet(8);
    append(1, taskPayload('t1', { f: 1 }), { type: 'assign', task: 't1', executors: [keys[2]] });
    append(3, { type: 'assign', task: 't1', executors: [keys[4]] });
    assert.deepEqual(task('t1').executors, [keys[2]], 'a member cannot assign another');
    assert.match(ledgers[0].state.ignored.at(-1)!.reason, /volunteers itself alone/);
    for (const i of [3, 4, 5, 6]) append(i, { type: 'assign', task: 't1', executors: [keys[i]] });
    assert.deepEqual(
      task('t1').executors,
      [2, 3, 4, 5, 6].map((i) => keys[i]),
    );
    assert.equal(task('t1').executors.length, executorBudget(1));
    append(7, { type: 'assign', task: 't1', executors: [keys[7]] });
    assert.equal(task('t1').executors.length, executorBudget(1), 'past the budget: ignored');
    assert.match(ledgers[0].state.ignored.at(-1)!.reason, /budget/);
    assert.deepEqual(
      task('t1').assignments.map((a) => a.kind),
      ['poster', 'volunteer', 'volunteer', 'volunteer', 'volunteer'],
    );
  });

  it(
    'fewer than 2f + 1 assigned: a provisional answer (the ' +
      'poster\u2019s own run counts), final once assigned in full',
    () => {
      const { keys, append, task } = fleet(4);
      // A partition: the poster reaches only robot 1 and runs the task itself.
      append(0, taskPayload('t1'), { type: 'assign', task: 't1', executors: [keys[0], keys[1]] });
      append(0, resultPayload('t1', 3));
      assert.equal(task('t1').status, 'provisional');
      assert.deepEqual(task('t1').provisional!.executors, [keys[0]]);
      append(1, resultPayload('t1', 3, 1e-6));
      assert.equal(task('t1').status, 'provisional', 'two agree, but only two are assigned');
      assert.equal(task('t1').provisional!.executors.length, 2);
      // The heal: the poster assigns a third executor.
      append(0, { type: 'assign', task: 't1', executors: [keys[2]] });
      assert.equal(task('t1').status, 'final');
      append(2, resultPayload('t1', 3));
      assert.equal(task('t1').status, 'final');
      assert.equal(task('t1').losers.length, 0);
    },
  );

  it('a provisional answer the full quorum disagrees with is overturned; both stay on record', () => {
    const { ledgers, keys, append, task } = fleet(4);
    append(0, taskPayload('t1'), { type: 'assign', task: 't1', executors: [keys[0]] });
    append(0, resultPayload('t1', 4));
    assert.equal(task('t1').status, 'provisional');
    append(0, { type: 'assign', task: 't1', executors: [keys[1], keys[2]] });
    append(1, resultPayload('t1', 5));
    append(2, resultPayload('t1', 5));
    const t = task('t1');
    assert.equal(t.status, 'overturned');
    assert.deepEqual(t.provisional!.executors, [keys[0]]);
    assert.deepEqual(t.decision!.executors, [keys[1], keys[2]].sort());
    assert.equal(ledgers[3].state.reputation.get(keys[0]), REPUTATION.losingResult, 'the poster\u2019s run lost');
  });

  it(
    'withhold-then-release: a liar\u2019s result with an ' +
      'early clock, released after the decision, changes nothing',
    () => {
      const { ledgers, keys, task } = fleet(4);
      const [poster, a, b, liar] = ledgers;
      poster.appendBatch([taskPayload('t1'), { type: 'assign', task: 't1', executors: keys.slice(1) }]);
      for (const l of [a, b, liar]) share([l], poster);
      // The liar computes (a wrong answer) at once but keeps its entry to itself.
      liar.append(resultPayload('t1', 8));
      a.append(resultPayload('t1', 2));
      b.append(resultPayload('t1', 2));
      for (const l of [a, b]) {
        share([poster, a, b], l);
      }
      assert.equal(task('t1').status, 'final');
      const before = { ...task('t1').decision! };
      // Released: its clock is earlier than both honest results'.
      share([poster, a, b], liar);
      share([liar], poster);
      const hashes = ledgers.map((l) => l.stateHash());
      assert.ok(
        hashes.every((h) => h === hashes[0]),
        'one state everywhere',
      );
      for (const l of ledgers) {
        const t = l.state.tasks.get('t1')!;
        assert.equal(t.status, 'final');
        assert.equal(t.decision!.digest, before.digest);
        assert.deepEqual(t.decision!.executors, before.executors);
        assert.deepEqual(t.losers, [keys[3]]);
      }
    },
  );

  it('two colluding liars of five (f = 2) agree with each other and still lose', () => {
    const { keys, append, task } = fleet(6);
    append(0, taskPayload('t1', { f: 2 }), { type: 'assign', task: 't1', executors: keys.slice(1) });
    append(4, resultPayload('t1', 7));
    append(5, resultPayload('t1', 7));
    append(1, resultPayload('t1', 1));
    assert.equal(task('t1').status, 'assigned', 'two liars are not f + 1 = 3');
    append(2, resultPayload('t1', 1));
    append(3, resultPayload('t1', 1));
    assert.equal(task('t1').status, 'final');
    assert.deepEqual(task('t1').losers.sort(), [keys[4], keys[5]].sort());
  });
});

describe('task policy: who acts on an undecided task', () => {
  it('the poster wants executors up to 2f + 1, then enough for f + 1 to agree; volunteers queue by rank', () => {
    const { ledgers, keys, append, task } = fleet(6);
    append(0, taskPayload('t1'), { type: 'assign', task: 't1', executors: [keys[0]] });
    assert.equal(executorsWanted(ledgers[0].state, task('t1')), 2);
    append(0, { type: 'assign', task: 't1', executors: [keys[1], keys[2]] });
    append(1, resultPayload('t1', 1));
    append(2, resultPayload('t1', 2));
    assert.equal(executorsWanted(ledgers[0].state, task('t1')), 1);
    const positions = [3, 4, 5].map((i) => volunteerPosition(ledgers[0].state, task('t1'), keys[i]));
    assert.deepEqual([...positions].sort(), [0, 1, 2], 'each unassigned member has its own place');
    assert.equal(volunteerPosition(ledgers[0].state, task('t1'), keys[0]), -1, 'not the poster');
    assert.equal(volunteerPosition(ledgers[0].state, task('t1'), keys[1]), -1, 'not one assigned');
  });

  it('the requester picks the (kind, cut, precision) the most peers can run, and runs it too when short', () => {
    const plan = (peer: string, cut: string, ms: number): Plan => ({
      kind: 'split',
      peer,
      cut,
      precision: 'fp32',
      predictedMs: ms,
      breakdown: { headMs: 0, transferMs: 0, rttMs: 0, queueMs: 0, tailMs: 0 },
    });
    const ranked = [plan('a', 'c1', 10), plan('a', 'c2', 11), plan('b', 'c2', 12), plan('c', 'c2', 13)];
    assert.deepEqual(chooseExecutors(ranked, 3), {
      kind: 'split',
      cut: 'c2',
      precision: 'fp32',
      peers: ['a', 'b', 'c'],
      withSelf: false,
    });
    assert.equal(chooseExecutors(ranked.slice(0, 2), 3).withSelf, true);
    assert.equal(chooseExecutors([], 3).kind, 'local');
  });
});

describe('result fingerprints: lies never agree, honest rounding does', () => {
  const honest = answerTensor(1);
  const fp = (outputs: Tensor[]) => resultFingerprint('task-7', outputs);
  const kinds: LieKind[] = ['wrong', 'permuted', 'scaled', 'shifted', 'garbage', 'truncated'];

  it('each kind of lie disagrees with the honest result', () => {
    for (const kind of kinds) {
      const lied = lie(kind).outputs!(honest, { task: 'task-7' } as never);
      assert.equal(fingerprintsAgree(fp(honest), fp(lied)), false, kind);
    }
  });

  it('rounding differences a thousand times below the tolerance agree; at the tolerance they do not', () => {
    assert.ok(fingerprintsAgree(fp(honest), fp(answerTensor(1, 1e-6))));
    assert.ok(!fingerprintsAgree(fp(honest), fp(answerTensor(1, 10 * TOLERANCE))));
  });

  it('a detector-like map with a few bright regions: a moved region disagrees', () => {
    const map = new Float32Array(64 * 64);
    for (let y = 10; y < 14; y++) for (let x = 5; x < 40; x++) map[y * 64 + x] = 0.9;
    const moved = new Float32Array(64 * 64);
    for (let y = 30; y < 34; y++) for (let x = 5; x < 40; x++) moved[y * 64 + x] = 0.9;
    const t = (data: Float32Array): Tensor[] => [{ name: 'maps', dtype: 'float32', dims: [1, 1, 64, 64], data }];
    assert.ok(!fingerprintsAgree(fp(t(map)), fp(t(moved))));
  });

  it('integer outputs agree only when equal; another name or shape never agrees', () => {
    const ints = (v: number): Tensor[] => [
      { name: 'ids', dtype: 'int32', dims: [4], data: new Int32Array([1, 2, 3, v]) },
    ];
    assert.ok(fingerprintsAgree(fp(ints(4)), { ...fp(ints(4)), digest: 'f'.repeat(64) }));
    assert.ok(!fingerprintsAgree(fp(ints(4)), fp(ints(5))));
    const renamed = [{ ...honest[0], name: 'z' }];
    assert.ok(!fingerprintsAgree(fp(honest), fp(renamed)));
  });

  it('malformed fingerprint bytes never agree with anything but their own digest', () => {
    const good = fp(honest);
    const junk = { digest: 'e'.repeat(64), fingerprint: good.fingerprint.slice(0, 20) };
    assert.ok(!fingerprintsAgree(good, junk));
    assert.ok(!fingerprintsAgree(junk, { ...junk, digest: 'd'.repeat(64) }));
  });
});
