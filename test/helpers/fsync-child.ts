import { writeSync } from 'node:fs';
import { SqliteLogStore } from '../../nodes/ledger/sqlite-store.js';

/**
 * Opens (or reopens) a SQLite store and puts entries into it, relaxed and durable in turn, writing
 * a marker line to stderr before each put ("PHASE durable-3"): run under `strace -e fsync,…` to
 * see which put synced. Arguments: path, count, first seq, and "keep-wal" to exit unclosed.
 */
const [path, count, first] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4] ?? 1)];
const store = new SqliteLogStore(path);
const entry = (i: number) => ({
  id: i.toString(16).padStart(64, '0'),
  author: 'cd'.repeat(32),
  seq: i,
  lamport: i,
  bytes: new Uint8Array(300).fill(i),
});
// A durable put first: right after opening is where a setting applied at the wrong moment shows.
for (let i = first; i < first + count; i++) {
  const durable = (i - first) % 2 === 0;
  writeSync(2, `PHASE ${durable ? 'durable' : 'relaxed'}-${i}\n`);
  store.put([entry(i)], durable);
}
writeSync(2, 'PHASE end\n');
// "keep-wal": exit without closing, as a killed robot would; the WAL stays for the next open.
if (process.argv[5] === 'keep-wal') process.exit(0);
store.close();
