import { EventEmitter } from 'node:events';
import * as cbor from '@ipld/dag-cbor';
import { LedgerFold } from '../../contracts/fold.js';
import type { FleetState, LogItem } from '../../contracts/fleet-state.js';
import type { Signer } from '../../protocol/ed25519.js';
import {
  type DecodedEntry,
  type Entry,
  type EntryDraft,
  EntryError,
  type Hex,
  MAX_BATCH,
  type Payload,
  entryId,
  equalBytes,
  fromHex,
  parseEntry,
  signBatch,
  toHex,
  verifyEntries,
  verifyEntry,
} from '../../protocol/log-entry.js';
import type { LogStore, RangeRow, StoredEntry } from './store.js';

export type IngestStatus = 'added' | 'duplicate' | 'equivocation';

/** Parents not held yet: fetch them (sync) and offer the entry again. */
export class MissingParentsError extends EntryError {
  constructor(readonly missing: Hex[]) {
    super('MISSING_PARENTS', `${missing.length} parent(s) not held yet`);
  }
}

const MAX_PARENTS = 16;
/** Longest a sync may keep what it brought out of the folded state. */
const FOLD_DEFER_MS = 1000;

/**
 * One robot's copy of the log: appends its own entries (signed, durable before acknowledged),
 * ingests others' after checking them, and keeps the contracts' state folded over it.
 * Ingestion decides only from the entry and its ancestors, never from timing, so every
 * replica accepts the same entries.
 */
export class Ledger extends EventEmitter<{ entry: [DecodedEntry, IngestStatus]; folded: [] }> {
  readonly fold = new LedgerFold();
  private readonly headSet = new Set<Hex>();
  private readonly lamports = new Map<Hex, number>();
  private readonly parentsOf = new Map<Hex, Hex[]>();
  /**
   * Slots (author:seq) holding two entries (equivocation evidence kept; no more). One entry per
   * slot needs no record: an author's seqs held are always 1..maxSeq (a gap is refused).
   */
  private readonly twinSlots = new Set<string>();
  /** Everyone ever admitted: membership only grows here, so ingestion never depends on order. */
  private readonly admitted = new Set<Hex>();
  private readonly genesisAdmins = new Set<Hex>();
  private readonly staged: { stored: StoredEntry; item: LogItem; decoded: DecodedEntry; status: IngestStatus }[] = [];
  private readonly maxSeqs = new Map<Hex, number>();
  private readonly counts = new Map<Hex, number>();
  /** Parsed entries whose signature was checked and holds (held by whoever still holds the entry). */
  private readonly verified = new WeakSet<DecodedEntry>();
  private bulkDepth = 0;
  private readonly unfolded: LogItem[] = [];
  private unfoldedSince = 0;

  constructor(
    readonly store: LogStore,
    private readonly signer?: Signer,
  ) {
    super();
    this.self = signer ? toHex(signer.publicKey) : undefined;
    // Entries in our own store were checked when they came in: decode without re-verifying.
    const rows = store.all();
    const slots = new Set<string>();
    for (const r of rows) {
      const slot = `${r.author}:${r.seq}`;
      if (slots.has(slot)) this.twinSlots.add(slot);
      slots.add(slot);
    }
    this.fold.insertMany(
      rows.map((s) => {
        const e = cbor.decode(s.bytes) as Entry;
        if (e.v !== 2)
          throw new EntryError(
            'MALFORMED',
            `the log store holds version ${String(e.v)} entries; this ` +
              `robomesh reads version 2 (move the old data directory away)`,
          );
        return this.indexMeta(s, e);
      }),
    );
  }

  /** Our author key (hex), when this ledger signs. */
  readonly self: Hex | undefined;

  /** True for an entry we authored (compares the key bytes: no hex per entry). */
  isOwn(d: DecodedEntry): boolean {
    return this.signer !== undefined && equalBytes(d.entry.author, this.signer.publicKey);
  }

  get state(): FleetState {
    return this.fold.state;
  }

  stateHash(): Hex {
    return this.fold.stateHash();
  }

  /** Resolves once `ready(state)` holds, checked now and after every fold; rejects when `signal` aborts. */
  until(ready: (state: FleetState) => boolean, signal: AbortSignal): Promise<void> {
    if (ready(this.state)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (!ready(this.state)) return;
        done();
        resolve();
      };
      const abort = (): void => {
        done();
        reject(signal.reason);
      };
      const done = (): void => {
        this.off('folded', check);
        signal.removeEventListener('abort', abort);
      };
      if (signal.aborted) return abort();
      this.on('folded', check);
      signal.addEventListener('abort', abort, { once: true });
    });
  }

  heads(): Hex[] {
    return [...this.headSet].sort();
  }

  has(id: Hex): boolean {
    return this.lamports.has(id);
  }

  /** Every entry reachable from `heads` (heads included), in the log's order (lamport, id). */
  ancestry(heads: Hex[]): Hex[] {
    const seen = new Set<Hex>();
    const stack = heads.filter((h) => this.lamports.has(h));
    if (stack.length !== heads.length)
      throw new EntryError('MALFORMED', 'ancestry asked for an entry this ledger does not hold');
    while (stack.length) {
      const id = stack.pop()!;
      if (seen.has(id)) continue;
      seen.add(id);
      for (const p of this.parentsOf.get(id) ?? []) if (!seen.has(p)) stack.push(p);
    }
    return [...seen].sort((a, b) => this.lamports.get(a)! - this.lamports.get(b)! || (a < b ? -1 : a > b ? 1 : 0));
  }

  lamportOf(id: Hex): number | undefined {
    return this.lamports.get(id);
  }

  get size(): number {
    return this.fold.size;
  }

  ids(): Hex[] {
    return this.fold.items().map((i) => i.id);
  }

  /** Per author: highest seq and entries held — kept in memory, asked once per sync batch. */
  summary(): Map<Hex, { maxSeq: number; count: number }> {
    return new Map(
      [...this.maxSeqs].map(([author, maxSeq]) => [author, { maxSeq, count: this.counts.get(author) ?? 0 }]),
    );
  }

  /** An author's entries lo ≤ seq ≤ hi: at most `limit`, stopping once their bytes reach `maxBytes`. */
  entriesOf(author: Hex, lo: number, hi: number, limit = 500, maxBytes?: number): RangeRow[] {
    return this.store.range(author, lo, hi, limit, maxBytes);
  }

  get(id: Hex): Uint8Array | undefined {
    return this.store.get(id)?.bytes;
  }

  /** Signs and durably stores a new entry of ours; returns once it is on disk. */
  append(payload: Payload): DecodedEntry {
    return this.appendBatch([payload])[0];
  }

  /**
   * Signs several entries (each the child of the previous) with one batch signature and stores
   * them in one durable transaction — one fsync for the batch (group commit); returns once all
   * are on disk.
   */
  appendBatch(payloads: Payload[]): DecodedEntry[] {
    if (!this.signer) throw new EntryError('UNKNOWN_AUTHOR', 'this ledger has no signing key');
    const author = this.signer.publicKey;
    let seq = this.maxSeqs.get(toHex(author)) ?? 0;
    // The heads as they will be after each entry: every entry names the previous one.
    const heads = new Set(this.headSet);
    const lamports = new Map<Hex, number>();
    const drafts: EntryDraft[] = [];
    for (const payload of payloads) {
      const parents = [...heads].sort().slice(0, MAX_PARENTS);
      const lamport = 1 + Math.max(0, ...parents.map((p) => lamports.get(p) ?? this.lamports.get(p) ?? 0));
      const draft: EntryDraft = { seq: ++seq, lamport, parents: parents.map(fromHex), payload };
      const id = toHex(entryId(draft, author));
      for (const p of parents) heads.delete(p);
      heads.add(id);
      lamports.set(id, lamport);
      drafts.push(draft);
    }
    const out: DecodedEntry[] = [];
    for (let i = 0; i < drafts.length; i += MAX_BATCH) {
      for (const decoded of signBatch(drafts.slice(i, i + MAX_BATCH), this.signer)) {
        this.stage(decoded);
        out.push(decoded);
      }
    }
    this.commit();
    return out;
  }

  /**
   * Checks and stores an entry from elsewhere. Throws EntryError for anything invalid
   * (signature, schema, size, unknown author, sequence gap, clock) and MissingParentsError
   * when its parents are not here yet. A replay of a held entry is a no-op ('duplicate').
   */
  ingest(bytes: Uint8Array): IngestStatus {
    try {
      return this.check(bytes);
    } finally {
      this.commit();
    }
  }

  /**
   * Ingests many entries with one durable transaction and one fold. Each entry may depend on
   * earlier ones of the batch. Entries may come already parsed (parseEntry; not verified).
   * Signatures are checked for the batch at once (verifyEntries). Returns per entry its status
   * or the error that refused it.
   */
  ingestBatch(list: (Uint8Array | DecodedEntry)[]): (IngestStatus | EntryError)[] {
    try {
      const parsed = list.map((item) => {
        if (!(item instanceof Uint8Array)) return item;
        try {
          return parseEntry(item);
        } catch (err) {
          if (err instanceof EntryError) return err;
          throw err;
        }
      });
      // Held entries are duplicates whatever their signature: only the new ones are verified.
      // An entry offered again (a sync retrying those whose parents were missing) keeps its verdict.
      const fresh = parsed.filter(
        (p): p is DecodedEntry => !(p instanceof EntryError) && !this.lamports.has(p.idHex) && !this.verified.has(p),
      );
      const refused = new Map<DecodedEntry, EntryError>();
      verifyEntries(fresh).forEach((err, i) => (err ? refused.set(fresh[i], err) : this.verified.add(fresh[i])));
      return parsed.map((p) => {
        if (p instanceof EntryError) return p;
        try {
          return this.check(p, refused.get(p) ?? null);
        } catch (err) {
          if (err instanceof EntryError) return err;
          throw err;
        }
      });
    } finally {
      this.commit();
    }
  }

  /** `verified`: null when the signature was checked and holds, else the error (undefined: not checked yet). */
  private check(input: Uint8Array | DecodedEntry, verified?: EntryError | null): IngestStatus {
    const decoded = input instanceof Uint8Array ? parseEntry(input) : input;
    // Same content as an entry held (its signature may be another valid one): nothing new.
    if (this.lamports.has(decoded.idHex)) return 'duplicate';
    if (verified === undefined) verifyEntry(decoded);
    else if (verified) throw verified;
    const e = decoded.entry;
    const author = this.authorHex(e.author);
    // Parents first: the entry admitting its author may be among them (a new member's first
    // entries descend from it), so an entry waits for its ancestors before it is judged by them.
    const parents = e.parents.map(toHex);
    const missing = parents.filter((p) => !this.lamports.has(p));
    if (missing.length) throw new MissingParentsError(missing);
    const isGenesis = e.payload.type === 'genesis' && e.seq === 1 && e.parents.length === 0;
    if (!isGenesis && !this.admitted.has(author))
      throw new EntryError('UNKNOWN_AUTHOR', `author ${author.slice(0, 12)}… was never admitted`);
    for (const p of parents) {
      if (e.lamport <= this.lamports.get(p)!)
        throw new EntryError('WRONG_CLOCK', `clock ${e.lamport} does not exceed its parents'`);
    }
    const maxSeq = this.maxSeqs.get(author) ?? 0;
    if (e.seq > maxSeq + 1) {
      throw new EntryError('WRONG_SEQUENCE', `seq ${e.seq} of ${author.slice(0, 12)}… before seq ${e.seq - 1}`);
    }
    const twins = this.slotHolds(author, e.seq, maxSeq);
    if (twins >= 2)
      throw new EntryError(
        'WRONG_SEQUENCE',
        `slot ${e.seq} of ${author.slice(0, 12)}… already holds equivocation evidence`,
      );
    this.stage(decoded, author, parents);
    return twins > 0 ? 'equivocation' : 'added';
  }

  /** How many entries hold slot (author, seq): 0, 1 or 2. */
  private slotHolds(author: Hex, seq: number, maxSeq = this.maxSeqs.get(author) ?? 0): number {
    if (seq > maxSeq) return 0;
    return this.twinSlots.has(`${author}:${seq}`) ? 2 : 1;
  }

  private lastAuthor: { key: Uint8Array; hex: Hex } | undefined;

  /** toHex of an author key, remembering the last one: entries mostly come in runs of one author's. */
  private authorHex(key: Uint8Array): Hex {
    if (this.lastAuthor && equalBytes(this.lastAuthor.key, key)) return this.lastAuthor.hex;
    this.lastAuthor = { key, hex: toHex(key) };
    return this.lastAuthor.hex;
  }

  /** Indexes an entry now (later entries of a batch may build on it); stores and folds at commit. */
  private stage(d: DecodedEntry, author = toHex(d.entry.author), parents?: Hex[]): void {
    const stored: StoredEntry = {
      id: d.idHex,
      idBytes: d.id,
      author,
      seq: d.entry.seq,
      lamport: d.entry.lamport,
      bytes: d.bytes,
    };
    const twin = this.slotHolds(author, stored.seq) > 0;
    if (twin) this.twinSlots.add(`${author}:${stored.seq}`);
    const status: IngestStatus = twin ? 'equivocation' : 'added';
    this.staged.push({ stored, item: this.indexMeta(stored, d.entry, parents), decoded: d, status });
  }

  /** Writes staged entries in one transaction (durable on return), then folds them once. */
  private commit(): void {
    if (this.staged.length === 0) return;
    const batch = this.staged.splice(0);
    const self = this.self;
    // Our own entries are acknowledged, so they wait for the fsync; copies of peers' entries
    // can be fetched again after a power cut and skip it (store.ts).
    this.store.put(
      batch.map((b) => b.stored),
      batch.some((b) => b.stored.author === self),
    );
    // Deferred only for entries a sync brings, and never for long: our own entries (a task we
    // just posted, a result) and anything arriving outside a sync are folded at once, and a sync
    // that stalls (a slow or hostile peer) cannot hold the state back past FOLD_DEFER_MS.
    const own = batch.some((b) => b.stored.author === self);
    if (this.bulkDepth > 0 && !own && !this.foldNow) {
      if (this.unfolded.length === 0) this.unfoldedSince = Date.now();
      this.unfolded.push(...batch.map((b) => b.item));
      this.deferredFold ??= setTimeout(() => this.foldPending(), FOLD_DEFER_MS);
    } else this.foldPending(batch.map((b) => b.item));
    for (const b of batch) this.emit('entry', b.decoded, b.status);
  }

  private foldNow = false;
  private deferredFold: NodeJS.Timeout | undefined;

  /** Folds what waits (and `more`), and says so. */
  private foldPending(more: LogItem[] = []): void {
    clearTimeout(this.deferredFold);
    this.deferredFold = undefined;
    this.fold.insertMany(this.unfolded.length ? [...this.unfolded.splice(0), ...more] : more);
    this.unfoldedSince = Date.now();
    this.emit('folded');
  }

  /** Ingests entries that must be in the state at once (a task request's own entries), sync or not. */
  ingestNow(list: (Uint8Array | DecodedEntry)[]): (IngestStatus | EntryError)[] {
    this.foldNow = true;
    try {
      return this.ingestBatch(list);
    } finally {
      this.foldNow = false;
      // They may have arrived already, by a sync whose entries wait to be folded.
      if (this.unfolded.length) this.foldPending();
    }
  }

  /**
   * Runs `work` (a sync pulling many batches) with folding deferred to its end: entries are
   * durable batch by batch as always, but the contracts refold once instead of once per batch.
   * With many peers syncing back to back there may never be a moment with none running, so
   * a sync that ends also folds once the oldest waiting entry has waited a second.
   */
  async bulk<T>(work: () => Promise<T>): Promise<T> {
    if (this.bulkDepth++ === 0 || this.unfolded.length === 0) this.unfoldedSince = Date.now();
    try {
      return await work();
    } finally {
      if (--this.bulkDepth === 0 || Date.now() - this.unfoldedSince >= FOLD_DEFER_MS) this.foldPending();
    }
  }

  private indexMeta(s: StoredEntry, e: Entry, parents = e.parents.map(toHex)): LogItem {
    this.lamports.set(s.id, s.lamport);
    this.maxSeqs.set(s.author, Math.max(this.maxSeqs.get(s.author) ?? 0, s.seq));
    this.counts.set(s.author, (this.counts.get(s.author) ?? 0) + 1);
    this.parentsOf.set(s.id, parents);
    for (const p of parents) this.headSet.delete(p);
    this.headSet.add(s.id);
    const p = e.payload;
    if (p.type === 'genesis' && this.genesisAdmins.size === 0) {
      for (const m of [...p.members, ...p.admins, s.author]) this.admitted.add(m);
      for (const a of [...p.admins, s.author]) this.genesisAdmins.add(a);
    }
    if (p.type === 'admit' && this.genesisAdmins.has(s.author)) this.admitted.add(p.member);
    return { id: s.id, author: s.author, seq: s.seq, lamport: s.lamport, payload: p };
  }
}
