import type { GridWorld } from './world.js';

export interface RayHit {
  /** Metres from the origin to where the ray enters the first occupied cell; Infinity if none within range. */
  range: number;
  /** Row-major index of that cell, or -1 (no hit, or the wall is outside the grid). */
  cell: number;
}

/**
 * Amanatides–Woo grid traversal from (x, y) along `angle`, up to `maxRange` metres. `visit` sees
 * every free cell the ray passes through, in order, starting with the origin's own cell; the
 * occupied cell that stops the ray is reported in the result, not visited. Leaving the grid
 * counts as a hit (walls surround every world).
 */
export function castRay(
  world: GridWorld,
  x: number,
  y: number,
  angle: number,
  maxRange: number,
  visit?: (cell: number) => void,
): RayHit {
  const { width, height, occupied, resolution } = world;
  const gx = (x - world.origin.x) / resolution;
  const gy = (y - world.origin.y) / resolution;
  let col = Math.floor(gx);
  let row = Math.floor(gy);
  if (col < 0 || row < 0 || col >= width || row >= height) return { range: 0, cell: -1 };
  if (occupied[row * width + col] === 1) return { range: 0, cell: row * width + col };
  const dx = Math.cos(angle);
  const dy = Math.sin(angle);
  const stepX = dx > 0 ? 1 : -1;
  const stepY = dy > 0 ? 1 : -1;
  const tDeltaX = dx === 0 ? Infinity : Math.abs(1 / dx);
  const tDeltaY = dy === 0 ? Infinity : Math.abs(1 / dy);
  let tMaxX = dx === 0 ? Infinity : (dx > 0 ? col + 1 - gx : gx - col) * tDeltaX;
  let tMaxY = dy === 0 ? Infinity : (dy > 0 ? row + 1 - gy : gy - row) * tDeltaY;
  const tLimit = maxRange / resolution;
  if (visit) {
    for (;;) {
      visit(row * width + col);
      let t: number;
      if (tMaxX < tMaxY) {
        t = tMaxX;
        tMaxX += tDeltaX;
        col += stepX;
      } else {
        t = tMaxY;
        tMaxY += tDeltaY;
        row += stepY;
      }
      if (t > tLimit) return { range: Infinity, cell: -1 };
      if (col < 0 || row < 0 || col >= width || row >= height) return { range: t * resolution, cell: -1 };
      const i = row * width + col;
      if (occupied[i] === 1) return { range: t * resolution, cell: i };
    }
  }
  // The same walk without the visitor, kept apart because it is the lidar's hot loop.
  let i = row * width + col;
  const stepI = stepY * width;
  for (;;) {
    let t: number;
    if (tMaxX < tMaxY) {
      t = tMaxX;
      tMaxX += tDeltaX;
      col += stepX;
      i += stepX;
      if (col < 0 || col >= width)
        return t > tLimit ? { range: Infinity, cell: -1 } : { range: t * resolution, cell: -1 };
    } else {
      t = tMaxY;
      tMaxY += tDeltaY;
      row += stepY;
      i += stepI;
      if (row < 0 || row >= height)
        return t > tLimit ? { range: Infinity, cell: -1 } : { range: t * resolution, cell: -1 };
    }
    if (t > tLimit) return { range: Infinity, cell: -1 };
    if (occupied[i] === 1) return { range: t * resolution, cell: i };
  }
}

/**
 * Every cell the straight segment between two cell centres passes through (supercover up to
 * exact corner crossings), in order; stops early and returns false as soon as `pass` rejects one.
 */
export function segmentClear(width: number, a: number, b: number, pass: (cell: number) => boolean): boolean {
  let col = a % width;
  let row = (a - col) / width;
  const bCol = b % width;
  const bRow = (b - bCol) / width;
  const dx = bCol - col;
  const dy = bRow - row;
  const stepX = Math.sign(dx);
  const stepY = Math.sign(dy);
  const tDeltaX = dx === 0 ? Infinity : 1 / Math.abs(dx);
  const tDeltaY = dy === 0 ? Infinity : 1 / Math.abs(dy);
  let tMaxX = tDeltaX / 2;
  let tMaxY = tDeltaY / 2;
  if (!pass(a)) return false;
  while (col !== bCol || row !== bRow) {
    if (tMaxX < tMaxY) {
      tMaxX += tDeltaX;
      col += stepX;
    } else if (tMaxY < tMaxX) {
      tMaxY += tDeltaY;
      row += stepY;
    } else {
      // Through a corner exactly: both side cells are touched, so both must pass.
      if (!pass(row * width + col + stepX) || !pass((row + stepY) * width + col)) return false;
      tMaxX += tDeltaX;
      tMaxY += tDeltaY;
      col += stepX;
      row += stepY;
    }
    if (!pass(row * width + col)) return false;
  }
  return true;
}
