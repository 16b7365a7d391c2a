import { createHash } from 'node:crypto';
import { signerFromSeed } from '../protocol/ed25519.js';
import { RosError } from './errors.js';
import { toHex } from '../protocol/log-entry.js';
import { builtinInputShape } from '../nodes/inference/index.js';
import {
  GenesisError,
  SqliteLogStore,
  SqliteAnchorQueue,
  anchorSettings,
  readGenesisFile,
  signGenesis,
} from '../nodes/ledger/index.js';
import { identityFromSeed, loadOrCreateIdentity } from '../nodes/mesh/index.js';
import { Robot, robotPaths } from '../nodes/robot/index.js';
import type { RobotParams } from './params.js';

function anchorFor(params: RobotParams) {
  const i = params.iota;
  const settings = anchorSettings({
    rpcUrl: i.rpc_url || process.env.IOTA_RPC_URL,
    packageId: i.package_id || undefined,
    registryId: i.registry_id || undefined,
    registryVersion: i.registry_version || undefined,
  });
  return settings && { ...settings, queue: new SqliteAnchorQueue(robotPaths(params.data_dir).anchors) };
}

/**
 * A development fleet (`fleet.dev_members`): every key derived from the fleet's and the robots'
 * public names, so robots started from the same launch file agree on one genesis with no key
 * exchange. Anyone who knows the names can join as one of them: for trying robomesh out only.
 */
export function devFleet(fleet: string, names: string[]) {
  const seedOf = (who: string): Uint8Array =>
    new Uint8Array(createHash('sha256').update(`robomesh development fleet\0${fleet}\0${who}`).digest());
  const admin = signerFromSeed(seedOf('\0admin'));
  const members = names.map((name) => ({ name, seed: seedOf(name) }));
  const genesis = signGenesis(
    fleet,
    members.map((m) => toHex(signerFromSeed(m.seed).publicKey)),
    admin,
  );
  return { genesis, seedOf: (name: string) => members.find((m) => m.name === name)?.seed };
}

/** The fleet's genesis: from `fleet.genesis_file`, or a fleet of one this robot administers. */
async function genesisFor(params: RobotParams, seed: Uint8Array): Promise<Uint8Array> {
  if (params.fleet.genesis_file) {
    try {
      return (await readGenesisFile(params.fleet.genesis_file)).bytes;
    } catch (err) {
      if (err instanceof GenesisError) throw new RosError('BAD_CONFIG', `fleet.genesis_file: ${err.message}`);
      throw err;
    }
  }
  if (params.fleet.members.length > 0)
    throw new RosError('BAD_CONFIG', "fleet.members is set: give the fleet's signed genesis as fleet.genesis_file");
  return signGenesis(params.fleet.name, [], signerFromSeed(seed));
}

/** This robot's identity and the fleet's genesis, from its settings. */
async function identityAndGenesis(params: RobotParams) {
  const keyFile = robotPaths(params.data_dir).identity;
  const dev = params.fleet.dev_members;
  if (dev.length === 0) {
    const identity = await loadOrCreateIdentity(keyFile);
    return {
      identity,
      genesis: await genesisFor(params, identity.seed),
      dev: false,
      bootstrap: params.fleet.bootstrap,
    };
  }
  if (params.fleet.genesis_file)
    throw new RosError('BAD_CONFIG', 'fleet.dev_members and fleet.genesis_file are both set: keep one');
  const fleet = devFleet(params.fleet.name, dev);
  const seed = fleet.seedOf(params.robot_name);
  if (!seed)
    throw new RosError(
      'BAD_CONFIG',
      `fleet.dev_members (${dev.join(', ')}) does not name this robot (robot_name ${params.robot_name})`,
    );
  const identity = await loadOrCreateIdentity(keyFile, seed);
  if (toHex(identity.seed) !== toHex(seed))
    throw new RosError(
      'BAD_CONFIG',
      `${keyFile} holds another identity than ${params.robot_name}'s development key: give this robot ` +
        'a data_dir of its own for the development fleet',
    );
  // Bootstrap addresses may name a development robot instead of its PeerId: /p2p/dev:r0.
  const bootstrap = await Promise.all(
    params.fleet.bootstrap.map(async (addr) => {
      const name = /\/p2p\/dev:([^/]+)$/.exec(addr)?.[1];
      if (name === undefined) return addr;
      const other = fleet.seedOf(name);
      if (!other) throw new RosError('BAD_CONFIG', `fleet.bootstrap ${addr}: ${name} is not in fleet.dev_members`);
      return addr.replace(`/p2p/dev:${name}`, `/p2p/${(await identityFromSeed(other)).peerId.toString()}`);
    }),
  );
  return { identity, genesis: fleet.genesis, dev: true, bootstrap };
}

/** The composition root of a ROS robot process: a Robot (mesh, models, log, mapping) from its settings. */
export async function startRobot(
  params: RobotParams,
  extra: Partial<Parameters<typeof Robot.start>[0]> = {},
): Promise<Robot> {
  const { identity, genesis, dev, bootstrap } = await identityAndGenesis(params);
  if (dev)
    process.emitWarning(
      `fleet.dev_members: a DEVELOPMENT fleet (${params.fleet.dev_members.join(', ')}): its keys come from public ` +
        'names and anyone can join as one of them. For real robots: robomesh keygen, robomesh genesis, ' +
        'fleet.genesis_file',
      'RobomeshDevFleet',
    );
  return Robot.start({
    name: params.robot_name,
    identity,
    dataDir: params.data_dir,
    fleet: {
      name: params.fleet.name,
      members: params.fleet.members.length ? params.fleet.members : [identity.peerId.toString()],
      bootstrap,
    },
    listen: params.fleet.listen,
    mdns: params.fleet.mdns,
    models: params.models.map((arg) => ({ arg, inputShape: builtinInputShape(arg) })),
    stages: params.inference.stages,
    chains: params.inference.chain ? [params.inference.chain] : [],
    memoryBudgetMb: params.inference.memory_mb > 0 ? params.inference.memory_mb : undefined,
    ledger: {
      store: new SqliteLogStore(robotPaths(params.data_dir).log),
      genesis,
    },
    anchor: anchorFor(params),
    mapping: {
      frame: { resolution: params.map.resolution, origin: { x: params.map.origin_x, y: params.map.origin_y } },
    },
    ...extra,
  });
}
