import { GridBfs, clearanceOffsets, inflate, simplifyPath } from './grid-path.js';
import type { Pose } from '../../../protocol/sensors.js';
import { segmentClear } from './ray-cast.js';
import { type Command, type MotionLimits, WaypointFollower } from './waypoint-follower.js';
import { type GridWorld, cellCenter, worldToCell } from './world.js';

const UNKNOWN = 0;
const FREE = 1;
const WALL = 2;
const REPLAN_SECONDS = 1;
const BAN_RADIUS = 3;

/**
 * Exploration by nearest frontier, on the robot's own map from its scans (private to the sim,
 * marked from the true pose as a stand-in for a localised one). The robot drives only through
 * free cells with no wall and no unknown cell within its clearance; a frontier is a free cell
 * clear of walls with unknown space within that clearance. A breadth-first search finds the
 * nearest, the waypoint follower drives there. Frontiers it reaches without resolving, or fails
 * to reach, are banned; it is done when no frontier is left.
 */
export class FrontierExplorer {
  readonly known: Uint8Array;
  private readonly nearWall: Uint16Array;
  /** Known walls within the robot's radius: what it must not touch while leaving a tight spot. */
  private readonly touchingWall: Uint16Array;
  private readonly nearUnknown: Uint16Array;
  private readonly edge: Uint8Array;
  private readonly banned: Uint8Array;
  private readonly offsets: [number, number][];
  private readonly touchOffsets: [number, number][];
  private readonly bfs: GridBfs;
  private readonly escape: number;
  private follower: WaypointFollower | null = null;
  private goal = -1;
  private plannedAt = -Infinity;
  private over = false;

  constructor(
    private readonly world: GridWorld,
    radius: number,
    clearance: number,
    private readonly limits: MotionLimits,
  ) {
    const { width, height } = world;
    const n = width * height;
    this.known = new Uint8Array(n);
    this.nearWall = new Uint16Array(n);
    this.touchingWall = new Uint16Array(n);
    this.nearUnknown = new Uint16Array(n);
    this.banned = new Uint8Array(n);
    const cells = clearance / world.resolution;
    this.offsets = clearanceOffsets(cells);
    this.touchOffsets = clearanceOffsets(radius / world.resolution);
    this.edge = inflate(width, height, new Uint8Array(n), cells);
    this.bfs = new GridBfs(width, height);
    this.escape = Math.ceil(cells) + 1;
    for (let cell = 0; cell < n; cell++) this.spread(cell, this.offsets, this.nearUnknown, 1);
  }

  /** A lidar visitor: `cell` was passed through (free) or stopped a beam (wall). */
  readonly observe = (cell: number, hit: boolean): void => {
    if (this.known[cell] !== UNKNOWN) return;
    this.known[cell] = hit ? WALL : FREE;
    this.spread(cell, this.offsets, this.nearUnknown, -1);
    if (hit) {
      this.spread(cell, this.offsets, this.nearWall, 1);
      this.spread(cell, this.touchOffsets, this.touchingWall, 1);
    }
  };

  /** The footprint would have overlapped these wall cells: a bumper reading. */
  bumped(cells: number[], dt: number): void {
    for (const cell of cells) this.observe(cell, true);
    this.follower?.blocked(dt);
  }

  /** No frontier left that the robot can reach. */
  get finished(): boolean {
    return this.over;
  }

  /** The command for this step, or null once exploration is over. */
  command(pose: Pose, time: number, dt: number): Command | null {
    for (let attempt = 0; attempt < 4 && !this.finished; attempt++) {
      const resolved = this.goal >= 0 && !this.isFrontier(this.goal) && time - this.plannedAt >= REPLAN_SECONDS;
      if (this.follower && !resolved && this.legStillClear(pose)) {
        const skippedBefore = this.follower.skipped;
        const cmd = this.follower.command(pose, dt);
        if (this.follower.skipped > skippedBefore) this.ban(this.goal);
        else if (cmd) return cmd;
        else if (this.isFrontier(this.goal)) this.ban(this.goal);
      }
      this.plan(pose, time);
    }
    return this.finished ? null : { v: 0, w: 0 };
  }

  private spread(cell: number, offsets: [number, number][], counts: Uint16Array, delta: number): void {
    const { width, height } = this.world;
    const col = cell % width;
    const row = (cell - col) / width;
    for (const [dx, dy] of offsets) {
      const c = col + dx;
      const r = row + dy;
      if (c >= 0 && r >= 0 && c < width && r < height) counts[r * width + c] += delta;
    }
  }

  private clearOfWalls(cell: number): boolean {
    return this.known[cell] === FREE && this.nearWall[cell] === 0 && this.edge[cell] === 0;
  }

  private safe(cell: number): boolean {
    return this.clearOfWalls(cell) && this.nearUnknown[cell] === 0;
  }

  private isFrontier(cell: number): boolean {
    return this.clearOfWalls(cell) && this.nearUnknown[cell] > 0;
  }

  private cellAt(p: { x: number; y: number }): number {
    const { width, height } = this.world;
    const { col, row } = worldToCell(this.world, p.x, p.y);
    return Math.min(Math.max(row, 0), height - 1) * width + Math.min(Math.max(col, 0), width - 1);
  }

  /**
   * Cells the robot may still cross to leave a spot too close to a wall or to unknown space:
   * near it, known free and, when `tight`, not touching a known wall.
   */
  private nearStart(start: number, tight = false): (cell: number) => boolean {
    const { width } = this.world;
    const col = start % width;
    const row = (start - col) / width;
    return (cell) => {
      const c = cell % width;
      return (
        this.known[cell] === FREE &&
        (!tight || this.touchingWall[cell] === 0 || cell === start) &&
        Math.max(Math.abs(c - col), Math.abs((cell - c) / width - row)) <= this.escape
      );
    };
  }

  /** Whether walls seen since planning leave the way to the next waypoint open. */
  private legStillClear(pose: Pose): boolean {
    const target = this.follower?.target;
    if (!target) return true;
    const here = this.cellAt(pose);
    const near = this.nearStart(here);
    return segmentClear(this.world.width, here, this.cellAt(target), (cell) => this.clearOfWalls(cell) || near(cell));
  }

  private plan(pose: Pose, time: number): void {
    const { width } = this.world;
    const start = this.cellAt(pose);
    const isGoal = (cell: number): boolean => this.banned[cell] === 0 && this.isFrontier(cell);
    const search = (near: (cell: number) => boolean): number[] | null =>
      this.bfs.search(
        start,
        (cell, depth) => this.safe(cell) || isGoal(cell) || (depth <= this.escape && near(cell)),
        isGoal,
      );
    const path = search(this.nearStart(start, true)) ?? search(this.nearStart(start));
    this.plannedAt = time;
    if (!path) {
      this.over = true;
      this.follower = null;
      this.goal = -1;
      return;
    }
    this.goal = path[path.length - 1];
    const waypoints = simplifyPath(width, path, (cell) => this.safe(cell) || cell === this.goal).map((cell) => {
      const c = cell % width;
      return { ...cellCenter(this.world, c, (cell - c) / width), theta: 0 };
    });
    this.follower = new WaypointFollower(waypoints, this.limits);
  }

  private ban(cell: number): void {
    const { width, height } = this.world;
    const col = cell % width;
    const row = (cell - col) / width;
    for (let r = Math.max(0, row - BAN_RADIUS); r <= Math.min(height - 1, row + BAN_RADIUS); r++) {
      this.banned.fill(
        1,
        r * width + Math.max(0, col - BAN_RADIUS),
        r * width + Math.min(width - 1, col + BAN_RADIUS) + 1,
      );
    }
  }
}
