import { createHash } from 'node:crypto';
import { PNG } from 'pngjs';
import { TILE, parseTileId } from '../../protocol/map-tile.js';
import type { MapFrame } from './occupancy-grid.js';

/** The merged map as one dense grid: states −1 free, 0 unknown, 1 occupied; row 0 = lowest y. */
export interface DenseMap {
  width: number;
  height: number;
  resolution: number;
  /** World coordinates of the outer corner of cell (0, 0) of this grid. */
  origin: { x: number; y: number };
  /** Frame cell of this grid's cell (0, 0). */
  cell0: { cx: number; cy: number };
  states: Int8Array;
}

export function assemble(tiles: Map<string, Int8Array>, frame: MapFrame): DenseMap {
  const ids = [...tiles.keys()].map(parseTileId);
  if (ids.length === 0)
    return {
      width: 0,
      height: 0,
      resolution: frame.resolution,
      origin: { ...frame.origin },
      cell0: { cx: 0, cy: 0 },
      states: new Int8Array(0),
    };
  const tx0 = Math.min(...ids.map((t) => t.tx));
  const ty0 = Math.min(...ids.map((t) => t.ty));
  const width = (Math.max(...ids.map((t) => t.tx)) - tx0 + 1) * TILE;
  const height = (Math.max(...ids.map((t) => t.ty)) - ty0 + 1) * TILE;
  const states = new Int8Array(width * height);
  for (const [id, cells] of tiles) {
    const { tx, ty } = parseTileId(id);
    for (let y = 0; y < TILE; y++)
      states.set(cells.subarray(y * TILE, (y + 1) * TILE), ((ty - ty0) * TILE + y) * width + (tx - tx0) * TILE);
  }
  const cell0 = { cx: tx0 * TILE, cy: ty0 * TILE };
  return {
    width,
    height,
    resolution: frame.resolution,
    origin: { x: frame.origin.x + cell0.cx * frame.resolution, y: frame.origin.y + cell0.cy * frame.resolution },
    cell0,
    states,
  };
}

/** Equal on two robots exactly when their merged maps are equal. */
export function mapDigest(tiles: Map<string, Int8Array>): string {
  const h = createHash('sha256');
  for (const id of [...tiles.keys()].sort()) h.update(`${id}\n`).update(new Uint8Array(tiles.get(id)!.buffer));
  return h.digest('hex');
}

/** map_server's trinary image: 0 occupied, 254 free, 205 unknown; the top image row is the highest y. */
function grey(map: DenseMap): Uint8Array {
  const out = new Uint8Array(map.width * map.height);
  for (let y = 0; y < map.height; y++) {
    for (let x = 0; x < map.width; x++) {
      const s = map.states[y * map.width + x];
      out[(map.height - 1 - y) * map.width + x] = s === 1 ? 0 : s === -1 ? 254 : 205;
    }
  }
  return out;
}

export function toPgm(map: DenseMap): Buffer {
  return Buffer.concat([Buffer.from(`P5\n# robomesh merged map\n${map.width} ${map.height}\n255\n`), grey(map)]);
}

export function toMapYaml(map: DenseMap, image: string): string {
  return [
    `image: ${image}`,
    'mode: trinary',
    `resolution: ${map.resolution}`,
    `origin: [${map.origin.x}, ${map.origin.y}, 0.0]`,
    'negate: 0',
    'occupied_thresh: 0.65',
    // map_server's usual 0.196: unknown grey 205 gives exactly 0.196, which is not < 0.196.
    'free_thresh: 0.196',
    '',
  ].join('\n');
}

export function toPng(map: DenseMap): Buffer {
  const png = new PNG({
    width: Math.max(1, map.width),
    height: Math.max(1, map.height),
    colorType: 0,
    inputColorType: 0,
    bitDepth: 8,
    inputHasAlpha: false,
  });
  png.data = Buffer.from(grey(map));
  return PNG.sync.write(png, { colorType: 0, inputColorType: 0, inputHasAlpha: false });
}

/** The fields of nav_msgs/OccupancyGrid (data: −1 unknown, 0 free, 100 occupied; row 0 = lowest y). */
export interface OccupancyGridMsg {
  header: { stamp: { sec: number; nanosec: number }; frame_id: string };
  info: {
    map_load_time: { sec: number; nanosec: number };
    resolution: number;
    width: number;
    height: number;
    origin: {
      position: { x: number; y: number; z: number };
      orientation: { x: number; y: number; z: number; w: number };
    };
  };
  data: Int8Array;
}

export function toOccupancyGrid(map: DenseMap, stampMs: number, frameId = 'map'): OccupancyGridMsg {
  const stamp = { sec: Math.floor(stampMs / 1000), nanosec: Math.round((stampMs % 1000) * 1e6) };
  const data = new Int8Array(map.states.length);
  for (let i = 0; i < data.length; i++) data[i] = map.states[i] === 1 ? 100 : map.states[i] === -1 ? 0 : -1;
  return {
    header: { stamp, frame_id: frameId },
    info: {
      map_load_time: stamp,
      resolution: map.resolution,
      width: map.width,
      height: map.height,
      origin: { position: { x: map.origin.x, y: map.origin.y, z: 0 }, orientation: { x: 0, y: 0, z: 0, w: 1 } },
    },
    data,
  };
}
