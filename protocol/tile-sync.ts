import { deflateRawSync, inflateRawSync } from 'node:zlib';
import * as cbor from '@ipld/dag-cbor';
import { isHexKey } from './bytes.js';
import { CborError, Reader } from './canonical-cbor.js';
import { WireError } from './errors.js';
import { LIMITS } from './limits.js';
import { TILE, type TileContribution, TileError } from './map-tile.js';

/**
 * `/robomesh/tiles/3.0.0`, one request per stream:
 *   asker → { want: [digest…] (1..LIMITS.tiles.maxWant), wait: ms (0..maxWaitMs) }
 *   holder → [{ t: tile id, v: version, c: deflated cells }…], the contributions it holds of those
 * The asker checks each against the digest its signed log entry names (map-service), so cells
 * fetched from anyone are the author's.
 */
export const TILE_PROTOCOL = '/robomesh/tiles/3.0.0';
const MAX_CELLS = TILE * TILE;
/** A tile's deflated cells never exceed its raw size by more than deflate's worst case. */
const MAX_DEFLATED = MAX_CELLS + 64;
/** Largest reply: maxWant contributions. */
export const MAX_TILE_REPLY = LIMITS.tiles.maxWant * (MAX_DEFLATED + 96) + 16;
export const MAX_TILE_REQUEST = LIMITS.tiles.maxWant * 70 + 64;

export interface WireTile {
  t: string;
  v: number;
  c: Uint8Array;
}

export interface TileRequest {
  want: string[];
  wait: number;
}

const fail = (why: string): never => {
  throw new WireError('tiles', 'MALFORMED', why);
};

function strict(bytes: Uint8Array, maxItems: number, what: string): unknown {
  try {
    const r = new Reader(bytes, maxItems);
    const value = r.item(0);
    if (r.pos !== bytes.length) fail(`${what}: bytes after the message`);
    return value;
  } catch (err) {
    if (err instanceof CborError) return fail(`${what}: ${err.message}`);
    throw err;
  }
}

export const encodeTileRequest = (req: TileRequest): Uint8Array => cbor.encode(req);

export function decodeTileRequest(bytes: Uint8Array): TileRequest {
  if (bytes.length > MAX_TILE_REQUEST) fail(`a tile request of ${bytes.length} bytes`);
  const req = strict(bytes, 4 + LIMITS.tiles.maxWant, 'tile request') as Record<string, unknown>;
  if (typeof req !== 'object' || req === null || Array.isArray(req) || Object.keys(req).sort().join() !== 'wait,want')
    return fail('a tile request is {want, wait}');
  const { want, wait } = req;
  if (!Array.isArray(want) || want.length > LIMITS.tiles.maxWant || !want.every(isHexKey))
    fail(`want is a list of at most ${LIMITS.tiles.maxWant} digests`);
  if (!Number.isSafeInteger(wait) || (wait as number) < 0) fail('wait is a number of ms');
  return { want: want as string[], wait: Math.min(wait as number, LIMITS.tiles.maxWaitMs) };
}

export const encodeTileReply = (tiles: WireTile[]): Uint8Array => cbor.encode(tiles);

export function decodeTileReply(bytes: Uint8Array): WireTile[] {
  if (bytes.length > MAX_TILE_REPLY) fail(`a tile reply of ${bytes.length} bytes`);
  const list = strict(bytes, 1 + LIMITS.tiles.maxWant * 7, 'tile reply');
  if (!Array.isArray(list) || list.length > LIMITS.tiles.maxWant)
    return fail(`a tile reply is a list of at most ${LIMITS.tiles.maxWant} tiles`);
  for (const w of list as Record<string, unknown>[]) {
    if (typeof w !== 'object' || w === null || Object.keys(w).sort().join() !== 'c,t,v') fail('a tile is {t, v, c}');
    if (typeof w.t !== 'string' || w.t.length > 16 || !Number.isSafeInteger(w.v) || (w.v as number) < 0)
      fail('a tile names its id and version');
    if (!(w.c instanceof Uint8Array) || w.c.length > MAX_DEFLATED) fail('tile cells are deflated bytes');
  }
  return list as WireTile[];
}

export function packTile(c: TileContribution): WireTile {
  return {
    t: c.tile,
    v: c.version,
    c: deflateRawSync(new Uint8Array(c.cells.buffer, c.cells.byteOffset, c.cells.byteLength)),
  };
}

/** The contribution a wire tile carries; TileError when its cells do not inflate to a whole tile. */
export function unpackTile(w: WireTile): TileContribution {
  let raw: Buffer;
  try {
    raw = inflateRawSync(w.c, { maxOutputLength: MAX_CELLS });
  } catch (err) {
    throw new TileError('BAD_TILE', `tile cells do not inflate: ${(err as Error).message}`);
  }
  if (raw.length !== MAX_CELLS) throw new TileError('BAD_TILE', `a tile has ${MAX_CELLS} cells, got ${raw.length}`);
  return { tile: w.t, version: w.v, cells: new Int8Array(raw.buffer, raw.byteOffset, raw.byteLength) };
}
