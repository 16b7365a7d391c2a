import { existsSync } from 'node:fs';
import { fromHex, toHex } from '../../../protocol/bytes.js';
import { signerFromSeed } from '../../../protocol/ed25519.js';
import {
  type AdminCall,
  IotaAnchorChain,
  type QueuedAnchor,
  Ledger,
  SqliteAnchorQueue,
  SqliteLogStore,
  anchorSettingsFromEnv,
  buildAdminTx,
  iotaAddressOf,
  iotaClientFor,
} from '../../ledger/index.js';
import { readIdentity } from '../../mesh/index.js';
import { robotPaths } from '../../robot/index.js';
import { UsageError } from './options.js';
import { robotKeyArg } from './robot-arg.js';

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

export interface IotaAdminArgs extends IotaArgs {
  cap?: string;
}

/** A gas budget for one registry call (the node charges what it uses; ~2 M NANOS on testnet). */
const ADMIN_GAS_BUDGET = 20_000_000n;
const ADDRESS = /^0x[0-9a-fA-F]{64}$/;

/** The robot named on the command line (data folder, PeerId or 64-hex key): its public key. */
const robotKey = async (robot: string): Promise<Uint8Array> => fromHex(await robotKeyArg(robot));

function deploymentAndCap(args: IotaAdminArgs) {
  const settings = anchorSettingsFromEnv({ ...process.env, IOTA_RPC_URL: '' });
  if (!settings)
    throw new UsageError(
      'the package is not known: set IOTA_PACKAGE_ID, IOTA_REGISTRY_ID and IOTA_REGISTRY_VERSION ' +
        '(from iota client publish)',
    );
  const cap = args.cap ?? process.env.IOTA_ADMIN_CAP;
  if (!cap || !/^0x[0-9a-fA-F]{1,64}$/.test(cap))
    throw new UsageError('the AdminCap is not known: give --cap 0x… or set IOTA_ADMIN_CAP (from iota client publish)');
  return { deployment: settings.deployment, cap };
}

/**
 * register_robot / revoke_robot. Live (an endpoint given): signed with this data folder's key,
 * which must own the AdminCap, submitted and waited for. Offline: the `iota client ptb` command
 * that does the same with the key of whoever holds the cap in their iota CLI.
 */
async function adminCommand(what: 'register' | 'revoke', robot: string, args: IotaAdminArgs): Promise<void> {
  const { deployment, cap } = deploymentAndCap(args);
  let call: AdminCall;
  let address: string;
  if (what === 'revoke' && ADDRESS.test(robot)) {
    address = robot.toLowerCase();
    call = { revoke: address };
  } else {
    const key = await robotKey(robot);
    address = iotaAddressOf(key);
    call = what === 'register' ? { register: key } : { revoke: address };
  }
  const fn = what === 'register' ? 'register_robot' : 'revoke_robot';
  const argument = 'register' in call ? `"vector[${[...call.register].join(',')}]"` : `@${address}`;
  const url = args.rpc ?? process.env.IOTA_RPC_URL;
  if (!url) {
    const ptb =
      `iota client ptb --move-call ${deployment.packageId}::ledger::${fn} ` +
      `@${cap} @${deployment.registryId} ${argument} --gas-budget ${ADMIN_GAS_BUDGET}`;
    if (args.json) process.stdout.write(`${JSON.stringify({ address, live: false, ptb })}\n`);
    else
      process.stdout.write(
        `${what} ${address} (offline: no --rpc or $IOTA_RPC_URL). With the AdminCap's key in your iota CLI, run:\n` +
          `${ptb}\n`,
      );
    return;
  }
  const identity = await readIdentity(robotPaths(args.dataDir ?? DEFAULT_DATA_DIR).identity);
  const admin = iotaAddressOf(signerFromSeed(identity.seed).publicKey);
  const chain = new IotaAnchorChain(iotaClientFor(url));
  const capRef = await chain.objectRef(cap);
  if (capRef.owner && capRef.owner !== admin)
    throw new UsageError(
      `the AdminCap ${cap} belongs to ${capRef.owner}, not to this robot (${admin}): transfer it ` +
        `(iota client transfer --object-id ${cap} --to ${admin}) or run this command without an endpoint ` +
        'for the iota client ptb command its owner can run',
    );
  const gas = await chain.gasFor(admin);
  const tx = await buildAdminTx(identity.seed, deployment, { ...gas, budget: ADMIN_GAS_BUDGET }, capRef, call);
  await chain.execute(tx); // an abort (EAlreadyRegistered, ENotRegistered) is a ChainError naming it
  const { checkpoint } = await chain.waitFinal(tx.digest, 60_000);
  if (args.json) process.stdout.write(`${JSON.stringify({ address, live: true, digest: tx.digest, checkpoint })}\n`);
  else
    process.stdout.write(
      `${what === 'register' ? 'registered' : 'revoked'} ${address} ` +
        `in transaction ${tx.digest}, checkpoint ${checkpoint}\n`,
    );
}

/** `robomesh iota register ROBOT`: ROBOT (a data folder or a 64-hex key) may anchor from now on. */
export const iotaRegisterCommand = (robot: string, args: IotaAdminArgs): Promise<void> =>
  adminCommand('register', robot, args);

/** `robomesh iota revoke ROBOT`: ROBOT (a data folder, a key or a 0x address) may no longer anchor. */
export const iotaRevokeCommand = (robot: string, args: IotaAdminArgs): Promise<void> =>
  adminCommand('revoke', robot, args);
