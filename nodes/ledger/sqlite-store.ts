import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import type { Hex } from '../../protocol/log-entry.js';
import type { LogStore, StoredEntry } from './store.js';

/**
 * SQLite (better-sqlite3) in WAL mode with synchronous=FULL: a transaction is on disk when
 * `put` returns, so an acknowledged entry survives kill -9, and a torn write is rolled back.
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
    this.db.exec(`CREATE TABLE IF NOT EXISTS entries (
      id TEXT PRIMARY KEY, author TEXT NOT NULL, seq INTEGER NOT NULL, lamport INTEGER NOT NULL, bytes BLOB NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS by_author ON entries(author, seq);
    CREATE INDEX IF NOT EXISTS by_order ON entries(lamport, id);`);
    this.insert = this.db.prepare('INSERT OR IGNORE INTO entries (id, author, seq, lamport, bytes) VALUES (?, ?, ?, ?, ?)');
    this.putMany = this.db.transaction((entries: StoredEntry[]) => {
      for (const e of entries) this.insert.run(e.id, e.author, e.seq, e.lamport, Buffer.from(e.bytes.buffer, e.bytes.byteOffset, e.bytes.byteLength));
    });
  }

  put(entries: StoredEntry[]): void {
    this.putMany(entries);
  }

  has(id: Hex): boolean {
    return this.db.prepare('SELECT 1 FROM entries WHERE id = ?').get(id) !== undefined;
  }

  get(id: Hex): StoredEntry | undefined {
    return this.row(this.db.prepare('SELECT * FROM entries WHERE id = ?').get(id));
  }

  all(): StoredEntry[] {
    return this.db.prepare('SELECT * FROM entries ORDER BY lamport, id').all().map((r) => this.row(r)!);
  }

  range(author: Hex, lo: number, hi: number, limit: number): StoredEntry[] {
    return this.db
      .prepare('SELECT * FROM entries WHERE author = ? AND seq BETWEEN ? AND ? ORDER BY seq, id LIMIT ?')
      .all(author, lo, hi, limit)
      .map((r) => this.row(r)!);
  }

  close(): void {
    this.db.close();
  }

  private row(r: unknown): StoredEntry | undefined {
    if (!r) return undefined;
    const x = r as { id: Hex; author: Hex; seq: number; lamport: number; bytes: Buffer };
    return { id: x.id, author: x.author, seq: x.seq, lamport: x.lamport, bytes: new Uint8Array(x.bytes) };
  }
}
