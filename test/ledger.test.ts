import assert from 'node:assert/strict';
import * as cbor from '@ipld/dag-cbor';
import { REPUTATION, isExcluded } from '../contracts/fleet-state.js';
import { signerFromSeed } from '../protocol/ed25519.js';
import { EntryError, type Entry, MAX_ENTRY_BYTES, decodeEntry, signEntry, toHex } from '../protocol/log-entry.js';
import { Ledger, MissingParentsError } from '../nodes/ledger/ledger.js';
import { MemoryLogStore } from '../nodes/ledger/store.js';
import { localSyncPeer, pullFrom } from '../nodes/ledger/sync.js';
import { memoryFleet } from './helpers/ledger-fleet.js';

const expectEntryError = (code: string, fn: () => unknown): void => {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof EntryError, `expected EntryError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return true;
  });
};

describe('log entries and ingestion (Byzantine input)', () => {
  it('round-trips canonical bytes; the id is the hash of the signed bytes', () => {
    const { ledgers } = memoryFleet(2);
    const e = ledgers[1].append({ type: 'claim', task: 't1' });
    const d = decodeEntry(e.bytes);
    assert.equal(d.idHex, e.idHex);
    assert.deepEqual(d.entry.payload, { type: 'claim', task: 't1' });
  });

  it('rejects a forged signature, a tampered byte, and a non-canonical encoding', () => {
    const { ledgers } = memoryFleet(2);
    const e = ledgers[1].append({ type: 'claim', task: 't1' });
    const forged = cbor.decode(e.bytes) as Entry;
    forged.sig = new Uint8Array(64).fill(9);
    expectEntryError('BAD_SIGNATURE', () => ledgers[0].ingest(cbor.encode(forged)));
    const altered = cbor.decode(e.bytes) as Entry;
    altered.payload = { type: 'claim', task: 't2' };
    expectEntryError('BAD_SIGNATURE', () => ledgers[0].ingest(cbor.encode(altered)));
    const flipped = e.bytes.slice();
    flipped[flipped.length - 3] ^= 1;
    assert.throws(() => ledgers[0].ingest(flipped), EntryError);
    // Same content, map keys out of canonical order: not the canonical bytes, rejected.
    const j = cbor.decode(e.bytes) as Record<string, unknown>;
    const reordered = new Map(Object.entries(j).reverse());
    assert.throws(() => decodeEntry(cborMap(reordered)), EntryError);
  });

  it('rejects malformed payloads, unknown fields and oversize entries', () => {
    const key = signerFromSeed(new Uint8Array(32).fill(3));
    const bad = [
      { type: 'task', task: 'bad id with spaces', model: 'a'.repeat(64), input: 'a'.repeat(64), k: 1, timeout: 5 },
      { type: 'task', task: 't', model: 'a'.repeat(64), input: 'a'.repeat(64), k: 0, timeout: 5 },
      { type: 'result', task: 't', digest: 'a'.repeat(64), values: [0.5] },
      { type: 'claim', task: 't', extra: 1 },
      { type: 'teleport', task: 't' },
      { type: 'assign', task: 't', executors: [] },
    ];
    for (const payload of bad) {
      expectEntryError('MALFORMED', () => signEntry({ seq: 1, lamport: 1, parents: [], payload: payload as never }, key));
    }
    const huge = { type: 'genesis' as const, fleet: 'f', members: Array.from({ length: 300 }, () => 'a'.repeat(64)), admins: [] };
    expectEntryError('OVERSIZE', () => signEntry({ seq: 1, lamport: 1, parents: [], payload: huge }, key));
    expectEntryError('OVERSIZE', () => decodeEntry(new Uint8Array(MAX_ENTRY_BYTES + 1)));
    expectEntryError('MALFORMED', () => decodeEntry(Uint8Array.of(0xff, 0x00, 0x13)));
    expectEntryError('MALFORMED', () => decodeEntry(cbor.encode({ hello: 'world' })));
  });

  it('rejects entries from a key never admitted, and sequence and clock violations', () => {
    const { ledgers, signers } = memoryFleet(2);
    const stranger = new Ledger(new MemoryLogStore(), signerFromSeed(new Uint8Array(32).fill(99)));
    stranger.ingest(ledgers[0].get(ledgers[0].ids()[0])!);
    const s = stranger.append({ type: 'claim', task: 'x' });
    expectEntryError('UNKNOWN_AUTHOR', () => ledgers[0].ingest(s.bytes));
    const genesisId = ledgers[0].ids()[0];
    const skip = signEntry({ seq: 3, lamport: 5, parents: [Buffer.from(genesisId, 'hex')], payload: { type: 'claim', task: 'x' } }, signers[1]);
    expectEntryError('WRONG_SEQUENCE', () => ledgers[0].ingest(skip.bytes));
    const stale = signEntry({ seq: 1, lamport: 1, parents: [Buffer.from(genesisId, 'hex')], payload: { type: 'claim', task: 'x' } }, signers[1]);
    expectEntryError('WRONG_CLOCK', () => ledgers[0].ingest(stale.bytes));
    const orphan = signEntry({ seq: 1, lamport: 9, parents: [new Uint8Array(32).fill(1)], payload: { type: 'claim', task: 'x' } }, signers[1]);
    assert.throws(() => ledgers[0].ingest(orphan.bytes), MissingParentsError);
    assert.equal(ledgers[0].size, 1, 'nothing invalid was stored');
  });

  it('a replayed entry is a no-op', () => {
    const { ledgers } = memoryFleet(2);
    const e = ledgers[1].append({ type: 'claim', task: 't' });
    assert.equal(ledgers[0].ingest(e.bytes), 'added');
    const hash = ledgers[0].stateHash();
    for (let i = 0; i < 3; i++) assert.equal(ledgers[0].ingest(e.bytes), 'duplicate');
    assert.equal(ledgers[0].stateHash(), hash);
  });

  it('equivocation (two entries, one (author, seq)) is kept as evidence and punished on every replica', async () => {
    const { ledgers, signers } = memoryFleet(3);
    const liar = signers[2];
    const head = Buffer.from(ledgers[0].heads()[0], 'hex');
    const a = signEntry({ seq: 1, lamport: 2, parents: [head], payload: { type: 'claim', task: 'one' } }, liar);
    const b = signEntry({ seq: 1, lamport: 2, parents: [head], payload: { type: 'claim', task: 'two' } }, liar);
    assert.equal(ledgers[0].ingest(a.bytes), 'added');
    assert.equal(ledgers[0].ingest(b.bytes), 'equivocation');
    assert.equal(ledgers[1].ingest(b.bytes), 'added');
    assert.equal(ledgers[1].ingest(a.bytes), 'equivocation');
    const third = signEntry({ seq: 1, lamport: 2, parents: [head], payload: { type: 'claim', task: 'three' } }, liar);
    expectEntryError('WRONG_SEQUENCE', () => ledgers[0].ingest(third.bytes));
    await pullFrom(ledgers[2], localSyncPeer(ledgers[0]));
    const liarHex = toHex(liar.publicKey);
    for (const l of ledgers) {
      assert.equal(l.state.equivocations.length, 1);
      assert.equal(l.state.reputation.get(liarHex), REPUTATION.equivocation);
      assert.ok(isExcluded(l.state, liarHex));
    }
    assert.equal(ledgers[0].stateHash(), ledgers[1].stateHash());
    assert.equal(ledgers[0].stateHash(), ledgers[2].stateHash());
  });
});

describe('contracts', () => {
  it('quorum: a result is accepted when k executors agree within tolerance; the dissenter loses reputation', () => {
    const { ledgers, signers } = memoryFleet(4);
    const [admin] = ledgers;
    const ex = signers.slice(1).map((s) => toHex(s.publicKey));
    const share = (l: Ledger): void => {
      for (const other of ledgers) if (other !== l) for (const id of l.ids()) if (!other.has(id)) other.ingest(l.get(id)!);
    };
    admin.append({ type: 'task', task: 'det-1', model: 'a'.repeat(64), input: 'b'.repeat(64), k: 2, timeout: 50 });
    admin.append({ type: 'assign', task: 'det-1', executors: ex });
    share(admin);
    ledgers[1].append({ type: 'result', task: 'det-1', digest: '1'.repeat(64), values: [500_000, 250_000] });
    share(ledgers[1]);
    ledgers[3].append({ type: 'result', task: 'det-1', digest: '3'.repeat(64), values: [900_000, 250_000] });
    share(ledgers[3]);
    assert.equal(admin.state.tasks.get('det-1')!.status, 'assigned', 'no quorum yet: results disagree');
    // Bitwise different but within 1e-3: agrees with robot 1.
    ledgers[2].append({ type: 'result', task: 'det-1', digest: '2'.repeat(64), values: [500_400, 249_900] });
    share(ledgers[2]);
    for (const l of ledgers) {
      const t = l.state.tasks.get('det-1')!;
      assert.equal(t.status, 'accepted');
      assert.deepEqual(t.accepted!.executors, [ex[0], ex[1]].sort());
      assert.equal(l.state.reputation.get(ex[2]), REPUTATION.losingResult);
    }
  });

  it('two partitions assigning one task differently resolve the same way everywhere; the losing work stays on record', async () => {
    const { ledgers, signers } = memoryFleet(4);
    const hex = signers.map((s) => toHex(s.publicKey));
    const [admin, poster, x, y] = ledgers;
    const sync = async (to: Ledger, from: Ledger): Promise<void> => void (await pullFrom(to, localSyncPeer(from)));
    poster.append({ type: 'task', task: 'map-7', model: 'a'.repeat(64), input: 'b'.repeat(64), k: 1, timeout: 100 });
    for (const l of [admin, x, y]) await sync(l, poster);
    // Partition {admin, x} | {poster, y}: each side assigns the task to its own robot, which computes it.
    admin.append({ type: 'assign', task: 'map-7', executors: [hex[2]] });
    await sync(x, admin);
    x.append({ type: 'result', task: 'map-7', digest: 'e'.repeat(64), values: [] });
    await sync(admin, x);
    poster.append({ type: 'assign', task: 'map-7', executors: [hex[3]] });
    await sync(y, poster);
    y.append({ type: 'result', task: 'map-7', digest: 'f'.repeat(64), values: [] });
    await sync(poster, y);
    assert.notEqual(admin.state.tasks.get('map-7')!.accepted!.digest, poster.state.tasks.get('map-7')!.accepted!.digest);
    // Heal: anti-entropy between everyone.
    for (let round = 0; round < 2; round++) for (const a of ledgers) for (const b of ledgers) if (a !== b) await sync(a, b);
    const hashes = ledgers.map((l) => l.stateHash());
    assert.ok(hashes.every((h) => h === hashes[0]), 'one state everywhere');
    const t = admin.state.tasks.get('map-7')!;
    const winner = t.assignment!;
    assert.equal(t.superseded.length, 1, 'the other assignment is on record as superseded');
    assert.equal(t.results.length, 2, 'both sides\u2019 results are kept');
    assert.deepEqual(t.accepted!.executors, winner.executors, 'only the winning assignment\u2019s executor counts');
    const first = [t.superseded[0], winner].sort((p, q) => p.lamport - q.lamport || (p.id < q.id ? -1 : 1))[0];
    assert.equal(winner.id, first.id, 'the winner is the first assignment in (lamport, id) order');
  });

  it('incremental folding: appends at the tip never refold; a late entry refolds only from its position', async () => {
    const { ledgers } = memoryFleet(2);
    const [a, b] = ledgers;
    for (let i = 0; i < 600; i++) a.append({ type: 'claim', task: `t${i}` });
    assert.equal(a.fold.refolded, 0);
    const late = b.append({ type: 'claim', task: 'late' }); // clock 2: lands near the start of a's order
    await pullFrom(a, localSyncPeer(b));
    assert.ok(a.has(late.idHex));
    assert.ok(a.fold.refolded > 0 && a.fold.refolded <= 602, `refolded ${a.fold.refolded}`);
    const fresh = new Ledger(new MemoryLogStore());
    for (const id of a.ids()) fresh.ingest(a.get(id)!);
    assert.equal(fresh.stateHash(), a.stateHash(), 'incremental state equals a fold from scratch');
  });
});

/** DAG-CBOR by hand for a map in a given key order (the encoder would sort the keys). */
function cborMap(map: Map<string, unknown>): Uint8Array {
  const parts: Uint8Array[] = [Uint8Array.of(0xa0 + map.size)];
  for (const [k, v] of map) parts.push(cbor.encode(k), cbor.encode(v));
  return Buffer.concat(parts);
}
