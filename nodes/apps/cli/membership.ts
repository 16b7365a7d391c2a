import { existsSync } from 'node:fs';
import { mkdir, open } from 'node:fs/promises';
import { dirname } from 'node:path';
import { toHex } from '../../../protocol/bytes.js';
import { signerFromSeed } from '../../../protocol/ed25519.js';
import { RobomeshError } from '../../../protocol/errors.js';
import { SqliteLogStore, readGenesisFile, signGenesis } from '../../ledger/index.js';
import { loadOrCreateIdentity, peerOfKey, readIdentity } from '../../mesh/index.js';
import { Robot, robotPaths } from '../../robot/index.js';
import { UsageError } from './options.js';
import { robotKeyArg } from './robot-arg.js';

/**
 * Forming a fleet by hand: `keygen` (a robot's identity), `genesis` (the fleet's first entry,
 * signed by an admin key), `admit` / `revoke` (membership entries the admin writes into the
 * live log). Robots follow membership in their log: admitted robots may connect, revoked ones
 * are cut off.
 */
export type MembershipErrorCode = 'NOT_A_MEMBER' | 'NO_PEERS' | 'NOT_CONFIRMED' | 'NOT_ADMIN' | 'EXISTS';

export class MembershipError extends RobomeshError<MembershipErrorCode> {
  constructor(code: MembershipErrorCode, message: string) {
    super(code, message);
  }
}

const print = (json: boolean | undefined, text: string, data: object): void => {
  process.stdout.write(json ? `${JSON.stringify(data)}\n` : `${text}\n`);
};

export async function keygenCommand(args: { dataDir: string; json?: boolean }): Promise<void> {
  const path = robotPaths(args.dataDir).identity;
  const existed = existsSync(path);
  const identity = await loadOrCreateIdentity(path);
  const key = toHex(signerFromSeed(identity.seed).publicKey);
  const peerId = identity.peerId.toString();
  print(args.json, `${existed ? 'kept the existing key' : 'new key'} ${path}\npeer id: ${peerId}\nlog key: ${key}`, {
    path,
    created: !existed,
    peerId,
    key,
  });
}

export async function genesisCommand(args: {
  fleet: string;
  member?: string[];
  adminDir: string;
  out: string;
  json?: boolean;
}): Promise<void> {
  if (existsSync(args.out)) throw new MembershipError('EXISTS', `${args.out} exists: a fleet has one genesis`);
  const admin = await loadOrCreateIdentity(robotPaths(args.adminDir).identity);
  const members = await Promise.all((args.member ?? []).map(robotKeyArg));
  const bytes = signGenesis(args.fleet, members, signerFromSeed(admin.seed));
  await mkdir(dirname(args.out), { recursive: true });
  const file = await open(args.out, 'wx');
  await file.writeFile(bytes);
  await file.sync();
  await file.close();
  print(
    args.json,
    `genesis of fleet '${args.fleet}' written to ${args.out}\n` +
      `admin: ${admin.peerId.toString()} (key in ${robotPaths(args.adminDir).identity})\n` +
      members.map((m) => `member: ${peerOfKey(m)}`).join('\n'),
    { fleet: args.fleet, out: args.out, admin: admin.peerId.toString(), members: members.map(peerOfKey) },
  );
}

export interface MembershipArgs {
  genesis: string;
  adminDir: string;
  bootstrap?: string[];
  listen?: string[];
  mdns?: boolean;
  timeout: number;
  json?: boolean;
}

/**
 * `admit` / `revoke`: the admin joins the fleet for a moment as a member with no models, learns
 * the log (its own earlier entries included: its store lives in the admin folder, so it never
 * writes a sequence number twice), appends the entry and waits until a robot holds it.
 */
async function changeMembership(kind: 'admit' | 'revoke', robot: string, args: MembershipArgs): Promise<void> {
  const member = await robotKeyArg(robot);
  const { bytes: genesis, entry } = await readGenesisFile(args.genesis);
  if (entry.payload.type !== 'genesis') throw new UsageError(`${args.genesis} is not a genesis`);
  const paths = robotPaths(args.adminDir);
  const identity = await readIdentity(paths.identity);
  const self = toHex(signerFromSeed(identity.seed).publicKey);
  const deadline = Date.now() + args.timeout * 1000;
  const say = (line: string): void => void (args.json || process.stderr.write(`${line}\n`));
  const admin = await Robot.start({
    name: 'admin',
    identity,
    dataDir: args.adminDir,
    fleet: { name: entry.payload.fleet, members: entry.payload.members.map(peerOfKey), bootstrap: args.bootstrap },
    listen: args.listen ?? ['/ip4/0.0.0.0/tcp/0'],
    mdns: args.mdns ?? true,
    models: [],
    ledger: { store: new SqliteLogStore(paths.log), genesis, antiEntropyMs: 3_600_000 },
  });
  try {
    const ledger = admin.ledger!;
    const replicator = admin.replicator!;
    if (!ledger.state.admins.has(self))
      throw new MembershipError('NOT_ADMIN', `${paths.identity} is not an admin of fleet '${entry.payload.fleet}'`);
    say(`looking for robots of fleet '${entry.payload.fleet}' (mDNS${args.bootstrap?.length ? ', bootstrap' : ''})…`);
    const peers = await until(deadline, () => {
      const p = admin.host.connectedPeers();
      return p.length > 0 ? p : undefined;
    });
    if (!peers)
      throw new MembershipError('NO_PEERS', `no robot of fleet '${entry.payload.fleet}' reached in ${args.timeout} s`);
    // The log as the robots hold it, before deciding anything.
    await Promise.allSettled(admin.host.connectedPeers().map((p) => replicator.syncWith(p)));
    const isMember = ledger.state.members.has(member);
    if (kind === 'admit' ? isMember : !isMember) {
      const text = kind === 'admit' ? 'is a member already' : 'is not a member';
      print(args.json, `${peerOfKey(member)} ${text}: nothing written`, { member: peerOfKey(member), changed: false });
      return;
    }
    if (kind === 'revoke' && member === self)
      throw new UsageError('an admin cannot revoke itself: the fleet would have no admin left');
    const written = ledger.append({ type: kind, member });
    replicator.tellNews();
    say(`${kind} ${peerOfKey(member)} appended (seq ${written.entry.seq}); waiting for a robot to hold it…`);
    const holders = await until(deadline, async () => {
      const held: string[] = [];
      for (const p of admin.host.connectedPeers()) {
        const result = await replicator.syncWith(p).catch(() => undefined);
        if ((result?.theirs?.get(self)?.maxSeq ?? 0) >= written.entry.seq) held.push(p);
      }
      return held.length > 0 ? held : undefined;
    });
    if (!holders)
      throw new MembershipError(
        'NOT_CONFIRMED',
        `no robot confirmed the ${kind} entry within ${args.timeout} s; it is kept in ${paths.log} and ` +
          'reaches the fleet the next time this command or the admin meets a robot',
      );
    print(
      args.json,
      `${kind === 'admit' ? 'admitted' : 'revoked'} ${peerOfKey(member)}: held by ${holders.length} robot(s)`,
      { member: peerOfKey(member), changed: true, kind, seq: written.entry.seq, holders },
    );
  } finally {
    await admin.stop();
  }
}

/** Polls `check` every 250 ms until it returns something or the deadline passes. */
async function until<T>(deadline: number, check: () => T | undefined | Promise<T | undefined>): Promise<T | undefined> {
  for (;;) {
    const got = await check();
    if (got !== undefined) return got;
    if (Date.now() >= deadline) return undefined;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

export const admitCommand = (robot: string, args: MembershipArgs): Promise<void> =>
  changeMembership('admit', robot, args);
export const revokeCommand = (robot: string, args: MembershipArgs): Promise<void> =>
  changeMembership('revoke', robot, args);
