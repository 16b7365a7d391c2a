import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { Ledger } from '../nodes/ledger/ledger.js';
import { SqliteLogStore } from '../nodes/ledger/sqlite-store.js';
import { prng } from '../nodes/util/prng.js';
import { testSeed, withSeed } from './helpers/seed.js';

const CHILD = fileURLToPath(new URL('./helpers/append-child.js', import.meta.url));
const FSYNC_CHILD = fileURLToPath(new URL('./helpers/fsync-child.js', import.meta.url));

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
          assert.equal((db.pragma('integrity_check') as { integrity_check: string }[])[0].integrity_check, 'ok', `round ${round}`);
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

  it('a durable put fsyncs before it returns, a relaxed one does not (counted with strace)', async function () {
    if (spawnSync('strace', ['-V']).status !== 0) this.skip(); // CI installs it (apt)
    const dir = await mkdtemp(join(tmpdir(), 'robomesh-fsync-'));
    try {
      const run = spawnSync('strace', ['-f', '-e', 'trace=fsync,fdatasync,write', '-o', join(dir, 'trace'), process.execPath, FSYNC_CHILD, join(dir, 'log.sqlite'), '20'], { encoding: 'utf8' });
      assert.equal(run.status, 0, run.stderr);
      const { readFile } = await import('node:fs/promises');
      const syncs: Record<string, number> = {};
      let phase = 'open';
      for (const line of (await readFile(join(dir, 'trace'), 'utf8')).split('\n')) {
        const marker = /write\(2, "PHASE ([a-z-]+)/.exec(line);
        if (marker) phase = marker[1];
        else if (/\b(fsync|fdatasync)\(/.test(line)) syncs[phase] = (syncs[phase] ?? 0) + 1;
      }
      assert.equal(syncs.relaxed ?? 0, 0, `relaxed puts synced: ${JSON.stringify(syncs)}`);
      assert.ok((syncs.durable ?? 0) >= 20, `20 durable puts, ${syncs.durable ?? 0} syncs`);
      assert.equal(syncs['relaxed-again'] ?? 0, 0, `relaxed puts after durable ones synced: ${JSON.stringify(syncs)}`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
