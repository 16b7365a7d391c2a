import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from './sqlite.js';
import { storeError } from './sqlite-store.js';
import type { Hex } from '../../protocol/log-entry.js';

/** An anchor waiting for a node: what to commit, and once built, the signed transaction. */
export interface QueuedAnchor {
  root: Hex;
  count: number;
  heads: Hex[];
  firstLamport: number;
  lastLamport: number;
  results: { task: string; digest: Hex }[];
  signed?: { bytes: string /* base64 */; signature: string; digest: string; sender: string };
  /** Signed by another robot and relayed to us: we may submit it but never rebuild it. */
  relayed: boolean;
  attempts: number;
  /** Epoch ms before which no retry is made (exponential backoff). */
  notBefore: number;
  lastError?: string;
  /** Executed on chain and aborted by the Move code: it would abort again, so it is never retried. */
  failed?: string;
}

/** Durable queue of anchors: an anchor is never lost across restarts or partitions. */
export interface AnchorQueue {
  put(item: QueuedAnchor): void;
  get(root: Hex): QueuedAnchor | undefined;
  all(): QueuedAnchor[];
  remove(root: Hex): void;
  close(): void;
}

export class MemoryAnchorQueue implements AnchorQueue {
  private readonly items = new Map<Hex, QueuedAnchor>();
  put(item: QueuedAnchor): void {
    this.items.set(item.root, structuredClone(item));
  }
  get(root: Hex): QueuedAnchor | undefined {
    const item = this.items.get(root);
    return item && structuredClone(item);
  }
  all(): QueuedAnchor[] {
    return [...this.items.values()].map((i) => structuredClone(i));
  }
  remove(root: Hex): void {
    this.items.delete(root);
  }
  close(): void {}
}

/** SQLite with synchronous=FULL: `put` returns once the item is on disk. */
export class SqliteAnchorQueue implements AnchorQueue {
  private readonly db: Database.Database;

  constructor(path: string) {
    try {
      mkdirSync(dirname(path), { recursive: true });
      this.db = new Database(path);
      this.db.pragma('journal_mode = WAL');
      this.db.pragma('synchronous = FULL');
      this.db.exec(
        'CREATE TABLE IF NOT EXISTS anchor_queue (root TEXT PRIMARY KEY, added INTEGER NOT NULL, item TEXT NOT NULL)',
      );
    } catch (err) {
      throw storeError(path, err, 'anchor queue');
    }
  }

  put(item: QueuedAnchor): void {
    this.db
      .prepare(
        'INSERT INTO anchor_queue (root, added, item) VALUES (?, ?, ' +
          '?) ON CONFLICT(root) DO UPDATE SET item = excluded.item',
      )
      .run(item.root, Date.now(), JSON.stringify(item));
  }

  get(root: Hex): QueuedAnchor | undefined {
    const row = this.db.prepare('SELECT item FROM anchor_queue WHERE root = ?').get(root) as
      { item: string } | undefined;
    return row && (JSON.parse(row.item) as QueuedAnchor);
  }

  all(): QueuedAnchor[] {
    return (this.db.prepare('SELECT item FROM anchor_queue ORDER BY rowid').all() as { item: string }[]).map(
      (r) => JSON.parse(r.item) as QueuedAnchor,
    );
  }

  remove(root: Hex): void {
    this.db.prepare('DELETE FROM anchor_queue WHERE root = ?').run(root);
  }

  close(): void {
    this.db.close();
  }
}
