import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { EntryError, type Hex } from '../../protocol/log-entry.js';
import type { LogStore, StoredEntry } from './store.js';

/**
 * SQLite (better-sqlite3) in WAL mode. A durable `put` commits with synchronous=FULL (the WAL is
 * fsynced before it returns); a relaxed one with NORMAL (written to the OS, fsynced at the next
 * durable commit or checkpoint). Either survives kill -9; a torn write is rolled back.
 */
export class SqliteLogStore implements LogStore {
  private readonly db: Database.Database;
  private readonly insert: Database.Statement;
  private readonly putMany: (entries: StoredEntry[]) => void;

  constructor(path: string) {
    mkdirSync(dirname(path), { recursive: true });
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    const old = this.db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'entries'").get();
    if (old) throw new EntryError('MALFORMED', `${path} was written by an older robomesh (log version 1); move it away to start a new log`);
    // A rowid table: rows append in arrival order instead of landing at random places in a
    // B-tree keyed by hash (3× faster inserts with ~450-byte rows, measured here).
    this.db.exec(`CREATE TABLE IF NOT EXISTS log_entries (
      id TEXT NOT NULL UNIQUE, author TEXT NOT NULL, seq INTEGER NOT NULL, lamport INTEGER NOT NULL, bytes BLOB NOT NULL
    );
    CREATE INDEX IF NOT EXISTS log_by_author ON log_entries(author, seq);
    CREATE INDEX IF NOT EXISTS log_by_order ON log_entries(lamport, id);`);
    this.insert = this.db.prepare('INSERT OR IGNORE INTO log_entries (id, author, seq, lamport, bytes) VALUES (?, ?, ?, ?, ?)');
    this.putMany = this.db.transaction((entries: StoredEntry[]) => {
      for (const e of entries) this.insert.run(e.id, e.author, e.seq, e.lamport, Buffer.from(e.bytes.buffer, e.bytes.byteOffset, e.bytes.byteLength));
    });
  }

  put(entries: StoredEntry[], durable = true): void {
    if (durable) {
      this.putMany(entries);
      return;
    }
    this.db.pragma('synchronous = NORMAL');
    try {
      this.putMany(entries);
    } finally {
      this.db.pragma('synchronous = FULL');
    }
  }

  has(id: Hex): boolean {
    return this.db.prepare('SELECT 1 FROM log_entries WHERE id = ?').get(id) !== undefined;
  }

  get(id: Hex): StoredEntry | undefined {
    return this.row(this.db.prepare('SELECT id, author, seq, lamport, bytes FROM log_entries WHERE id = ?').get(id));
  }

  all(): StoredEntry[] {
    return this.db.prepare('SELECT id, author, seq, lamport, bytes FROM log_entries ORDER BY lamport, id').all().map((r) => this.row(r)!);
  }

  range(author: Hex, lo: number, hi: number, limit: number): StoredEntry[] {
    return this.db
      .prepare('SELECT id, author, seq, lamport, bytes FROM log_entries WHERE author = ? AND seq BETWEEN ? AND ? ORDER BY seq, id LIMIT ?')
      .all(author, lo, hi, limit)
      .map((r) => this.row(r)!);
  }

  close(): void {
    this.db.close();
  }

  private row(r: unknown): StoredEntry | undefined {
    if (!r) return undefined;
    const x = r as { id: Hex; author: Hex; seq: number; lamport: number; bytes: Buffer };
    // better-sqlite3 hands out a fresh Buffer per row: view it, no copy.
    return { id: x.id, author: x.author, seq: x.seq, lamport: x.lamport, bytes: new Uint8Array(x.bytes.buffer, x.bytes.byteOffset, x.bytes.byteLength) };
  }
}
