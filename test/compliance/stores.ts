import assert from 'node:assert/strict';
import { signerFromSeed } from '../../protocol/ed25519.js';
import { type DecodedEntry, signEntry, toHex } from '../../protocol/log-entry.js';
import type { AnchorQueue, QueuedAnchor } from '../../nodes/ledger/anchor-queue.js';
import type { LogStore, StoredEntry } from '../../nodes/ledger/store.js';

/** A store under test; `reopen` (durable implementations) closes it and opens the same storage again. */
export interface StoreHarness<S> {
  store: S;
  reopen?: () => S;
  cleanup(): Promise<void>;
}

const stored = (d: DecodedEntry): StoredEntry => ({
  id: d.idHex,
  author: toHex(d.entry.author),
  seq: d.entry.seq,
  lamport: d.entry.lamport,
  bytes: d.bytes,
});

/** Real signed entries: two authors, a chain each, and a second entry for one (author, seq). */
function entries(): { a: StoredEntry[]; b: StoredEntry[]; twin: StoredEntry } {
  const chain = (seed: number, n: number, lamport0: number): StoredEntry[] => {
    const signer = signerFromSeed(new Uint8Array(32).fill(seed));
    const out: StoredEntry[] = [];
    for (let seq = 1; seq <= n; seq++) {
      const parents = out.length ? [Uint8Array.from(Buffer.from(out[out.length - 1].id, 'hex'))] : [];
      out.push(
        stored(
          signEntry(
            { seq, lamport: lamport0 + seq, parents, payload: { type: 'claim', task: `t${seed}-${seq}` } },
            signer,
          ),
        ),
      );
    }
    return out;
  };
  const a = chain(1, 12, 0);
  const b = chain(2, 5, 3);
  const twinOf = a[4];
  const twin = stored(
    signEntry(
      { seq: twinOf.seq, lamport: twinOf.lamport, parents: [], payload: { type: 'claim', task: 'twin' } },
      signerFromSeed(new Uint8Array(32).fill(1)),
    ),
  );
  return { a, b, twin };
}

const order = (x: StoredEntry, y: StoredEntry): number =>
  x.lamport - y.lamport || (x.id < y.id ? -1 : x.id > y.id ? 1 : 0);
const ids = (xs: { id?: string; bytes: Uint8Array }[]): string[] => xs.map((x) => Buffer.from(x.bytes).toString('hex'));

/** The contract every LogStore keeps (nodes/ledger/store.ts), run against one implementation. */
export function logStoreCompliance(name: string, make: () => Promise<StoreHarness<LogStore>>): void {
  describe(`LogStore compliance: ${name}`, () => {
    let h: StoreHarness<LogStore>;
    let store: LogStore;
    beforeEach(async () => {
      h = await make();
      store = h.store;
    });
    afterEach(() => h.cleanup());

    it('gives back what was put, byte for byte; unknown ids are absent', () => {
      const { a } = entries();
      store.put(a.slice(0, 3));
      for (const e of a.slice(0, 3)) {
        assert.ok(store.has(e.id));
        const got = store.get(e.id)!;
        assert.deepEqual([got.id, got.author, got.seq, got.lamport], [e.id, e.author, e.seq, e.lamport]);
        assert.deepEqual(Buffer.from(got.bytes), Buffer.from(e.bytes));
      }
      assert.equal(store.has(a[5].id), false);
      assert.equal(store.get(a[5].id), undefined);
    });

    it('ignores an entry put twice', () => {
      const { a } = entries();
      store.put(a.slice(0, 4));
      store.put(a.slice(2, 6), false);
      assert.equal(store.all().length, 6);
    });

    it('lists every entry in (lamport, id) order whatever order they came in', () => {
      const { a, b, twin } = entries();
      const every = [...a, ...b, twin];
      store.put([...every].reverse().slice(0, 9));
      store.put([...every].reverse().slice(9));
      assert.deepEqual(ids(store.all()), ids([...every].sort(order)));
    });

    it('serves one author’s seq range in seq order, twins included, within the count and byte limits', () => {
      const { a, b, twin } = entries();
      store.put([...a, ...b, twin]);
      const author = a[0].author;
      const range = store.range(author, 3, 7, 100);
      assert.deepEqual(
        range.map((r) => r.seq),
        [3, 4, 5, 5, 6, 7],
      );
      assert.deepEqual(new Set(ids(range.filter((r) => r.seq === 5))), new Set(ids([a[4], twin])));
      assert.deepEqual(
        store.range(author, 1, 12, 4).map((r) => r.seq),
        [1, 2, 3, 4],
      );
      // None after the entry that brings the bytes to maxBytes.
      const limit = a[0].bytes.length + a[1].bytes.length;
      assert.deepEqual(
        store.range(author, 1, 12, 100, limit).map((r) => r.seq),
        [1, 2],
      );
      assert.deepEqual(
        store.range(author, 1, 12, 100, limit + 1).map((r) => r.seq),
        [1, 2, 3],
      );
      assert.deepEqual(store.range(author, 13, 20, 100), []);
      assert.deepEqual(
        store.range(
          b[0].author.replace(/^./, (c) => (c === 'f' ? 'e' : 'f')),
          1,
          9,
          100,
        ),
        [],
      );
    });

    it('a durable store holds every entry after it is closed and opened again', function () {
      if (!h.reopen) {
        assert.equal(store.location, undefined, 'a store that cannot reopen says it lives in memory');
        this.skip();
      }
      const { a, b } = entries();
      store.put(a, true);
      store.put(b, false);
      store = h.reopen!();
      assert.deepEqual(ids(store.all()), ids([...a, ...b].sort(order)));
    });
  });
}

const anchor = (i: number): QueuedAnchor => ({
  root: `${i}`.padStart(64, '0'),
  count: 10 * i,
  heads: [`${i}`.padStart(64, 'a')],
  firstLamport: 1,
  lastLamport: 9 * i,
  results: [{ task: `t${i}`, digest: 'ab'.repeat(32) }],
  relayed: i % 2 === 0,
  attempts: 0,
  notBefore: 0,
});

/** The contract every AnchorQueue keeps (nodes/ledger/anchor-queue.ts), run against one implementation. */
export function anchorQueueCompliance(name: string, make: () => Promise<StoreHarness<AnchorQueue>>): void {
  describe(`AnchorQueue compliance: ${name}`, () => {
    let h: StoreHarness<AnchorQueue>;
    let queue: AnchorQueue;
    beforeEach(async () => {
      h = await make();
      queue = h.store;
    });
    afterEach(() => h.cleanup());

    it('gives back what was put, lists in the order first put, forgets what was removed', () => {
      for (const i of [3, 1, 2]) queue.put(anchor(i));
      assert.deepEqual(queue.get(anchor(1).root), anchor(1));
      assert.deepEqual(
        queue.all().map((x) => x.count),
        [30, 10, 20],
      );
      queue.remove(anchor(1).root);
      assert.equal(queue.get(anchor(1).root), undefined);
      assert.deepEqual(
        queue.all().map((x) => x.count),
        [30, 20],
      );
      queue.remove(anchor(9).root); // not there: nothing happens
    });

    it('a second put of a root updates it in place', () => {
      queue.put(anchor(1));
      queue.put(anchor(2));
      const signed = { bytes: 'AAEC', signature: 'sig', digest: 'd1', sender: '0x1' };
      queue.put({ ...anchor(1), attempts: 3, notBefore: 99, lastError: 'node down', signed });
      assert.deepEqual(queue.all()[0], { ...anchor(1), attempts: 3, notBefore: 99, lastError: 'node down', signed });
      assert.equal(queue.all().length, 2);
    });

    it('hands out copies: changing one does not change the queue', () => {
      queue.put(anchor(1));
      const got = queue.get(anchor(1).root)!;
      got.attempts = 42;
      got.results.push({ task: 'x', digest: '00' });
      queue.all()[0].heads.push('ff');
      assert.deepEqual(queue.get(anchor(1).root), anchor(1));
    });

    it('a durable queue holds every anchor after it is closed and opened again', function () {
      if (!h.reopen) this.skip();
      queue.put(anchor(1));
      queue.put(anchor(2));
      queue.put({ ...anchor(1), attempts: 2 });
      queue = h.reopen!();
      assert.deepEqual(queue.all(), [{ ...anchor(1), attempts: 2 }, anchor(2)]);
    });
  });
}
