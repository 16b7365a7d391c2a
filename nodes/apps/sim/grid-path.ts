import { segmentClear } from './ray-cast.js';

/**
 * Cells a robot centre must not occupy: any point of such a cell lies closer than
 * `clearanceCells` (in cell widths) to an occupied cell or to the grid's edge.
 */
export function inflate(width: number, height: number, occupied: Uint8Array, clearanceCells: number): Uint8Array {
  const blocked = new Uint8Array(width * height);
  const offsets = clearanceOffsets(clearanceCells);
  for (let row = 0; row < height; row++) {
    for (let col = 0; col < width; col++) {
      if (occupied[row * width + col] !== 1) continue;
      for (const [dx, dy] of offsets) {
        const c = col + dx;
        const r = row + dy;
        if (c >= 0 && r >= 0 && c < width && r < height) blocked[r * width + c] = 1;
      }
    }
  }
  for (let row = 0; row < height; row++) {
    for (let col = 0; col < width; col++) {
      if (Math.min(col, row, width - 1 - col, height - 1 - row) < clearanceCells) blocked[row * width + col] = 1;
    }
  }
  return blocked;
}

/** Offsets (dx, dy) of the cells some point of which lies closer than `clearanceCells` to some point of cell (0, 0). */
export function clearanceOffsets(clearanceCells: number): [number, number][] {
  const reach = Math.ceil(clearanceCells);
  const offsets: [number, number][] = [];
  for (let dy = -reach; dy <= reach; dy++) {
    for (let dx = -reach; dx <= reach; dx++) {
      const gx = Math.max(Math.abs(dx) - 1, 0);
      const gy = Math.max(Math.abs(dy) - 1, 0);
      if (gx * gx + gy * gy < clearanceCells * clearanceCells) offsets.push([dx, dy]);
    }
  }
  return offsets;
}

// The four sides first, then the diagonals.
const DX = Int8Array.of(1, -1, 0, 0, 1, 1, -1, -1);
const DY = Int8Array.of(0, 0, 1, -1, 1, -1, 1, -1);

/** Breadth-first search on an 8-connected grid, buffers reused between searches. */
export class GridBfs {
  private readonly parent: Int32Array;
  private readonly depth: Int32Array;
  private readonly stamp: Uint32Array;
  private readonly queue: Int32Array;
  private generation = 0;

  constructor(
    readonly width: number,
    readonly height: number,
  ) {
    const n = width * height;
    this.parent = new Int32Array(n);
    this.depth = new Int32Array(n);
    this.stamp = new Uint32Array(n);
    this.queue = new Int32Array(n);
  }

  /**
   * Cells from `start` to the nearest cell (in steps) where `isGoal` holds, both included, or
   * null. `passable` gets the step count at which the search would enter the cell; diagonal
   * steps are allowed only when both cells they cut past are passable too.
   */
  search(
    start: number,
    passable: (cell: number, depth: number) => boolean,
    isGoal: (cell: number) => boolean,
  ): number[] | null {
    const { width, height, parent, depth, stamp, queue } = this;
    const gen = ++this.generation;
    stamp[start] = gen;
    parent[start] = -1;
    depth[start] = 0;
    let head = 0;
    let tail = 0;
    queue[tail++] = start;
    while (head < tail) {
      const cell = queue[head++];
      if (isGoal(cell)) return this.trace(cell);
      const col = cell % width;
      const row = (cell - col) / width;
      const d = depth[cell] + 1;
      for (let k = 0; k < 8; k++) {
        const c = col + DX[k];
        const r = row + DY[k];
        if (c < 0 || r < 0 || c >= width || r >= height) continue;
        const next = r * width + c;
        if (stamp[next] === gen || !passable(next, d)) continue;
        if (k >= 4 && (!passable(row * width + c, d) || !passable(r * width + col, d))) continue;
        stamp[next] = gen;
        parent[next] = cell;
        depth[next] = d;
        queue[tail++] = next;
      }
    }
    return null;
  }

  private trace(goal: number): number[] {
    const path: number[] = [];
    for (let c = goal; c !== -1; c = this.parent[c]) path.push(c);
    return path.reverse();
  }
}

/**
 * A few cells of `path`, after its first, joined by straight segments whose every cell passes
 * `pass`: greedy, galloping ahead then bisecting, so not always the fewest but always clear.
 * A path that starts in cells that do not pass (a robot too close to a wall) keeps every one of
 * them, so the robot leaves the way the search found.
 */
export function simplifyPath(width: number, path: number[], pass: (cell: number) => boolean): number[] {
  const out: number[] = [];
  const last = path.length - 1;
  let anchor = 0;
  while (anchor < last && !pass(path[anchor])) out.push(path[++anchor]);
  while (anchor < last) {
    const clear = (j: number): boolean => segmentClear(width, path[anchor], path[j], pass);
    let good = anchor + 1;
    let step = 1;
    let bad = -1;
    while (good < last) {
      const probe = Math.min(good + step, last);
      if (clear(probe)) {
        good = probe;
        step *= 2;
      } else {
        bad = probe;
        break;
      }
    }
    if (bad !== -1) {
      while (bad - good > 1) {
        const mid = (good + bad) >> 1;
        if (clear(mid)) good = mid;
        else bad = mid;
      }
    }
    out.push(path[good]);
    anchor = good;
  }
  return out;
}
