/** A planar pose in the map frame: metres and radians (counter-clockwise from +x). */
export interface Pose {
  x: number;
  y: number;
  theta: number;
}

/** Shaped like sensor_msgs/LaserScan, without the header. */
export interface LaserScan {
  angleMin: number;
  angleMax: number;
  angleIncrement: number;
  rangeMin: number;
  rangeMax: number;
  /** REP 117: +Infinity when nothing is within rangeMax, -Infinity when closer than rangeMin. */
  ranges: Float32Array;
}
