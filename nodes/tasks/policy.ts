import { type FleetState, isExcluded, taskContext } from '../../contracts/fleet-state.js';
import {
  type TaskState,
  assignedForFinal,
  countedResults,
  executorBudget,
  quorumSize,
  resultsAgree,
  volunteerRank,
} from '../../contracts/tasks.js';
import type { Hex } from '../../protocol/bytes.js';

/**
 * When robots act on a logged task that has no decision yet: the poster assigns more executors,
 * and when it does not (gone, or cut off), members volunteer in the order volunteerRank gives.
 * Pure functions of the log's state and a robot's own clock readings, so the robots and the
 * property test share them.
 */
export const isDecided = (t: TaskState | undefined): boolean => t?.status === 'final' || t?.status === 'overturned';

/** The most counted results that agree with one another. */
export function bestAgreement(state: FleetState, t: TaskState): number {
  const counted = countedResults(taskContext(state), t);
  let best = 0;
  for (const c of counted) best = Math.max(best, counted.filter((r) => resultsAgree(c, r)).length);
  return best;
}

/**
 * How many executors the poster should add to an undecided task it has waited on for its
 * timeout: enough for a final decision's count assigned (assignedForFinal), else enough that f + 1
 * could agree if the new ones answer
 * as the best group did; at least one, never past the budget.
 */
export function executorsWanted(state: FleetState, t: TaskState): number {
  const room = executorBudget(t.f) - t.executors.length;
  if (room <= 0) return 0;
  const full = assignedForFinal(taskContext(state), t);
  const need = t.executors.length < full ? full - t.executors.length : quorumSize(t.f) - bestAgreement(state, t);
  return Math.min(room, Math.max(1, need));
}

/**
 * This robot's place in the queue of volunteers for `t` (0 goes first), or -1 when it may not
 * volunteer: it posted the task, is assigned already, is not an eligible member, or the budget
 * is spent.
 */
export function volunteerPosition(state: FleetState, t: TaskState, self: Hex): number {
  if (isDecided(t) || t.poster === self || t.executors.includes(self)) return -1;
  if (!state.members.has(self) || isExcluded(state, self)) return -1;
  if (t.executors.length >= executorBudget(t.f)) return -1;
  const queue = [...state.members]
    .filter((m) => m !== t.poster && !t.executors.includes(m) && !isExcluded(state, m))
    .map((m) => ({ m, rank: volunteerRank(t.task, m) }))
    .sort((a, b) => (a.rank < b.rank ? -1 : 1));
  return queue.findIndex((x) => x.m === self);
}

/** How long after the task last changed (as this robot saw it) the volunteer at `position` steps in. */
export function volunteerDelayMs(t: TaskState, position: number, baseMs: number): number {
  return Math.max(baseMs, 2 * t.timeout) + position * t.timeout;
}
