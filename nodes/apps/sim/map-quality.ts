import type { DenseMap } from '../../mapping/index.js';
import type { GridWorld } from './world.js';

export interface MapQuality {
  /** Share of cells the map knows (free or occupied) that match the ground truth. */
  accuracy: number;
  /** Occupied IoU inside the known area: |M∩T| / |M ∪ (T ∩ known)|. */
  iou: number;
  known: number;
  /** Share of the world's free cells the map knows. */
  coverage: number;
}

/** Compares with the simulator's ground truth; the map frame must be the world's (same origin and resolution). */
export function mapQuality(map: DenseMap, world: GridWorld): MapQuality {
  let known = 0;
  let correct = 0;
  let both = 0;
  let either = 0;
  let freeKnown = 0;
  let freeTotal = 0;
  for (const v of world.occupied) if (v === 0) freeTotal++;
  for (let y = 0; y < map.height; y++) {
    const wy = map.cell0.cy + y;
    for (let x = 0; x < map.width; x++) {
      const s = map.states[y * map.width + x];
      if (s === 0) continue;
      const wx = map.cell0.cx + x;
      const inside = wx >= 0 && wy >= 0 && wx < world.width && wy < world.height;
      const truth = !inside || world.occupied[wy * world.width + wx] === 1;
      known++;
      if ((s === 1) === truth) correct++;
      if (s === 1 && truth) both++;
      if (s === 1 || truth) either++;
      if (!truth && s === -1) freeKnown++;
    }
  }
  return {
    accuracy: known ? correct / known : 0,
    iou: either ? both / either : 0,
    known,
    coverage: freeTotal ? freeKnown / freeTotal : 0,
  };
}
