import type { Precision } from '../inference/index.js';

/** One way to run a request, with its predicted latency broken down. */
export interface Plan {
  /** 'chain': through the stages of a chain held across the fleet (nodes/scheduler/chain.ts). */
  kind: 'local' | 'offload' | 'split' | 'chain';
  peer?: string;
  /** Cut id (split), or 'input' (offload). */
  cut?: string;
  precision: Precision;
  /**
   * Mean latency predicted. With an exit: head + exit, then with probability 1 − rate the rest
   * (breakdown.afterExitMs) — a local tail (kind 'local') or the peer's part.
   */
  predictedMs: number;
  /** An exit run right after the head at `cut` (hash of the exit model, its expected exit rate). */
  exit?: { hash: string; rate: number };
  breakdown: {
    headMs: number;
    transferMs: number;
    rttMs: number;
    queueMs: number;
    tailMs: number;
    exitMs?: number;
    afterExitMs?: number;
  };
}

/** An exit attached at a cut: what it adds to the head and how often it answers. */
export interface ExitCost {
  cut: string;
  hash: string;
  exitMs: number;
  rate: number;
}

export interface CutCost {
  id: string;
  bytes: Record<Precision, number>;
  /** This robot's measured head time for the cut. */
  headMs: number;
  /** Head time per boundary precision where measured (quantizing in-graph costs a little). */
  headMsAt?: Partial<Record<Precision, number>>;
  /** This robot's tail time for the cut, where known (plans that finish an exit's misses here). */
  localTailMs?: number;
}

export interface PeerOffer {
  peer: string;
  /** Bytes per ms and round trip, from the link estimator. */
  bandwidth: number;
  rttMs: number;
  /** Requests queued on the peer (advert) and its measured times. */
  queue: number;
  wholeMs: number;
  tailMs: Record<string, number>;
}

export interface PlanInput {
  localWholeMs: number;
  /** Requests already queued on this robot. */
  localQueue: number;
  inputBytes: number;
  outputBytes: number;
  cuts: CutCost[];
  peers: PeerOffer[];
  precisions: Precision[];
  exits?: ExitCost[];
}

/**
 * All candidate plans, fastest first: all local; full offload to each peer; and every
 * (cut, peer, precision) split. latency = head + bytes/bandwidth + rtt + queue + tail, with
 * the output coming back over the same link (Neurosurgeon-style, with precision as in DynO).
 * With exits, each exit's cut also gives a plan that finishes its misses locally, and every
 * split at that cut a twin with the exit: exit, cut, peer and precision are chosen together
 * (as SAC-D and SPINN do), on the mean latency the exit's measured rate predicts.
 */
export function rankPlans(input: PlanInput): Plan[] {
  const plans: Plan[] = [];
  const localQueueMs = input.localQueue * input.localWholeMs;
  plans.push({
    kind: 'local',
    precision: 'fp32',
    predictedMs: localQueueMs + input.localWholeMs,
    breakdown: { headMs: 0, transferMs: 0, rttMs: 0, queueMs: localQueueMs, tailMs: input.localWholeMs },
  });
  for (const p of input.peers) {
    const bw = Math.max(p.bandwidth, 1e-6);
    const queueMs = p.queue * p.wholeMs;
    const back = input.outputBytes / bw;
    plans.push({
      kind: 'offload',
      peer: p.peer,
      cut: 'input',
      precision: 'fp32',
      predictedMs: input.inputBytes / bw + back + p.rttMs + queueMs + p.wholeMs,
      breakdown: { headMs: 0, transferMs: input.inputBytes / bw + back, rttMs: p.rttMs, queueMs, tailMs: p.wholeMs },
    });
    for (const cut of input.cuts) {
      const tailMs = p.tailMs[cut.id];
      if (tailMs === undefined) continue;
      for (const precision of input.precisions) {
        const transferMs = cut.bytes[precision] / bw + back;
        const headMs = cut.headMsAt?.[precision] ?? cut.headMs;
        plans.push({
          kind: 'split',
          peer: p.peer,
          cut: cut.id,
          precision,
          predictedMs: localQueueMs + headMs + transferMs + p.rttMs + queueMs + tailMs,
          breakdown: { headMs: localQueueMs + headMs, transferMs, rttMs: p.rttMs, queueMs, tailMs },
        });
      }
    }
  }
  for (const exit of input.exits ?? []) {
    const cut = input.cuts.find((c) => c.id === exit.cut);
    if (!cut) continue;
    const withExit = (plan: Plan, headMs: number): Plan => {
      const afterExitMs = plan.predictedMs - localQueueMs - headMs;
      return {
        ...plan,
        exit: { hash: exit.hash, rate: exit.rate },
        predictedMs: localQueueMs + headMs + exit.exitMs + (1 - exit.rate) * afterExitMs,
        breakdown: { ...plan.breakdown, exitMs: exit.exitMs, afterExitMs },
      };
    };
    if (cut.localTailMs !== undefined) {
      const headMs = cut.headMsAt?.fp32 ?? cut.headMs;
      const local: Plan = {
        kind: 'local',
        cut: cut.id,
        precision: 'fp32',
        predictedMs: localQueueMs + headMs + cut.localTailMs,
        breakdown: { headMs: localQueueMs + headMs, transferMs: 0, rttMs: 0, queueMs: 0, tailMs: cut.localTailMs },
      };
      plans.push(withExit(local, headMs));
    }
    for (const plan of plans.filter((p) => p.kind === 'split' && p.cut === cut.id && !p.exit))
      plans.push(withExit(plan, cut.headMsAt?.[plan.precision] ?? cut.headMs));
  }
  return plans.sort((a, b) => a.predictedMs - b.predictedMs);
}
