import { SimError } from './errors.js';
import type { Pose } from '../../../protocol/sensors.js';
import { advancePose } from './pose.js';

/**
 * Wheel odometry error. Each robot draws a fixed scale error once (miscalibrated wheel radius
 * and track width), then every step adds noise whose variance grows with the motion, so the
 * drift does not depend on the step length.
 */
export interface OdometryNoise {
  /** Standard deviation of the robot's fixed translation scale error (0.01 = 1 %). */
  translationBias: number;
  /** Standard deviation of the robot's fixed rotation scale error. */
  rotationBias: number;
  /** Translation noise, m per √m travelled. */
  translation: number;
  /** Rotation noise, rad per √rad turned. */
  rotation: number;
  /** Heading noise from driving straight, rad per √m travelled. */
  rotationPerMeter: number;
}

export const DEFAULT_ODOMETRY_NOISE: OdometryNoise = {
  translationBias: 0.01,
  rotationBias: 0.02,
  translation: 0.01,
  rotation: 0.02,
  rotationPerMeter: 0.01,
};

/** The pose a robot believes from integrating its wheel motion, drifting from the true one. */
export class Odometry {
  private current: Pose;
  private readonly transScale: number;
  private readonly rotScale: number;
  private readonly noise: OdometryNoise;

  constructor(
    start: Pose,
    private readonly gauss: () => number,
    noise: Partial<OdometryNoise> = {},
  ) {
    this.noise = { ...DEFAULT_ODOMETRY_NOISE, ...noise };
    for (const [k, v] of Object.entries(this.noise)) {
      if (!(v >= 0) || !Number.isFinite(v))
        throw new SimError('BAD_SIM_CONFIG', `odometry: ${k} must be ≥ 0, got ${v}`);
    }
    this.current = { ...start };
    this.transScale = 1 + this.noise.translationBias * gauss();
    this.rotScale = 1 + this.noise.rotationBias * gauss();
  }

  get pose(): Pose {
    return { ...this.current };
  }

  /** Adds one step of true motion: `dTrans` metres along the heading, then a `dRot` radian turn. */
  integrate(dTrans: number, dRot: number): void {
    if (dTrans === 0 && dRot === 0) return;
    const n = this.noise;
    const t = Math.abs(dTrans);
    const measuredTrans = dTrans * this.transScale + n.translation * Math.sqrt(t) * this.gauss();
    const measuredRot =
      dRot * this.rotScale +
      n.rotation * Math.sqrt(Math.abs(dRot)) * this.gauss() +
      n.rotationPerMeter * Math.sqrt(t) * this.gauss();
    this.current = advancePose(this.current, measuredTrans, measuredRot);
  }
}
