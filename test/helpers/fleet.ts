import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { signerFromSeed } from '../../protocol/ed25519.js';
import { toHex } from '../../protocol/log-entry.js';
import { signGenesis } from '../../nodes/ledger/genesis.js';
import { type RobotIdentity, identityFromSeed } from '../../nodes/mesh/identity.js';
import { Robot, type RobotConfig } from '../../nodes/robot/robot.js';
import { waitFor } from './wait.js';

export const DETECTOR = { arg: 'builtin:ocr-det', inputShape: { x: [1, 3, 320, 320] } };

/** Deterministic identities for test robots (seed byte = index + 1). */
export function testIdentities(n: number, offset = 0): Promise<RobotIdentity[]> {
  return Promise.all(Array.from({ length: n }, (_, i) => identityFromSeed(new Uint8Array(32).fill(offset + i + 1))));
}

/** The genesis entry of a test fleet 'test': every identity a member, the first one the admin. */
export function testGenesis(identities: RobotIdentity[]): Uint8Array {
  const members = identities.map((i) => toHex(i.privateKey.publicKey.raw));
  return signGenesis('test', members, signerFromSeed(identities[0].seed));
}

let cacheDir: Promise<string> | undefined;
/** One profile cache for the test run: robots on one machine measure a model once. */
export function sharedCache(): Promise<string> {
  cacheDir ??= mkdtemp(join(tmpdir(), 'robomesh-test-cache-'));
  return cacheDir;
}

/** Starts robots on loopback, each bootstrapping from all earlier ones, and waits for a full mesh. */
export async function startFleet(
  identities: RobotIdentity[],
  models: RobotConfig['models'],
  overrides: (i: number) => Partial<RobotConfig> = () => ({}),
): Promise<Robot[]> {
  const members = identities.map((i) => i.peerId.toString());
  const cache = await sharedCache();
  const robots: Robot[] = [];
  for (const [i, identity] of identities.entries()) {
    const bootstrap = robots.flatMap((r) => r.host.addresses());
    robots.push(
      await Robot.start({
        name: `r${i}`,
        identity,
        fleet: { name: 'test', members, bootstrap },
        models,
        profileRuns: 2,
        cacheDir: cache,
        dataDir: join(cache, `r${i}`),
        advertPeriodMs: 300,
        probeIntervalMs: 0,
        ...overrides(i),
      }),
    );
  }
  await waitFor(
    () =>
      robots.every(
        (r) => r.host.connectedPeers().length === robots.length - 1 && r.adverts.fresh().length === robots.length - 1,
      ),
    'a full mesh with adverts',
    30_000,
  );
  return robots;
}
