import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from './sqlite.js';
import type { Hex } from '../../protocol/log-entry.js';
import { type LogStore, type RangeRow, StoreError, type StoredEntry } from './store.js';

/** Marks stores of this layout (PRAGMA user_version), so one whose tables vanished is told from a new one. */
const LAYOUT = 3;

/** SQLite's failure opening or reading a store, as one line naming the file and what to do. */
export function storeError(path: string, err: unknown, what = 'log store'): StoreError {
  if (err instanceof StoreError) return err;
  const code = (err as { code?: string }).code ?? '';
  const why = (err as Error).message;
  if (code.startsWith('SQLITE_READONLY') || code === 'EACCES' || code === 'EROFS')
    return new StoreError(
      'READ_ONLY',
      `${what} ${path} cannot be written (${why}); give the robot a writable data folder`,
      { cause: err },
    );
  if (code === 'SQLITE_NOTADB' || code.startsWith('SQLITE_CORRUPT'))
    return new StoreError(
      'UNREADABLE',
      `${what} ${path} is not a readable database (${why}); ` +
        `restore it from a backup, or move it away to start anew`,
      { cause: err },
    );
  if (code.startsWith('SQLITE_CANTOPEN') || code.startsWith('SQLITE_IOERR') || code === 'ENOENT')
    return new StoreError('UNREADABLE', `${what} ${path} cannot be opened (${why}); check the path and its folder`, {
      cause: err,
    });
  return new StoreError('UNREADABLE', `${what} ${path}: ${why}`, { cause: err });
}

const blob = (b: Uint8Array): Buffer => Buffer.from(b.buffer, b.byteOffset, b.byteLength);
const view = (b: Buffer): Uint8Array => new Uint8Array(b.buffer, b.byteOffset, b.byteLength);

/**
 * SQLite (better-sqlite3) in WAL mode. A durable `put` commits with synchronous=FULL (the WAL is
 * fsynced before it returns); a relaxed one with NORMAL (written to the OS, fsynced at the next
 * durable commit or checkpoint). Either survives kill -9; a torn write is rolled back. NORMAL is
 * the connection's setting; durable puts switch to FULL around their transaction. (SQLite applies
 * `PRAGMA synchronous` when the statement is compiled, so it is prepared afresh each time, as
 * db.pragma does: a prepared statement run again after a reopen set nothing on its first run.)
 *
 * Checkpoints (copying the WAL back into the database, with fsyncs) are ours, not SQLite's
 * automatic one every 1,000 pages: they wait for a quarter second without writes (at most
 * 5 s), so a burst such as a sync after a heal is not stalled by them — measured 2–3× cheaper
 * inserts. Past 16,384 pages (64 MiB) of WAL one runs at once.
 *
 * Layout 3: ids as 32-byte blobs and authors as small integers (table log_authors), one index
 * besides the id's: (author, seq). With the author's 64-character hex key in every row and two
 * text indexes (layout 2), an insert cost about twice as much (measured, ~450-byte rows).
 *
 * Stores created now have no index on the id (layout 3 without the id's UNIQUE): ids are hashes,
 * so each insert landed on a random page of that index, and every commit rewrote most of its
 * pages into the WAL — 7–11 µs per row in commits of 200 rows instead of 2.5–4.5 µs without it
 * (scratch measurement, 20,000 rows of 450 B). Lookups by id go through `rowids`, the id → rowid
 * map kept in memory (the ledger holds every id in memory anyway), which also makes duplicate
 * puts no-ops. Stores written with the UNIQUE index keep it and work unchanged.
 */
export class SqliteLogStore implements LogStore {
  private readonly db!: Database.Database;
  private readonly authorNumbers = new Map<Hex, number>();
  private meanBytes = 512;
  /** Pages written to the WAL since the last checkpoint, estimated from the rows' sizes. */
  private walPages = 0;
  private walSince = 0;
  private checkpointTimer: NodeJS.Timeout | undefined;
  private readonly authorKeys = new Map<number, Hex>();
  /** id → rowid of every stored entry; filled on first use (or by `all`). */
  private rowids: Map<Hex, number> | undefined;
  private readonly insertRow: Database.Statement;
  private readonly insertAuthor: Database.Statement;
  private readonly selectRange: Database.Statement;
  private readonly selectByRowid: Database.Statement;
  private readonly insertMany: (entries: StoredEntry[], added: { ids: Hex[]; authors: Hex[] }) => void;

  readonly location: string;

  constructor(path: string) {
    this.location = path;
    try {
      mkdirSync(dirname(path), { recursive: true });
      this.db = new Database(path);
      this.db.pragma('journal_mode = WAL');
      this.db.pragma('wal_autocheckpoint = 0');
      this.db.pragma('synchronous = NORMAL');
      this.openLayout(path);
      for (const [n, key] of this.db.prepare('SELECT n, key FROM log_authors').raw().all() as [number, Buffer][])
        this.learn(key.toString('hex'), n);
    } catch (err) {
      this.db?.close();
      throw storeError(path, err);
    }
    this.insertRow = this.db.prepare('INSERT INTO log_rows (id, author, seq, lamport, bytes) VALUES (?, ?, ?, ?, ?)');
    this.insertAuthor = this.db.prepare('INSERT INTO log_authors (key) VALUES (?)');
    this.selectRange = this.db
      .prepare(
        'SELECT seq, lamport, bytes FROM log_rows WHERE author = ? AND seq BETWEEN ? AND ? ORDER BY seq, rowid LIMIT ?',
      )
      .raw();
    this.selectByRowid = this.db.prepare('SELECT id, author, seq, lamport, bytes FROM log_rows WHERE rowid = ?').raw();
    this.insertMany = this.db.transaction((entries: StoredEntry[], added: { ids: Hex[]; authors: Hex[] }) => {
      const rowids = this.rowidMap();
      for (const e of entries) {
        if (rowids.has(e.id)) continue;
        let n = this.authorNumbers.get(e.author);
        if (n === undefined) {
          n = Number(this.insertAuthor.run(Buffer.from(e.author, 'hex')).lastInsertRowid);
          this.learn(e.author, n);
          added.authors.push(e.author);
        }
        const { lastInsertRowid } = this.insertRow.run(
          e.idBytes ? blob(e.idBytes) : Buffer.from(e.id, 'hex'),
          n,
          e.seq,
          e.lamport,
          blob(e.bytes),
        );
        rowids.set(e.id, Number(lastInsertRowid));
        added.ids.push(e.id);
      }
    });
  }

  /** Checks the file is a log store this robomesh wrote (or a new one), and creates its tables. */
  private openLayout(path: string): void {
    const tables = new Set(
      (this.db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as { name: string }[]).map(
        (t) => t.name,
      ),
    );
    if (tables.has('entries') || tables.has('log_entries')) {
      const version = tables.has('entries') ? 'log version 1' : 'log version 2, store layout 2';
      throw new StoreError(
        'OLD_LAYOUT',
        `log store ${path} was written by an older robomesh (${version}); move it away to start a new log`,
      );
    }
    const layout = this.db.pragma('user_version', { simple: true }) as number;
    const complete = tables.has('log_rows') && tables.has('log_authors');
    // Written by robomesh (marked at creation) but its tables are gone: damaged, not new.
    if ((layout === LAYOUT || tables.size > 0) && !complete)
      throw new StoreError(
        'DAMAGED',
        `log store ${path} is damaged (its tables are missing); ` +
          `restore it from a backup, or move it away to start anew`,
      );
    if (complete) return;
    // A rowid table: rows append in arrival order instead of landing at random places in a
    // B-tree keyed by hash (3× faster inserts with ~450-byte rows, measured here).
    this.db.exec(`CREATE TABLE log_authors (n INTEGER PRIMARY KEY, key BLOB NOT NULL UNIQUE);
    CREATE TABLE log_rows (
      id BLOB NOT NULL, author INTEGER NOT NULL, seq INTEGER NOT NULL, lamport INTEGER NOT NULL, bytes BLOB NOT NULL
    );
    CREATE INDEX log_rows_by_author ON log_rows(author, seq);
    PRAGMA user_version = ${LAYOUT};`);
  }

  put(entries: StoredEntry[], durable = true): void {
    if (durable) this.db.pragma('synchronous = FULL');
    const added = { ids: [] as Hex[], authors: [] as Hex[] };
    try {
      this.insertMany(entries, added);
    } catch (err) {
      // Rolled back (in the transaction, or by a COMMIT that failed): forget the rows and the
      // author numbers it handed out, which SQLite will hand out again.
      for (const id of added.ids) this.rowids?.delete(id);
      for (const a of added.authors) {
        this.authorKeys.delete(this.authorNumbers.get(a)!);
        this.authorNumbers.delete(a);
      }
      throw err;
    } finally {
      if (durable) this.db.pragma('synchronous = NORMAL');
    }
    this.wrote(entries);
  }

  private wrote(entries: StoredEntry[]): void {
    // A row, its two index entries and page slack: about 1.5 times its bytes.
    for (const e of entries) this.walPages += (1.5 * (e.bytes.length + 120)) / 4096;
    if (this.walPages < 1000) return;
    if (this.walPages >= 16_384) return this.checkpoint();
    const now = Date.now();
    if (this.walSince === 0) this.walSince = now;
    clearTimeout(this.checkpointTimer);
    this.checkpointTimer = setTimeout(() => this.checkpoint(), Math.max(0, Math.min(250, this.walSince + 5000 - now)));
    this.checkpointTimer.unref();
  }

  /**
   * Copies the WAL back into the database now instead of at the next quiet moment, for a caller
   * that knows a burst of work is coming and would rather not have it land in the middle.
   */
  checkpoint(): void {
    clearTimeout(this.checkpointTimer);
    this.checkpointTimer = undefined;
    if (!this.db.open) return;
    this.db.pragma('wal_checkpoint(PASSIVE)');
    this.walPages = 0;
    this.walSince = 0;
  }

  has(id: Hex): boolean {
    return this.rowidMap().has(id);
  }

  get(id: Hex): StoredEntry | undefined {
    const rowid = this.rowidMap().get(id);
    if (rowid === undefined) return undefined;
    const entry = this.row(this.selectByRowid.get(rowid) as Row | undefined);
    return entry?.id === id ? entry : undefined;
  }

  all(): StoredEntry[] {
    const rows = this.db
      .prepare('SELECT id, author, seq, lamport, bytes, rowid FROM log_rows ORDER BY lamport, id')
      .raw()
      .all() as [...Row, number][];
    const fill = this.rowids === undefined ? (this.rowids = new Map()) : undefined;
    return rows.map((r) => {
      const entry = this.row(r as unknown as Row)!;
      fill?.set(entry.id, r[5]);
      return entry;
    });
  }

  private rowidMap(): Map<Hex, number> {
    if (this.rowids === undefined) {
      this.rowids = new Map();
      for (const [id, rowid] of this.db.prepare('SELECT id, rowid FROM log_rows').raw().iterate() as Iterable<
        [Buffer, number]
      >)
        this.rowids.set(id.toString('hex'), rowid);
    }
    return this.rowids;
  }

  range(author: Hex, lo: number, hi: number, limit: number, maxBytes = Infinity): RangeRow[] {
    const n = this.authorNumbers.get(author);
    if (n === undefined) return [];
    // Rows past the byte budget are never sent: read about as many as fit (the mean size so far
    // says how many), not `limit`. Too few only makes the reply shorter (and `full`).
    const fit = Math.min(limit, Math.ceil(maxBytes / this.meanBytes) + 16);
    let rows = this.selectRange.all(n, lo, hi, fit) as [number, number, Buffer][];
    if (rows.length === fit && fit < limit && rows.reduce((sum, r) => sum + r[2].length, 0) < maxBytes) {
      // smaller rows than the mean: read them all
      rows = this.selectRange.all(n, lo, hi, limit) as [number, number, Buffer][];
    }
    const out: RangeRow[] = [];
    let total = 0;
    for (const [seq, lamport, bytes] of rows) {
      out.push({ seq, lamport, bytes: view(bytes) });
      total += bytes.length;
      if (total >= maxBytes) break;
    }
    if (out.length) this.meanBytes = Math.max(64, total / out.length);
    return out;
  }

  close(): void {
    clearTimeout(this.checkpointTimer);
    this.db.close();
  }

  private learn(author: Hex, n: number): void {
    this.authorNumbers.set(author, n);
    this.authorKeys.set(n, author);
  }

  private row(r: Row | undefined): StoredEntry | undefined {
    if (!r) return undefined;
    const [id, author, seq, lamport, bytes] = r;
    // better-sqlite3 hands out a fresh Buffer per row: view it, no copy.
    return { id: id.toString('hex'), author: this.authorKeys.get(author)!, seq, lamport, bytes: view(bytes) };
  }
}

type Row = [Buffer, number, number, number, Buffer];
