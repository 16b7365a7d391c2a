import type { Hex, Payload } from '../protocol/log-entry.js';
import {
  type TaskContext,
  type TaskState,
  REPUTATION,
  addResult,
  assignTask,
  cloneTask,
  postTask,
  reevaluate,
} from './tasks.js';

export { REPUTATION, type TaskState };

/**
 * The fleet's decisions as a pure, deterministic fold over the log's total order. Two robots
 * holding the same entries hold the same state, whatever order the entries arrived in.
 */
export interface LogItem {
  id: Hex;
  author: Hex;
  seq: number;
  lamport: number;
  payload: Payload;
}

export interface FleetState {
  fleet?: string;
  genesis?: Hex;
  members: Set<Hex>;
  admins: Set<Hex>;
  tasks: Map<string, TaskState>;
  reputation: Map<Hex, number>;
  /**
   * Per author, by seq: the first entry id in log order; a second id is equivocation. Arrays,
   * since an author's seqs run 1, 2, 3… without gaps (the ledger refuses a gap): a snapshot
   * copies each author's with one slice instead of re-inserting every (author, seq) key.
   */
  slots: Map<Hex, Hex[]>;
  equivocations: { author: Hex; seq: number; ids: [Hex, Hex] }[];
  tiles: Map<string, { author: Hex; version: number; digest: Hex; id: Hex; seq: number }>;
  /** Map flags: robot → the distinct members that flagged it. */
  flags: Map<Hex, Set<Hex>>;
  /** Robots excluded by enough flags (their map contributions are dropped everywhere). */
  flagged: Hex[];
  /** Offence reports: robot → the distinct members that reported it. */
  offences: Map<Hex, Set<Hex>>;
  /** Robots excluded by enough offence reports. */
  offenders: Hex[];
  anchors: { root: Hex; count: number; heads: Hex[]; tx: string; checkpoint: number; author: Hex; id: Hex }[];
  /** Entries that had no effect, and why (authors not admitted, rules broken). */
  ignored: { id: Hex; reason: string }[];
  applied: number;
}

export function emptyState(): FleetState {
  return {
    members: new Set(),
    admins: new Set(),
    tasks: new Map(),
    reputation: new Map(),
    slots: new Map(),
    equivocations: [],
    tiles: new Map(),
    flags: new Map(),
    flagged: [],
    offences: new Map(),
    offenders: [],
    anchors: [],
    ignored: [],
    applied: 0,
  };
}

export function cloneState(s: FleetState): FleetState {
  return {
    ...s,
    members: new Set(s.members),
    admins: new Set(s.admins),
    tasks: new Map([...s.tasks].map(([k, t]) => [k, cloneTask(t)])),
    reputation: new Map(s.reputation),
    slots: new Map([...s.slots].map(([author, ids]) => [author, ids.slice()])),
    equivocations: [...s.equivocations],
    tiles: new Map(s.tiles),
    flags: new Map([...s.flags].map(([k, v]) => [k, new Set(v)])),
    flagged: [...s.flagged],
    offences: new Map([...s.offences].map(([k, v]) => [k, new Set(v)])),
    offenders: [...s.offenders],
    anchors: [...s.anchors],
    ignored: [...s.ignored],
  };
}

export const isExcluded = (s: FleetState, robot: Hex): boolean =>
  (s.reputation.get(robot) ?? 0) <= REPUTATION.excludeAt;

export const flagQuorum = (s: FleetState): number => Math.floor((s.members.size - 1) / 3) + 1;

/** Robots whose eligibility changed while applying the current entry (excluded, admitted, revoked). */
let eligibilityChanged = false;

const bump = (s: FleetState, robot: Hex, delta: number): void => {
  const before = isExcluded(s, robot);
  s.reputation.set(robot, Math.min(REPUTATION.maxCredit, (s.reputation.get(robot) ?? 0) + delta));
  if (isExcluded(s, robot) !== before) eligibilityChanged = true;
};

/**
 * Proof of Byzantine behaviour (an equivocation, a map flagged by f + 1, offences reported by
 * f + 1): earned credit does not count against it, so a conviction always excludes.
 */
const convict = (s: FleetState, robot: Hex, penalty: number): void =>
  bump(s, robot, penalty - Math.max(0, s.reputation.get(robot) ?? 0));

/** Applies one entry (the next in total order) to the state, in place. */
export function apply(s: FleetState, e: LogItem): void {
  eligibilityChanged = false;
  applyEntry(s, e);
  // Who may execute changed: undecided tasks are judged again (one may now have enough eligible
  // executors assigned, or lose a result that counted). Rare, and bounded by the members: each
  // pass can only exclude more robots.
  for (let pass = 0; eligibilityChanged && pass <= s.members.size + 1; pass++) {
    eligibilityChanged = false;
    const ctx = taskContext(s);
    for (const t of s.tasks.values()) reevaluate(ctx, t, e.id);
  }
}

function applyEntry(s: FleetState, e: LogItem): void {
  s.applied++;
  const ignore = (reason: string): void => void s.ignored.push({ id: e.id, reason });
  let ids = s.slots.get(e.author);
  if (!ids) s.slots.set(e.author, (ids = []));
  const first = ids[e.seq];
  if (first !== undefined) {
    // Same (author, seq), another entry: evidence of equivocation. Only the first one counts.
    s.equivocations.push({ author: e.author, seq: e.seq, ids: [first, e.id] });
    convict(s, e.author, REPUTATION.equivocation);
    return ignore('equivocation');
  }
  ids[e.seq] = e.id;
  const p = e.payload;
  if (p.type === 'genesis') {
    if (s.genesis) return ignore('a fleet has one genesis');
    s.genesis = e.id;
    s.fleet = p.fleet;
    for (const m of [...p.members, ...p.admins, e.author]) s.members.add(m);
    for (const a of [...p.admins, e.author]) s.admins.add(a);
    return;
  }
  if (!s.genesis) return ignore('before genesis');
  if (!s.members.has(e.author)) return ignore('author not admitted');
  switch (p.type) {
    case 'admit':
    case 'revoke':
      if (!s.admins.has(e.author)) return ignore('only admins change membership');
      eligibilityChanged = true;
      if (p.type === 'admit') s.members.add(p.member);
      else {
        s.members.delete(p.member);
        s.admins.delete(p.member);
      }
      return;
    case 'task': {
      if (isExcluded(s, e.author)) return ignore('author excluded');
      if (s.tasks.has(p.task)) return ignore('task id taken');
      const posted = postTask(e, p);
      if ('ignored' in posted) return ignore(posted.ignored);
      s.tasks.set(p.task, posted.task);
      return;
    }
    case 'assign': {
      const t = s.tasks.get(p.task);
      if (!t) return ignore('unknown task');
      const why = assignTask(taskContext(s), t, e, p.executors);
      if (why) ignore(why);
      return;
    }
    case 'claim':
      // Claims decide nothing (assignments do); one naming no task is recorded as ignored.
      if (!s.tasks.has(p.task)) ignore('unknown task');
      return;
    case 'result': {
      const t = s.tasks.get(p.task);
      if (!t) return ignore('unknown task');
      addResult(taskContext(s), t, {
        id: e.id,
        author: e.author,
        lamport: e.lamport,
        digest: p.digest,
        // A plain copy: a parsed entry's bytes may be a Buffer view, which serialises differently.
        fingerprint: Uint8Array.from(p.fingerprint),
      });
      return;
    }
    case 'tile': {
      const key = `${p.tile}/${e.author}`;
      const prev = s.tiles.get(key);
      if (!prev || p.version > prev.version)
        s.tiles.set(key, { author: e.author, version: p.version, digest: p.digest, id: e.id, seq: e.seq });
      return;
    }
    case 'flag': {
      if (p.robot === e.author) return ignore('a robot does not flag itself');
      if (isExcluded(s, e.author)) return ignore('author excluded');
      const by = s.flags.get(p.robot) ?? new Set<Hex>();
      by.add(e.author);
      s.flags.set(p.robot, by);
      // f + 1 distinct members (f = ⌊(n − 1) / 3⌋ Byzantine tolerated): at least one honest robot agrees.
      if (!s.flagged.includes(p.robot) && by.size >= flagQuorum(s)) {
        s.flagged.push(p.robot);
        convict(s, p.robot, REPUTATION.flaggedMap);
      }
      return;
    }
    case 'offence': {
      if (p.robot === e.author) return ignore('a robot does not report itself');
      if (isExcluded(s, e.author)) return ignore('author excluded');
      const by = s.offences.get(p.robot) ?? new Set<Hex>();
      by.add(e.author);
      s.offences.set(p.robot, by);
      // Like map flags: f + 1 distinct reporters, so at least one honest robot saw it.
      if (!s.offenders.includes(p.robot) && by.size >= flagQuorum(s)) {
        s.offenders.push(p.robot);
        convict(s, p.robot, REPUTATION.offender);
      }
      return;
    }
    case 'anchor':
      s.anchors.push({
        root: p.root,
        count: p.count,
        heads: p.heads,
        tx: p.tx,
        checkpoint: p.checkpoint,
        author: e.author,
        id: e.id,
      });
      return;
  }
}

/** The task contract's view of the fleet (members, admins, reputation). */
export const taskContext = (s: FleetState): TaskContext => ({
  members: s.members,
  eligibleCount: () => {
    let n = 0;
    for (const m of s.members) if (!isExcluded(s, m)) n++;
    return n;
  },
  admins: s.admins,
  isExcluded: (robot) => isExcluded(s, robot),
  bump: (robot, delta) => bump(s, robot, delta),
});
