import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import Database from '../../nodes/ledger/sqlite.js';
import { Ledger } from '../../nodes/ledger/ledger.js';
import { SqliteLogStore } from '../../nodes/ledger/sqlite-store.js';
import { prng } from '../../nodes/util/prng.js';
import { testSeed, withSeed } from '../helpers/seed.js';

const CHILD = fileURLToPath(new URL('../helpers/append-child.js', import.meta.url));
const FSYNC_CHILD = fileURLToPath(new URL('../helpers/fsync-child.js', import.meta.url));

/** Runs the appending child until `afterMs` past its first ack, then SIGKILLs it; returns the acks seen. */
function appendThenKill(path: string, afterMs: number): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CHILD, path], { stdio: ['ignore', 'pipe', 'inherit'] });
    const acks: string[] = [];
    let armed = false;
    const guard = setTimeout(() => child.kill('SIGKILL'), 20_000);
    createInterface({ input: child.stdout }).on('line', (line) => {
      if (line.startsWith('ack ')) {
        acks.push(line.slice(4));
        if (!armed) {
          armed = true;
          setTimeout(() => child.kill('SIGKILL'), afterMs);
        }
      }
    });
    child.on('error', reject);
    child.on('exit', (_code, signal) => {
      clearTimeout(guard);
      if (signal !== 'SIGKILL') reject(new Error(`child ended by itself (${signal ?? _code})`));
      else resolve(acks);
    });
  });
}

describe('crash safety (SQLite store, kill -9)', function () {
  this.timeout(300_000);
  it('100 SIGKILLs at random moments: every acknowledged entry survives and the store opens cleanly', async () => {
    const seed = testSeed();
    const dir = await mkdtemp(join(tmpdir(), 'robomesh-crash-'));
    const path = join(dir, 'log.sqlite');
    try {
      await withSeed(seed, async () => {
        const random = prng(seed);
        const acked: string[] = [];
        for (let round = 0; round < 100; round++) {
          acked.push(...(await appendThenKill(path, Math.floor(random() * 60))));
          const db = new Database(path, { readonly: true });
          assert.equal(
            (db.pragma('integrity_check') as { integrity_check: string }[])[0].integrity_check,
            'ok',
            `round ${round}`,
          );
          db.close();
        }
        const ledger = new Ledger(new SqliteLogStore(path));
        const missing = acked.filter((id) => !ledger.has(id));
        assert.deepEqual(missing, [], `${missing.length} acknowledged entries lost`);
        assert.ok(acked.length > 100, `only ${acked.length} appends acknowledged`);
        // The reopened log is consistent: one entry per (author, seq), contiguous.
        const [summary] = [...ledger.summary().values()];
        assert.equal(summary.count, summary.maxSeq);
        ledger.store.close();
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it(
    'every durable put fsyncs before it returns, in a new store and ' +
      'in a reopened one; relaxed puts never do (counted with strace)',
    async function () {
      if (spawnSync('strace', ['-V']).status !== 0) this.skip(); // CI installs it (apt)
      const dir = await mkdtemp(join(tmpdir(), 'robomesh-fsync-'));
      try {
        // The first run exits without closing (as a killed robot would), so the second appends to a
        // WAL that is already there, where no WAL header is written (and synced) on the first put.
        for (const [run, first, exit] of [
          ['new', 1, 'keep-wal'],
          ['reopened', 101, 'close'],
        ] as const) {
          const trace = join(dir, `trace-${run}`);
          const child = spawnSync(
            'strace',
            [
              '-f',
              '-e',
              'trace=fsync,fdatasync,write',
              '-o',
              trace,
              process.execPath,
              FSYNC_CHILD,
              join(dir, 'log.sqlite'),
              '10',
              String(first),
              exit,
            ],
            { encoding: 'utf8' },
          );
          assert.equal(child.status, 0, child.stderr);
          const { readFile } = await import('node:fs/promises');
          const syncs = new Map<string, number>();
          let phase = 'open';
          for (const line of (await readFile(trace, 'utf8')).split('\n')) {
            const marker = /write\(2, "PHASE ([a-z]+-?\d*)/.exec(line);
            if (marker) phase = marker[1];
            else if (/\b(fsync|fdatasync)\(/.test(line)) syncs.set(phase, (syncs.get(phase) ?? 0) + 1);
          }
          for (let i = first; i < first + 10; i++) {
            const durable = (i - first) % 2 === 0;
            const n = syncs.get(`${durable ? 'durable' : 'relaxed'}-${i}`) ?? 0;
            if (durable) assert.ok(n >= 1, `${run} store: durable put ${i} made no fsync`);
            else assert.equal(n, 0, `${run} store: relaxed put ${i} made ${n} fsyncs`);
          }
        }
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  );

  it(
    'a disk that fills up: the commit that fails leaves nothing behind, ' +
      'and the store takes entries once there is room (root: a 512 KiB tmpfs)',
    async function () {
      if (process.getuid?.() !== 0) this.skip(); // mounting a tmpfs needs root (CI runs as root)
      const dir = await mkdtemp(join(tmpdir(), 'robomesh-full-'));
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=512k', 'tmpfs', dir]);
      const stores: SqliteLogStore[] = [];
      try {
        const store = new SqliteLogStore(join(dir, 'log.sqlite'));
        stores.push(store);
        const entry = (seq: number, author: string) => ({
          id: seq.toString(16).padStart(64, '0'),
          author,
          seq,
          lamport: seq,
          bytes: new Uint8Array(4000).fill(seq),
        });
        let seq = 0;
        let failed: ReturnType<typeof entry>[] | undefined;
        // In WAL mode the pages are written at COMMIT: that is where a full disk shows.
        for (let k = 0; k < 40 && !failed; k++) {
          const batch = Array.from({ length: 10 }, () =>
            entry(++seq, k % 2 ? 'ab'.repeat(32) : (k + 1).toString(16).padStart(64, '0')),
          );
          try {
            store.put(batch, false);
          } catch (err) {
            assert.equal((err as { code?: string }).code, 'SQLITE_FULL');
            failed = batch;
          }
        }
        assert.ok(failed, 'the tmpfs filled up');
        for (const e of failed)
          assert.ok(!store.has(e.id) && store.get(e.id) === undefined, `entry ${e.seq} of the failed commit`);
        execFileSync('mount', ['-o', 'remount,size=8m', dir]);
        store.put(failed, false);
        for (const e of failed) assert.deepEqual(store.get(e.id)?.bytes, e.bytes);
        assert.deepEqual(
          store.range(failed[0].author, failed[0].seq, failed[0].seq, 1).map((r) => r.seq),
          [failed[0].seq],
          'its author numbered once, for real',
        );
        const again = new SqliteLogStore(join(dir, 'log.sqlite'));
        stores.push(again);
        assert.equal(again.all().length, seq);
      } finally {
        for (const s of stores) s.close();
        execFileSync('umount', [dir]);
        await rm(dir, { recursive: true, force: true });
      }
    },
  );
});
