import assert from 'node:assert/strict';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { BudgetError, ByteBudget, BytePacer, RateLimit } from '../../nodes/mesh/peer-budget.js';

/** Whether `p` settled within one turn of the event loop. */
async function settledNow(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  p.then(
    () => (done = true),
    () => (done = true),
  );
  await nextTurn();
  return done;
}

describe('per-peer budgets', () => {
  it('a rate limit gives each peer its burst, then what its rate refills', () => {
    let now = 0;
    const rate = new RateLimit(10, 3, () => now);
    assert.deepEqual(
      [1, 2, 3, 4].map(() => rate.take('a')),
      [true, true, true, false],
    );
    assert.equal(rate.take('b'), true, 'peers have buckets of their own');
    now += 100;
    assert.deepEqual([rate.take('a'), rate.take('a')], [true, false]);
  });

  it('a byte budget refuses beyond a peer’s share and beyond the total, counting nothing it refused', () => {
    const budget = new ByteBudget(100, 150);
    budget.reserve('a', 80);
    assert.throws(
      () => budget.reserve('a', 21),
      (e: unknown) => e instanceof BudgetError && e.code === 'IN_FLIGHT',
    );
    budget.reserve('b', 70);
    assert.throws(
      () => budget.reserve('c', 1),
      (e: unknown) => e instanceof BudgetError && e.code === 'IN_FLIGHT',
    );
    assert.equal(budget.inFlight, 150);
    budget.release('a', 80);
    budget.reserve('c', 1);
    assert.deepEqual([budget.of('a'), budget.of('b'), budget.of('c')], [0, 70, 1]);
  });

  it('a byte pacer lets a burst through at once and holds a peer beyond it until its rate allows', async () => {
    const now = 0;
    const pacer = new BytePacer(1000, 500, () => now);
    assert.equal(await settledNow(pacer.take('a', 400)), true);
    assert.equal(await settledNow(pacer.take('b', 500)), true, 'peers are paced apart');
    const stop = new AbortController();
    const held = pacer.take('a', 400, stop.signal); // 300 bytes over: 300 ms at 1000 B/s
    assert.equal(await settledNow(held), false);
    stop.abort(new Error('stream closed'));
    await assert.rejects(held, /stream closed/);
  });
});
