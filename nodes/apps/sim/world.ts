import { SimError } from './errors.js';

/** Ground truth occupancy on a regular grid. Treat as immutable: built-in worlds are shared. */
export interface GridWorld {
  name: string;
  width: number;
  height: number;
  /** Metres per cell. */
  resolution: number;
  /** World coordinates of the outer corner of cell (0, 0). */
  origin: { x: number; y: number };
  /** 1 = wall, row-major, row 0 = lowest y. Unknown cells of a loaded map count as walls. */
  occupied: Uint8Array;
  /** 1 where the source map said free or occupied, 0 where it said unknown; absent = all known. */
  known?: Uint8Array;
}

export interface Cell {
  col: number;
  row: number;
}

export function createWorld(
  name: string,
  width: number,
  height: number,
  resolution: number,
  origin: { x: number; y: number } = { x: 0, y: 0 },
  occupied: Uint8Array = new Uint8Array(width * height),
): GridWorld {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width <= 0 || height <= 0) {
    throw new SimError('BAD_WORLD', `world ${name}: size must be positive integers, got ${width}×${height}`);
  }
  if (!(resolution > 0) || !Number.isFinite(resolution)) {
    throw new SimError('BAD_WORLD', `world ${name}: resolution must be a positive number, got ${resolution}`);
  }
  if (!Number.isFinite(origin.x) || !Number.isFinite(origin.y)) {
    throw new SimError('BAD_WORLD', `world ${name}: origin must be finite`);
  }
  if (occupied.length !== width * height) {
    throw new SimError('BAD_WORLD', `world ${name}: ${occupied.length} cells for ${width}×${height}`);
  }
  return { name, width, height, resolution, origin: { ...origin }, occupied };
}

export function worldToCell(world: GridWorld, x: number, y: number): Cell {
  return {
    col: Math.floor((x - world.origin.x) / world.resolution),
    row: Math.floor((y - world.origin.y) / world.resolution),
  };
}

export function cellCenter(world: GridWorld, col: number, row: number): { x: number; y: number } {
  return {
    x: world.origin.x + (col + 0.5) * world.resolution,
    y: world.origin.y + (row + 0.5) * world.resolution,
  };
}

export function inBounds(world: GridWorld, col: number, row: number): boolean {
  return col >= 0 && row >= 0 && col < world.width && row < world.height;
}

export function cellIndex(world: GridWorld, col: number, row: number): number {
  return row * world.width + col;
}

/** Out of bounds counts as occupied. */
export function isOccupiedCell(world: GridWorld, col: number, row: number): boolean {
  return !inBounds(world, col, row) || world.occupied[row * world.width + col] === 1;
}

/** Out of bounds counts as occupied. */
export function isOccupied(world: GridWorld, x: number, y: number): boolean {
  const { col, row } = worldToCell(world, x, y);
  return isOccupiedCell(world, col, row);
}

/** True if no occupied cell overlaps the disc of `radius` metres around (x, y). */
export function discIsFree(world: GridWorld, x: number, y: number, radius: number): boolean {
  return forEachCellUnderDisc(world, x, y, radius, (col, row) => isOccupiedCell(world, col, row));
}

/** The in-bounds occupied cells (row-major indices) that overlap the disc of `radius` metres around (x, y). */
export function occupiedUnderDisc(world: GridWorld, x: number, y: number, radius: number): number[] {
  const cells: number[] = [];
  forEachCellUnderDisc(world, x, y, radius, (col, row) => {
    if (inBounds(world, col, row) && world.occupied[row * world.width + col] === 1) cells.push(row * world.width + col);
    return false;
  });
  return cells;
}

/** Calls `stop` for each cell overlapping the disc until it returns true; returns whether none did. */
function forEachCellUnderDisc(
  world: GridWorld,
  x: number,
  y: number,
  radius: number,
  stop: (col: number, row: number) => boolean,
): boolean {
  const res = world.resolution;
  const gx = (x - world.origin.x) / res;
  const gy = (y - world.origin.y) / res;
  const r = radius / res;
  const r2 = r * r;
  for (let row = Math.floor(gy - r); row <= Math.floor(gy + r); row++) {
    const dy = gy < row ? row - gy : gy > row + 1 ? gy - row - 1 : 0;
    for (let col = Math.floor(gx - r); col <= Math.floor(gx + r); col++) {
      const dx = gx < col ? col - gx : gx > col + 1 ? gx - col - 1 : 0;
      if (dx * dx + dy * dy <= r2 && stop(col, row)) return false;
    }
  }
  return true;
}

export function countFree(world: GridWorld): number {
  let n = 0;
  for (const v of world.occupied) if (v === 0) n++;
  return n;
}
