import { join } from 'node:path';
import type { TaskStatus } from '../../../contracts/tasks.js';
import {
  type AuditReport,
  buildProof,
  IotaAnchorChain,
  iotaClientFor,
  Ledger,
  SqliteLogStore,
  verifyProof,
} from '../../ledger/index.js';
import { robotPaths } from '../../robot/index.js';
import type { FleetView } from '../dashboard/index.js';
import { floorPlan, type MapQuality, mapQuality } from '../sim/index.js';
import { countTasks } from './robot-runtime.js';
import type { ChainWorkload, Scenario } from './scenario.js';
import type { ChainStreamStatus } from './chain-stream.js';

export interface FleetReport {
  scenario: Scenario;
  processes: 'separate' | 'in-process' | 'sharded';
  /** The robots of each OS process that hosted robots (one list: in-process; one robot each: separate). */
  placement: string[][];
  robots: string[];
  inference: {
    tasks: number;
    failed: number;
    errors: string[];
    latencyMs: { p50: number; p90: number; p99: number; max: number };
    plans: Record<string, number>;
    /** The tasks in r0's log at the end, by state (every robot's log decides the same). */
    decisions: Record<TaskStatus, number>;
  };
  /** Per heal: ms until every robot held every entry written anywhere before it (and the tiles they name). */
  heals: {
    at: number;
    convergedMs: number | null;
    logMs: number | null;
    reconnectedPeers: number;
    medianRobotMs: number | null;
    lastRobot: string | null;
  }[];
  /** At the end: ms until every robot the log does not exclude held every entry such robots wrote. */
  final: { convergedMs: number | null; leftOut: string[] };
  map: MapQuality & { tiles: number };
  liars: {
    scheduled: string[];
    flaggedInLog: string[];
    excludedInLog: string[];
    equivocations: number;
    forgedEntriesRejected: number;
    isolatedByPeers: string[];
  };
  anchoring: { on: string; anchors: number };
  audit: { task: string; report?: AuditReport; error?: string } | null;
  /** Per shape event: the links it slowed, and what their robots measured on them while it held. */
  links: {
    at: number;
    shaping: string;
    measured: { from: string; to: string; shapedMbit: number; measuredMbit: number; rttMs: number }[];
  }[];
  /** Per robot whose requests ran early exits: how many did, and how many the exit answered. */
  exits: { robot: string; asked: number; taken: number }[];
  /** The scenario's chain: who held each stage, and what the streaming robot's camera stream got. */
  chain: (ChainWorkload & { holders: string[][]; stream: ChainStreamStatus }) | null;
  /** Over the processes hosting robots (each counted once): largest RSS, total RSS / robots, total CPU time. */
  resources: { maxRssMb: number; rssMbPerRobot: number; cpuSeconds: number };
}

export const percentile = (xs: number[], p: number): number => {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * (s.length - 1)))];
};

export interface TaskRun {
  task?: string;
  error?: string;
  plan?: string;
  ms?: number;
}

/** Latency and plans of the tasks the fleet asked for, with the decisions in the log. */
export function inferenceSummary(tasks: TaskRun[], decisions: Record<TaskStatus, number>): FleetReport['inference'] {
  const ok = tasks.filter((t) => t.task && t.ms !== undefined);
  const plans: Record<string, number> = {};
  for (const t of ok) plans[t.plan!] = (plans[t.plan!] ?? 0) + 1;
  const ms = ok.map((t) => t.ms!);
  return {
    tasks: tasks.length,
    failed: tasks.length - ok.length,
    errors: [...new Set(tasks.filter((t) => t.error).map((t) => t.error!))].slice(0, 5),
    latencyMs: {
      p50: percentile(ms, 0.5),
      p90: percentile(ms, 0.9),
      p99: percentile(ms, 0.99),
      max: Math.max(0, ...ms),
    },
    plans,
    decisions,
  };
}

/** The merged map as the dashboard holds it, compared with the scenario world's ground truth. */
export function mapReport(map: FleetView['map'], worldName: string): FleetReport['map'] {
  if (!map) return { accuracy: 0, iou: 0, known: 0, coverage: 0, tiles: 0 };
  const world = floorPlan(worldName).world;
  const quality = mapQuality(
    {
      width: map.width,
      height: map.height,
      resolution: map.resolution,
      origin: map.origin,
      cell0: {
        cx: Math.round((map.origin.x - world.origin.x) / world.resolution),
        cy: Math.round((map.origin.y - world.origin.y) / world.resolution),
      },
      states: new Int8Array(Buffer.from(map.states, 'base64')),
    },
    world,
  );
  return { ...quality, tiles: (map.width * map.height) / 4096 };
}

/**
 * From a stopped robot's store: its anchors, its tasks by state, and one accepted result audited
 * end to end (checked live when `anchorOn` names a node's URL).
 */
export async function auditRobotStore(
  dataDir: string,
  robot: string,
  anchorOn: string,
): Promise<{ anchors: number; decisions: Record<TaskStatus, number>; audit: FleetReport['audit'] }> {
  const store = new SqliteLogStore(robotPaths(join(dataDir, robot)).log);
  try {
    const ledger = new Ledger(store);
    let audit: FleetReport['audit'] = null;
    const final = [...ledger.state.tasks.values()].filter((t) => t.status === 'final').map((t) => t.task);
    for (const task of final) {
      try {
        const proof = buildProof(ledger, task);
        const rpc = anchorOn.match(/at (http\S+)/)?.[1];
        audit = {
          task,
          report: await verifyProof(proof, rpc ? new IotaAnchorChain(iotaClientFor(rpc, 5000)) : undefined),
        };
        break;
      } catch (err) {
        audit = { task, error: (err as Error).message };
      }
    }
    return { anchors: ledger.state.anchors.length, decisions: countTasks(ledger.state.tasks.values()), audit };
  } finally {
    store.close();
  }
}
