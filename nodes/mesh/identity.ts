import { randomBytes } from 'node:crypto';
import { chmod, mkdir, open, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { generateKeyPairFromSeed, publicKeyFromRaw } from '@libp2p/crypto/keys';
import type { Ed25519PrivateKey, PeerId } from '@libp2p/interface';
import { peerIdFromPrivateKey, peerIdFromPublicKey, peerIdFromString } from '@libp2p/peer-id';
import { fromHex, toHex } from '../../protocol/bytes.js';
import { RobomeshError } from '../../protocol/errors.js';

/**
 * A robot's one identity: an Ed25519 key whose 32-byte seed lives in a file (mode 0600). The
 * same key is the libp2p PeerId, signs log entries and derives the IOTA address.
 */
export interface RobotIdentity {
  seed: Uint8Array;
  privateKey: Ed25519PrivateKey;
  peerId: PeerId;
}

export type IdentityErrorCode = 'BAD_KEY' | 'KEY_UNREADABLE';

export class IdentityError extends RobomeshError<IdentityErrorCode> {
  constructor(code: IdentityErrorCode, message: string, options?: ErrorOptions) {
    super(code, message, options);
  }
}

const KIND = 'robomesh-ed25519-seed';

/** A member's log key (hex of its raw Ed25519 public key) from its PeerId string. */
export function keyOfPeer(peerId: string): string {
  const key = peerIdFromString(peerId).publicKey;
  if (!key) throw new IdentityError('BAD_KEY', `peer ${peerId} does not carry its public key`);
  return toHex(key.raw);
}

/** The PeerId string of a member's log key. */
export function peerOfKey(key: string): string {
  return peerIdFromPublicKey(publicKeyFromRaw(fromHex(key))).toString();
}

export async function identityFromSeed(seed: Uint8Array): Promise<RobotIdentity> {
  if (seed.length !== 32) throw new IdentityError('BAD_KEY', `an Ed25519 seed is 32 bytes, got ${seed.length}`);
  const privateKey = await generateKeyPairFromSeed('Ed25519', seed);
  return { seed, privateKey, peerId: peerIdFromPrivateKey(privateKey) };
}

/** Loads an existing key file; never creates one (for tools that read a robot's identity). */
export async function readIdentity(path: string): Promise<RobotIdentity> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'does not exist' : (err as Error).message;
    throw new IdentityError('KEY_UNREADABLE', `key file ${path} ${why} (a robot creates it on its first start)`);
  }
  return identityFromSeed(parseKeyFile(text, path));
}

/** Loads the key file, or creates it (0600, exclusively) on first start, from `seed` if given (else random). */
export async function loadOrCreateIdentity(path: string, seedIfNew?: Uint8Array): Promise<RobotIdentity> {
  let text: string | undefined;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new IdentityError('KEY_UNREADABLE', `cannot read key file ${path}: ${(err as Error).message}`);
    }
  }
  if (text !== undefined) return identityFromSeed(parseKeyFile(text, path));
  const seed = seedIfNew ?? randomBytes(32);
  await mkdir(dirname(path), { recursive: true });
  try {
    const file = await open(path, 'wx', 0o600);
    await file.writeFile(`${JSON.stringify({ kind: KIND, seed: Buffer.from(seed).toString('hex') })}\n`);
    await file.sync();
    await file.close();
  } catch (err) {
    // Another process created it first: use theirs, never overwrite a key.
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return loadOrCreateIdentity(path, seedIfNew);
    throw err;
  }
  await chmod(path, 0o600);
  return identityFromSeed(seed);
}

function parseKeyFile(text: string, path: string): Uint8Array {
  let parsed: { kind?: unknown; seed?: unknown };
  try {
    parsed = JSON.parse(text) as typeof parsed;
  } catch {
    throw new IdentityError('BAD_KEY', `key file ${path} is not JSON; move it away to create a new identity`);
  }
  if (parsed.kind !== KIND || typeof parsed.seed !== 'string' || !/^[0-9a-f]{64}$/.test(parsed.seed)) {
    throw new IdentityError('BAD_KEY', `key file ${path} is not a robomesh Ed25519 seed (kind ${String(parsed.kind)})`);
  }
  return Uint8Array.from(Buffer.from(parsed.seed, 'hex'));
}
