import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { PNG } from 'pngjs';
import { parse as parseYaml } from 'yaml';
import { SimError, type SimErrorCode } from './errors.js';
import { type GrayImage, MAX_IMAGE_PIXELS, decodePnm } from './pnm.js';
import { type GridWorld, createWorld } from './world.js';

/** The fields of a ROS map_server map's YAML file. */
export interface MapServerMetadata {
  /** As written: relative paths are relative to the YAML file. */
  image: string;
  resolution: number;
  /** Pose of the lower-left pixel's outer corner; like map_server we keep the yaw but do not rotate. */
  origin: [number, number, number];
  negate: boolean;
  occupiedThresh: number;
  freeThresh: number;
  mode: 'trinary' | 'scale' | 'raw';
}

export function parseMapYaml(text: string, source: string): MapServerMetadata {
  const fail = (what: string): never => {
    throw new SimError('BAD_MAP_YAML', `${source}: ${what}`);
  };
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    fail(`not valid YAML: ${(err as Error).message.split('\n')[0]}`);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) fail('expected a mapping of map_server keys');
  const d = doc as Record<string, unknown>;
  const num = (key: string, fallback?: number): number => {
    const v = d[key] ?? fallback;
    if (v === undefined) fail(`missing ${key}`);
    if (typeof v !== 'number' || !Number.isFinite(v)) fail(`${key} must be a number, got ${JSON.stringify(v)}`);
    return v as number;
  };
  if (typeof d.image !== 'string' || d.image.trim() === '') fail('missing image (the path of the PGM or PNG file)');
  const resolution = num('resolution');
  if (resolution <= 0) fail(`resolution must be positive, got ${resolution}`);
  const origin = d.origin;
  if (
    !Array.isArray(origin) ||
    (origin.length !== 2 && origin.length !== 3) ||
    !origin.every((v) => typeof v === 'number' && Number.isFinite(v))
  ) {
    fail(`origin must be [x, y, yaw], got ${JSON.stringify(origin)}`);
  }
  const o = origin as number[];
  const negate = d.negate ?? 0;
  if (negate !== 0 && negate !== 1 && typeof negate !== 'boolean')
    fail(`negate must be 0 or 1, got ${JSON.stringify(negate)}`);
  const occupiedThresh = num('occupied_thresh', 0.65);
  const freeThresh = num('free_thresh', 0.196);
  if (!(freeThresh >= 0 && freeThresh <= occupiedThresh && occupiedThresh <= 1)) {
    fail(`need 0 ≤ free_thresh ≤ occupied_thresh ≤ 1, got ${freeThresh} and ${occupiedThresh}`);
  }
  const mode = d.mode ?? 'trinary';
  if (mode !== 'trinary' && mode !== 'scale' && mode !== 'raw')
    fail(`mode must be trinary, scale or raw, got ${JSON.stringify(mode)}`);
  return {
    image: d.image as string,
    resolution,
    origin: [o[0], o[1], o[2] ?? 0],
    negate: negate === 1 || negate === true,
    occupiedThresh,
    freeThresh,
    mode: mode as MapServerMetadata['mode'],
  };
}

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47];

/** A PGM/PPM or PNG file as 8-bit grey; colour channels are averaged, alpha ignored. */
export function decodeMapImage(bytes: Uint8Array, source: string): GrayImage {
  if (bytes.length >= 2 && bytes[0] === 0x50 && bytes[1] >= 0x31 && bytes[1] <= 0x39) return decodePnm(bytes, source);
  if (!PNG_SIGNATURE.every((b, i) => bytes[i] === b)) {
    throw new SimError('BAD_MAP_IMAGE', `${source}: not a PGM or PNG image`);
  }
  let png: PNG;
  try {
    png = PNG.sync.read(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length));
  } catch (err) {
    throw new SimError('BAD_MAP_IMAGE', `${source}: unreadable PNG: ${(err as Error).message}`);
  }
  const { width, height, data } = png;
  if (width * height > MAX_IMAGE_PIXELS)
    throw new SimError('BAD_MAP_IMAGE', `${source}: ${width}×${height} is too large`);
  const pixels = new Uint8Array(width * height);
  for (let p = 0; p < pixels.length; p++) pixels[p] = Math.round((data[4 * p] + data[4 * p + 1] + data[4 * p + 2]) / 3);
  return { width, height, pixels };
}

/**
 * map_server's reading of pixels: p = (255 − v) / 255 (v / 255 with negate) is occupied above
 * occupied_thresh, free below free_thresh, unknown between. In raw mode the (negated) value is
 * the occupancy in percent, and values above 100 are unknown. Unknown cells become walls in
 * `occupied` and 0 in `known`. Image row 0 is the top, so rows are flipped.
 */
export function worldFromImage(image: GrayImage, meta: MapServerMetadata, name: string): GridWorld {
  const { width, height, pixels } = image;
  const occupied = new Uint8Array(width * height);
  const known = new Uint8Array(width * height);
  for (let r = 0; r < height; r++) {
    const row = height - 1 - r;
    for (let c = 0; c < width; c++) {
      const v = meta.negate ? 255 - pixels[r * width + c] : pixels[r * width + c];
      const p = meta.mode === 'raw' ? (v > 100 ? NaN : v / 100) : (255 - v) / 255;
      const i = row * width + c;
      if (p > meta.occupiedThresh) {
        occupied[i] = 1;
        known[i] = 1;
      } else if (p < meta.freeThresh) {
        known[i] = 1;
      } else {
        occupied[i] = 1;
      }
    }
  }
  const world = createWorld(name, width, height, meta.resolution, { x: meta.origin[0], y: meta.origin[1] }, occupied);
  world.known = known;
  return world;
}

async function read(path: string, code: SimErrorCode, what: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new SimError(code, `${what} ${path}: ${e.code === 'ENOENT' ? 'no such file' : e.message}`);
  }
}

/** A ROS map_server map (YAML plus PGM or PNG) as ground truth. */
export async function loadMapServerMap(yamlPath: string): Promise<GridWorld> {
  const text = (await read(yamlPath, 'MAP_NOT_FOUND', 'map YAML')).toString('utf8');
  const meta = parseMapYaml(text, yamlPath);
  const imagePath = resolve(dirname(yamlPath), meta.image);
  const bytes = await read(imagePath, 'MAP_IMAGE_MISSING', `map image named by ${yamlPath}:`);
  return worldFromImage(decodeMapImage(bytes, imagePath), meta, yamlPath);
}
