import { readFile } from 'node:fs/promises';
import type { Hex } from '../../protocol/bytes.js';
import type { Signer } from '../../protocol/ed25519.js';
import { RobomeshError } from '../../protocol/errors.js';
import { type Entry, EntryError, decodeEntry, signEntry, toHex } from '../../protocol/log-entry.js';

export type GenesisErrorCode = 'BAD_GENESIS';

export class GenesisError extends RobomeshError<GenesisErrorCode> {
  constructor(code: GenesisErrorCode, message: string, options?: ErrorOptions) {
    super(code, message, options);
  }
}

/** A fleet's first entry, signed by its admin (a member and admin itself): who may join and who decides. */
export function signGenesis(fleet: string, members: Hex[], admin: Signer): Uint8Array {
  const me = toHex(admin.publicKey);
  return signEntry(
    {
      seq: 1,
      lamport: 1,
      parents: [],
      payload: { type: 'genesis', fleet, members: [...new Set([me, ...members])], admins: [me] },
    },
    admin,
  ).bytes;
}

/** A genesis file as robots load it: the signed entry's bytes, checked to be a genesis. */
export async function readGenesisFile(file: string): Promise<{ bytes: Uint8Array; entry: Entry }> {
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(await readFile(file));
  } catch (err) {
    throw new GenesisError('BAD_GENESIS', `cannot read the genesis file ${file}: ${(err as Error).message}`);
  }
  return { bytes, entry: checkGenesis(bytes, file) };
}

function checkGenesis(bytes: Uint8Array, file: string): Entry {
  let entry;
  try {
    entry = decodeEntry(bytes).entry;
  } catch (err) {
    if (!(err instanceof EntryError)) throw err;
    throw new GenesisError('BAD_GENESIS', `the genesis file ${file} is not a signed log entry: ${err.message}`, {
      cause: err,
    });
  }
  if (entry.payload.type !== 'genesis' || entry.seq !== 1 || entry.parents.length !== 0)
    throw new GenesisError(
      'BAD_GENESIS',
      `the genesis file ${file} holds a '${entry.payload.type}' entry, not a genesis`,
    );
  return entry;
}
