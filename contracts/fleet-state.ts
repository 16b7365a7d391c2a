import type { Hex, Payload } from '../protocol/log-entry.js';

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

export interface Assignment {
  id: Hex;
  by: Hex;
  lamport: number;
  executors: Hex[];
}

export interface ResultRecord {
  id: Hex;
  author: Hex;
  lamport: number;
  digest: Hex;
  values: number[];
}

export interface TaskState {
  task: string;
  poster: Hex;
  postedId: Hex;
  postedAt: number;
  model: Hex;
  input: Hex;
  k: number;
  timeout: number;
  /** The assignment in force: the first in log order, or a reassignment made after a timeout. */
  assignment?: Assignment;
  /** Assignments that lost (made concurrently in another partition, or replaced): kept on record. */
  superseded: Assignment[];
  claims: Hex[];
  /** Every result posted, counted or not (the losing side's work stays on record). */
  results: ResultRecord[];
  status: 'open' | 'assigned' | 'accepted';
  accepted?: { digest: Hex; values: number[]; executors: Hex[]; at: Hex };
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
  anchors: { root: Hex; count: number; heads: Hex[]; tx: string; checkpoint: number; author: Hex; id: Hex }[];
  /** Entries that had no effect, and why (authors not admitted, rules broken). */
  ignored: { id: Hex; reason: string }[];
  applied: number;
}

export const REPUTATION = {
  equivocation: -100,
  losingResult: -10,
  acceptedResult: 1,
  flaggedMap: -100,
  /** At or below this a robot is excluded from assignments and quorums. */
  excludeAt: -50,
};

/** Values (fixed point, 1e-6 units) agree when every pair differs by at most this: 1e-3. */
export const RESULT_TOLERANCE = 1000;

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
    tasks: new Map(
      [...s.tasks].map(([k, t]) => [
        k,
        { ...t, superseded: [...t.superseded], claims: [...t.claims], results: [...t.results] },
      ]),
    ),
    reputation: new Map(s.reputation),
    slots: new Map([...s.slots].map(([author, ids]) => [author, ids.slice()])),
    equivocations: [...s.equivocations],
    tiles: new Map(s.tiles),
    flags: new Map([...s.flags].map(([k, v]) => [k, new Set(v)])),
    flagged: [...s.flagged],
    anchors: [...s.anchors],
    ignored: [...s.ignored],
  };
}

export const isExcluded = (s: FleetState, robot: Hex): boolean =>
  (s.reputation.get(robot) ?? 0) <= REPUTATION.excludeAt;

export const flagQuorum = (s: FleetState): number => Math.floor((s.members.size - 1) / 3) + 1;

const bump = (s: FleetState, robot: Hex, delta: number): void =>
  void s.reputation.set(robot, (s.reputation.get(robot) ?? 0) + delta);

export function agree(a: ResultRecord, b: ResultRecord): boolean {
  if (a.digest === b.digest) return true;
  if (a.values.length === 0 || a.values.length !== b.values.length) return false;
  return a.values.every((v, i) => Math.abs(v - b.values[i]) <= RESULT_TOLERANCE);
}

/** Applies one entry (the next in total order) to the state, in place. */
export function apply(s: FleetState, e: LogItem): void {
  s.applied++;
  const ignore = (reason: string): void => void s.ignored.push({ id: e.id, reason });
  let ids = s.slots.get(e.author);
  if (!ids) s.slots.set(e.author, (ids = []));
  const first = ids[e.seq];
  if (first !== undefined) {
    // Same (author, seq), another entry: evidence of equivocation. Only the first one counts.
    s.equivocations.push({ author: e.author, seq: e.seq, ids: [first, e.id] });
    bump(s, e.author, REPUTATION.equivocation);
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
      if (p.type === 'admit') s.members.add(p.member);
      else {
        s.members.delete(p.member);
        s.admins.delete(p.member);
      }
      return;
    case 'task': {
      if (isExcluded(s, e.author)) return ignore('author excluded');
      if (s.tasks.has(p.task)) return ignore('task id taken');
      s.tasks.set(p.task, {
        task: p.task,
        poster: e.author,
        postedId: e.id,
        postedAt: e.lamport,
        model: p.model,
        input: p.input,
        k: p.k,
        timeout: p.timeout,
        superseded: [],
        claims: [],
        results: [],
        status: 'open',
      });
      return;
    }
    case 'assign': {
      const t = s.tasks.get(p.task);
      if (!t) return ignore('unknown task');
      if (e.author !== t.poster && !s.admins.has(e.author)) return ignore('only the poster or an admin assigns');
      if (p.executors.some((x) => !s.members.has(x) || isExcluded(s, x))) return ignore('executor not eligible');
      if (new Set(p.executors).size < t.k) return ignore(`needs ${t.k} distinct executors`);
      const a: Assignment = { id: e.id, by: e.author, lamport: e.lamport, executors: [...p.executors].sort() };
      if (t.status === 'accepted') {
        t.superseded.push(a);
        return;
      }
      // First assignment in log order wins; a later one replaces it only after the timeout.
      if (!t.assignment) t.assignment = a;
      else if (e.lamport > t.assignment.lamport + t.timeout) {
        t.superseded.push(t.assignment);
        t.assignment = a;
      } else t.superseded.push(a);
      t.status = 'assigned';
      tryQuorum(s, t, e.id);
      return;
    }
    case 'claim': {
      const t = s.tasks.get(p.task);
      if (!t) return ignore('unknown task');
      if (!t.claims.includes(e.author)) t.claims.push(e.author);
      return;
    }
    case 'result': {
      const t = s.tasks.get(p.task);
      if (!t) return ignore('unknown task');
      t.results.push({ id: e.id, author: e.author, lamport: e.lamport, digest: p.digest, values: p.values });
      tryQuorum(s, t, e.id);
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
        bump(s, p.robot, REPUTATION.flaggedMap);
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

/**
 * A result is accepted when k results from distinct, eligible executors of the assignment in
 * force agree (same digest, or every value within RESULT_TOLERANCE). Executors whose results
 * disagree with the accepted one lose reputation; agreeing ones gain a little.
 */
function tryQuorum(s: FleetState, t: TaskState, at: Hex): void {
  if (t.status !== 'assigned' || !t.assignment) return;
  const executors = new Set(t.assignment.executors);
  const counted = new Map<Hex, ResultRecord>();
  for (const r of t.results) {
    if (executors.has(r.author) && !isExcluded(s, r.author) && !counted.has(r.author)) counted.set(r.author, r);
  }
  for (const candidate of counted.values()) {
    const agreeing = [...counted.values()].filter((r) => agree(candidate, r));
    if (agreeing.length >= t.k) {
      t.status = 'accepted';
      t.accepted = {
        digest: candidate.digest,
        values: candidate.values,
        executors: agreeing.map((r) => r.author).sort(),
        at,
      };
      for (const r of counted.values())
        bump(s, r.author, agree(candidate, r) ? REPUTATION.acceptedResult : REPUTATION.losingResult);
      return;
    }
  }
}
