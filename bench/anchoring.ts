import { fromHex } from '../protocol/bytes.js';
import { signerFromSeed } from '../protocol/ed25519.js';
import { MerkleTree } from '../protocol/merkle.js';
import { Anchorer, Ledger, MemoryLogStore } from '../nodes/ledger/index.js';
import { MemoryAnchorQueue } from '../nodes/ledger/anchor-queue.js';
import { type Row, table, writeResults } from './report.js';

/**
 * bench:anchoring — the cost of one anchor snapshot as the log grows (1,000 → 100,000 entries):
 * the anchorer as it is (the tree kept between anchors, AnchorTree) against hashing the whole
 * log again (a Merkle tree over the ancestry of the heads, what every anchor did before), both
 * measured in this run on the same log. Each sample: 100 new entries, then one snapshot (no
 * IOTA node: it builds and queues). Median of 9 per size. Also a late batch: 100 entries whose
 * lamports fall 1,000 entries before the end (a member back from a partition).
 */
const SIZES = (process.env.BENCH_SIZES ?? '1000,10000,100000').split(',').map(Number);
const SAMPLES = 9;
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const seed = (k: number): Uint8Array => new Uint8Array(32).fill(k + 1);
const DEPLOYMENT = { packageId: `0x${'ab'.repeat(32)}`, registryId: `0x${'cd'.repeat(32)}`, registryVersion: 1 };

const rows: Row[] = [];
for (const size of SIZES) {
  const ledger = new Ledger(new MemoryLogStore(), signerFromSeed(seed(0)));
  const other = new Ledger(new MemoryLogStore(), signerFromSeed(seed(1)));
  ledger.append({ type: 'genesis', fleet: 'bench', members: [ledger.self!, other.self!], admins: [ledger.self!] });
  let n = 0;
  const grow = (count: number): void => {
    for (let i = 0; i < count; i++) ledger.append({ type: 'claim', task: `t${n++}` });
  };
  const t0 = performance.now();
  grow(size - 1 - 1000);
  // `other` syncs here, then writes while cut off: its entries sort 1,000 entries before the end.
  other.ingestBatch(ledger.ids().map((id) => ledger.get(id)!));
  grow(1000);
  const lateBatch = Array.from({ length: 100 }, (_, i) => other.append({ type: 'claim', task: `late${i}` }).bytes);
  process.stdout.write(`log of ${ledger.size} entries built in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
  const anchorer = new Anchorer({ ledger, seed: seed(0), deployment: DEPLOYMENT, queue: new MemoryAnchorQueue() });
  await anchorer.snapshot(); // the first builds the kept tree over the whole log
  const firstSize = ledger.size + 100;
  const kept: number[] = [];
  const whole: number[] = [];
  for (let s = 0; s < SAMPLES; s++) {
    grow(100);
    let at = performance.now();
    await anchorer.snapshot();
    kept.push(performance.now() - at);
    at = performance.now();
    new MerkleTree(ledger.ancestry(ledger.heads()).map(fromHex));
    whole.push(performance.now() - at);
  }
  ledger.ingestBatch(lateBatch);
  let at = performance.now();
  const item = await anchorer.snapshot();
  const lateMs = performance.now() - at;
  at = performance.now();
  const check = new MerkleTree(ledger.ancestry(ledger.heads()).map(fromHex));
  const wholeLateMs = performance.now() - at;
  if (item?.root !== Buffer.from(check.root).toString('hex')) throw new Error('kept and whole roots differ');
  anchorer.close();
  rows.push({
    'log entries': size,
    'entries at the first sample': firstSize,
    'kept tree ms / anchor (median)': median(kept),
    'whole log ms / anchor (median)': median(whole),
    'kept ÷ whole': median(kept) / median(whole),
    'late 100 entries: kept ms': lateMs,
    'late 100 entries: whole ms': wholeLateMs,
  });
}
process.stdout.write(
  `\nbench:anchoring — one anchor snapshot after 100 new entries, by log size\n\n${table(rows)}\n\n`,
);
const path = await writeResults('anchoring', { samples: SAMPLES, rows });
process.stdout.write(`results: ${path}\n`);
