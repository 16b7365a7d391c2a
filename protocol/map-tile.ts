import { createHash } from 'node:crypto';
import { RobomeshError } from './errors.js';

/**
 * One robot's contribution to one map tile: TILE×TILE cells of log-odds quantized to int8
 * (1/20 units, so ±6.35), row-major with row 0 at the lowest y. The digest binds tile id, version
 * and cells; it is what the signed `tile` log entry records, so cells fetched from anyone can be
 * checked against the author's signature.
 */
export const TILE = 64;
export const LOGODDS_SCALE = 20;
/** Quantized log-odds at or above this: occupied; at or below FREE_AT: free; between: unknown. */
export const OCCUPIED_AT = 10;
export const FREE_AT = -8;

export type CellState = -1 | 0 | 1;

export interface TileContribution {
  tile: string;
  version: number;
  cells: Int8Array;
}

export type TileErrorCode = 'BAD_TILE' | 'TILE_MISMATCH' | 'UNKNOWN_TILE';

export class TileError extends RobomeshError<TileErrorCode> {
  constructor(code: TileErrorCode, message: string, options?: ErrorOptions) {
    super(code, message, options);
  }
}

const TILE_ID = /^(-?\d{1,6})_(-?\d{1,6})$/;

export const tileId = (tx: number, ty: number): string => `${tx}_${ty}`;

export function parseTileId(id: string): { tx: number; ty: number } {
  const m = TILE_ID.exec(id);
  if (!m) throw new TileError('BAD_TILE', `tile id ${JSON.stringify(id)} is not TX_TY`);
  return { tx: Number(m[1]), ty: Number(m[2]) };
}

export function tileDigest(c: TileContribution): string {
  if (c.cells.length !== TILE * TILE)
    throw new TileError('BAD_TILE', `a tile has ${TILE * TILE} cells, got ${c.cells.length}`);
  parseTileId(c.tile);
  return createHash('sha256')
    .update(`robomesh-tile-v1\n${c.tile}\n${c.version}\n`)
    .update(new Uint8Array(c.cells.buffer, c.cells.byteOffset, c.cells.byteLength))
    .digest('hex');
}

export const cellState = (q: number): CellState => (q >= OCCUPIED_AT ? 1 : q <= FREE_AT ? -1 : 0);
