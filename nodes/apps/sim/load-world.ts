import { floorPlan } from './floor-plans.js';
import { loadMapServerMap } from './map-server.js';
import type { GridWorld } from './world.js';

/** `builtin:<name>` for a built-in floor plan, else the path of a map_server YAML file. */
export async function loadWorld(pathOrName: string): Promise<GridWorld> {
  return pathOrName.startsWith('builtin:') ? floorPlan(pathOrName).world : loadMapServerMap(pathOrName);
}
