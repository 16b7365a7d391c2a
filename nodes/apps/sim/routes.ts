import { GridBfs, inflate, simplifyPath } from './grid-path.js';
import type { Pose } from '../../../protocol/sensors.js';
import { type GridWorld, cellCenter, worldToCell } from './world.js';

/** TurtleBot3 Burger: about 0.105 m from centre to its farthest point. */
export const ROBOT_RADIUS = 0.105;
/** What route planning keeps between the footprint and a wall, on top of the radius. */
export const PLANNING_MARGIN = 0.045;

const blockedCache = new WeakMap<GridWorld, Map<number, Uint8Array>>();

/** Cells where a robot centre would come within `clearance` metres of a wall (cached per world). */
export function blockedCells(world: GridWorld, clearance = ROBOT_RADIUS + PLANNING_MARGIN): Uint8Array {
  let byClearance = blockedCache.get(world);
  if (!byClearance) blockedCache.set(world, (byClearance = new Map()));
  let blocked = byClearance.get(clearance);
  if (!blocked) {
    blocked = inflate(world.width, world.height, world.occupied, clearance / world.resolution);
    byClearance.set(clearance, blocked);
  }
  return blocked;
}

/**
 * A waypoint route from `start` through each of `visits` in turn over the true map: each visit
 * moves to the nearest cell with clearance, legs follow a shortest grid path pulled taut into
 * straight segments that keep the clearance. Visits that cannot be reached are left out.
 * Each waypoint's theta is the heading of the segment that arrives at it.
 */
export function planRoute(
  world: GridWorld,
  start: Pose,
  visits: { x: number; y: number }[],
  clearance?: number,
): Pose[] {
  const blocked = blockedCells(world, clearance);
  const { width, height } = world;
  const bfs = new GridBfs(width, height);
  const escape = Math.ceil((clearance ?? ROBOT_RADIUS + PLANNING_MARGIN) / world.resolution) + 1;
  const free = (cell: number): boolean => blocked[cell] === 0;
  const toCell = (p: { x: number; y: number }): number => {
    const { col, row } = worldToCell(world, p.x, p.y);
    const c = Math.min(Math.max(col, 0), width - 1);
    const r = Math.min(Math.max(row, 0), height - 1);
    return r * width + c;
  };
  const route: Pose[] = [];
  let at = toCell(start);
  let prev = { x: start.x, y: start.y };
  for (const visit of visits) {
    const wanted = toCell(visit);
    const target = bfs.search(wanted, () => true, free)?.at(-1);
    if (target === undefined) continue;
    // Walls may be crossed only within the first few steps, to leave a start that hugs one.
    const path = bfs.search(
      at,
      (cell, depth) => free(cell) || (depth <= escape && world.occupied[cell] === 0),
      (cell) => cell === target,
    );
    if (!path || path.length < 2) continue;
    for (const cell of simplifyPath(width, path, free)) {
      const col = cell % width;
      const p = cellCenter(world, col, (cell - col) / width);
      route.push({ x: p.x, y: p.y, theta: Math.atan2(p.y - prev.y, p.x - prev.x) });
      prev = p;
    }
    at = target;
  }
  return route;
}
