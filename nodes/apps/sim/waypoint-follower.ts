import type { Pose } from '../../../protocol/sensors.js';
import { normalizeAngle } from './pose.js';

export interface MotionLimits {
  /** m/s */
  maxSpeed: number;
  /** rad/s */
  maxTurnRate: number;
}

/** TurtleBot3 Burger speeds. */
export const BURGER: MotionLimits = { maxSpeed: 0.22, maxTurnRate: 1.5 };

export interface Command {
  /** m/s */
  v: number;
  /** rad/s */
  w: number;
}

const ARRIVED = 0.03;
const DRIVE_HEADING_ERROR = 0.2;
const BLOCKED_SECONDS = 1;

/**
 * Drives to each waypoint in turn: turn in place towards it, then drive while steering. Skips a
 * waypoint the footprint cannot stand on, one it stays blocked in front of for a second, and
 * one it has not reached in three times the time it needs.
 */
export class WaypointFollower {
  private index = 0;
  private elapsed = 0;
  private budget = 0;
  private blockedFor = 0;
  /** Waypoints given up on. */
  skipped = 0;

  /** `canStand` says whether the robot fits at a waypoint; those where it does not are skipped. */
  constructor(
    private readonly waypoints: readonly Pose[],
    private readonly limits: MotionLimits,
    private readonly canStand: (p: Pose) => boolean = () => true,
  ) {}

  /** The waypoint being driven to, if any. */
  get target(): Pose | undefined {
    return this.waypoints[this.index];
  }

  get finished(): boolean {
    return this.index >= this.waypoints.length;
  }

  /** The command for one step of `dt` seconds from `pose`, or null once every waypoint is done. */
  command(pose: Pose, dt: number): Command | null {
    for (;;) {
      if (this.finished) return null;
      const wp = this.waypoints[this.index];
      const dist = Math.hypot(wp.x - pose.x, wp.y - pose.y);
      if (this.budget === 0) {
        if (!this.canStand(wp)) {
          this.skip();
          continue;
        }
        this.budget = 3 * (dist / this.limits.maxSpeed + Math.PI / this.limits.maxTurnRate) + 5;
      }
      if (dist < ARRIVED) {
        this.next();
        continue;
      }
      if (this.elapsed > this.budget || this.blockedFor > BLOCKED_SECONDS) {
        this.skip();
        continue;
      }
      this.elapsed += dt;
      const err = normalizeAngle(Math.atan2(wp.y - pose.y, wp.x - pose.x) - pose.theta);
      const w = Math.max(-this.limits.maxTurnRate, Math.min(this.limits.maxTurnRate, err / dt));
      const v = Math.abs(err) > DRIVE_HEADING_ERROR ? 0 : Math.min(this.limits.maxSpeed, dist / dt);
      return { v, w };
    }
  }

  /** The last command's translation would have hit a wall. */
  blocked(dt: number): void {
    this.blockedFor += dt;
  }

  private skip(): void {
    this.skipped++;
    this.next();
  }

  private next(): void {
    this.index++;
    this.elapsed = 0;
    this.budget = 0;
    this.blockedFor = 0;
  }
}
