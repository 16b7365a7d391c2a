import { writeSync } from 'node:fs';
import { SqliteLogStore } from '../../nodes/ledger/sqlite-store.js';

/**
 * Puts entries into a SQLite store, relaxed then durable, writing a marker line to stderr before
 * each phase: run under `strace -e fsync,fdatasync` to count the syncs each phase makes.
 */
const [path, count] = [process.argv[2], Number(process.argv[3])];
const store = new SqliteLogStore(path);
const entry = (i: number) => ({ id: i.toString(16).padStart(64, '0'), author: 'cd'.repeat(32), seq: i, lamport: i, bytes: new Uint8Array(300).fill(i) });
writeSync(2, 'PHASE relaxed\n');
for (let i = 1; i <= count; i++) store.put([entry(i)], false);
writeSync(2, 'PHASE durable\n');
for (let i = count + 1; i <= 2 * count; i++) store.put([entry(i)], true);
writeSync(2, 'PHASE relaxed-again\n');
for (let i = 2 * count + 1; i <= 3 * count; i++) store.put([entry(i)], false);
writeSync(2, 'PHASE end\n');
store.close();
