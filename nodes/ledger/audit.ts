import { type FleetState, type LogItem, apply, emptyState, taskContext } from '../../contracts/fleet-state.js';
import {
  type TaskState,
  type TaskStatus,
  countedResults,
  assignedForFinal,
  quorumSize,
  resultsAgree,
} from '../../contracts/tasks.js';
import { RobomeshError } from '../../protocol/errors.js';
import { type DecodedEntry, EntryError, type Hex, decodeEntry, fromHex, toHex } from '../../protocol/log-entry.js';
import { MerkleTree, verifyInclusion } from '../../protocol/merkle.js';
import type { AnchorChain } from './anchor-chain.js';
import { IotaTxError, iotaAddressOf, readAnchorTx } from './iota-tx.js';
import type { Ledger } from './ledger.js';

/**
 * The evidence for one task's result, self-contained: the signed entries (genesis, admissions,
 * task, assignments, results), each entry's Merkle path to an anchored root, and the anchor entry
 * carrying the signed IOTA transaction that committed that root. A third party verifies it with
 * this file alone; an IOTA endpoint adds the check that the transaction is final on chain.
 */
export interface AuditProof {
  format: 'robomesh-audit-proof/2';
  task: string;
  /** Hex of each entry's canonical bytes; the anchor entry last. */
  entries: string[];
  /** For every entry but the anchor, in the same order: its leaf index and sibling hashes. */
  paths: { index: number; siblings: string[] }[];
  decision: ProofDecision;
}

/** What a proof claims its entries decide: the task's state, its answer and who agreed. */
export interface ProofDecision {
  status: TaskStatus;
  digest?: Hex;
  executors?: Hex[];
  /** The provisional answer, when there was one (an overturned task shows both). */
  provisional?: { digest: Hex; executors: Hex[] };
}

export function decisionOf(t: TaskState): ProofDecision {
  const answer = t.decision ?? t.provisional;
  return {
    status: t.status,
    ...(answer ? { digest: answer.digest, executors: answer.executors } : {}),
    ...(t.decision && t.provisional
      ? { provisional: { digest: t.provisional.digest, executors: t.provisional.executors } }
      : {}),
  };
}

/** Why a task is in its state, in words (for `audit result`). */
export function explainTask(state: FleetState, t: TaskState): string {
  const n = assignedForFinal(taskContext(state), t);
  const q = quorumSize(t.f);
  const counted = countedResults(taskContext(state), t);
  switch (t.status) {
    case 'open':
      return 'posted, nobody assigned yet';
    case 'assigned': {
      let best = 0;
      for (const c of counted) best = Math.max(best, counted.filter((r) => resultsAgree(c, r)).length);
      return (
        `${t.executors.length} executor(s) assigned, ${counted.length} ` +
        `counted result(s); at most ${best} agree, ${q} needed`
      );
    }
    case 'provisional': {
      const answer =
        t.provisional!.executors.length >= q
          ? `${t.provisional!.executors.length} agreeing results`
          : "the poster's own run";
      return (
        `provisional: only ${t.executors.length} executor(s) assigned ` +
        `(a final decision needs ${n}); the answer is ${answer}`
      );
    }
    case 'final':
      return (
        `final: ${t.decision!.executors.length} of ${t.decision!.assigned} assigned ` +
        `executors agree (f = ${t.f}: ${q} agreeing of at least ${n} assigned)`
      );
    case 'overturned':
      return (
        `overturned: the final answer (${t.decision!.executors.length} agreeing of ${t.decision!.assigned} ` +
        `assigned) disagrees with the provisional one taken with ${t.provisional!.assigned} assigned`
      );
  }
}

export type AuditErrorCode =
  | 'BAD_ANCHOR'
  | 'BAD_ANCHOR_TX'
  | 'BAD_FORMAT'
  | 'BAD_INCLUSION'
  | 'DECISION_MISMATCH'
  | 'ENTRY_BAD_SIGNATURE'
  | 'ENTRY_MALFORMED'
  | 'ENTRY_MISSING_PARENTS'
  | 'ENTRY_NO_SIGNER'
  | 'ENTRY_OVERSIZE'
  | 'ENTRY_UNKNOWN_AUTHOR'
  | 'ENTRY_WRONG_CLOCK'
  | 'ENTRY_WRONG_SEQUENCE'
  | 'FOREIGN_ENTRY'
  | 'NOT_ANCHORED'
  | 'NOT_FINAL'
  | 'NOT_ON_CHAIN'
  | 'TX_FAILED'
  | 'NO_GENESIS'
  | 'NO_TASK'
  | 'UNKNOWN_TASK';

export class AuditError extends RobomeshError<AuditErrorCode> {
  constructor(code: AuditErrorCode, message: string, options?: ErrorOptions) {
    super(code, message, options);
  }
}

export interface AuditReport {
  task: string;
  fleet: string;
  poster: Hex;
  f: number;
  assignments: { by: Hex; added: Hex[]; id: Hex; kind: 'poster' | 'volunteer' }[];
  /** Every result: counted or not, and whether it agrees with the answer (final, else provisional). */
  results: { author: Hex; digest: Hex; id: Hex; counted: boolean; agrees?: boolean }[];
  decision: ProofDecision;
  why: string;
  merkle: { root: Hex; count: number; entries: number };
  anchor: { tx: string; checkpoint: number; sender: string; by: Hex; resultCommitted: boolean };
  live: { checked: false; reason: string } | { checked: true; checkpoint?: number };
}

const RELEVANT = new Set(['task', 'assign', 'claim', 'result']);

/** Builds the proof for `task` from a ledger, against the first anchor whose range holds all of it. */
export function buildProof(ledger: Ledger, task: string): AuditProof {
  const t = ledger.state.tasks.get(task);
  if (!t) throw new AuditError('UNKNOWN_TASK', `no task ${task} in this log`);
  const all = ledger.ids();
  const items = new Map<Hex, DecodedEntry>();
  const decoded = (id: Hex): DecodedEntry => {
    let d = items.get(id);
    if (!d) items.set(id, (d = decodeEntry(ledger.get(id)!)));
    return d;
  };
  const wanted: Hex[] = [];
  for (const id of all) {
    const p = decoded(id).entry.payload;
    if (
      p.type === 'genesis' ||
      p.type === 'admit' ||
      p.type === 'revoke' ||
      (RELEVANT.has(p.type) && 'task' in p && p.task === task)
    )
      wanted.push(id);
  }
  for (const a of ledger.state.anchors) {
    if (!a.heads.every((h) => ledger.has(h))) continue;
    const ids = ledger.ancestry(a.heads);
    const have = new Set(ids);
    if (!wanted.every((id) => have.has(id))) continue;
    const tree = new MerkleTree(ids.map(fromHex));
    const position = new Map(ids.map((id, i) => [id, i]));
    return {
      format: 'robomesh-audit-proof/2',
      task,
      entries: [...wanted.map((id) => toHex(decoded(id).bytes)), toHex(ledger.get(a.id)!)],
      paths: wanted.map((id) => {
        const p = tree.prove(position.get(id)!);
        return { index: p.index, siblings: p.siblings.map(toHex) };
      }),
      decision: decisionOf(t),
    };
  }
  throw new AuditError(
    'NOT_ANCHORED',
    `task ${task} is in the log but no anchor covers it yet (${ledger.state.anchors.length} anchor(s) so far)`,
  );
}

/**
 * Verifies a proof; throws AuditError naming the first thing that does not hold. With a chain,
 * also checks the anchor transaction is final and emitted this root.
 */
export async function verifyProof(proof: AuditProof, chain?: AnchorChain): Promise<AuditReport> {
  const bad = (code: AuditErrorCode, why: string): never => {
    throw new AuditError(code, why);
  };
  if (proof?.format !== 'robomesh-audit-proof/2')
    bad('BAD_FORMAT', 'not a robomesh audit proof (format robomesh-audit-proof/2)');
  if (!Array.isArray(proof.entries) || proof.entries.length < 2)
    bad('BAD_FORMAT', 'a proof holds at least one entry and the anchor');
  if (!Array.isArray(proof.paths) || proof.paths.length !== proof.entries.length - 1)
    bad('BAD_FORMAT', 'one Merkle path per entry');
  const entries = proof.entries.map((hex, i) => {
    if (typeof hex !== 'string' || !/^([0-9a-f]{2})+$/.test(hex)) bad('BAD_FORMAT', `entry ${i} is not hex`);
    try {
      return decodeEntry(fromHex(hex));
    } catch (err) {
      if (err instanceof EntryError) return bad(`ENTRY_${err.code}` as AuditErrorCode, `entry ${i}: ${err.message}`);
      throw err;
    }
  });
  const anchorEntry = entries.pop()!;
  const anchor = anchorEntry.entry.payload;
  if (anchor.type !== 'anchor') return bad('BAD_ANCHOR', 'the last entry is not an anchor');

  const root = fromHex(anchor.root);
  entries.forEach((d, i) => {
    const path = proof.paths[i];
    if (
      !path ||
      !Array.isArray(path.siblings) ||
      !path.siblings.every((s) => typeof s === 'string' && /^[0-9a-f]{64}$/.test(s))
    )
      bad('BAD_FORMAT', `path ${i} is malformed`);
    if (
      !verifyInclusion(d.id, { index: path.index, count: anchor.count, siblings: path.siblings.map(fromHex) }, root)
    ) {
      bad(
        'BAD_INCLUSION',
        `entry ${i} (${d.idHex.slice(0, 12)}…) is not at leaf ` +
          `${path.index} of the anchored root ${anchor.root.slice(0, 12)}…`,
      );
    }
  });

  // Replay the contracts over the included entries in log order.
  const state: FleetState = emptyState();
  const ordered = [...entries].sort((a, b) => a.entry.lamport - b.entry.lamport || (a.idHex < b.idHex ? -1 : 1));
  for (const d of ordered) apply(state, toItem(d));
  if (!state.genesis) bad('NO_GENESIS', 'the proof lacks the fleet genesis entry');
  const t = state.tasks.get(proof.task);
  if (!t) return bad('NO_TASK', `the proof does not hold task ${proof.task}`);
  if (ordered.some((d) => 'task' in d.entry.payload && d.entry.payload.task !== proof.task))
    bad('FOREIGN_ENTRY', 'the proof holds entries of another task');
  const claimed = proof.decision;
  const derived = decisionOf(t);
  const same = sameDecision(claimed, derived);
  if (!same) {
    bad(
      'DECISION_MISMATCH',
      `the proof claims ${JSON.stringify(claimed)} but its entries decide ${JSON.stringify(derived)}`,
    );
  }

  // The anchor: signed by a member, its IOTA transaction signed by a member's key and committing this root.
  const anchorBy = toHex(anchorEntry.entry.author);
  if (!state.members.has(anchorBy)) bad('BAD_ANCHOR', 'the anchor entry is not by a fleet member');
  let tx;
  try {
    tx = await readAnchorTx(anchor.txBytes, anchor.txSig);
  } catch (err) {
    if (err instanceof IotaTxError) return bad('BAD_ANCHOR_TX', err.message);
    throw err;
  }
  if (tx.digest !== anchor.tx)
    bad('BAD_ANCHOR_TX', `transaction bytes hash to ${tx.digest}, the anchor names ${anchor.tx}`);
  if (toHex(tx.root) !== anchor.root || tx.count !== anchor.count)
    bad('BAD_ANCHOR_TX', 'the transaction commits another root or count than the anchor entry');
  const members = new Map([...state.members].map((m) => [iotaAddressOf(fromHex(m)), m]));
  if (!members.has(tx.sender)) bad('BAD_ANCHOR_TX', `transaction sender ${tx.sender} is not a fleet member's address`);
  const committed = tx.results.find((r) => r.task === proof.task);
  if (committed && toHex(committed.digest) !== derived.digest)
    bad('BAD_ANCHOR_TX', 'the transaction commits another digest for this task');

  let live: AuditReport['live'] = { checked: false, reason: 'no IOTA endpoint given' };
  if (chain) {
    const onChain = await chain.lookup(anchor.tx);
    if (!onChain)
      bad(
        'NOT_ON_CHAIN',
        `this IOTA node does not know transaction ${anchor.tx} ` +
          '(a pruning full node forgets old transactions: ask an archive node)',
      );
    if (onChain!.failure) bad('TX_FAILED', `transaction ${anchor.tx} executed and failed: ${onChain!.failure.error}`);
    if (onChain!.checkpoint === undefined) bad('NOT_FINAL', `transaction ${anchor.tx} is not in a checkpoint yet`);
    if (
      !onChain!.anchors.some((a) => a.packageId === tx.packageId && a.root === anchor.root && a.count === anchor.count)
    )
      bad('NOT_ON_CHAIN', `transaction ${anchor.tx} emitted no Anchored event for root ${anchor.root}`);
    live = { checked: true, checkpoint: onChain!.checkpoint };
  }
  return {
    ...taskEvidence(state, t),
    merkle: { root: anchor.root, count: anchor.count, entries: entries.length },
    anchor: {
      tx: anchor.tx,
      checkpoint: anchor.checkpoint,
      sender: tx.sender,
      by: anchorBy,
      resultCommitted: committed !== undefined,
    },
    live,
  };
}

const toItem = (d: DecodedEntry): LogItem => ({
  id: d.idHex,
  author: toHex(d.entry.author),
  seq: d.entry.seq,
  lamport: d.entry.lamport,
  payload: d.entry.payload,
});

/** The task's part of an audit report: who was assigned, every result, the decision and why. */
export function taskEvidence(state: FleetState, t: TaskState): Omit<AuditReport, 'merkle' | 'anchor' | 'live'> {
  const counted = new Set(countedResults(taskContext(state), t).map((r) => r.id));
  const answer = t.decision ?? t.provisional;
  return {
    task: t.task,
    fleet: state.fleet!,
    poster: t.poster,
    f: t.f,
    assignments: t.assignments.map((a) => ({ by: a.by, added: a.added, id: a.id, kind: a.kind })),
    results: t.results.map((r) => ({
      author: r.author,
      digest: r.digest,
      id: r.id,
      counted: counted.has(r.id),
      ...(answer ? { agrees: resultsAgree(answer, r) } : {}),
    })),
    decision: decisionOf(t),
    why: explainTask(state, t),
  };
}

function sameDecision(a: ProofDecision | undefined, b: ProofDecision): boolean {
  const list = (x: Hex[] | undefined): string => (x ?? []).join(',');
  return (
    a?.status === b.status &&
    a.digest === b.digest &&
    list(a.executors) === list(b.executors) &&
    a.provisional?.digest === b.provisional?.digest &&
    list(a.provisional?.executors) === list(b.provisional?.executors)
  );
}
