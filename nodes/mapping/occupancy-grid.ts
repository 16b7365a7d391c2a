import { LOGODDS_SCALE, TILE, type TileContribution, tileId } from '../../protocol/map-tile.js';
import type { LaserScan, Pose } from '../../protocol/sensors.js';

/** The shared map frame: cell (0, 0) has its outer corner at `origin`; tiles are TILE×TILE cells. */
export interface MapFrame {
  resolution: number;
  origin: { x: number; y: number };
}

export const L_OCCUPIED = 0.85;
export const L_FREE = -0.4;
export const L_MAX = 6;

const key = (tx: number, ty: number): number => (tx + 32768) * 65536 + (ty + 32768);

/**
 * A robot's log-odds occupancy grid, unbounded: sparse tiles created where beams reach. Scans
 * are inserted by integer ray tracing (Bresenham): cells a beam crosses become more likely free,
 * the cell it ends in more likely occupied; beams with no return clear up to the lidar's range.
 */
export class LogOddsGrid {
  private readonly tiles = new Map<number, { tx: number; ty: number; l: Float32Array }>();
  private readonly dirty = new Set<number>();
  private readonly published = new Map<number, { version: number; cells: Int8Array }>();

  constructor(readonly frame: MapFrame) {}

  get tileCount(): number {
    return this.tiles.size;
  }

  private tile(tx: number, ty: number): Float32Array {
    const k = key(tx, ty);
    let t = this.tiles.get(k);
    if (!t) this.tiles.set(k, (t = { tx, ty, l: new Float32Array(TILE * TILE) }));
    this.dirty.add(k);
    return t.l;
  }

  private update(cx: number, cy: number, delta: number): void {
    const tx = Math.floor(cx / TILE);
    const ty = Math.floor(cy / TILE);
    const l = this.tile(tx, ty);
    const i = (cy - ty * TILE) * TILE + (cx - tx * TILE);
    l[i] = Math.max(-L_MAX, Math.min(L_MAX, l[i] + delta));
  }

  /** Log-odds of a cell (0 if never observed). */
  at(cx: number, cy: number): number {
    const tx = Math.floor(cx / TILE);
    const ty = Math.floor(cy / TILE);
    const t = this.tiles.get(key(tx, ty));
    return t ? t.l[(cy - ty * TILE) * TILE + (cx - tx * TILE)] : 0;
  }

  /**
   * Σ max(0, log-odds) over the cells of the points (x + dx[i], y + dy[i]): a scan matcher's
   * score, without a cell object or a tile lookup per point (neighbouring beams share tiles).
   */
  positiveSum(x: number, y: number, dx: Float64Array, dy: Float64Array): number {
    const { origin, resolution } = this.frame;
    let sum = 0;
    let tileKey = NaN;
    let tile: Float32Array | undefined;
    for (let i = 0; i < dx.length; i++) {
      const cx = Math.floor((x + dx[i] - origin.x) / resolution);
      const cy = Math.floor((y + dy[i] - origin.y) / resolution);
      const tx = Math.floor(cx / TILE);
      const ty = Math.floor(cy / TILE);
      const k = key(tx, ty);
      if (k !== tileKey) {
        tileKey = k;
        tile = this.tiles.get(k)?.l;
      }
      if (tile) sum += Math.max(0, tile[(cy - ty * TILE) * TILE + (cx - tx * TILE)]);
    }
    return sum;
  }

  cellOf(x: number, y: number): { cx: number; cy: number } {
    return {
      cx: Math.floor((x - this.frame.origin.x) / this.frame.resolution),
      cy: Math.floor((y - this.frame.origin.y) / this.frame.resolution),
    };
  }

  /** Inserts one scan taken at `pose` (the lidar at the robot's centre); `stride` skips beams. */
  insertScan(pose: Pose, scan: LaserScan, stride = 1): void {
    const { cx: x0, cy: y0 } = this.cellOf(pose.x, pose.y);
    for (let i = 0; i < scan.ranges.length; i += stride) {
      const r = scan.ranges[i];
      if (Number.isNaN(r) || r < scan.rangeMin) continue;
      const hit = Number.isFinite(r) && r <= scan.rangeMax;
      // A return lies on the obstacle's surface: half a cell further lands inside the obstacle.
      const reach = hit ? r + this.frame.resolution / 2 : scan.rangeMax;
      const a = pose.theta + scan.angleMin + i * scan.angleIncrement;
      const { cx: x1, cy: y1 } = this.cellOf(pose.x + reach * Math.cos(a), pose.y + reach * Math.sin(a));
      this.trace(x0, y0, x1, y1, hit);
    }
  }

  private trace(x0: number, y0: number, x1: number, y1: number, hit: boolean): void {
    const dx = Math.abs(x1 - x0);
    const dy = -Math.abs(y1 - y0);
    const sx = x0 < x1 ? 1 : -1;
    const sy = y0 < y1 ? 1 : -1;
    let err = dx + dy;
    let x = x0;
    let y = y0;
    for (let n = 0; n <= dx - dy; n++) {
      if (x === x1 && y === y1) break;
      this.update(x, y, L_FREE);
      const e2 = 2 * err;
      if (e2 >= dy) {
        err += dy;
        x += sx;
      }
      if (e2 <= dx) {
        err += dx;
        y += sy;
      }
    }
    this.update(x1, y1, hit ? L_OCCUPIED : L_FREE);
  }

  /** Forces cells to a value (used by fault injection: a robot drawing walls that are not there). */
  paint(cells: Iterable<{ cx: number; cy: number }>, value: number): void {
    for (const { cx, cy } of cells) {
      const tx = Math.floor(cx / TILE);
      const ty = Math.floor(cy / TILE);
      this.tile(tx, ty)[(cy - ty * TILE) * TILE + (cx - tx * TILE)] = value;
    }
  }

  /**
   * New versions of the tiles that changed since the last call (quantized to int8): what this
   * robot publishes. A tile whose quantized cells did not change keeps its version.
   */
  takeChanges(): TileContribution[] {
    const out: TileContribution[] = [];
    for (const k of [...this.dirty].sort((a, b) => a - b)) {
      const t = this.tiles.get(k)!;
      const cells = new Int8Array(TILE * TILE);
      for (let i = 0; i < cells.length; i++) cells[i] = Math.round(t.l[i] * LOGODDS_SCALE);
      const prev = this.published.get(k);
      if (prev && prev.cells.every((v, i) => v === cells[i])) continue;
      const version = (prev?.version ?? 0) + 1;
      this.published.set(k, { version, cells });
      out.push({ tile: tileId(t.tx, t.ty), version, cells });
    }
    this.dirty.clear();
    return out;
  }
}
