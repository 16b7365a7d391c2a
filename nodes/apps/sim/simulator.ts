import { SimError } from './errors.js';
import { FrontierExplorer } from './frontier-explorer.js';
import type { LaserScan, Pose } from '../../../protocol/sensors.js';
import { type LidarConfig, lidarConfig, scan } from './lidar.js';
import { Odometry, type OdometryNoise } from './odometry.js';
import { advancePose } from './pose.js';
import { gaussian, streamFor } from './random.js';
import { PLANNING_MARGIN, ROBOT_RADIUS } from './routes.js';
import { BURGER, type Command, type MotionLimits, WaypointFollower } from './waypoint-follower.js';
import { type GridWorld, discIsFree, occupiedUnderDisc } from './world.js';

export interface SimRobotSpec {
  name: string;
  start: Pose;
  /** Waypoints to visit in order (theta is ignored), or explore by nearest frontier. */
  route: Pose[] | 'frontier';
}

export interface SimulatorOptions {
  world: GridWorld;
  robots: SimRobotSpec[];
  seed: number;
  lidar?: Partial<LidarConfig>;
  odometry?: Partial<OdometryNoise>;
  /** Seconds per step; default 0.1. */
  dt?: number;
  /** A scan every this many steps; default 1. */
  scanEvery?: number;
  /** Simulated seconds after which the run is done even if robots are not; default 3600. */
  maxTime?: number;
  motion?: Partial<MotionLimits>;
  /** Footprint radius, metres; default a TurtleBot3 Burger's. */
  robotRadius?: number;
}

export interface RobotStep {
  name: string;
  /** Simulated seconds since the start. */
  time: number;
  truePose: Pose;
  /** What the robot's wheel odometry says. */
  odomPose: Pose;
  /** Taken at `truePose`; absent on steps without a scan. */
  scan?: LaserScan;
  /** Route finished, or nothing left to explore. */
  done: boolean;
}

interface Robot {
  name: string;
  pose: Pose;
  odometry: Odometry;
  gauss: () => number;
  follower?: WaypointFollower;
  explorer?: FrontierExplorer;
  done: boolean;
}

/**
 * Robots on a ground-truth grid: each follows its waypoints or explores, steers with its true
 * pose (standing in for good localisation), reports drifting odometry and lidar scans. Robots
 * do not see or block one another. Same options and seed, same output, bit for bit.
 */
export class WorldSimulator {
  readonly world: GridWorld;
  readonly dt: number;
  readonly scanEvery: number;
  readonly maxTime: number;
  readonly lidar: LidarConfig;
  private readonly robots: Robot[];
  private readonly limits: MotionLimits;
  private readonly radius: number;
  private steps = 0;

  constructor(options: SimulatorOptions) {
    const bad = (what: string): never => {
      throw new SimError('BAD_SIM_CONFIG', `simulator: ${what}`);
    };
    const { world, robots, seed } = options;
    this.dt = options.dt ?? 0.1;
    this.scanEvery = options.scanEvery ?? 1;
    this.maxTime = options.maxTime ?? 3600;
    this.radius = options.robotRadius ?? ROBOT_RADIUS;
    this.limits = { ...BURGER, ...options.motion };
    this.lidar = lidarConfig(options.lidar);
    if (!(this.dt > 0) || !Number.isFinite(this.dt)) bad(`dt must be a positive number of seconds, got ${this.dt}`);
    if (!Number.isInteger(this.scanEvery) || this.scanEvery < 1)
      bad(`scanEvery must be a positive integer, got ${this.scanEvery}`);
    if (!(this.maxTime > 0)) bad(`maxTime must be positive, got ${this.maxTime}`);
    if (!(this.radius >= 0) || !Number.isFinite(this.radius)) bad(`robotRadius must be ≥ 0, got ${this.radius}`);
    if (!(this.limits.maxSpeed > 0) || !(this.limits.maxTurnRate > 0)) bad('motion limits must be positive');
    if (!Number.isFinite(seed)) bad(`seed must be a number, got ${seed}`);
    if (robots.length === 0) bad('no robots');
    const names = new Set(robots.map((r) => r.name));
    if (names.size !== robots.length) bad('robot names must be unique');
    this.world = world;
    this.robots = robots.map((spec, i) => {
      const { start } = spec;
      if (![start.x, start.y, start.theta].every(Number.isFinite)) bad(`robot ${spec.name}: start pose must be finite`);
      if (!discIsFree(world, start.x, start.y, this.radius)) {
        bad(`robot ${spec.name}: start (${start.x}, ${start.y}) is not in free space of ${world.name}`);
      }
      const gauss = gaussian(streamFor(seed, i));
      const robot: Robot = {
        name: spec.name,
        pose: { ...start },
        odometry: new Odometry(start, gauss, options.odometry),
        gauss,
        done: false,
      };
      if (spec.route === 'frontier') {
        robot.explorer = new FrontierExplorer(world, this.radius, this.radius + PLANNING_MARGIN, this.limits);
        scan(world, robot.pose, this.lidar, () => 0, robot.explorer.observe);
      } else {
        robot.follower = new WaypointFollower(spec.route, this.limits, (p) => discIsFree(world, p.x, p.y, this.radius));
      }
      return robot;
    });
  }

  /** Simulated seconds so far. */
  get time(): number {
    return this.steps * this.dt;
  }

  get done(): boolean {
    return this.time >= this.maxTime - 1e-9 || this.robots.every((r) => r.done);
  }

  /** Advances every robot by one step and says where each is and what it saw. */
  step(): RobotStep[] {
    const time = this.time;
    this.steps++;
    const scanning = this.steps % this.scanEvery === 0;
    return this.robots.map((robot) => {
      if (!robot.done) this.move(robot, time);
      const step: RobotStep = {
        name: robot.name,
        time: this.time,
        truePose: { ...robot.pose },
        odomPose: robot.odometry.pose,
        done: robot.done,
      };
      if (scanning) step.scan = scan(this.world, robot.pose, this.lidar, robot.gauss, robot.explorer?.observe);
      return step;
    });
  }

  /** Steps until done; `onStep` sees each step's output. Returns the number of steps taken. */
  run(onStep?: (steps: RobotStep[]) => void): number {
    let n = 0;
    while (!this.done) {
      const out = this.step();
      onStep?.(out);
      n++;
    }
    return n;
  }

  private move(robot: Robot, time: number): void {
    const cmd: Command | null = robot.explorer
      ? robot.explorer.command(robot.pose, time, this.dt)
      : robot.follower!.command(robot.pose, this.dt);
    if (!cmd) {
      robot.done = true;
      return;
    }
    let dTrans = cmd.v * this.dt;
    const dRot = cmd.w * this.dt;
    let next = advancePose(robot.pose, dTrans, dRot);
    if (dTrans !== 0 && !discIsFree(this.world, next.x, next.y, this.radius)) {
      robot.follower?.blocked(this.dt);
      robot.explorer?.bumped(occupiedUnderDisc(this.world, next.x, next.y, this.radius), this.dt);
      dTrans = 0;
      next = advancePose(robot.pose, 0, dRot);
    }
    robot.pose = next;
    robot.odometry.integrate(dTrans, dRot);
  }
}
