import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { type AnchorChain, IotaAnchorChain, iotaClientFor } from '../ledger/anchor-chain.js';
import { type AuditProof, type AuditReport, AuditError, buildProof, verifyProof } from '../ledger/audit.js';
import { Ledger } from '../ledger/ledger.js';
import { SqliteLogStore } from '../ledger/sqlite-store.js';
import { UsageError } from './options.js';

export interface AuditArgs {
  store?: string;
  json?: boolean;
  out?: string;
  rpc?: string;
}

const DEFAULT_STORE = 'robomesh-data/ledger.db';

function chainFrom(args: AuditArgs): AnchorChain | undefined {
  const url = args.rpc ?? process.env.IOTA_RPC_URL;
  return url ? new IotaAnchorChain(iotaClientFor(url)) : undefined;
}

function openLedger(path: string): { ledger: Ledger; close: () => void } {
  if (!existsSync(path)) throw new UsageError(`no log store at ${path} (give --store PATH)`);
  const store = new SqliteLogStore(path);
  return { ledger: new Ledger(store), close: () => store.close() };
}

async function proofFromStore(task: string, args: AuditArgs): Promise<AuditProof> {
  const { ledger, close } = openLedger(args.store ?? DEFAULT_STORE);
  try {
    return buildProof(ledger, task);
  } finally {
    close();
  }
}

const short = (hex: string): string => `${hex.slice(0, 12)}…`;

function print(report: AuditReport, json: boolean | undefined): void {
  if (json) {
    process.stdout.write(`${JSON.stringify({ ok: true, ...report }, null, 2)}\n`);
    return;
  }
  const lines = [
    `task ${report.task} in fleet ${report.fleet}, posted by ${short(report.poster)}`,
    report.assignment
      ? `assigned by ${short(report.assignment.by)} to ${report.assignment.executors.map(short).join(', ')}`
      : 'not assigned',
    ...report.superseded.map(
      (a) => `  superseded assignment by ${short(a.by)} to ${a.executors.map(short).join(', ')} (kept on record)`,
    ),
    ...report.results.map(
      (r) =>
        `  result by ${short(r.author)}: ${short(r.digest)} ${r.counted ? 'counted' : 'not counted'} (signature verified)`,
    ),
    report.decision.status === 'accepted'
      ? `quorum: ACCEPTED digest ${short(report.decision.digest!)} agreed by ${report.decision.executors!.length}`
      : `quorum: not reached (${report.decision.status})`,
    `merkle: ${report.merkle.entries} entries included in root ${short(report.merkle.root)} over ${report.merkle.count} entries`,
    `anchor: logged by ${short(report.anchor.by)}, tx ${report.anchor.tx} signed by ${report.anchor.sender}${report.anchor.resultCommitted ? ', result digest committed in it' : ''}`,
    report.live.checked
      ? `anchored in tx ${report.anchor.tx}, verified live on IOTA (checkpoint ${report.live.checkpoint})`
      : `anchored in tx ${report.anchor.tx} (checkpoint ${report.anchor.checkpoint}), not verified live (${report.live.reason}; set IOTA_RPC_URL)`,
  ];
  process.stdout.write(`${lines.join('\n')}\nOK: the evidence holds\n`);
}

async function verifyAndPrint(proof: AuditProof, args: AuditArgs): Promise<void> {
  try {
    print(await verifyProof(proof, chainFrom(args)), args.json);
  } catch (err) {
    if (err instanceof AuditError && args.json) {
      process.stdout.write(`${JSON.stringify({ ok: false, code: err.code, reason: err.message }, null, 2)}\n`);
      process.exitCode = 1;
      return;
    }
    if (err instanceof AuditError) {
      process.stderr.write(`FAILED (${err.code}): ${err.message}\n`);
      process.exitCode = 1;
      return;
    }
    throw err;
  }
}

export async function auditResultCommand(task: string, args: AuditArgs): Promise<void> {
  await verifyAndPrint(await proofFromStore(task, args), args);
}

export async function auditExportCommand(task: string, args: AuditArgs): Promise<void> {
  if (!args.out) throw new UsageError('give --out proof.json');
  const proof = await proofFromStore(task, args);
  await verifyProof(proof);
  await writeFile(args.out, `${JSON.stringify(proof, null, 2)}\n`);
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
