import assert from 'node:assert/strict';
import { toHex } from '../../protocol/log-entry.js';
import { type Ledger, MissingParentsError } from '../../nodes/ledger/ledger.js';
import { localSyncPeer, pullFrom } from '../../nodes/ledger/sync.js';
import { memoryFleet, prng, randomPayload } from '../helpers/ledger-fleet.js';
import { testSeed, withSeed } from '../helpers/seed.js';

/**
 * One random schedule: robots append while partitions come and go; gossip reaches only robots
 * in the same partition and drops some messages; a reconnection runs anti-entropy. After the
 * last heal every replica must hold the same entries and the same contract state, and no
 * acknowledged entry may be missing.
 */
async function runSchedule(seed: number): Promise<{ entries: number; partitions: number }> {
  const random = prng(seed);
  const n = 3 + Math.floor(random() * 4);
  const { ledgers, signers } = memoryFleet(n, seed & 0xff);
  const members = signers.map((s) => toHex(s.publicKey));
  let group = new Array<number>(n).fill(0);
  const acked = new Set<string>();
  const counter = { n: 0 };
  let partitions = 0;
  const sync = async (to: Ledger, from: Ledger): Promise<void> => {
    const r = await pullFrom(to, localSyncPeer(from));
    assert.deepEqual(r.rejected, [], 'honest entries are never rejected');
  };
  const steps = 10 + Math.floor(random() * 30);
  for (let step = 0; step < steps; step++) {
    const r = random();
    if (r < 0.12) {
      partitions++;
      const parts = 2 + Math.floor(random() * 2);
      group = group.map(() => Math.floor(random() * parts));
    } else if (r < 0.2) {
      // Heal: everyone in one partition again; reconnections run anti-entropy both ways.
      const before = group;
      group = new Array<number>(n).fill(0);
      for (let a = 0; a < n; a++)
        for (let b = 0; b < n; b++) if (a !== b && before[a] !== before[b]) await sync(ledgers[a], ledgers[b]);
    } else {
      const i = Math.floor(random() * n);
      const entry = ledgers[i].append(randomPayload(ledgers[i], members, random, counter));
      acked.add(entry.idHex);
      for (let j = 0; j < n; j++) {
        if (j === i || group[j] !== group[i] || random() < 0.3) continue; // other partition, or gossip lost
        try {
          ledgers[j].ingest(entry.bytes);
        } catch (err) {
          if (!(err instanceof MissingParentsError)) throw err;
          await sync(ledgers[j], ledgers[i]); // a gap shows: fetch from the sender
        }
      }
    }
  }
  // Final heal: anti-entropy between every pair, twice (a relay needs two hops at most).
  for (let round = 0; round < 2; round++)
    for (let a = 0; a < n; a++) for (let b = 0; b < n; b++) if (a !== b) await sync(ledgers[a], ledgers[b]);
  const ids = ledgers.map((l) => l.ids().sort().join(','));
  const hashes = ledgers.map((l) => l.stateHash());
  for (let k = 1; k < n; k++) {
    assert.equal(ids[k], ids[0], `replica ${k} holds a different entry set`);
    assert.equal(hashes[k], hashes[0], `replica ${k} folded a different state`);
  }
  for (const id of acked)
    assert.ok(
      ledgers.every((l) => l.has(id)),
      `acknowledged entry ${id} lost`,
    );
  return { entries: ledgers[0].size, partitions };
}

describe('log convergence under partitions (seeded property test)', function () {
  this.timeout(300_000);
  it('1,000 random schedules: every replica ends with the same entries and state, nothing lost', async () => {
    const base = testSeed();
    let entries = 0;
    let partitions = 0;
    for (let k = 0; k < 1000; k++) {
      const seed = (base + k * 7919) >>> 0;
      const r = await withSeed(seed, () => runSchedule(seed));
      entries += r.entries;
      partitions += r.partitions;
    }
    assert.ok(
      entries > 10_000 && partitions > 500,
      `schedules too small: ${entries} entries, ${partitions} partitions`,
    );
  });
});
