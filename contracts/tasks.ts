import { createHash } from 'node:crypto';
import type { Hex } from '../protocol/bytes.js';
import type { Payload } from '../protocol/log-payloads.js';
import { fingerprintsAgree } from '../protocol/result-fingerprint.js';

/**
 * The task contract: how logged inference tasks are assigned and decided, as a pure function of
 * the log's total order (every robot holding the same entries decides the same).
 *
 * A task states f, the number of lying executors it must survive.
 * - Assignment. The poster (or an admin) assigns any eligible members; any other eligible member
 *   may volunteer itself alone. Assignments add up, to at most executorBudget(f) = 4f + 1 distinct
 *   executors (the 2f + 1 a task needs, and 2f more to replace liars, stalls and departures).
 *   Who volunteers first is coordination, not safety (volunteerRank); the contract checks only
 *   eligibility and the budget.
 * - Decision. f + 1 agreeing results (fingerprintsAgree) from distinct assigned executors that
 *   are not excluded decide the task. With at most f liars only one answer can gather f + 1
 *   agreeing executors, so the answer decided does not depend on the order results arrive in:
 *   a result withheld and released late (with an early clock) can change which entry decided,
 *   never what.
 * - Final or provisional. A decision taken while at least 2f + 1 executors are assigned (or every
 *   eligible member, when the fleet has fewer) is final. With fewer assigned (a requester that
 *   reaches fewer peers, in a partition) the task gets a provisional answer: f + 1 agreeing
 *   results if there are, else the poster's own result (its own run counts as one). Once enough
 *   are assigned and f + 1 agree, the task is final, or overturned when the final answer disagrees
 *   with the provisional one (both stay on record). A member that left keeps counting as eligible
 *   until an admin revokes it.
 * - Consequences. When a task becomes final every counted result is judged against the answer:
 *   agreeing executors gain REPUTATION.acceptedResult, the others lose REPUTATION.losingResult;
 *   results arriving later are judged as they come. Provisional answers judge no one.
 */
export interface TaskContext {
  members: ReadonlySet<Hex>;
  /** Members not excluded: who could be assigned. */
  eligibleCount(): number;
  admins: ReadonlySet<Hex>;
  isExcluded(robot: Hex): boolean;
  bump(robot: Hex, delta: number): void;
}

export interface Assignment {
  id: Hex;
  by: Hex;
  lamport: number;
  /** The executors this entry added (the rest of its list was assigned already or past the budget). */
  added: Hex[];
  kind: 'poster' | 'volunteer';
}

export interface TaskResult {
  id: Hex;
  author: Hex;
  lamport: number;
  digest: Hex;
  fingerprint: Uint8Array;
}

export interface TaskDecision {
  digest: Hex;
  fingerprint: Uint8Array;
  /** The executors whose counted results agree with it. */
  executors: Hex[];
  /** The entry whose arrival (in log order) made it. */
  at: Hex;
  /** Executors assigned when it was taken. */
  assigned: number;
}

export type TaskStatus = 'open' | 'assigned' | 'provisional' | 'final' | 'overturned';

/** What an executor needs to run a task: its entry's fields. */
export interface TaskRef {
  task: string;
  model: Hex;
  cut: string;
  precision: 'fp32' | 'fp16' | 'int8';
  input: Hex;
  bytes: number;
  f: number;
  timeout: number;
  /** sha256 of the chain manifest when the task is a chain's last stage. */
  chain?: Hex;
}

export interface TaskState extends TaskRef {
  poster: Hex;
  postedId: Hex;
  postedAt: number;
  assignments: Assignment[];
  /** Every executor assigned, in the order assigned. */
  executors: Hex[];
  /** Every result posted for the task, counted or not: the losing side's work stays on record. */
  results: TaskResult[];
  status: TaskStatus;
  provisional?: TaskDecision;
  decision?: TaskDecision;
  /** Executors whose result was judged against the final answer, and those that lost. */
  judged: Hex[];
  losers: Hex[];
}

export const REPUTATION = {
  equivocation: -100,
  losingResult: -10,
  acceptedResult: 1,
  flaggedMap: -100,
  /** Reported for direct-protocol offences by f + 1 members. */
  offender: -100,
  /** At or below this a robot is excluded from assignments and quorums. */
  excludeAt: -50,
  /**
   * Credit earned by accepted results stops here, so a member that worked honestly for a while
   * can afford at most (maxCredit - excludeAt) / |losingResult| = 7 lies before it is excluded.
   */
  maxCredit: 20,
};

/** Results that agree decide: f + 1 of them. */
export const quorumSize = (f: number): number => f + 1;
/** Executors a final decision needs assigned: 2f + 1. */
export const fullAssignment = (f: number): number => 2 * f + 1;
/** Executors that must be assigned for a final decision: 2f + 1, or every eligible member if fewer. */
export const assignedForFinal = (ctx: Pick<TaskContext, 'eligibleCount'>, t: { f: number }): number =>
  Math.min(fullAssignment(t.f), Math.max(1, ctx.eligibleCount()));
/** Distinct executors a task may ever have. */
export const executorBudget = (f: number): number => 4 * f + 1;

/**
 * The order in which members volunteer for a task that has no quorum: the lowest hash of
 * (task, member) first. Public and deterministic, so robots stagger their offers instead of all
 * volunteering at once.
 */
export function volunteerRank(task: string, member: Hex): string {
  return createHash('sha256').update(`robomesh-volunteer\n${task}\n${member}`).digest('hex');
}

type TaskPayload = Extract<Payload, { type: 'task' }>;

/** A new task from its entry; undefined (with the reason) when the entry cannot post one. */
export function postTask(
  e: { id: Hex; author: Hex; lamport: number },
  p: TaskPayload,
): { task: TaskState } | { ignored: string } {
  // Entries of the format before f (they stated k) may sit in old stores: they decide nothing.
  if (typeof p.f !== 'number' || typeof p.cut !== 'string') return { ignored: 'task entry of an older format' };
  return {
    task: {
      task: p.task,
      poster: e.author,
      postedId: e.id,
      postedAt: e.lamport,
      model: p.model,
      cut: p.cut,
      precision: p.precision,
      input: p.input,
      bytes: p.bytes,
      f: p.f,
      timeout: p.timeout,
      ...(p.chain === undefined ? {} : { chain: p.chain }),
      assignments: [],
      executors: [],
      results: [],
      status: 'open',
      judged: [],
      losers: [],
    },
  };
}

export function cloneTask(t: TaskState): TaskState {
  return {
    ...t,
    assignments: [...t.assignments],
    executors: [...t.executors],
    results: [...t.results],
    judged: [...t.judged],
    losers: [...t.losers],
  };
}

/** How many tasks are in each state. */
export function countTasks(tasks: Iterable<TaskState>): Record<TaskStatus, number> {
  const counts: Record<TaskStatus, number> = { open: 0, assigned: 0, provisional: 0, final: 0, overturned: 0 };
  for (const t of tasks) counts[t.status]++;
  return counts;
}

const decided = (t: TaskState): boolean => t.status === 'final' || t.status === 'overturned';

/** Applies an `assign` entry; returns why it had no effect, if it had none. */
export function assignTask(
  ctx: TaskContext,
  t: TaskState,
  e: { id: Hex; author: Hex; lamport: number },
  executors: readonly Hex[],
): string | undefined {
  if (decided(t)) return 'task already decided';
  const byPoster = e.author === t.poster || ctx.admins.has(e.author);
  if (!byPoster && (executors.length !== 1 || executors[0] !== e.author))
    return 'only the poster or an admin assigns others; a member volunteers itself alone';
  const fresh = [...new Set(executors)].filter((x) => !t.executors.includes(x));
  if (fresh.some((x) => !ctx.members.has(x) || ctx.isExcluded(x))) return 'executor not eligible';
  const room = executorBudget(t.f) - t.executors.length;
  if (room <= 0) return 'executor budget spent';
  const added = fresh.slice(0, room);
  if (added.length === 0) return 'executors already assigned';
  t.executors.push(...added);
  t.assignments.push({ id: e.id, by: e.author, lamport: e.lamport, added, kind: byPoster ? 'poster' : 'volunteer' });
  evaluate(ctx, t, e.id);
  return undefined;
}

/** Applies a `result` entry (always recorded; counted only from an assigned, eligible executor). */
export function addResult(ctx: TaskContext, t: TaskState, r: TaskResult): void {
  t.results.push(r);
  evaluate(ctx, t, r.id);
}

/** The results that count: each assigned, non-excluded executor's first one. */
export function countedResults(ctx: TaskContext, t: TaskState): TaskResult[] {
  const seen = new Set<Hex>();
  const out: TaskResult[] = [];
  for (const r of t.results) {
    if (seen.has(r.author) || !t.executors.includes(r.author) || ctx.isExcluded(r.author)) continue;
    seen.add(r.author);
    out.push(r);
  }
  return out;
}

/** Judges an undecided task again after who may execute changed (no-op for decided tasks). */
export function reevaluate(ctx: TaskContext, t: TaskState, at: Hex): void {
  if (!decided(t) && t.executors.length > 0) evaluate(ctx, t, at);
}

export const resultsAgree = (a: { digest: Hex; fingerprint: Uint8Array }, b: typeof a): boolean =>
  fingerprintsAgree(a, b);

function evaluate(ctx: TaskContext, t: TaskState, at: Hex): void {
  const counted = countedResults(ctx, t);
  if (decided(t)) return judge(ctx, t, counted);
  let quorum: { answer: TaskResult; agreeing: TaskResult[] } | undefined;
  for (const candidate of counted) {
    const agreeing = counted.filter((r) => resultsAgree(candidate, r));
    if (agreeing.length >= quorumSize(t.f)) {
      quorum = { answer: candidate, agreeing };
      break;
    }
  }
  const decision = (answer: TaskResult): TaskDecision => ({
    digest: answer.digest,
    fingerprint: answer.fingerprint,
    executors: counted
      .filter((r) => resultsAgree(answer, r))
      .map((r) => r.author)
      .sort(),
    at,
    assigned: t.executors.length,
  });
  const full = t.executors.length >= assignedForFinal(ctx, t);
  if (quorum && full) {
    t.decision = decision(quorum.answer);
    t.status = t.provisional && !resultsAgree(t.provisional, t.decision) ? 'overturned' : 'final';
    return judge(ctx, t, counted);
  }
  if (!full) {
    const answer = quorum?.answer ?? counted.find((r) => r.author === t.poster);
    if (answer) t.provisional = decision(answer);
  }
  t.status = t.provisional ? 'provisional' : t.executors.length > 0 ? 'assigned' : 'open';
}

function judge(ctx: TaskContext, t: TaskState, counted: TaskResult[]): void {
  for (const r of counted) {
    if (t.judged.includes(r.author)) continue;
    t.judged.push(r.author);
    if (resultsAgree(t.decision!, r)) ctx.bump(r.author, REPUTATION.acceptedResult);
    else {
      t.losers.push(r.author);
      ctx.bump(r.author, REPUTATION.losingResult);
    }
  }
}
