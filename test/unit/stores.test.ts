import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryAnchorQueue, SqliteAnchorQueue } from '../../nodes/ledger/anchor-queue.js';
import { SqliteLogStore } from '../../nodes/ledger/sqlite-store.js';
import { MemoryLogStore, StoreError } from '../../nodes/ledger/store.js';
import { anchorQueueCompliance, logStoreCompliance } from '../compliance/stores.js';

/** A store on a file in a fresh folder; reopen closes it and opens the same file. */
async function onDisk<S extends { close(): void }>(file: string, open: (path: string) => S) {
  const dir = await mkdtemp(join(tmpdir(), 'rm-store-compliance-'));
  const path = join(dir, file);
  let current = open(path);
  return {
    store: current,
    reopen: () => {
      current.close();
      return (current = open(path));
    },
    cleanup: async () => {
      current.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

logStoreCompliance('memory', async () => ({ store: new MemoryLogStore(), cleanup: async () => undefined }));
logStoreCompliance('SQLite', () => onDisk('log.sqlite', (p) => new SqliteLogStore(p)));
anchorQueueCompliance('memory', async () => ({ store: new MemoryAnchorQueue(), cleanup: async () => undefined }));
anchorQueueCompliance('SQLite', () => onDisk('anchors.sqlite', (p) => new SqliteAnchorQueue(p)));

describe('SqliteAnchorQueue on a damaged file', () => {
  it('garbage where the queue should be: one typed error naming the file, no raw SqliteError', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'rm-queue-'));
    try {
      const path = join(dir, 'anchors.sqlite');
      await writeFile(path, randomBytes(3000));
      assert.throws(
        () => new SqliteAnchorQueue(path),
        (e: unknown) =>
          e instanceof StoreError &&
          e.code === 'UNREADABLE' &&
          e.message.startsWith(`anchor queue ${path}`) &&
          !e.message.includes('\n'),
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
