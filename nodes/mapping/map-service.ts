import { EventEmitter } from 'node:events';
import {
  type Contribution,
  type LiarReport,
  compareTiles,
  findLiars,
  mergeTile,
} from '../../contracts/map-consensus.js';
import { isExcluded } from '../../contracts/fleet-state.js';
import { type Hex, decodeEntry } from '../../protocol/log-entry.js';
import { TILE, type TileContribution, TileError, parseTileId, tileDigest } from '../../protocol/map-tile.js';
import { type Ledger, MissingParentsError } from '../ledger/index.js';
import type { LaserScan, Pose } from '../../protocol/sensors.js';
import { L_MAX, LogOddsGrid, type MapFrame } from './occupancy-grid.js';

/** A wall that is not there, drawn by a Byzantine robot into everything it publishes. */
export interface FakeWall {
  from: { x: number; y: number };
  to: { x: number; y: number };
  /** Thickness in cells (the seed work used 20 and 180). */
  thickness: number;
}

export interface PublishedTile {
  entry: Uint8Array;
  contribution: TileContribution;
}

/**
 * One robot's part in collaborative mapping: its own log-odds grid, the tile contributions it
 * holds (content-addressed by digest; the signed `tile` log entries say whose they are and which
 * version is current), liar detection with flags written to the log, and the merged map.
 */
export class MapService extends EventEmitter<{ published: [PublishedTile[]]; held: [Hex] }> {
  readonly grid: LogOddsGrid;
  /** digest → cells of a contribution; authorship comes from the log. */
  private readonly held = new Map<Hex, TileContribution>();
  private readonly myFlags = new Set<Hex>();
  fakeWalls: FakeWall[] = [];
  /** The latest liar check. */
  lastCheck: LiarReport | undefined;

  /** Bumped whenever what merged() depends on may have changed: cells held, tile or flag entries. */
  private changes = 0;
  private mergedCache: { key: string; tiles: Map<string, Int8Array> } | undefined;

  constructor(
    readonly ledger: Ledger,
    frame: MapFrame,
  ) {
    super();
    this.setMaxListeners(0);
    this.grid = new LogOddsGrid(frame);
    ledger.on('entry', (d) => {
      if (d.entry.payload.type === 'tile') this.changes++;
    });
  }

  insert(pose: Pose, scan: LaserScan, stride = 2): void {
    this.grid.insertScan(pose, scan, stride);
  }

  /** Logs and returns new versions of the tiles that changed since the last publish. */
  publish(): PublishedTile[] {
    for (const w of this.fakeWalls) this.grid.paint(wallCells(this.grid, w), L_MAX);
    const changes = this.grid.takeChanges();
    if (changes.length === 0) return [];
    const digests = changes.map((c) => tileDigest(c));
    changes.forEach((c, i) => this.held.set(digests[i], c));
    this.changes++;
    const entries = this.ledger.appendBatch(
      changes.map((c, i) => ({ type: 'tile', tile: c.tile, version: c.version, digest: digests[i] })),
    );
    const out = entries.map((e, i) => ({ entry: e.bytes, contribution: changes[i] }));
    for (const d of digests) this.emit('held', d);
    this.emit('published', out);
    return out;
  }

  /**
   * Takes a contribution from a peer: the cells must hash to the digest its (signed) entry names.
   * Throws TileError / EntryError for anything else. The entry itself is ingested if it can be
   * (its parents may still be on the way; log sync brings it either way).
   */
  accept(entryBytes: Uint8Array | undefined, c: TileContribution): Hex {
    if (c.cells?.length !== TILE * TILE) throw new TileError('BAD_TILE', `a tile has ${TILE * TILE} cells`);
    parseTileId(c.tile);
    const digest = tileDigest(c);
    if (entryBytes) {
      const d = decodeEntry(entryBytes);
      const p = d.entry.payload;
      if (p.type !== 'tile' || p.digest !== digest || p.tile !== c.tile || p.version !== c.version) {
        throw new TileError('TILE_MISMATCH', 'the cells do not hash to the digest their log entry signs');
      }
      // Cells first, so whoever hears of the entry finds them already held.
      const had = this.held.has(digest);
      this.held.set(digest, c);
      try {
        this.ledger.ingest(entryBytes);
      } catch (err) {
        if (!(err instanceof MissingParentsError)) {
          if (!had) this.held.delete(digest);
          throw err;
        }
      }
      if (!had) {
        this.changes++;
        this.emit('held', digest);
      }
      return digest;
    }
    // Held already (a second neighbour's copy of what one sent first): the same cells, since
    // they hash to the same digest. Checked first: the vouch was spent on the first copy, and the
    // fold may still lag the sync that named it.
    if (this.held.has(digest)) return digest;
    if (!this.wanted().has(digest) && !this.vouched.delete(digest))
      throw new TileError('UNKNOWN_TILE', 'no log entry names this tile digest');
    this.changes++;
    this.held.set(digest, c);
    this.emit('held', digest);
    return digest;
  }

  /** Digests named by verified log entries the log's state may not show yet (its fold can lag a sync). */
  private readonly vouched = new Set<Hex>();

  /** A verified, ingested log entry names this digest: its cells will be accepted even before the fold shows it. */
  vouch(digest: Hex): void {
    if (this.held.has(digest)) return;
    if (this.vouched.size > 100_000) this.vouched.clear();
    this.vouched.add(digest);
  }

  /** Resolves once every digest is held, or after `ms` (whichever comes first). */
  waitFor(digests: Hex[], ms: number): Promise<void> {
    const lacking = new Set(digests.filter((d) => !this.held.has(d)));
    if (lacking.size === 0 || ms <= 0) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.off('held', onHeld);
        resolve();
      };
      const onHeld = (d: Hex): void => {
        if (lacking.delete(d) && lacking.size === 0) done();
      };
      const timer = setTimeout(done, ms);
      this.on('held', onHeld);
    });
  }

  has(digest: Hex): boolean {
    return this.held.has(digest);
  }

  get(digest: Hex): TileContribution | undefined {
    return this.held.get(digest);
  }

  /** Digests of current contributions the log names and we do not hold yet. */
  missing(): Hex[] {
    return [...this.wanted()].filter((d) => !this.held.has(d)).sort();
  }

  /** Per author: the lowest sequence number of a `tile` entry whose cells we still lack. */
  missingSince(): Record<Hex, number> {
    const out: Record<Hex, number> = {};
    for (const t of this.ledger.state.tiles.values()) {
      if (this.held.has(t.digest)) continue;
      out[t.author] = Math.min(out[t.author] ?? Infinity, t.seq);
    }
    return out;
  }

  private wantedCache: { version: number; digests: Set<Hex> } | undefined;

  /** Digests the log names, rebuilt only when the log's state has changed. */
  private wanted(): Set<Hex> {
    const version = this.ledger.fold.version;
    if (this.wantedCache?.version !== version)
      this.wantedCache = { version, digests: new Set([...this.ledger.state.tiles.values()].map((t) => t.digest)) };
    return this.wantedCache.digests;
  }

  /** The current contribution of every (tile, author) the log names and we hold. */
  contributions(): Contribution[] {
    const out: Contribution[] = [];
    for (const t of this.ledger.state.tiles.values()) {
      const c = this.held.get(t.digest);
      if (c) out.push({ author: t.author, tile: c.tile, version: c.version, cells: c.cells, digest: t.digest });
    }
    return out;
  }

  private excluded(): Set<Hex> {
    const s = this.ledger.state;
    return new Set([...s.flagged, ...[...s.members].filter((m) => isExcluded(s, m))]);
  }

  /** Compares what we hold; flags (in the log) each suspect we have not flagged yet. */
  detect(): LiarReport {
    const report = findLiars(this.contributions(), this.excluded(), (a, b) => this.compareMemo(a, b));
    this.lastCheck = report;
    const me = this.ledger.self;
    const payloads = report.suspects
      .filter((robot) => robot !== me && !this.myFlags.has(robot) && !this.ledger.state.flagged.includes(robot))
      .map((robot) => {
        this.myFlags.add(robot);
        const evidence = this.contributions()
          .filter((c) => c.author === robot)
          .map((c) => tileDigest(c))
          .slice(0, 16);
        return { type: 'flag' as const, robot, evidence };
      });
    if (payloads.length) this.ledger.appendBatch(payloads);
    return report;
  }

  private readonly compared = new Map<string, { windows: number; conflicting: number }>();

  /** Contributions never change under a digest: each pair is compared once. */
  private compareMemo(a: Contribution, b: Contribution): { windows: number; conflicting: number } {
    const key = `${a.digest ?? tileDigest(a)}|${b.digest ?? tileDigest(b)}`;
    let r = this.compared.get(key);
    if (!r) {
      r = compareTiles(a.cells, b.cells);
      if (this.compared.size > 200_000) this.compared.clear();
      this.compared.set(key, r);
    }
    return r;
  }

  /** Merged tiles (cell states −1 free, 0 unknown, 1 occupied), robots excluded by the log left out. */
  merged(): Map<string, Int8Array> {
    // Recomputed only when cells, tile versions or the set of excluded robots changed.
    const key = `${this.changes}|${[...this.excluded()].sort().join(',')}`;
    if (this.mergedCache?.key === key) return this.mergedCache.tiles;
    const tiles = this.computeMerged();
    this.mergedCache = { key, tiles };
    return tiles;
  }

  /** The merge itself, uncached (merged() keeps its result until its inputs change). */
  computeMerged(): Map<string, Int8Array> {
    const excluded = this.excluded();
    const byTile = new Map<string, Contribution[]>();
    for (const c of this.contributions()) {
      if (excluded.has(c.author)) continue;
      const list = byTile.get(c.tile) ?? [];
      list.push(c);
      byTile.set(c.tile, list);
    }
    return new Map([...byTile].sort(([a], [b]) => (a < b ? -1 : 1)).map(([tile, list]) => [tile, mergeTile(list)]));
  }
}

/** Cells of a thick segment in the grid's frame. */
export function wallCells(grid: LogOddsGrid, w: FakeWall): { cx: number; cy: number }[] {
  const a = grid.cellOf(w.from.x, w.from.y);
  const b = grid.cellOf(w.to.x, w.to.y);
  const len = Math.max(1, Math.hypot(b.cx - a.cx, b.cy - a.cy));
  const nx = -(b.cy - a.cy) / len;
  const ny = (b.cx - a.cx) / len;
  const out = new Map<number, { cx: number; cy: number }>();
  for (let s = 0; s <= len; s += 0.5) {
    for (let t = -w.thickness / 2; t < w.thickness / 2; t += 0.5) {
      const cx = Math.round(a.cx + ((b.cx - a.cx) * s) / len + nx * t);
      const cy = Math.round(a.cy + ((b.cy - a.cy) * s) / len + ny * t);
      out.set((cx + 65536) * 131072 + (cy + 65536), { cx, cy });
    }
  }
  return [...out.values()];
}
