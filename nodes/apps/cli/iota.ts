import { existsSync } from 'node:fs';
import { toHex } from '../../../protocol/bytes.js';
import { signerFromSeed } from '../../../protocol/ed25519.js';
import {
  type QueuedAnchor,
  Ledger,
  SqliteAnchorQueue,
  SqliteLogStore,
  iotaAddressOf,
  iotaClientFor,
} from '../../ledger/index.js';
import { readIdentity } from '../../mesh/index.js';
import { robotPaths } from '../../robot/index.js';
import { UsageError } from './options.js';

/** `robomesh iota …`: a robot's IOTA side, read from its data folder; live only with an endpoint. */
export interface IotaArgs {
  dataDir?: string;
  rpc?: string;
  json?: boolean;
}

const DEFAULT_DATA_DIR = 'robomesh-data';
const NANOS_PER_IOTA = 1_000_000_000n;

async function addressOf(dataDir: string): Promise<{ address: string; key: string; peerId: string }> {
  const identity = await readIdentity(robotPaths(dataDir).identity);
  const publicKey = signerFromSeed(identity.seed).publicKey;
  return { address: iotaAddressOf(publicKey), key: toHex(publicKey), peerId: identity.peerId.toString() };
}

function endpoint(args: IotaArgs): string {
  const url = args.rpc ?? process.env.IOTA_RPC_URL;
  if (!url) throw new UsageError('no IOTA endpoint: give --rpc URL or set IOTA_RPC_URL');
  return url;
}

const iota = (nanos: bigint): string =>
  `${nanos / NANOS_PER_IOTA}.${(nanos % NANOS_PER_IOTA).toString().padStart(9, '0')} IOTA`;

/** `robomesh iota address`: the robot's IOTA address from its key (offline). */
export async function iotaAddressCommand(args: IotaArgs): Promise<void> {
  const a = await addressOf(args.dataDir ?? DEFAULT_DATA_DIR);
  if (args.json) process.stdout.write(`${JSON.stringify(a)}\n`);
  else process.stdout.write(`${a.address}\n  log key ${a.key}\n  peer id ${a.peerId}\n`);
}

/** `robomesh iota balance`: the address's gas balance, from the node. */
export async function iotaBalanceCommand(args: IotaArgs): Promise<void> {
  const url = endpoint(args);
  const { address } = await addressOf(args.dataDir ?? DEFAULT_DATA_DIR);
  const balance = await iotaClientFor(url).getBalance({ owner: address });
  const total = BigInt(balance.totalBalance);
  if (args.json) {
    process.stdout.write(
      `${JSON.stringify({ address, totalBalance: balance.totalBalance, coins: balance.coinObjectCount })}\n`,
    );
  } else process.stdout.write(`${address}: ${iota(total)} in ${balance.coinObjectCount} coin(s) (${url})\n`);
}

interface Status {
  address: string;
  anchors: { root: string; count: number; tx: string; checkpoint: number }[];
  queue: (Pick<QueuedAnchor, 'root' | 'count' | 'attempts' | 'lastError' | 'failed'> & { signed?: string })[];
}

/** `robomesh iota status`: the last anchors in the log, and what waits in the queue and why (offline). */
export async function iotaStatusCommand(args: IotaArgs & { last?: number }): Promise<void> {
  const dir = args.dataDir ?? DEFAULT_DATA_DIR;
  const paths = robotPaths(dir);
  const { address } = await addressOf(dir);
  const status: Status = { address, anchors: [], queue: [] };
  if (existsSync(paths.log)) {
    const store = new SqliteLogStore(paths.log);
    try {
      status.anchors = new Ledger(store).state.anchors
        .slice(-(args.last ?? 5))
        .map(({ root, count, tx, checkpoint }) => ({ root, count, tx, checkpoint }));
    } finally {
      store.close();
    }
  }
  if (existsSync(paths.anchors)) {
    const queue = new SqliteAnchorQueue(paths.anchors);
    try {
      status.queue = queue.all().map((q) => ({
        root: q.root,
        count: q.count,
        attempts: q.attempts,
        lastError: q.lastError,
        failed: q.failed,
        signed: q.signed?.digest,
      }));
    } finally {
      queue.close();
    }
  }
  if (args.json) {
    process.stdout.write(`${JSON.stringify(status, null, 2)}\n`);
    return;
  }
  const short = (h: string) => `${h.slice(0, 12)}…`;
  const lines = [`robot ${address}`, `anchors in the log: ${status.anchors.length ? '' : 'none'}`];
  for (const a of status.anchors)
    lines.push(`  ${short(a.root)} ${a.count} entries, tx ${a.tx}, checkpoint ${a.checkpoint}`);
  lines.push(`queued: ${status.queue.length ? '' : 'none'}`);
  for (const q of status.queue) {
    const state = q.failed
      ? `FAILED for good: ${q.failed}`
      : `${q.attempts} attempt(s)${q.signed ? `, signed ${q.signed}` : ''}` +
        `${q.lastError ? `; last error: ${q.lastError}` : ''}`;
    lines.push(`  ${short(q.root)} ${q.count} entries: ${state}`);
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}
