import type { Pose } from '../../../protocol/sensors.js';

/** The angle in (-π, π]. */
export function normalizeAngle(a: number): number {
  let r = a % (2 * Math.PI);
  if (r <= -Math.PI) r += 2 * Math.PI;
  else if (r > Math.PI) r -= 2 * Math.PI;
  return r;
}

/** Moves `pose` by `dTrans` along the mean heading of the step, then turns it by `dRot`. */
export function advancePose(pose: Pose, dTrans: number, dRot: number): Pose {
  const mid = pose.theta + dRot / 2;
  return {
    x: pose.x + dTrans * Math.cos(mid),
    y: pose.y + dTrans * Math.sin(mid),
    theta: normalizeAngle(pose.theta + dRot),
  };
}
