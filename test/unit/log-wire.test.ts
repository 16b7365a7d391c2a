import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as cbor from '@ipld/dag-cbor';
import Database from '../../nodes/ledger/sqlite.js';
import { signerFromSeed } from '../../protocol/ed25519.js';
import {
  type DecodedEntry,
  type Entry,
  EntryError,
  decodeEntry,
  entryId,
  parseEntry,
  signBatch,
  toHex,
  verifyEntries,
} from '../../protocol/log-entry.js';
import { SqliteLogStore } from '../../nodes/ledger/sqlite-store.js';
import { StoreError } from '../../nodes/ledger/store.js';
import { servedRanges } from '../../nodes/ledger/sync.js';
import { WireError } from '../../protocol/errors.js';
import {
  decodeRangesReply,
  decodeSummary,
  decodeSyncRequest,
  encodeRangesReply,
  encodeSummary,
  encodeSyncRequest,
} from '../../protocol/log-sync.js';
import { Ledger } from '../../nodes/ledger/ledger.js';
import { memoryFleet } from '../helpers/ledger-fleet.js';
import { prng } from '../../nodes/util/prng.js';
import { testSeed, withSeed } from '../helpers/seed.js';

const malformed = (bytes: Uint8Array, why: string): void => {
  assert.throws(
    () => parseEntry(bytes),
    (err: unknown) => err instanceof EntryError && err.code === 'MALFORMED',
    why,
  );
};

/** Replaces the first occurrence of `from` in `bytes` by `to`. */
function splice(bytes: Uint8Array, from: number[], to: number[]): Uint8Array {
  const hay = Buffer.from(bytes);
  const at = hay.indexOf(Buffer.from(from));
  assert.ok(at >= 0, 'pattern present');
  return Buffer.concat([hay.subarray(0, at), Buffer.from(to), hay.subarray(at + from.length)]);
}

const key = (s: string): number[] => [0x60 + s.length, ...Buffer.from(s)];

describe('log entry wire form (one-pass strict parse, batch verification, sync replies, store layout)', () => {
  const signer = signerFromSeed(new Uint8Array(32).fill(21));
  const drafts = [
    { seq: 1, lamport: 1, parents: [], payload: { type: 'claim' as const, task: 't' } },
    {
      seq: 30,
      lamport: 300,
      parents: [new Uint8Array(32).fill(1)],
      payload: { type: 'result' as const, task: 'r', digest: 'a'.repeat(64), fingerprint: new Uint8Array(300).fill(7) },
    },
    {
      seq: 31,
      lamport: 301,
      parents: [],
      payload: {
        type: 'anchor' as const,
        root: 'c'.repeat(64),
        count: 2 ** 32,
        heads: ['d'.repeat(64)],
        tx: 'tx',
        checkpoint: Number.MAX_SAFE_INTEGER,
        txBytes: new Uint8Array(24),
        txSig: 'sig',
      },
    },
    {
      seq: 70_000,
      lamport: 2 ** 33,
      parents: [],
      payload: { type: 'genesis' as const, fleet: 'flotte-é', members: ['b'.repeat(64)], admins: [] },
    },
  ];

  it('the id read from the bytes equals the id of the content as signed, for every value size and UTF-8', () => {
    const signed = signBatch(drafts, signer);
    signed.forEach((d, i) => {
      const parsed = parseEntry(d.bytes);
      assert.equal(parsed.idHex, toHex(entryId(drafts[i], signer.publicKey)));
      assert.deepEqual(parsed.entry, cbor.decode(d.bytes));
      assert.deepEqual(parsed.entry.payload, drafts[i].payload);
    });
  });

  it('refuses every non-canonical or out-of-subset encoding of a valid entry', () => {
    const [d] = signBatch([drafts[0]], signer);
    // seq 1 written in a 1-byte extension instead of inline.
    malformed(splice(d.bytes, [...key('seq'), 0x01], [...key('seq'), 0x18, 0x01]), 'non-shortest integer');
    // seq as a float64 1.0.
    malformed(
      splice(d.bytes, [...key('seq'), 0x01], [...key('seq'), 0xfb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0]),
      'float for an integer',
    );
    // The task text with an indefinite-length header.
    malformed(
      splice(d.bytes, [...key('task'), 0x61, 0x74], [...key('task'), 0x7f, 0x61, 0x74, 0xff]),
      'indefinite length',
    );
    // Invalid UTF-8 in the task.
    malformed(splice(d.bytes, [...key('task'), 0x61, 0x74], [...key('task'), 0x61, 0xc3]), 'invalid UTF-8');
    // A tag around the author key.
    malformed(splice(d.bytes, key('author'), [...key('author'), 0xd8, 0x2a]), 'tag');
    malformed(Buffer.concat([d.bytes, Uint8Array.of(0)]), 'trailing byte');
    malformed(d.bytes.subarray(0, d.bytes.length - 1), 'truncated');
    // An extra key that would not show in Object.keys if assigned naively.
    const proto = Buffer.concat([
      Uint8Array.of(0xa9),
      d.bytes.subarray(1),
      Buffer.from(key('__proto__')),
      Uint8Array.of(0xa0),
    ]);
    malformed(proto, '__proto__ key');
    // Deep nesting is refused, not a stack overflow.
    malformed(
      Buffer.concat([Uint8Array.of(0xa1, ...key('v')), Buffer.alloc(5000, 0x81), Uint8Array.of(0)]),
      'deep nesting',
    );
    assert.equal(parseEntry(d.bytes).idHex, d.idHex, 'the original still parses');
  });

  it(
    'verifies a whole batch from its tree; a tampered path, a ' +
      'foreign entry or a missing part is caught entry by entry',
    () => {
      const { ledgers } = memoryFleet(3, 5);
      const batch = ledgers[1].appendBatch(
        Array.from({ length: 37 }, (_, i) => ({ type: 'claim' as const, task: `w${i}` })),
      );
      const parsed = batch.map((d) => parseEntry(d.bytes));
      assert.deepEqual(
        verifyEntries(parsed),
        parsed.map(() => undefined),
      );
      const tampered = (d: DecodedEntry, change: (e: Entry) => void): DecodedEntry => {
        const e = cbor.decode(d.bytes) as Entry;
        change(e);
        return parseEntry(cbor.encode(e));
      };
      const badPath = tampered(batch[4], (e) => (e.batch.path[1] = new Uint8Array(32).fill(7)));
      const withBadPath = parsed.map((d, i) => (i === 4 ? badPath : d));
      const verdicts = verifyEntries(withBadPath);
      assert.ok(verdicts[4] instanceof EntryError);
      assert.equal(verdicts.filter(Boolean).length, 1, 'only the tampered entry is refused');
      // Another author's entry claiming this batch's signature and position.
      const other = ledgers[2].append({ type: 'claim', task: 'x' });
      const foreign = tampered(other, (e) => {
        e.sig = batch[0].entry.sig;
        e.batch = batch[0].entry.batch;
      });
      const withForeign = [...parsed, foreign];
      const v2 = verifyEntries(withForeign);
      assert.ok(v2[parsed.length] instanceof EntryError && v2[parsed.length]!.code === 'BAD_SIGNATURE');
      assert.equal(v2.filter(Boolean).length, 1);
      // A replaced payload changes the id: the rebuilt root no longer matches the signature.
      const changed = parsed.map((d, i) =>
        i === 9 ? tampered(batch[9], (e) => (e.payload = { type: 'claim', task: 'w9x' })) : d,
      );
      const v3 = verifyEntries(changed);
      assert.ok(v3[9] instanceof EntryError && v3[9]!.code === 'BAD_SIGNATURE');
      assert.equal(v3.filter(Boolean).length, 1);
      // Part of a batch (one entry missing) verifies path by path.
      assert.deepEqual(
        verifyEntries(parsed.slice(1)),
        parsed.slice(1).map(() => undefined),
      );
      // The same entries ingested in one call all land, and each still decodes and verifies alone.
      assert.ok(ledgers[0].ingestBatch(parsed).every((s) => s === 'added'));
      for (const d of batch) assert.equal(decodeEntry(d.bytes).idHex, d.idHex);
    },
  );

  it('sync replies: hand-written DAG-CBOR equals the generic encoder, and anything else is refused', () => {
    for (const n of [0, 1, 23, 24, 300]) {
      for (const full of [false, true]) {
        const entries = Array.from({ length: n }, (_, i) => new Uint8Array(128 + ((i * 53) % 700)).fill(i & 0xff));
        const bytes = encodeRangesReply({ entries, full });
        assert.deepEqual(Buffer.from(bytes), Buffer.from(cbor.encode({ entries, full })));
        const back = decodeRangesReply(bytes);
        assert.equal(back.full, full);
        assert.deepEqual(
          back.entries.map((e) => Buffer.from(e)),
          entries.map((e) => Buffer.from(e)),
        );
        if (bytes.length > 1) assert.throws(() => decodeRangesReply(bytes.subarray(0, bytes.length - 1)), WireError);
      }
    }
    for (const bad of [
      cbor.encode({ entries: [1], full: true }),
      cbor.encode({ entries: [], full: 1 }),
      cbor.encode([]),
      Uint8Array.of(0xa2),
      // The reply that froze a robot: a megabyte of empty entries; and one ending in an empty one.
      encodeRangesReply({ entries: Array.from({ length: 300_000 }, () => new Uint8Array(0)), full: false }),
      Uint8Array.from([0xa2, 0x64, ...Buffer.from('full'), 0xf4, 0x67, ...Buffer.from('entries'), 0x81, 0x40]),
      encodeRangesReply({ entries: Array.from({ length: 5000 }, () => new Uint8Array(128)), full: false }),
      encodeRangesReply({ entries: [new Uint8Array(20)], full: false }),
    ]) {
      assert.throws(() => decodeRangesReply(bad), WireError);
    }
  });

  it('sync requests and summaries: refused by count before they are decoded, and for every malformed field', () => {
    const author = 'ab'.repeat(32);
    const ok = encodeSyncRequest({ t: 'start', have: new Map([[author, { maxSeq: 3, count: 3 }]]), limit: 10 });
    assert.deepEqual(decodeSyncRequest(ok), {
      t: 'start',
      have: new Map([[author, { maxSeq: 3, count: 3 }]]),
      limit: 10,
    });
    assert.deepEqual(decodeSyncRequest(encodeSyncRequest({ t: 'news' })), { t: 'news' });
    const summary = new Map([[author, { maxSeq: 1, count: 1 }]]);
    assert.deepEqual(decodeSummary(encodeSummary(summary)), summary);
    const bads: unknown[] = [
      { t: 'start', have: 'all', limit: 10 },
      { t: 'start', have: [[author]], limit: 10 },
      { t: 'start', have: [['not hex', { maxSeq: 1, count: 1 }]], limit: 10 },
      { t: 'start', have: [[author, { maxSeq: -1, count: 1 }]], limit: 10 },
      { t: 'start', have: [[author, { maxSeq: 1, count: 1, extra: 1 }]], limit: 10 },
      { t: 'start', have: [], limit: 'many' },
      { t: 'start', have: [], limit: 0 },
      { t: 'start', have: [], limit: 5000 },
      { t: 'ranges', want: [{ author, lo: 3, hi: 1 }], limit: 10 },
      { t: 'ranges', want: [{ author: 'x', lo: 1, hi: 1 }], limit: 10 },
      { t: 'ranges', want: Array.from({ length: 1025 }, () => ({ author, lo: 1, hi: 1 })), limit: 10 },
      { t: 'summary' },
      { t: 'news', extra: 1 },
      [1, 2, 3],
    ];
    for (const bad of bads)
      assert.throws(() => decodeSyncRequest(cbor.encode(bad)), WireError, JSON.stringify(bad).slice(0, 60));
    // A summary of 1.3 M empty maps (a 500 ms full decode): refused from the list's header, before any item is read.
    const huge = cbor.encode(Array.from({ length: 1_300_000 }, () => ({})));
    const fromHeader = (err: unknown) => err instanceof WireError && /more than \d+ CBOR items/.test(err.message);
    assert.throws(() => decodeSummary(huge), fromHeader);
    assert.throws(
      () => decodeSyncRequest(cbor.encode({ t: 'start', have: Array.from({ length: 3000 }, () => ({})), limit: 1 })),
      WireError,
    );
    assert.throws(() => decodeSummary(Uint8Array.of(0xfb, 0, 0, 0, 0, 0, 0, 0, 0)), WireError);
  });

  it(
    'sync replies read from the pieces a stream delivered them in ' +
      'equal the contiguous read; cut or padded pieces are refused',
    async () => {
      const seed = testSeed();
      await withSeed(seed, () => {
        const random = prng(seed);
        for (let round = 0; round < 200; round++) {
          const n = Math.floor(random() * 40);
          const entries = Array.from({ length: n }, () =>
            Uint8Array.from({ length: 128 + Math.floor(random() * 600) }, () => Math.floor(random() * 256)),
          );
          const full = random() < 0.5;
          const bytes = encodeRangesReply({ entries, full });
          const cuts = [
            ...new Set(
              Array.from({ length: Math.floor(random() * 12) }, () => Math.floor(random() * (bytes.length + 1))),
            ),
          ].sort((a, b) => a - b);
          // Empty pieces included: a stream may deliver them.
          const pieces = [0, ...cuts].map((from, i) => bytes.subarray(from, [...cuts, bytes.length][i]));
          const whole = decodeRangesReply(bytes);
          const pieced = decodeRangesReply(pieces);
          assert.equal(pieced.full, whole.full);
          assert.deepEqual(
            pieced.entries.map((e) => Buffer.from(e)),
            whole.entries.map((e) => Buffer.from(e)),
          );
          const cut = [...pieces];
          let last = cut.length - 1;
          while (cut[last].length === 0) last--;
          cut[last] = cut[last].subarray(0, cut[last].length - 1);
          assert.throws(() => decodeRangesReply(cut), WireError);
          assert.throws(() => decodeRangesReply([...pieces, Uint8Array.of(0)]), WireError);
        }
      });
    },
  );

  it(
    'SQLite layout 3: survives reopening; ranges stop at the ' +
      'byte budget; an older layout is refused with a clear error',
    async () => {
      const dir = await mkdtemp(join(tmpdir(), 'robomesh-store-'));
      try {
        const { ledgers } = memoryFleet(2, 9);
        const path = join(dir, 'log.sqlite');
        const ledger = new Ledger(new SqliteLogStore(path));
        for (const id of ledgers[0].ids()) ledger.ingest(ledgers[0].get(id)!);
        const mine = ledgers[1].appendBatch(
          Array.from({ length: 300 }, (_, i) => ({ type: 'claim' as const, task: `s${i}` })),
        );
        assert.ok(ledger.ingestBatch(mine.map((d) => d.bytes)).every((s) => s === 'added'));
        const author = ledgers[1].self!;
        const budget = 10 * mine[0].bytes.length;
        const cut = ledger.entriesOf(author, 1, 300, 4096, budget);
        assert.ok(cut.length >= 10 && cut.length <= 12, `${cut.length} rows for a budget of 10`);
        const reply = servedRanges(ledger, [{ author, lo: 1, hi: 300 }], 4096, budget);
        assert.equal(reply.full, true);
        assert.equal(servedRanges(ledger, [{ author, lo: 1, hi: 300 }], 4096).entries.length, 300);
        ledger.store.close();
        const again = new Ledger(new SqliteLogStore(path));
        assert.equal(again.size, 301);
        assert.equal(again.stateHash(), ledgers[1].stateHash());
        assert.deepEqual(again.get(mine[7].idHex), mine[7].bytes);
        assert.deepEqual(
          again.entriesOf(author, 5, 6).map((r) => r.seq),
          [5, 6],
        );
        again.store.close();
        const old = join(dir, 'old.sqlite');
        const db = new Database(old);
        db.exec(
          'CREATE TABLE log_entries (id TEXT NOT NULL UNIQUE, author TEXT NOT NULL, ' +
            'seq INTEGER NOT NULL, lamport INTEGER NOT NULL, bytes BLOB NOT NULL)',
        );
        db.close();
        assert.throws(
          () => new SqliteLogStore(old),
          (err: unknown) =>
            err instanceof StoreError && err.code === 'OLD_LAYOUT' && /older robomesh.*move it away/.test(err.message),
        );
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  );

  it(
    'SQLite without an id index: duplicates are no-ops, a failed put forgets ' +
      'its rows, and a store with the older UNIQUE id index still works',
    async () => {
      const dir = await mkdtemp(join(tmpdir(), 'robomesh-store-'));
      try {
        const { ledgers } = memoryFleet(2, 10);
        const source = ledgers[0];
        source.appendBatch(Array.from({ length: 6 }, (_, i) => ({ type: 'claim' as const, task: `d${i}` })));
        const rows = source.fold
          .items()
          .map((i) => ({ id: i.id, author: i.author, seq: i.seq, lamport: i.lamport, bytes: source.get(i.id)! }));
        // A store as layout 3 first wrote it: the id column UNIQUE (an index on the hash).
        const legacy = join(dir, 'legacy.sqlite');
        const db = new Database(legacy);
        db.exec(`CREATE TABLE log_authors (n INTEGER PRIMARY KEY, key BLOB NOT NULL UNIQUE);
        CREATE TABLE log_rows (id BLOB NOT NULL UNIQUE, author INTEGER NOT NULL, seq INTEGER NOT NULL,
          lamport INTEGER NOT NULL, bytes BLOB NOT NULL);
        CREATE INDEX log_rows_by_author ON log_rows(author, seq);`);
        db.close();
        for (const path of [join(dir, 'new.sqlite'), legacy]) {
          let store = new SqliteLogStore(path);
          store.put(rows.slice(0, 2));
          store.put(rows); // the first two again: skipped, not an error
          store.put([rows[0]], false);
          assert.equal(store.all().length, rows.length, path);
          // A put that fails half-way (a row SQLite refuses) is rolled back whole, and its ids are not
          // remembered as held.
          const broken = {
            ...rows[0],
            id: 'ab'.repeat(32),
            seq: 'x' as unknown as number,
            bytes: undefined as unknown as Uint8Array,
          };
          const fresh = { ...rows[1], id: 'cd'.repeat(32) };
          assert.throws(() => store.put([fresh, broken]));
          assert.equal(store.has(fresh.id), false);
          assert.equal(store.get(fresh.id), undefined);
          // A disk that fills up: SQLite refuses the transaction (SQLITE_FULL); nothing of it is
          // remembered, not the ids nor the new author's number, and once there is room it goes in.
          const db = (store as unknown as { db: Database.Database }).db;
          const pages =
            (db.pragma('page_count', { simple: true }) as number) +
            (db.pragma('freelist_count', { simple: true }) as number);
          db.pragma(`max_page_count = ${pages}`);
          const stranger = 'ef'.repeat(32);
          const big = Array.from({ length: 40 }, (_, i) => ({
            ...rows[1],
            id: (1000 + i).toString(16).padStart(64, '0'),
            author: stranger,
            seq: i + 1,
            bytes: new Uint8Array(4000).fill(i),
          }));
          assert.throws(
            () => store.put(big),
            (err: Error & { code?: string }) => err.code === 'SQLITE_FULL',
            'the capped store is full',
          );
          assert.ok(big.every((e) => !store.has(e.id) && store.get(e.id) === undefined));
          db.pragma('max_page_count = 1073741823');
          store.put(big);
          assert.deepEqual(store.get(big[39].id)?.bytes, big[39].bytes);
          assert.deepEqual(
            store.range(stranger, 1, 40, 100).map((r) => r.seq),
            big.map((e) => e.seq),
          );
          assert.deepEqual(
            store.range(rows[1].author, rows[1].seq, rows[1].seq, 10).map((r) => r.seq),
            [rows[1].seq],
            'the other author keeps its number',
          );
          store.close();
          store = new SqliteLogStore(path);
          assert.equal(store.has(rows[3].id), true);
          assert.deepEqual(store.get(rows[3].id)?.bytes, rows[3].bytes);
          assert.equal(store.has(fresh.id), false);
          assert.equal(store.all().length, rows.length + 40);
          store.put([fresh]);
          assert.deepEqual(store.get(fresh.id)?.seq, fresh.seq);
          store.close();
        }
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  );
});
