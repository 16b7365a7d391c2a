import { fork } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LedgerFold } from '../contracts/fold.js';
import { signerFromSeed } from '../protocol/ed25519.js';
import { decodeEntry, signEntry, toHex } from '../protocol/log-entry.js';
import { Ledger, SqliteLogStore, MemoryLogStore } from '../nodes/ledger/index.js';
import { identityFromSeed } from '../nodes/mesh/index.js';
import { Robot } from '../nodes/robot/index.js';
import { ROBOT_MALLOC_TUNABLES, reexecWithMallocTunables } from '../nodes/util/index.js';
import type { PeerCommand, PeerReply } from './ledger-peer.js';
import { startHealProfile } from './ledger-profile.js';
import { type Row, table, writeResults } from './report.js';

/**
 * bench:ledger — signed appends per second against the raw Ed25519 signing rate of this same
 * process (ratio), verification rate, fold rate, replication throughput over libp2p, and the
 * time to converge after healing two partitions that each wrote N entries (two robot processes).
 *
 * Both robot processes run with the malloc tunables robot processes get (ROBOT_MALLOC_TUNABLES):
 * without them the bench re-executes itself with them (the peer it forks inherits them).
 * BENCH_MALLOC=default measures with glibc's defaults instead.
 */
const N = Number(process.env.BENCH_ENTRIES ?? 10_000);
/** BENCH_HEAL_ONLY=1: only the batch-signed heal, nothing written to bench/results (for profiling). */
const HEAL_ONLY = process.env.BENCH_HEAL_ONLY === '1';

function rate(count: number, ms: number): number {
  return Math.round((count / ms) * 1000);
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'robomesh-bench-ledger-'));
  const signer = signerFromSeed(new Uint8Array(32).fill(1));
  const me = toHex(signer.publicKey);
  const genesis = signEntry(
    { seq: 1, lamport: 1, parents: [], payload: { type: 'genesis', fleet: 'bench', members: [me], admins: [me] } },
    signer,
  );
  const rows: Row[] = [];
  const msg = new Uint8Array(200).fill(7);

  let t0 = performance.now();
  for (let i = 0; i < N; i++) signer.sign(msg);
  const signRate = rate(N, performance.now() - t0);
  rows.push({ measure: 'raw Ed25519 sign (200 B)', 'per second': signRate, 'ratio to raw sign': 1 });

  for (const [name, store, group] of HEAL_ONLY
    ? []
    : ([
        ['signed appends one by one (one signature each), memory store', new MemoryLogStore(), 1],
        ['signed appends in batches of 100 (one signature per batch), memory store', new MemoryLogStore(), 100],
        [
          'signed appends one by one, SQLite WAL synchronous=FULL (one fsync each)',
          new SqliteLogStore(join(dir, 'a.sqlite')),
          1,
        ],
        [
          'signed appends in batches of 100, SQLite WAL synchronous=FULL ' +
            '(group commit: one fsync and one signature per batch)',
          new SqliteLogStore(join(dir, 'b.sqlite')),
          100,
        ],
      ] as const)) {
    const ledger = new Ledger(store, signer);
    ledger.ingest(genesis.bytes);
    const count = name.includes('one fsync each') ? Math.min(N, 2000) : N;
    t0 = performance.now();
    for (let i = 0; i < count; i += group) {
      ledger.appendBatch(
        Array.from({ length: Math.min(group, count - i) }, (_, k) => ({ type: 'claim' as const, task: `t${i + k}` })),
      );
    }
    const r = rate(count, performance.now() - t0);
    rows.push({ measure: name, 'per second': r, 'ratio to raw sign': r / signRate });
    if (store instanceof MemoryLogStore) {
      const bytes = ledger.ids().map((id) => ledger.get(id)!);
      t0 = performance.now();
      for (const b of bytes) decodeEntry(b);
      const v = rate(bytes.length, performance.now() - t0);
      rows.push({
        measure: `decode + verify, entries signed ${group === 1 ? 'one by one' : `in batches of ${group}`}`,
        'per second': v,
        'ratio to raw sign': v / signRate,
      });
      if (group === 1) {
        t0 = performance.now();
        const fold = new LedgerFold();
        for (const item of ledger.fold.items()) fold.insert(item);
        const f = rate(bytes.length, performance.now() - t0);
        rows.push({
          measure: `fold from scratch (${bytes.length} entries)`,
          'per second': f,
          'ratio to raw sign': f / signRate,
        });
      }
    }
    store.close();
  }

  // Two robots on loopback, real libp2p; partitioned, each writes N; heal; time to converge.
  // Once with entries appended in batches of 100 (one signature per batch), once one by one.
  for (const group of HEAL_ONLY ? [100] : [100, 1]) {
    const { ms, same, cpuMs } = await heal(dir, group);
    const signing = group === 1 ? 'appended one by one (one signature each)' : `appended in batches of ${group}`;
    rows.push({
      measure: `heal two partitions of ${N} entries each, ${signing}: reconnect + anti-entropy both ways, ms`,
      'per second': Math.round(ms),
      'ratio to raw sign': same ? 'converged, same state' : 'DIVERGED',
    });
    rows.push({
      measure: `replication throughput during that heal (entries/s, both directions)`,
      'per second': rate(2 * N, ms),
      'ratio to raw sign': '',
    });
    // CPU time says what the heal costs even when other work on the machine stretches the wall time.
    rows.push({
      measure: `CPU time each robot process spent during that heal, ms (robot a / robot b)`,
      'per second': Math.round(Math.max(...cpuMs)),
      'ratio to raw sign': cpuMs.map((c) => Math.round(c)).join(' / '),
    });
  }
  await rm(dir, { recursive: true, force: true });

  const malloc = process.env.GLIBC_TUNABLES ?? 'default';
  process.stdout.write(`\nbench:ledger — ${N} entries; malloc: ${malloc}\n\n${table(rows)}\n`);
  if (HEAL_ONLY) process.exit(0);
  const path = await writeResults('ledger', { entries: N, malloc, rows });
  process.stdout.write(`\nwrote ${path}\n`);
  process.exit(0);
}

/**
 * Two robots in two processes (each its own event loop, as on real robots), real libp2p on
 * loopback: partitioned, each appends N entries, then healed; time until both hold all of them.
 */
async function heal(dir: string, group: number): Promise<{ ms: number; same: boolean; cpuMs: number[] }> {
  const ids = await Promise.all([11, 12].map((s) => identityFromSeed(new Uint8Array(32).fill(s + group))));
  const members = ids.map((i) => toHex(i.privateKey.publicKey.raw));
  const admin = signerFromSeed(ids[0].seed);
  const fleetGenesis = signEntry(
    { seq: 1, lamport: 1, parents: [], payload: { type: 'genesis', fleet: 'bench', members, admins: [members[0]] } },
    admin,
  );
  const storeA = new SqliteLogStore(join(dir, `g${group}-l0.sqlite`));
  const a = await Robot.start({
    name: 'l0',
    identity: ids[0],
    fleet: { name: 'bench', members: ids.map((x) => x.peerId.toString()) },
    models: [],
    dataDir: join(dir, `g${group}-l0`),
    cacheDir: dir,
    probeIntervalMs: 0,
    ledger: { store: storeA, genesis: fleetGenesis.bytes, antiEntropyMs: 60_000 },
  });
  const child = fork(fileURLToPath(new URL('./ledger-peer.js', import.meta.url)), {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const replies: PeerReply[] = [];
  const waiters: (() => void)[] = [];
  child.on('message', (r: PeerReply) => {
    if (r.t === 'error') throw new Error(`ledger peer: ${r.message}`);
    replies.push(r);
    for (const w of waiters.splice(0)) w();
  });
  const ask = async <T extends PeerReply['t']>(cmd: PeerCommand, want: T): Promise<Extract<PeerReply, { t: T }>> => {
    child.send(cmd);
    const deadline = Date.now() + 120_000;
    for (;;) {
      const i = replies.findIndex((r) => r.t === want);
      if (i >= 0) return replies.splice(i, 1)[0] as Extract<PeerReply, { t: T }>;
      if (Date.now() > deadline) throw new Error(`ledger peer did not answer ${cmd.t}`);
      await new Promise<void>((r) => {
        waiters.push(r);
        setTimeout(r, 1000);
      });
    }
  };
  const until = async (cond: () => boolean, ms: number): Promise<void> => {
    const end = Date.now() + ms;
    while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 2));
  };
  try {
    const b = await ask(
      {
        t: 'start',
        seed: [...ids[1].seed],
        members: ids.map((x) => x.peerId.toString()),
        genesis: [...fleetGenesis.bytes],
        dir: join(dir, `g${group}`),
        bootstrap: a.host.addresses(),
      },
      'started',
    );
    await until(() => a.host.connectedPeers().length === 1, 10_000);
    await a.host.partition([b.peerId]);
    await ask({ t: 'partition', peer: a.peerId }, 'partitioned');
    await until(() => a.host.connectedPeers().length === 0, 10_000);
    const appended = ask({ t: 'append', count: N, group, prefix: 'b' }, 'appended');
    for (let i = 0; i < N; i += group)
      a.ledger!.appendBatch(
        Array.from({ length: Math.min(group, N - i) }, (_, k) => ({ type: 'claim' as const, task: `a${i + k}` })),
      );
    await appended;
    // Both stores checkpoint the partition's appends before the heal (the peer did on replying):
    // written over a real partition, that checkpoint would be long past.
    storeA.checkpoint();
    const total = 1 + 2 * N;
    const profile = await startHealProfile(`main-g${group}`);
    const cpu = process.cpuUsage();
    const t0 = performance.now();
    const peerDone = ask({ t: 'heal', total }, 'converged').then((r) => ({ ...r, at: performance.now() }));
    a.host.heal();
    await until(() => a.ledger!.size >= total, 120_000);
    const aDone = performance.now();
    const used = process.cpuUsage(cpu);
    await profile?.stop();
    const p = await peerDone;
    return {
      ms: Math.max(aDone, p.at) - t0,
      same: a.ledger!.size === total && a.ledger!.stateHash() === p.stateHash,
      cpuMs: [(used.user + used.system) / 1000, p.cpuMs],
    };
  } finally {
    child.send({ t: 'stop' } satisfies PeerCommand);
    await a.stop();
  }
}

if (!reexecWithMallocTunables(ROBOT_MALLOC_TUNABLES)) await main();
