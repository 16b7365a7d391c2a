import { existsSync } from 'node:fs';
import { toHex } from '../../../protocol/bytes.js';
import { signerFromSeed } from '../../../protocol/ed25519.js';
import { keyOfPeer, readIdentity } from '../../mesh/index.js';
import { robotPaths } from '../../robot/index.js';
import { UsageError } from './options.js';

const KEY_HEX = /^[0-9a-fA-F]{64}$/;

/**
 * A robot named on the command line — its data folder, its PeerId or its key (64 hex digits) —
 * as its log key (hex of its Ed25519 public key).
 */
export async function robotKeyArg(robot: string): Promise<string> {
  if (KEY_HEX.test(robot)) return robot.toLowerCase();
  if (robot.startsWith('12D3Koo')) {
    try {
      return keyOfPeer(robot);
    } catch (err) {
      throw new UsageError(`${robot} is not a valid PeerId: ${(err as Error).message}`);
    }
  }
  if (!existsSync(robot)) throw new UsageError(`${robot} is neither a data folder, a PeerId nor a 64-hex key`);
  return toHex(signerFromSeed((await readIdentity(robotPaths(robot).identity)).seed).publicKey);
}
