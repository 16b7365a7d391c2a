import { type CellState, TILE, cellState } from '../protocol/map-tile.js';
import type { Hex } from '../protocol/log-entry.js';

/**
 * Byzantine-tolerant map merging, as in the seed work (Keramat et al. 2023) but per tile and per
 * robot pair: two robots' contributions to a tile are compared window by window; a window where
 * more than 20 % of the cells both know disagree is a conflict (a cell one calls occupied and the
 * other free disagrees only if the other has no occupied cell within ALIGNMENT_SLACK cells, so
 * honest localisation error of a few centimetres is not a conflict; a fake wall is). A pair of
 * robots conflicts when enough of the windows both mapped conflict (PAIR_CONFLICT); a robot that
 * conflicts with more of its peers than it agrees with (at least 3 compared) is a suspect. The merged map is the
 * per-cell majority of the robots not excluded. Everything is a pure function of the
 * contributions, so robots holding the same ones reach the same verdicts and the same map.
 */
export interface Contribution {
  author: Hex;
  tile: string;
  version: number;
  cells: Int8Array;
  /** Its tile digest, when known. */
  digest?: Hex;
}

export const WINDOW = 16;
export const CONFLICT_FRACTION = 0.2;
/** A window counts only when both robots know at least this many of its cells. */
export const MIN_WINDOW_KNOWN = 40;
export const MIN_PEERS_COMPARED = 3;

/** An occupied cell within this many cells of the other's counts as agreement (localisation error). */
export const ALIGNMENT_SLACK = 2;

export type Verdict = 'conflict' | 'agree' | 'none';

function occupiedNear(cells: Int8Array, x: number, y: number): boolean {
  for (let dy = -ALIGNMENT_SLACK; dy <= ALIGNMENT_SLACK; dy++) {
    const yy = y + dy;
    if (yy < 0 || yy >= TILE) continue;
    for (let dx = -ALIGNMENT_SLACK; dx <= ALIGNMENT_SLACK; dx++) {
      const xx = x + dx;
      if (xx >= 0 && xx < TILE && cellState(cells[yy * TILE + xx]) === 1) return true;
    }
  }
  return false;
}

export function compareTiles(a: Int8Array, b: Int8Array): { verdict: Verdict; windows: number; conflicting: number } {
  let windows = 0;
  let conflicting = 0;
  for (let wy = 0; wy < TILE; wy += WINDOW) {
    for (let wx = 0; wx < TILE; wx += WINDOW) {
      let known = 0;
      let disagree = 0;
      for (let y = wy; y < wy + WINDOW; y++) {
        for (let x = wx; x < wx + WINDOW; x++) {
          const sa = cellState(a[y * TILE + x]);
          const sb = cellState(b[y * TILE + x]);
          if (sa === 0 || sb === 0) continue;
          known++;
          if (sa !== sb && !(sa === 1 ? occupiedNear(b, x, y) : occupiedNear(a, x, y))) disagree++;
        }
      }
      if (known < MIN_WINDOW_KNOWN) continue;
      windows++;
      if (disagree > CONFLICT_FRACTION * known) conflicting++;
    }
  }
  return { verdict: conflicting > 0 ? 'conflict' : windows > 0 ? 'agree' : 'none', windows, conflicting };
}

/** Windows two robots both mapped: how many conflict, how many agree. */
export interface PairTally {
  a: Hex;
  b: Hex;
  conflicts: number;
  agreements: number;
}

export interface LiarReport {
  suspects: Hex[];
  pairs: PairTally[];
  peers: Map<Hex, { conflicting: Hex[]; agreeing: Hex[] }>;
}

/**
 * A pair of robots conflicts when at least 3 windows and 10 % of the windows both mapped
 * conflict: a fake wall crosses many windows; honest localisation slips measured here stay
 * below (≤ 7 % of windows on the built-in worlds, bench:mapping).
 */
export const PAIR_CONFLICT = { windows: 3, share: 0.1 };
const pairConflicts = (p: PairTally): boolean =>
  p.conflicts >= PAIR_CONFLICT.windows && p.conflicts >= PAIR_CONFLICT.share * (p.conflicts + p.agreements);

/** `compare` may be a memoised compareTiles (contributions are immutable per digest). */
export function findLiars(
  contributions: Contribution[],
  excluded: ReadonlySet<Hex> = new Set(),
  compare: (a: Contribution, b: Contribution) => { windows: number; conflicting: number } = (a, b) =>
    compareTiles(a.cells, b.cells),
): LiarReport {
  const byTile = new Map<string, Contribution[]>();
  for (const c of contributions) {
    if (excluded.has(c.author)) continue;
    const list = byTile.get(c.tile) ?? [];
    list.push(c);
    byTile.set(c.tile, list);
  }
  const tallies = new Map<string, PairTally>();
  for (const list of byTile.values()) {
    list.sort((x, y) => (x.author < y.author ? -1 : 1));
    for (let i = 0; i < list.length; i++) {
      for (let j = i + 1; j < list.length; j++) {
        const { windows, conflicting } = compare(list[i], list[j]);
        if (windows === 0) continue;
        const key = `${list[i].author}|${list[j].author}`;
        const t = tallies.get(key) ?? { a: list[i].author, b: list[j].author, conflicts: 0, agreements: 0 };
        t.conflicts += conflicting;
        t.agreements += windows - conflicting;
        tallies.set(key, t);
      }
    }
  }
  const pairs = [...tallies.values()].sort((x, y) => (x.a + x.b < y.a + y.b ? -1 : 1));
  // Peel off the worst suspect, then look again without it: an honest robot whose few peers
  // include the liars must not be condemned for disagreeing with them.
  const suspects: Hex[] = [];
  for (;;) {
    const peers = peerVerdicts(pairs, new Set(suspects));
    const worst = [...peers]
      .filter(
        ([, p]) =>
          p.conflicting.length + p.agreeing.length >= MIN_PEERS_COMPARED && p.conflicting.length > p.agreeing.length,
      )
      .sort(
        ([ra, a], [rb, b]) => ratio(b) - ratio(a) || b.conflicting.length - a.conflicting.length || (ra < rb ? -1 : 1),
      )[0];
    if (!worst) return { suspects: suspects.sort(), pairs, peers: peerVerdicts(pairs, new Set()) };
    suspects.push(worst[0]);
  }
}

const ratio = (p: { conflicting: Hex[]; agreeing: Hex[] }): number =>
  p.conflicting.length / (p.conflicting.length + p.agreeing.length);

function peerVerdicts(
  pairs: PairTally[],
  without: ReadonlySet<Hex>,
): Map<Hex, { conflicting: Hex[]; agreeing: Hex[] }> {
  const peers = new Map<Hex, { conflicting: Hex[]; agreeing: Hex[] }>();
  const note = (robot: Hex, other: Hex, conflict: boolean): void => {
    const p = peers.get(robot) ?? { conflicting: [], agreeing: [] };
    (conflict ? p.conflicting : p.agreeing).push(other);
    peers.set(robot, p);
  };
  for (const p of pairs) {
    if (without.has(p.a) || without.has(p.b)) continue;
    const c = pairConflicts(p);
    note(p.a, p.b, c);
    note(p.b, p.a, c);
  }
  return peers;
}

/** Per-cell majority of the given contributions to one tile; ties go to the summed log-odds. */
export function mergeTile(contributions: Contribution[]): Int8Array<ArrayBuffer> {
  const out = new Int8Array(TILE * TILE);
  for (let i = 0; i < out.length; i++) {
    let votes = 0;
    let sum = 0;
    for (const c of contributions) {
      const q = c.cells[i];
      votes += cellState(q);
      sum += q;
    }
    out[i] = (votes > 0 ? 1 : votes < 0 ? -1 : Math.sign(sum)) as CellState;
  }
  return out;
}
