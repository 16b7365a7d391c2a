import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import type { TaskState, TaskStatus } from '../../../contracts/tasks.js';
import {
  type AnchorChain,
  IotaAnchorChain,
  iotaClientFor,
  type AuditProof,
  type AuditReport,
  AuditError,
  buildProof,
  decisionOf,
  taskEvidence,
  verifyProof,
  Ledger,
  SqliteLogStore,
} from '../../ledger/index.js';
import { robotPaths } from '../../robot/index.js';
import { UsageError } from './options.js';

export interface AuditArgs {
  store?: string;
  json?: boolean;
  out?: string;
  rpc?: string;
}

export interface TaskListArgs {
  store?: string;
  json?: boolean;
  state?: string;
  robot?: string;
  model?: string;
}

export const DEFAULT_STORE = robotPaths('robomesh-data').log;
const STATES: readonly TaskStatus[] = ['open', 'assigned', 'provisional', 'final', 'overturned'];

function chainFrom(args: AuditArgs): AnchorChain | undefined {
  const url = args.rpc ?? process.env.IOTA_RPC_URL;
  return url ? new IotaAnchorChain(iotaClientFor(url)) : undefined;
}

function withLedger<T>(path: string, use: (ledger: Ledger) => T): T {
  if (!existsSync(path)) throw new UsageError(`no log store at ${path} (give --store PATH)`);
  const store = new SqliteLogStore(path);
  try {
    return use(new Ledger(store));
  } finally {
    store.close();
  }
}

const short = (hex: string): string => `${hex.slice(0, 12)}…`;

/** `robomesh audit tasks`: the tasks in a log store, filtered, one line each (or JSON). */
export function auditTasksCommand(args: TaskListArgs): void {
  if (args.state !== undefined && !(STATES as readonly string[]).includes(args.state))
    throw new UsageError(`--state must be one of ${STATES.join(', ')}`);
  const rows = withLedger(args.store ?? DEFAULT_STORE, (ledger) => {
    const matches = (t: TaskState): boolean =>
      (args.state === undefined || t.status === args.state) &&
      (args.model === undefined || t.model.startsWith(args.model)) &&
      (args.robot === undefined || [t.poster, ...t.executors].some((k) => k.startsWith(args.robot!.toLowerCase())));
    return [...ledger.state.tasks.values()]
      .filter(matches)
      .sort((a, b) => a.postedAt - b.postedAt)
      .map((t) => ({
        task: t.task,
        status: t.status,
        poster: t.poster,
        model: t.model,
        f: t.f,
        executors: t.executors.length,
        results: t.results.length,
        answer: decisionOf(t).digest,
      }));
  });
  if (args.json) {
    process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
    return;
  }
  const head = ['task', 'state', 'poster', 'model', 'f', 'executors', 'results', 'answer'];
  const lines = rows.map((r) => [
    r.task,
    r.status,
    short(r.poster),
    short(r.model),
    String(r.f),
    String(r.executors),
    String(r.results),
    r.answer ? short(r.answer) : '-',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)));
  const format = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i])).join('  ');
  const counts = STATES.map((s) => `${rows.filter((r) => r.status === s).length} ${s}`).join(', ');
  process.stdout.write(`${[format(head), ...lines.map(format)].join('\n')}\n${rows.length} task(s): ${counts}\n`);
}

function print(report: Omit<AuditReport, 'merkle' | 'anchor' | 'live'> & Partial<AuditReport>, json?: boolean) {
  if (json) {
    process.stdout.write(`${JSON.stringify({ ok: true, ...report }, null, 2)}\n`);
    return;
  }
  const d = report.decision;
  const answer = (digest: string | undefined, by: string[] | undefined): string =>
    digest ? `${short(digest)} agreed by ${(by ?? []).map(short).join(', ')}` : 'none';
  const lines = [
    `task ${report.task} in fleet ${report.fleet}, posted by ${short(report.poster)}, f = ${report.f}`,
    ...report.assignments.map(
      (a) =>
        `  ${a.kind === 'volunteer' ? 'volunteered' : 'assigned'} by ${short(a.by)}: ${a.added.map(short).join(', ')}`,
    ),
    ...report.results.map(
      (r) =>
        `  result by ${short(r.author)}: ${short(r.digest)} ${r.counted ? 'counted' : 'not counted'}` +
        (r.agrees === undefined ? '' : r.agrees ? ', agrees' : ', DISAGREES') +
        ' (signature verified)',
    ),
    `decision: ${d.status.toUpperCase()} — ${report.why}`,
    `answer: ${answer(d.digest, d.executors)}`,
    ...(d.provisional ? [`provisional answer was: ${answer(d.provisional.digest, d.provisional.executors)}`] : []),
  ];
  if (report.merkle && report.anchor && report.live) {
    lines.push(
      `merkle: ${report.merkle.entries} entries included in root ` +
        `${short(report.merkle.root)} over ${report.merkle.count} entries`,
      `anchor: logged by ${short(report.anchor.by)}, tx ${report.anchor.tx} signed by ${report.anchor.sender}` +
        (report.anchor.resultCommitted ? ', result digest committed in it' : ''),
      report.live.checked
        ? `anchored in tx ${report.anchor.tx}, verified live on IOTA (checkpoint ${report.live.checkpoint})`
        : `anchored in tx ${report.anchor.tx} (checkpoint ${report.anchor.checkpoint}), ` +
            `not verified live (${report.live.reason}; set IOTA_RPC_URL)`,
    );
    lines.push('OK: the evidence holds');
  } else {
    lines.push('not anchored yet: the entries above are verified against this log store only');
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}

async function verifyAndPrint(proof: AuditProof, args: AuditArgs): Promise<void> {
  try {
    print(await verifyProof(proof, chainFrom(args)), args.json);
  } catch (err) {
    if (!(err instanceof AuditError)) throw err;
    if (args.json)
      process.stdout.write(`${JSON.stringify({ ok: false, code: err.code, reason: err.message }, null, 2)}\n`);
    else process.stderr.write(`FAILED (${err.code}): ${err.message}\n`);
    process.exitCode = 1;
  }
}

/**
 * `robomesh audit result TASK`: every assignment and result, the decision and why; and when an
 * anchor covers the task, its proof checked end to end (Merkle paths, the signed IOTA transaction).
 */
export async function auditResultCommand(task: string, args: AuditArgs): Promise<void> {
  const found = withLedger(args.store ?? DEFAULT_STORE, (ledger) => {
    const t = ledger.state.tasks.get(task);
    if (!t) throw new AuditError('UNKNOWN_TASK', `no task ${task} in this log (robomesh audit tasks lists them)`);
    try {
      return { proof: buildProof(ledger, task) };
    } catch (err) {
      if (err instanceof AuditError && err.code === 'NOT_ANCHORED') return { evidence: taskEvidence(ledger.state, t) };
      throw err;
    }
  });
  if (found.proof) await verifyAndPrint(found.proof, args);
  else print(found.evidence!, args.json);
}

export async function auditExportCommand(task: string, args: AuditArgs): Promise<void> {
  if (!args.out) throw new UsageError('give --out proof.json');
  const proof = withLedger(args.store ?? DEFAULT_STORE, (ledger) => buildProof(ledger, task));
  await verifyProof(proof);
  try {
    await writeFile(args.out, `${JSON.stringify(proof, null, 2)}\n`);
  } catch (err) {
    throw new UsageError(`cannot write ${args.out}: ${(err as Error).message}`);
  }
  process.stdout.write(
    `wrote ${args.out}: ${proof.entries.length} signed entries with Merkle paths and the anchor for task ${task}\n`,
  );
}

export async function auditVerifyCommand(file: string, args: AuditArgs): Promise<void> {
  let proof: AuditProof;
  try {
    proof = JSON.parse(await readFile(file, 'utf8')) as AuditProof;
  } catch (err) {
    throw new UsageError(`cannot read a proof from ${file}: ${(err as Error).message}`);
  }
  await verifyAndPrint(proof, args);
}
