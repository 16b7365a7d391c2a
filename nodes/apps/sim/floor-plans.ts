import { SimError } from './errors.js';
import { PlanBuilder } from './plan-builder.js';
import type { Pose } from '../../../protocol/sensors.js';
import { planRoute } from './routes.js';
import type { SimRobotSpec } from './simulator.js';
import type { GridWorld } from './world.js';

/** A built-in world with start poses and waypoint routes for up to eight robots. */
export interface FloorPlan {
  world: GridWorld;
  starts: Pose[];
  routes: Pose[][];
}

export const FLOOR_PLAN_NAMES = ['builtin:office', 'builtin:warehouse', 'builtin:small'] as const;
export type FloorPlanName = (typeof FLOOR_PLAN_NAMES)[number];

interface Point {
  x: number;
  y: number;
}

interface Sketch {
  builder: PlanBuilder;
  starts: Pose[];
  visits: Point[][];
}

const WALL = 0.2;
const DOOR = 0.9;

interface Room {
  x0: number;
  x1: number;
  y0: number;
  y1: number;
  /** Centre of the doorway and the unit step from it out into the corridor. */
  door: Point;
  out: Point;
}

/** Two lengthwise sweeps of a room, entered and left by its door. */
function roomVisits(room: Room): Point[] {
  const cx = (room.x0 + room.x1) / 2;
  const inside = { x: room.door.x - room.out.x * 0.7, y: room.door.y - room.out.y * 0.7 };
  const outside = { x: room.door.x + room.out.x * 0.9, y: room.door.y + room.out.y * 0.9 };
  const nearBottom = room.door.y < (room.y0 + room.y1) / 2;
  const near = nearBottom ? room.y0 + 0.9 : room.y1 - 0.9;
  const far = nearBottom ? room.y1 - 0.9 : room.y0 + 0.9;
  return [
    outside,
    inside,
    { x: cx - 1.1, y: near },
    { x: cx - 1.1, y: far },
    { x: cx + 1.1, y: far },
    { x: cx + 1.1, y: near },
    inside,
    outside,
  ];
}

/**
 * 20 m × 20 m: a cross of 2 m corridors and eight 4.3 m × 8.7 m rooms, each with a table and a
 * cabinet; outer rooms open onto the long corridor, inner ones onto the cross corridor, and
 * neighbouring rooms share a second door.
 */
function office(): Sketch {
  const b = new PlanBuilder('builtin:office', 20, 20).border(WALL);
  for (const y of [9, 11]) b.line(0, y, 9, y, WALL).line(11, y, 20, y, WALL);
  for (const x of [9, 11]) b.line(x, 0, x, 9, WALL).line(x, 11, x, 20, WALL);
  for (const [x, y0, y1] of [
    [4.5, 0, 9],
    [15.5, 0, 9],
    [4.5, 11, 20],
    [15.5, 11, 20],
  ])
    b.line(x, y0, x, y1, WALL);
  const rooms: Room[] = [];
  for (const top of [false, true]) {
    const y0 = top ? 11 + WALL / 2 : WALL;
    const y1 = top ? 20 - WALL : 9 - WALL / 2;
    const corridorY = top ? 11 : 9;
    const outY = top ? -1 : 1;
    const innerDoorY = top ? 17.55 : 2.45;
    rooms.push(
      { x0: WALL, x1: 4.5 - WALL / 2, y0, y1, door: { x: 2.25, y: corridorY }, out: { x: 0, y: outY } },
      { x0: 4.5 + WALL / 2, x1: 9 - WALL / 2, y0, y1, door: { x: 9, y: innerDoorY }, out: { x: 1, y: 0 } },
      { x0: 11 + WALL / 2, x1: 15.5 - WALL / 2, y0, y1, door: { x: 11, y: innerDoorY }, out: { x: -1, y: 0 } },
      { x0: 15.5 + WALL / 2, x1: 20 - WALL, y0, y1, door: { x: 17.75, y: corridorY }, out: { x: 0, y: outY } },
    );
    // Door between the two rooms of each quadrant, at the far end from the long corridor.
    const sharedY = top ? 18.5 : 1.5;
    b.clear(4.5 - WALL, sharedY - DOOR / 2, 4.5 + WALL, sharedY + DOOR / 2);
    b.clear(15.5 - WALL, sharedY - DOOR / 2, 15.5 + WALL, sharedY + DOOR / 2);
  }
  for (const room of rooms) {
    const { door } = room;
    if (room.out.y !== 0) b.clear(door.x - DOOR / 2, door.y - WALL, door.x + DOOR / 2, door.y + WALL);
    else b.clear(door.x - WALL, door.y - DOOR / 2, door.x + WALL, door.y + DOOR / 2);
    const cx = (room.x0 + room.x1) / 2;
    const cy = (room.y0 + room.y1) / 2;
    b.wall(cx - 0.4, cy - 0.8, cx + 0.4, cy + 0.8);
    const cabinetY = cy > 10 ? room.y1 - 0.5 : room.y0;
    b.wall(cx - 0.6, cabinetY, cx + 0.6, cabinetY + 0.5);
  }
  // Robot i starts in a corridor next to the door of room roomOf[i].
  const starts: Pose[] = [
    { x: 1.5, y: 10, theta: 0 },
    { x: 3.0, y: 10, theta: 0 },
    { x: 17.0, y: 10, theta: Math.PI },
    { x: 18.5, y: 10, theta: Math.PI },
    { x: 10, y: 1.0, theta: Math.PI / 2 },
    { x: 10, y: 3.5, theta: Math.PI / 2 },
    { x: 10, y: 19.0, theta: -Math.PI / 2 },
    { x: 10, y: 16.5, theta: -Math.PI / 2 },
  ];
  const roomOf = [0, 4, 3, 7, 1, 2, 5, 6];
  const finish: (Point | undefined)[] = [
    { x: 8, y: 10 },
    undefined,
    { x: 12, y: 10 },
    undefined,
    { x: 10, y: 8 },
    undefined,
    { x: 10, y: 12 },
    undefined,
  ];
  const visits = roomOf.map((r, i) => [...roomVisits(rooms[r]), ...(finish[i] ? [finish[i]] : [])]);
  return { builder: b, starts, visits };
}

/**
 * 20 m × 20 m: six double rows of 1 m shelving split by a cross aisle, 2 m aisles between them,
 * open loading areas at both ends with a few pallets.
 */
function warehouse(): Sketch {
  const b = new PlanBuilder('builtin:warehouse', 20, 20).border(WALL);
  const aisles = [1.35];
  for (let k = 0; k < 6; k++) {
    const x = 2.5 + 3 * k;
    b.wall(x, 3, x + 1, 9.2).wall(x, 10.8, x + 1, 17);
    aisles.push(x + (k < 5 ? 2 : 1.65));
  }
  b.wall(0.6, 0.6, 1.6, 1.6).wall(18.2, 18.2, 19.2, 19.2).wall(9.5, 18.6, 10.5, 19.6);
  const starts: Pose[] = [2.0, 4.5, 7.0, 9.5, 12.0, 14.5, 17.0, 19.0].map((x) => ({ x, y: 1.6, theta: Math.PI / 2 }));
  const visits: Point[][] = aisles.map((x, i) => [
    { x, y: 2.2 },
    { x, y: 18.4 },
    { x: aisles[Math.min(i + 1, aisles.length - 1)], y: 18.4 },
  ]);
  visits.push([
    { x: 19, y: 10 },
    { x: 1.2, y: 10 },
    { x: 1.2, y: 18.8 },
    { x: 8, y: 18.8 },
  ]);
  return { builder: b, starts, visits };
}

/** 8 m × 8 m: a closed room, a half-open hall, a box, a pillar and a shelf. */
function small(): Sketch {
  const b = new PlanBuilder('builtin:small', 8, 8).border(WALL);
  b.line(4, 0, 4, 5.2, WALL).clear(3.8, 1.4, 4.2, 2.3);
  b.line(0, 4, 2.6, 4, WALL);
  b.wall(5.4, 2.0, 6.2, 2.8).wall(6.0, 5.8, 6.3, 6.1).wall(0.8, 5.8, 2.2, 6.4);
  const starts: Pose[] = [
    { x: 1.0, y: 1.0, theta: 0 },
    { x: 3.0, y: 3.0, theta: Math.PI },
    { x: 5.0, y: 1.0, theta: Math.PI / 2 },
    { x: 7.0, y: 1.0, theta: Math.PI / 2 },
    { x: 1.0, y: 7.0, theta: 0 },
    { x: 3.0, y: 5.0, theta: Math.PI / 2 },
    { x: 5.0, y: 7.0, theta: -Math.PI / 2 },
    { x: 7.0, y: 7.0, theta: Math.PI },
  ];
  const tour: Point[] = [
    { x: 1, y: 1 },
    { x: 3, y: 1 },
    { x: 3, y: 3 },
    { x: 1, y: 3 },
    { x: 3.2, y: 4.6 },
    { x: 1, y: 5 },
    { x: 1, y: 7 },
    { x: 3, y: 7 },
    { x: 5, y: 7 },
    { x: 7, y: 7 },
    { x: 7, y: 5 },
    { x: 5, y: 4.5 },
    { x: 7, y: 3.5 },
    { x: 7, y: 1 },
    { x: 5, y: 1 },
    { x: 4.7, y: 3.2 },
  ];
  const visits = starts.map((_, i) => Array.from({ length: 6 }, (_, k) => tour[(2 * i + 1 + k) % tour.length]));
  return { builder: b, starts, visits };
}

const SKETCHES: Record<FloorPlanName, () => Sketch> = {
  'builtin:office': office,
  'builtin:warehouse': warehouse,
  'builtin:small': small,
};

const cache = new Map<string, FloorPlan>();

export function isFloorPlanName(name: string): name is FloorPlanName {
  return (FLOOR_PLAN_NAMES as readonly string[]).includes(name);
}

/** A built-in floor plan by name; built once, then shared (do not modify it). */
export function floorPlan(name: string): FloorPlan {
  if (!isFloorPlanName(name)) {
    throw new SimError(
      'UNKNOWN_FLOOR_PLAN',
      `unknown floor plan ${JSON.stringify(name)}; built-in: ${FLOOR_PLAN_NAMES.join(', ')}`,
    );
  }
  let plan = cache.get(name);
  if (!plan) {
    const { builder, starts, visits } = SKETCHES[name]();
    const world = builder.build();
    plan = { world, starts, routes: starts.map((s, i) => planRoute(world, s, visits[i])) };
    cache.set(name, plan);
  }
  return plan;
}

/** The first `count` robots of a plan, named r0, r1, …, on their default routes or exploring. */
export function defaultRobots(
  plan: FloorPlan,
  count = plan.starts.length,
  mode: 'route' | 'frontier' = 'route',
): SimRobotSpec[] {
  if (!Number.isInteger(count) || count < 1 || count > plan.starts.length) {
    throw new SimError(
      'BAD_SIM_CONFIG',
      `${plan.world.name} has start poses for 1..${plan.starts.length} robots, not ${count}`,
    );
  }
  return plan.starts.slice(0, count).map((start, i) => ({
    name: `r${i}`,
    start: { ...start },
    route: mode === 'frontier' ? 'frontier' : plan.routes[i].map((p) => ({ ...p })),
  }));
}
