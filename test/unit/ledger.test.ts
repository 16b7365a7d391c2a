import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as cbor from '@ipld/dag-cbor';
import { REPUTATION, isExcluded } from '../../contracts/fleet-state.js';
import { signerFromSeed } from '../../protocol/ed25519.js';
import {
  EntryError,
  type Entry,
  MAX_ENTRY_BYTES,
  decodeEntry,
  sha256,
  signEntry,
  toHex,
} from '../../protocol/log-entry.js';
import { Ledger, MissingParentsError } from '../../nodes/ledger/ledger.js';
import { MemoryLogStore } from '../../nodes/ledger/store.js';
import { SqliteLogStore } from '../../nodes/ledger/sqlite-store.js';
import { localSyncPeer, pullFrom, servedRanges, servedStart } from '../../nodes/ledger/sync.js';
import { WireError } from '../../protocol/errors.js';
import { decodeLogGossip, packLogGossip } from '../../protocol/log-sync.js';
import { memoryFleet } from '../helpers/ledger-fleet.js';
import { taskPayload } from '../helpers/tasks.js';

const expectEntryError = (code: string, fn: () => unknown): void => {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof EntryError, `expected EntryError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return true;
  });
};

describe('log entries and ingestion (Byzantine input)', () => {
  it('round-trips canonical bytes; the id is the hash of the content, not of the signature', () => {
    const { ledgers } = memoryFleet(2);
    const e = ledgers[1].append({ type: 'claim', task: 't1' });
    const d = decodeEntry(e.bytes);
    assert.equal(d.idHex, e.idHex);
    assert.deepEqual(d.entry.payload, { type: 'claim', task: 't1' });
    assert.notEqual(d.idHex, toHex(sha256(e.bytes)));
  });

  it(
    'a batch carries one signature: every entry verifies alone; ' +
      'a wrong path, index, count or borrowed signature does not',
    () => {
      const { ledgers } = memoryFleet(3);
      const batch = ledgers[1].appendBatch(
        Array.from({ length: 37 }, (_, i) => ({ type: 'claim' as const, task: `b${i}` })),
      );
      assert.equal(new Set(batch.map((d) => toHex(d.entry.sig))).size, 1, 'one signature for the batch');
      batch.forEach((d, i) => {
        assert.deepEqual(d.entry.batch.index, i);
        assert.equal(d.entry.batch.count, 37);
        assert.equal(decodeEntry(d.bytes).idHex, d.idHex);
        assert.equal(d.entry.parents.length, 1);
        if (i > 0) assert.equal(toHex(d.entry.parents[0]), batch[i - 1].idHex, 'each entry names the previous one');
      });
      const other = ledgers[2].appendBatch([
        { type: 'claim', task: 'x1' },
        { type: 'claim', task: 'x2' },
      ]);
      const mutate = (d: (typeof batch)[number], change: (e: Entry) => void): Uint8Array => {
        const e = cbor.decode(d.bytes) as Entry;
        change(e);
        return cbor.encode(e);
      };
      const target = batch[5];
      const tampered = [
        mutate(target, (e) => (e.batch.path[0] = new Uint8Array(32).fill(4))),
        mutate(target, (e) => (e.batch.index = 6)),
        mutate(target, (e) => (e.batch.count = 36)),
        mutate(target, (e) => (e.batch.path = e.batch.path.slice(1))),
        mutate(target, (e) => (e.batch = batch[6].entry.batch)),
        mutate(target, (e) => (e.sig = other[0].entry.sig)),
        mutate(target, (e) => (e.payload = { type: 'claim', task: 'b5x' })),
        mutate(other[1], (e) => (e.batch = target.entry.batch)),
      ];
      for (const [i, bytes] of tampered.entries()) {
        assert.throws(
          () => decodeEntry(bytes),
          (err: unknown) => err instanceof EntryError && (err.code === 'BAD_SIGNATURE' || err.code === 'MALFORMED'),
          `tampering ${i} was not caught`,
        );
      }
      for (const bad of [
        { index: 0, count: 0, path: [] },
        { index: 3, count: 3, path: [] },
        { index: 0, count: 2, path: [new Uint8Array(31)] },
        { index: 0, count: 1 },
      ]) {
        expectEntryError('MALFORMED', () => decodeEntry(mutate(target, (e) => (e.batch = bad as Entry['batch']))));
      }
      // Entries of a batch arrive one by one, in order, on another replica.
      for (const d of batch) assert.equal(ledgers[0].ingest(d.bytes), 'added');
      assert.equal(ledgers[0].stateHash(), ledgers[1].stateHash());
    },
  );

  it(
    'a held entry re-sent with another signature is a duplicate ' +
      '(never replaces the stored bytes); unheld, it is rejected',
    () => {
      const { ledgers } = memoryFleet(3);
      const e = ledgers[1].append({ type: 'claim', task: 't1' });
      const forged = cbor.decode(e.bytes) as Entry;
      forged.sig = new Uint8Array(64).fill(9);
      const bytes = cbor.encode(forged);
      assert.equal(ledgers[0].ingest(e.bytes), 'added');
      assert.equal(ledgers[0].ingest(bytes), 'duplicate');
      assert.deepEqual(ledgers[0].get(e.idHex), e.bytes);
      expectEntryError('BAD_SIGNATURE', () => ledgers[2].ingest(bytes));
    },
  );

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
      taskPayload('bad id with spaces'),
      taskPayload('t', { f: 5 }),
      taskPayload('t', { bytes: 0 }),
      { ...taskPayload('t'), k: 2 },
      taskPayload('t', { precision: 'fp64' as 'fp32' }),
      taskPayload('t', { chain: 'not a hash' }),
      { type: 'result', task: 't', digest: 'a'.repeat(64), values: [1] },
      { type: 'result', task: 't', digest: 'a'.repeat(64), fingerprint: new Uint8Array(5000) },
      { type: 'claim', task: 't', extra: 1 },
      { type: 'teleport', task: 't' },
      { type: 'assign', task: 't', executors: [] },
    ];
    for (const payload of bad) {
      expectEntryError('MALFORMED', () =>
        signEntry({ seq: 1, lamport: 1, parents: [], payload: payload as never }, key),
      );
    }
    // A chain's last stage names its manifest; the field may be absent, never anything else.
    const chained = signEntry(
      { seq: 1, lamport: 1, parents: [], payload: taskPayload('t', { chain: 'c'.repeat(64) }) },
      key,
    );
    assert.equal((decodeEntry(chained.bytes).entry.payload as { chain?: string }).chain, 'c'.repeat(64));
    const huge = {
      type: 'genesis' as const,
      fleet: 'f',
      members: Array.from({ length: 300 }, () => 'a'.repeat(64)),
      admins: [],
    };
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
    const skip = signEntry(
      { seq: 3, lamport: 5, parents: [Buffer.from(genesisId, 'hex')], payload: { type: 'claim', task: 'x' } },
      signers[1],
    );
    expectEntryError('WRONG_SEQUENCE', () => ledgers[0].ingest(skip.bytes));
    const stale = signEntry(
      { seq: 1, lamport: 1, parents: [Buffer.from(genesisId, 'hex')], payload: { type: 'claim', task: 'x' } },
      signers[1],
    );
    expectEntryError('WRONG_CLOCK', () => ledgers[0].ingest(stale.bytes));
    const orphan = signEntry(
      { seq: 1, lamport: 9, parents: [new Uint8Array(32).fill(1)], payload: { type: 'claim', task: 'x' } },
      signers[1],
    );
    assert.throws(() => ledgers[0].ingest(orphan.bytes), MissingParentsError);
    assert.equal(ledgers[0].size, 1, 'nothing invalid was stored');
  });

  it('sync replies cut at a byte budget say so, and a pull over such replies still gets everything', async () => {
    const { ledgers } = memoryFleet(4);
    const [a, ...others] = ledgers;
    for (const [i, l] of others.entries())
      l.appendBatch(Array.from({ length: 40 }, (_, k) => ({ type: 'claim' as const, task: `r${i}-${k}` })));
    const source = new Ledger(new MemoryLogStore());
    for (const l of ledgers) for (const id of l.ids()) if (!source.has(id)) source.ingest(l.get(id)!);
    const want = others.map((l) => ({ author: l.self!, lo: 1, hi: 40 }));
    const cut = servedRanges(source, want, 1000, 3000);
    assert.equal(cut.full, true);
    assert.ok(cut.entries.length > 0 && cut.entries.length < 120, `${cut.entries.length} entries`);
    assert.equal(servedRanges(source, want, 1000).full, false);
    const result = await pullFrom(a, {
      start: async (ours, limit) => servedStart(source, ours, limit, 3000),
      ranges: async (w, limit) => servedRanges(source, w, limit, 3000),
    });
    assert.equal(result.added, 120);
    assert.ok(result.rounds > 3, `${result.rounds} rounds`);
    assert.equal(a.stateHash(), source.stateHash());
  });

  it("a new member's entry that arrives before the admit it descends from waits for it, then goes in", () => {
    const { ledgers } = memoryFleet(2, 31);
    const [admin, observer] = ledgers;
    const newcomer = new Ledger(new MemoryLogStore(), signerFromSeed(new Uint8Array(32).fill(131)));
    const admit = admin.append({ type: 'admit', member: newcomer.self! });
    for (const id of admin.ids()) newcomer.ingest(admin.get(id)!);
    const first = newcomer.append({ type: 'claim', task: 'hello' });
    assert.throws(() => observer.ingest(first.bytes), MissingParentsError, 'its parent (the admit) is not here yet');
    observer.ingest(admit.bytes);
    assert.equal(observer.ingest(first.bytes), 'added');
  });

  it("isOwn tells our entries from others' by key, and self is our key in hex", () => {
    const { ledgers } = memoryFleet(2);
    const [a, b] = ledgers;
    const mine = a.append({ type: 'claim', task: 'own' });
    const theirs = b.append({ type: 'claim', task: 'other' });
    assert.equal(a.self, toHex(mine.entry.author));
    assert.equal(a.isOwn(mine), true);
    assert.equal(a.isOwn(theirs), false);
    assert.equal(new Ledger(new MemoryLogStore()).isOwn(mine), false, 'a ledger that does not sign owns nothing');
  });

  it(
    'a sync with more authors behind than one request may ' + 'name (1,100 > 1,024) still gets every one of them',
    async () => {
      const admin = signerFromSeed(new Uint8Array(32).fill(77));
      const members = Array.from({ length: 1100 }, (_, i) =>
        signerFromSeed(Uint8Array.from({ length: 32 }, (_, k) => (k < 2 ? [i & 0xff, i >> 8][k] : 78))),
      );
      // A genesis names a hundred (it must fit in 16 KiB): the admin admits the rest.
      const genesis = signEntry(
        {
          seq: 1,
          lamport: 1,
          parents: [],
          payload: {
            type: 'genesis',
            fleet: 'big',
            members: members.slice(0, 100).map((m) => toHex(m.publicKey)),
            admins: [toHex(admin.publicKey)],
          },
        },
        admin,
      );
      const source = new Ledger(new MemoryLogStore(), admin);
      source.ingest(genesis.bytes);
      source.appendBatch(members.slice(100).map((m) => ({ type: 'admit' as const, member: toHex(m.publicKey) })));
      const head = source.heads()[0];
      const entries = members.map(
        (m) =>
          signEntry(
            { seq: 1, lamport: 5000, parents: [Buffer.from(head, 'hex')], payload: { type: 'claim', task: 'c' } },
            m,
          ).bytes,
      );
      assert.ok(source.ingestBatch(entries).every((st) => st === 'added'));
      const want = members.map((m) => ({ author: toHex(m.publicKey), lo: 1, hi: 1 }));
      const reply = servedRanges(source, want, 4096);
      assert.equal(reply.entries.length, 1024, 'one request serves 1,024 authors');
      assert.equal(reply.full, true, 'and says there is more');
      const empty = new Ledger(new MemoryLogStore());
      empty.ingest(genesis.bytes);
      const result = await pullFrom(empty, localSyncPeer(source), 4096);
      assert.equal(result.added, 1000 + 1100);
      assert.ok(result.rounds >= 2);
      assert.equal(empty.stateHash(), source.stateHash());
    },
  );

  it(
    'log gossip packs entries published together into few ' + 'messages, parents first; malformed messages are refused',
    () => {
      const { ledgers } = memoryFleet(2);
      const entries = ledgers[1]
        .appendBatch(Array.from({ length: 600 }, (_, i) => ({ type: 'claim' as const, task: `g${i}` })))
        .map((d) => d.bytes);
      const messages = packLogGossip(entries);
      assert.equal(messages.length, 3);
      assert.deepEqual(messages.flatMap(decodeLogGossip), entries);
      for (const m of messages) assert.ok(ledgers[0].ingestBatch(decodeLogGossip(m)).every((st) => st === 'added'));
      assert.equal(ledgers[0].stateHash(), ledgers[1].stateHash());
      for (const bad of [
        cbor.encode([]),
        cbor.encode({ a: 1 }),
        cbor.encode([1, 2]),
        cbor.encode(Array.from({ length: 257 }, () => entries[0])),
        Uint8Array.of(0xff),
      ]) {
        assert.throws(() => decodeLogGossip(bad), WireError);
      }
    },
  );

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

  it(
    'slots survive a reopen: evidence stays capped at two, gaps stay ' +
      "refused, even when an author's seqs run against its clocks",
    async () => {
      const dir = await mkdtemp(join(tmpdir(), 'robomesh-slots-'));
      try {
        const { ledgers, signers } = memoryFleet(2);
        const liar = signers[1];
        const path = join(dir, 'log.sqlite');
        const ledger = new Ledger(new SqliteLogStore(path));
        for (const id of ledgers[0].ids()) ledger.ingest(ledgers[0].get(id)!);
        const root = Buffer.from(ledger.heads()[0], 'hex');
        // seq 2 names only genesis and carries a clock far below seq 1's: the store's (lamport, id)
        // order then lists seq 2 before seq 1.
        const one = signEntry({ seq: 1, lamport: 50, parents: [root], payload: { type: 'claim', task: 'one' } }, liar);
        const two = signEntry({ seq: 2, lamport: 2, parents: [root], payload: { type: 'claim', task: 'two' } }, liar);
        const twin = signEntry({ seq: 1, lamport: 3, parents: [root], payload: { type: 'claim', task: 'twin' } }, liar);
        assert.deepEqual(
          [one, two, twin].map((e) => ledger.ingest(e.bytes)),
          ['added', 'added', 'equivocation'],
        );
        const hash = ledger.stateHash();
        ledger.store.close();

        const reopened = new Ledger(new SqliteLogStore(path));
        try {
          assert.equal(reopened.stateHash(), hash);
          assert.equal(reopened.state.equivocations.length, 1);
          const third = signEntry(
            { seq: 1, lamport: 4, parents: [root], payload: { type: 'claim', task: 'three' } },
            liar,
          );
          expectEntryError('WRONG_SEQUENCE', () => reopened.ingest(third.bytes));
          const gap = signEntry(
            { seq: 4, lamport: 60, parents: [root], payload: { type: 'claim', task: 'gap' } },
            liar,
          );
          expectEntryError('WRONG_SEQUENCE', () => reopened.ingest(gap.bytes));
          // seq 2 had one entry before the reopen: a second is evidence, not a third.
          const twoTwin = signEntry(
            { seq: 2, lamport: 5, parents: [root], payload: { type: 'claim', task: 'two-twin' } },
            liar,
          );
          assert.equal(reopened.ingest(twoTwin.bytes), 'equivocation');
          const next = signEntry(
            { seq: 3, lamport: 61, parents: [one.id], payload: { type: 'claim', task: 'next' } },
            liar,
          );
          assert.equal(reopened.ingest(next.bytes), 'added');
          assert.deepEqual(reopened.summary().get(toHex(liar.publicKey)), { maxSeq: 3, count: 5 });
        } finally {
          reopened.store.close();
        }
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  );
});

describe('contracts', () => {
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

  it(
    'on a long log, a late entry near the tip refolds ≤ 256 + ' +
      'what follows it; one far back refolds ≤ 4096 + what follows',
    () => {
      const { ledgers } = memoryFleet(2);
      const [a, b] = ledgers;
      for (let i = 0; i < 9000; i += 500)
        a.appendBatch(Array.from({ length: 500 }, (_, k) => ({ type: 'claim' as const, task: `t${i + k}` })));
      const ids = a.ids();
      const lateAt = (position: number): number => {
        // b holds a's log up to `position`, so its entry's clock places it right there.
        for (const id of ids.slice(b.size, position)) b.ingest(a.get(id)!);
        const late = b.append({ type: 'claim', task: `late${position}` });
        const before = a.fold.refolded;
        a.ingest(late.bytes);
        return a.fold.refolded - before;
      };
      const near = lateAt(8990);
      assert.ok(near <= 256 + 12, `near the tip: refolded ${near}`);
      const far = lateAt(5000);
      assert.ok(far <= 4096 + 4002, `far back: refolded ${far}`);
      const fresh = new Ledger(new MemoryLogStore());
      for (const id of a.ids()) fresh.ingest(a.get(id)!);
      assert.equal(fresh.stateHash(), a.stateHash(), 'incremental state equals a fold from scratch');
    },
  );
});

/** DAG-CBOR by hand for a map in a given key order (the encoder would sort the keys). */
function cborMap(map: Map<string, unknown>): Uint8Array {
  const parts: Uint8Array[] = [Uint8Array.of(0xa0 + map.size)];
  for (const [k, v] of map) parts.push(cbor.encode(k), cbor.encode(v));
  return Buffer.concat(parts);
}
