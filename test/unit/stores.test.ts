import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryAnchorQueue, SqliteAnchorQueue } from '../../nodes/ledger/anchor-queue.js';
import { SqliteLogStore } from '../../nodes/ledger/sqlite-store.js';
import { MemoryLogStore } from '../../nodes/ledger/store.js';
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
