import type { LaserScan, Pose } from '../../protocol/sensors.js';
import type { LogOddsGrid } from './occupancy-grid.js';

/**
 * Odometry corrected by scan-to-map matching (a brute-force correlative matcher, coarse then
 * fine): the odometry increment predicts the pose, and the pose whose beam endpoints land on the
 * most strongly occupied cells of the robot's own map within a small window wins. Written here
 * because the field's matchers (Cartographer, slam_toolbox, hector) are C++ ROS packages.
 */
export class ScanMatchingLocalizer {
  private estimate: Pose;
  /** Odometry starts at the known start pose. */
  private lastOdom: Pose;

  constructor(
    start: Pose,
    private readonly options: { window?: number; angleWindow?: number; stride?: number } = {},
  ) {
    this.estimate = { ...start };
    this.lastOdom = { ...start };
  }

  get pose(): Pose {
    return { ...this.estimate };
  }

  update(odom: Pose, scan: LaserScan, grid: LogOddsGrid): Pose {
    {
      const p = this.lastOdom;
      const dx = odom.x - p.x;
      const dy = odom.y - p.y;
      const c = Math.cos(-p.theta);
      const s = Math.sin(-p.theta);
      const lx = c * dx - s * dy;
      const ly = s * dx + c * dy;
      const e = this.estimate;
      this.estimate = {
        x: e.x + Math.cos(e.theta) * lx - Math.sin(e.theta) * ly,
        y: e.y + Math.sin(e.theta) * lx + Math.cos(e.theta) * ly,
        theta: e.theta + (odom.theta - p.theta),
      };
    }
    this.lastOdom = { ...odom };
    if (grid.tileCount > 0) this.estimate = this.match(this.estimate, scan, grid);
    return this.pose;
  }

  private match(guess: Pose, scan: LaserScan, grid: LogOddsGrid): Pose {
    const stride = this.options.stride ?? 4;
    const beams: { angle: number; range: number }[] = [];
    for (let i = 0; i < scan.ranges.length; i += stride) {
      const r = scan.ranges[i];
      // Endpoints half a cell past the surface, where the grid marks the obstacle.
      if (Number.isFinite(r) && r >= scan.rangeMin && r <= scan.rangeMax)
        beams.push({ angle: scan.angleMin + i * scan.angleIncrement, range: r + grid.frame.resolution / 2 });
    }
    if (beams.length < 10) return guess;
    // A beam's endpoint offset depends on the heading only: computed once per heading tried,
    // each position then costs additions and a cell read per beam.
    const offsetsAt = (theta: number): { dx: Float64Array; dy: Float64Array } => {
      const dx = new Float64Array(beams.length);
      const dy = new Float64Array(beams.length);
      beams.forEach((b, i) => {
        const a = theta + b.angle;
        dx[i] = b.range * Math.cos(a);
        dy[i] = b.range * Math.sin(a);
      });
      return { dx, dy };
    };
    const score = (p: Pose, at = offsetsAt(p.theta)): number => grid.positiveSum(p.x, p.y, at.dx, at.dy);
    // A prior around the prediction: a match must beat the odometry by more than a few beams'
    // worth to move far, or thin walls (seen from both sides) drag the pose across themselves.
    const sigmaT = 0.03;
    const sigmaR = (1 * Math.PI) / 180;
    const prior = (p: Pose): number =>
      2 * (((p.x - guess.x) ** 2 + (p.y - guess.y) ** 2) / sigmaT ** 2 + (p.theta - guess.theta) ** 2 / sigmaR ** 2);
    let best = guess;
    let bestScore = score(guess);
    const res = grid.frame.resolution;
    // Candidates nearest the centre first, so flat scores (a corridor) keep the prediction.
    const search = (center: Pose, step: number, steps: number, angleStep: number, angleSteps: number): void => {
      const headings = new Map<number, ReturnType<typeof offsetsAt>>();
      for (const [i, j, k] of offsets(steps, angleSteps)) {
        const p = { x: center.x + i * step, y: center.y + j * step, theta: center.theta + k * angleStep };
        let at = headings.get(k);
        if (!at) headings.set(k, (at = offsetsAt(p.theta)));
        const s = score(p, at) - prior(p);
        if (s > bestScore + 1e-9) {
          bestScore = s;
          best = p;
        }
      }
    };
    const window = this.options.window ?? 0.06;
    const angleWindow = this.options.angleWindow ?? (3 * Math.PI) / 180;
    const coarse = Math.ceil(window / res);
    search(guess, res, coarse, angleWindow / 3, 3);
    search(best, res / 4, 3, angleWindow / 12, 3);
    return best;
  }
}

const offsetCache = new Map<string, [number, number, number][]>();
function offsets(steps: number, angleSteps: number): [number, number, number][] {
  const key = `${steps}/${angleSteps}`;
  let list = offsetCache.get(key);
  if (!list) {
    list = [];
    for (let k = -angleSteps; k <= angleSteps; k++)
      for (let i = -steps; i <= steps; i++) for (let j = -steps; j <= steps; j++) list.push([i, j, k]);
    list.sort((a, b) => a[0] ** 2 + a[1] ** 2 + a[2] ** 2 - (b[0] ** 2 + b[1] ** 2 + b[2] ** 2));
    offsetCache.set(key, list);
  }
  return list;
}
