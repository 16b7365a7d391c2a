import type { EventEmitter } from 'node:events';
import { DashboardError } from './errors.js';
import type { DenseMap } from '../../mapping/index.js';

export interface RobotView {
  name: string;
  peerId: string;
  pose?: { x: number; y: number; theta: number };
  up: boolean;
  flagged: boolean;
  logSize: number;
  stateHash: string;
  /** Its process's resident memory, MiB, and event-loop delay p99, ms (when known). */
  rssMb?: number;
  loopLagMs?: number;
  /** Median |predicted ÷ measured − 1| of its scheduler's latest decisions, %; its compute slowdown (1 = unloaded). */
  predictionErrorPct?: number;
  slowdown?: number;
  /** Requests whose plan ran an early exit, and how many the exit answered. */
  exits?: { asked: number; taken: number };
  /** Frames it ran through chains of stages (requests and pipelined streams). */
  chains?: { offered: number; delivered: number; dropped: number; failed: number; replaced: number; fps?: number };
}

/** `a`, `b` are robot names; `connected: false` means partitioned or down. */
export interface LinkView {
  a: string;
  b: string;
  connected: boolean;
  bandwidthBps?: number;
  rttMs?: number;
  /** What the link is shaped to (simulated radio), when it is: the truth the estimate is after. */
  shapedBps?: number;
}

export interface LogLine {
  at: number;
  robot: string;
  kind: string;
  detail: string;
}

export interface LatencySample {
  at: number;
  robot: string;
  ms: number;
  plan: string;
  /** What the scheduler predicted for it. */
  predictedMs?: number;
}

export interface MapView {
  width: number;
  height: number;
  resolution: number;
  origin: { x: number; y: number };
  /** Base64 of an Int8Array of width × height cells: −1 free, 0 unknown, 1 occupied; row 0 = lowest y. */
  states: string;
}

export interface FleetView {
  /** Milliseconds since fleet start. */
  time: number;
  phase: string;
  robots: RobotView[];
  links: LinkView[];
  /** Newest last. */
  log: LogLine[];
  latency: LatencySample[];
  map?: MapView;
  /** Logged tasks by state, in this robot's log (the fleet's: its first robot's). */
  tasks?: { open: number; assigned: number; provisional: number; final: number; overturned: number };
}

export interface FleetViewSource extends EventEmitter<{ update: [FleetView] }> {
  current(): FleetView;
}

/** The feed shows this many log lines; update events carry no more. */
export const LOG_FEED_LIMIT = 200;
/** Update events carry at most this many latency samples, the newest. */
export const LATENCY_LIMIT = 1000;

export function mapView(map: Pick<DenseMap, 'width' | 'height' | 'resolution' | 'origin' | 'states'>): MapView {
  const { width, height, resolution, origin, states } = map;
  return {
    width,
    height,
    resolution,
    origin: { ...origin },
    states: Buffer.from(states.buffer, states.byteOffset, states.byteLength).toString('base64'),
  };
}

export function decodeStates(map: MapView): Int8Array {
  const bytes = Buffer.from(map.states, 'base64');
  if (bytes.length !== map.width * map.height) {
    throw new DashboardError(
      'BAD_MAP_VIEW',
      `map view has ${bytes.length} cells, expected ${map.width} × ${map.height}`,
    );
  }
  return new Int8Array(bytes.buffer, bytes.byteOffset, bytes.length);
}
