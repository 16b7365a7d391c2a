import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LedgerFold } from '../contracts/fold.js';
import { signerFromSeed } from '../protocol/ed25519.js';
import { decodeEntry, signEntry, toHex } from '../protocol/log-entry.js';
import { Ledger } from '../nodes/ledger/ledger.js';
import { SqliteLogStore } from '../nodes/ledger/sqlite-store.js';
import { MemoryLogStore } from '../nodes/ledger/store.js';
import { identityFromSeed } from '../nodes/mesh/identity.js';
import { Robot } from '../nodes/robot/robot.js';
import { type Row, table, writeResults } from './report.js';

/**
 * bench:ledger — signed appends per second against the raw Ed25519 signing rate of this same
 * process (ratio), verification rate, fold rate, replication throughput over libp2p, and the
 * time to converge after healing two partitions that each wrote N entries.
 */
const N = Number(process.env.BENCH_ENTRIES ?? 10_000);

function rate(count: number, ms: number): number {
  return Math.round((count / ms) * 1000);
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'robomesh-bench-ledger-'));
  const signer = signerFromSeed(new Uint8Array(32).fill(1));
  const me = toHex(signer.publicKey);
  const genesis = signEntry({ seq: 1, lamport: 1, parents: [], payload: { type: 'genesis', fleet: 'bench', members: [me], admins: [me] } }, signer);
  const rows: Row[] = [];
  const msg = new Uint8Array(200).fill(7);

  let t0 = performance.now();
  for (let i = 0; i < N; i++) signer.sign(msg);
  const signRate = rate(N, performance.now() - t0);
  rows.push({ measure: 'raw Ed25519 sign (200 B)', 'per second': signRate, 'ratio to raw sign': 1 });

  for (const [name, store] of [
    ['signed appends, memory store', new MemoryLogStore()],
    ['signed appends, SQLite WAL synchronous=FULL, one fsync per append', new SqliteLogStore(join(dir, 'a.sqlite'))],
    ['signed appends, SQLite WAL synchronous=FULL, group commit of 100', new SqliteLogStore(join(dir, 'b.sqlite'))],
  ] as const) {
    const ledger = new Ledger(store, signer);
    ledger.ingest(genesis.bytes);
    const group = name.includes('group') ? 100 : 1;
    const count = name.includes('one fsync') ? Math.min(N, 2000) : N;
    t0 = performance.now();
    for (let i = 0; i < count; i += group) {
      ledger.appendBatch(Array.from({ length: Math.min(group, count - i) }, (_, k) => ({ type: 'claim' as const, task: `t${i + k}` })));
    }
    const r = rate(count, performance.now() - t0);
    rows.push({ measure: name, 'per second': r, 'ratio to raw sign': r / signRate });
    if (name.includes('memory')) {
      const bytes = ledger.ids().map((id) => ledger.get(id)!);
      t0 = performance.now();
      for (const b of bytes) decodeEntry(b);
      const v = rate(bytes.length, performance.now() - t0);
      rows.push({ measure: 'decode + verify', 'per second': v, 'ratio to raw sign': v / signRate });
      t0 = performance.now();
      const fold = new LedgerFold();
      for (const item of ledger.fold.items()) fold.insert(item);
      const f = rate(bytes.length, performance.now() - t0);
      rows.push({ measure: `fold from scratch (${bytes.length} entries)`, 'per second': f, 'ratio to raw sign': f / signRate });
    }
    store.close();
  }

  // Two robots on loopback, real libp2p; partitioned, each writes N; heal; time to converge.
  const ids = await Promise.all([11, 12].map((s) => identityFromSeed(new Uint8Array(32).fill(s))));
  const members = ids.map((i) => toHex(i.privateKey.publicKey.raw));
  const admin = signerFromSeed(ids[0].seed);
  const fleetGenesis = signEntry({ seq: 1, lamport: 1, parents: [], payload: { type: 'genesis', fleet: 'bench', members, admins: [members[0]] } }, admin);
  const robots: Robot[] = [];
  for (const [i, identity] of ids.entries()) {
    robots.push(
      await Robot.start({
        name: `l${i}`,
        identity,
        fleet: { name: 'bench', members: ids.map((x) => x.peerId.toString()), bootstrap: robots.flatMap((r) => r.host.addresses()) },
        models: [],
        dataDir: join(dir, `l${i}`),
        cacheDir: dir,
        probeIntervalMs: 0,
        ledger: { store: new SqliteLogStore(join(dir, `l${i}.sqlite`)), genesis: fleetGenesis.bytes, antiEntropyMs: 60_000 },
      }),
    );
  }
  const [a, b] = robots;
  const until = async (cond: () => boolean, ms: number): Promise<void> => {
    const end = Date.now() + ms;
    while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 5));
  };
  await until(() => a.host.connectedPeers().length === 1, 10_000);
  await a.host.partition([b.peerId]);
  await b.host.partition([a.peerId]);
  await until(() => a.host.connectedPeers().length === 0, 10_000);
  for (let i = 0; i < N; i += 100) a.ledger!.appendBatch(Array.from({ length: 100 }, (_, k) => ({ type: 'claim' as const, task: `a${i + k}` })));
  for (let i = 0; i < N; i += 100) b.ledger!.appendBatch(Array.from({ length: 100 }, (_, k) => ({ type: 'claim' as const, task: `b${i + k}` })));
  const total = 1 + 2 * N;
  t0 = performance.now();
  a.host.heal();
  b.host.heal();
  await until(() => a.ledger!.size === total && b.ledger!.size === total, 120_000);
  const healMs = performance.now() - t0;
  const same = a.ledger!.stateHash() === b.ledger!.stateHash();
  rows.push({
    measure: `heal two partitions of ${N} entries each (reconnect + anti-entropy both ways), ms`,
    'per second': Math.round(healMs),
    'ratio to raw sign': same ? 'converged, same state' : 'DIVERGED',
  });
  rows.push({ measure: 'replication throughput during that heal (entries/s, both directions)', 'per second': rate(2 * N, healMs), 'ratio to raw sign': '' });
  await Promise.all(robots.map((r) => r.stop()));
  await rm(dir, { recursive: true, force: true });

  process.stdout.write(`\nbench:ledger — ${N} entries\n\n${table(rows)}\n`);
  const path = await writeResults('ledger', { entries: N, rows });
  process.stdout.write(`\nwrote ${path}\n`);
  process.exit(0);
}

await main();
