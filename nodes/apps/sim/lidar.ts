import { SimError } from './errors.js';
import type { LaserScan, Pose } from '../../../protocol/sensors.js';
import { castRay } from './ray-cast.js';
import type { GridWorld } from './world.js';

export interface LidarConfig {
  /** Beam angles relative to the robot's heading, first and last beam included. */
  angleMin: number;
  angleMax: number;
  beams: number;
  rangeMin: number;
  rangeMax: number;
  /** Standard deviation of the additive range noise, metres. */
  noiseStd: number;
}

/** The TurtleBot3's LDS-01: one beam per degree, 0.12–3.5 m. */
export const LDS_01: LidarConfig = {
  angleMin: 0,
  angleMax: (2 * Math.PI * 359) / 360,
  beams: 360,
  rangeMin: 0.12,
  rangeMax: 3.5,
  noiseStd: 0.01,
};

export function lidarConfig(overrides: Partial<LidarConfig> = {}): LidarConfig {
  const c = { ...LDS_01, ...overrides };
  const bad = (what: string): never => {
    throw new SimError('BAD_SIM_CONFIG', `lidar: ${what}`);
  };
  if (!Number.isInteger(c.beams) || c.beams < 1) bad(`beams must be a positive integer, got ${c.beams}`);
  if (!Number.isFinite(c.angleMin) || !Number.isFinite(c.angleMax) || c.angleMax < c.angleMin)
    bad('need finite angleMin ≤ angleMax');
  if (c.beams > 1 && c.angleMax === c.angleMin) bad('several beams need angleMax > angleMin');
  if (!(c.rangeMin >= 0) || !(c.rangeMax > c.rangeMin) || !Number.isFinite(c.rangeMax))
    bad('need 0 ≤ rangeMin < rangeMax < ∞');
  if (!(c.noiseStd >= 0) || !Number.isFinite(c.noiseStd)) bad(`noiseStd must be ≥ 0, got ${c.noiseStd}`);
  return c;
}

export function angleIncrement(config: LidarConfig): number {
  return config.beams > 1 ? (config.angleMax - config.angleMin) / (config.beams - 1) : 0;
}

/**
 * One scan from `pose` by ray casting on the grid. `gauss` draws the range noise (standard
 * normal); `visit`, if given, sees every free cell each beam passes through within rangeMax
 * and, with `hit` set, the wall cell that stopped it.
 */
export function scan(
  world: GridWorld,
  pose: Pose,
  config: LidarConfig,
  gauss: () => number,
  visit?: (cell: number, hit: boolean) => void,
): LaserScan {
  const inc = angleIncrement(config);
  const ranges = new Float32Array(config.beams);
  const passed = visit && ((cell: number) => visit(cell, false));
  for (let i = 0; i < config.beams; i++) {
    const hit = castRay(world, pose.x, pose.y, pose.theta + config.angleMin + i * inc, config.rangeMax, passed);
    if (visit && hit.cell >= 0) visit(hit.cell, true);
    const r = hit.range === Infinity || config.noiseStd === 0 ? hit.range : hit.range + config.noiseStd * gauss();
    ranges[i] = r > config.rangeMax ? Infinity : r < config.rangeMin ? -Infinity : r;
  }
  return {
    angleMin: config.angleMin,
    angleMax: config.angleMax,
    angleIncrement: inc,
    rangeMin: config.rangeMin,
    rangeMax: config.rangeMax,
    ranges,
  };
}
