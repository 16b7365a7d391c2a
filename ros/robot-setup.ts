import { readFileSync } from 'node:fs';
import { signerFromSeed } from '../protocol/ed25519.js';
import { RosError } from './errors.js';
import { EntryError, decodeEntry, signEntry, toHex } from '../protocol/log-entry.js';
import { builtinInputShape } from '../nodes/inference/index.js';
import { SqliteLogStore, SqliteAnchorQueue, anchorSettings } from '../nodes/ledger/index.js';
import { loadOrCreateIdentity } from '../nodes/mesh/index.js';
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

/** The fleet's genesis: from `fleet.genesis_file`, or a fleet of one this robot administers. */
function genesisFor(params: RobotParams, seed: Uint8Array): Uint8Array {
  if (params.fleet.genesis_file) {
    const file = params.fleet.genesis_file;
    let bytes: Uint8Array;
    try {
      bytes = new Uint8Array(readFileSync(file));
    } catch (err) {
      throw new RosError('BAD_CONFIG', `fleet.genesis_file: cannot read ${file}: ${(err as Error).message}`);
    }
    let entry;
    try {
      entry = decodeEntry(bytes).entry;
    } catch (err) {
      if (!(err instanceof EntryError)) throw err;
      throw new RosError('BAD_CONFIG', `fleet.genesis_file ${file} is not a signed log entry: ${err.message}`);
    }
    if (entry.payload.type !== 'genesis' || entry.seq !== 1 || entry.parents.length !== 0)
      throw new RosError(
        'BAD_CONFIG',
        `fleet.genesis_file ${file} holds a '${entry.payload.type}' entry, not a genesis`,
      );
    return bytes;
  }
  if (params.fleet.members.length > 0)
    throw new RosError('BAD_CONFIG', "fleet.members is set: give the fleet's signed genesis as fleet.genesis_file");
  const signer = signerFromSeed(seed);
  const me = toHex(signer.publicKey);
  return signEntry(
    {
      seq: 1,
      lamport: 1,
      parents: [],
      payload: { type: 'genesis', fleet: params.fleet.name, members: [me], admins: [me] },
    },
    signer,
  ).bytes;
}

/** The composition root of a ROS robot process: a Robot (mesh, models, log, mapping) from its settings. */
export async function startRobot(
  params: RobotParams,
  extra: Partial<Parameters<typeof Robot.start>[0]> = {},
): Promise<Robot> {
  const identity = await loadOrCreateIdentity(robotPaths(params.data_dir).identity);
  return Robot.start({
    name: params.robot_name,
    identity,
    dataDir: params.data_dir,
    fleet: {
      name: params.fleet.name,
      members: params.fleet.members.length ? params.fleet.members : [identity.peerId.toString()],
      bootstrap: params.fleet.bootstrap,
    },
    listen: params.fleet.listen,
    models: params.models.map((arg) => ({ arg, inputShape: builtinInputShape(arg) })),
    ledger: {
      store: new SqliteLogStore(robotPaths(params.data_dir).log),
      genesis: genesisFor(params, identity.seed),
    },
    anchor: anchorFor(params),
    mapping: {
      frame: { resolution: params.map.resolution, origin: { x: params.map.origin_x, y: params.map.origin_y } },
    },
    ...extra,
  });
}
