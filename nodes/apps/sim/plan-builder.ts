import { type GridWorld, createWorld } from './world.js';

/** Draws a floor plan in metres onto a grid whose cell (0, 0) corner is at the world origin. */
export class PlanBuilder {
  readonly width: number;
  readonly height: number;
  private readonly occupied: Uint8Array;

  constructor(
    readonly name: string,
    widthM: number,
    heightM: number,
    readonly resolution = 0.05,
  ) {
    this.width = Math.round(widthM / resolution);
    this.height = Math.round(heightM / resolution);
    this.occupied = new Uint8Array(this.width * this.height);
  }

  /** Fills the rectangle [x0, x1) × [y0, y1) with wall (corners in any order). */
  wall(x0: number, y0: number, x1: number, y1: number): this {
    return this.paint(x0, y0, x1, y1, 1);
  }

  /** Clears the rectangle [x0, x1) × [y0, y1): doorways and openings. */
  clear(x0: number, y0: number, x1: number, y1: number): this {
    return this.paint(x0, y0, x1, y1, 0);
  }

  /** A wall of `thickness` centred on the segment from (x0, y0) to (x1, y1), which must be axis-aligned. */
  line(x0: number, y0: number, x1: number, y1: number, thickness: number): this {
    const h = thickness / 2;
    return x0 === x1 ? this.wall(x0 - h, y0, x0 + h, y1) : this.wall(x0, y0 - h, x1, y0 + h);
  }

  /** Walls of `thickness` along the inside of the plan's edges. */
  border(thickness: number): this {
    const w = this.width * this.resolution;
    const h = this.height * this.resolution;
    return this.wall(0, 0, w, thickness)
      .wall(0, h - thickness, w, h)
      .wall(0, 0, thickness, h)
      .wall(w - thickness, 0, w, h);
  }

  build(): GridWorld {
    return createWorld(this.name, this.width, this.height, this.resolution, { x: 0, y: 0 }, this.occupied);
  }

  private paint(x0: number, y0: number, x1: number, y1: number, value: number): this {
    const c0 = Math.max(0, Math.round(Math.min(x0, x1) / this.resolution));
    const c1 = Math.min(this.width, Math.round(Math.max(x0, x1) / this.resolution));
    const r0 = Math.max(0, Math.round(Math.min(y0, y1) / this.resolution));
    const r1 = Math.min(this.height, Math.round(Math.max(y0, y1) / this.resolution));
    for (let r = r0; r < r1; r++) this.occupied.fill(value, r * this.width + c0, r * this.width + c1);
    return this;
  }
}
