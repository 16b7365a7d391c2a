import { bcs } from '@iota/iota-sdk/bcs';
import { Ed25519Keypair, Ed25519PublicKey } from '@iota/iota-sdk/keypairs/ed25519';
import { Transaction } from '@iota/iota-sdk/transactions';
import { verifyTransactionSignature } from '@iota/iota-sdk/verify';
import { RobomeshError } from '../../protocol/errors.js';

/**
 * Anchor transactions for the robot_ledger Move package (contracts/move), built and signed
 * offline: with the gas coin, gas price and the registry's shared version known, no node is
 * needed until submission, so a partitioned robot can sign and let any peer submit.
 */
export interface IotaDeployment {
  packageId: string;
  registryId: string;
  /** The Registry's initial shared version (from the publish transaction). */
  registryVersion: number;
}

export interface GasRef {
  objectId: string;
  version: string;
  digest: string;
}

export interface GasPlan {
  coin: GasRef;
  price: bigint;
  budget: bigint;
}

export interface AnchorCall {
  root: Uint8Array;
  count: number;
  firstLamport: number;
  lastLamport: number;
  /** Accepted results committed as ResultCommitted events in the same transaction. */
  results: { task: string; digest: Uint8Array }[];
}

export interface SignedTx {
  bytes: Uint8Array;
  /** Serialized IOTA signature (flag ‖ sig ‖ public key), base64. */
  signature: string;
  digest: string;
  sender: string;
}

export type IotaTxErrorCode = 'BAD_ANCHOR' | 'BAD_TX' | 'BAD_TX_SIGNATURE';

export class IotaTxError extends RobomeshError<IotaTxErrorCode> {
  constructor(code: IotaTxErrorCode, message: string, options?: ErrorOptions) {
    super(code, message, options);
  }
}

export const MAX_RESULTS_PER_ANCHOR = 32;

export const iotaKeypair = (seed: Uint8Array): Ed25519Keypair => Ed25519Keypair.fromSecretKey(seed);

/** The IOTA address of a robot: derived from the same Ed25519 key as its PeerId. */
export const iotaAddressOf = (publicKey: Uint8Array): string => new Ed25519PublicKey(publicKey).toIotaAddress();

/** A transaction from `seed`'s address paying with `gas`, its commands added by `commands`, signed. */
async function signedTx(seed: Uint8Array, gas: GasPlan, commands: (tx: Transaction) => void): Promise<SignedTx> {
  const keypair = iotaKeypair(seed);
  const sender = keypair.toIotaAddress();
  const tx = new Transaction();
  tx.setSender(sender);
  tx.setGasPrice(gas.price);
  tx.setGasBudget(gas.budget);
  tx.setGasPayment([gas.coin]);
  commands(tx);
  const bytes = await tx.build();
  const { signature } = await keypair.signTransaction(bytes);
  return { bytes, signature, digest: await tx.getDigest(), sender };
}

export async function buildAnchorTx(
  seed: Uint8Array,
  deployment: IotaDeployment,
  gas: GasPlan,
  call: AnchorCall,
): Promise<SignedTx> {
  if (call.root.length !== 32) throw new IotaTxError('BAD_ANCHOR', 'an anchor root is 32 bytes');
  if (call.results.length > MAX_RESULTS_PER_ANCHOR)
    throw new IotaTxError('BAD_ANCHOR', `at most ${MAX_RESULTS_PER_ANCHOR} results per anchor`);
  return signedTx(seed, gas, (tx) => {
    const target = (fn: string): `${string}::${string}::${string}` => `${deployment.packageId}::ledger::${fn}`;
    const registry = (mutable: boolean) =>
      tx.sharedObjectRef({
        objectId: deployment.registryId,
        initialSharedVersion: deployment.registryVersion,
        mutable,
      });
    tx.moveCall({
      target: target('anchor'),
      arguments: [
        registry(true),
        tx.pure.vector('u8', call.root),
        tx.pure.u64(call.count),
        tx.pure.u64(call.firstLamport),
        tx.pure.u64(call.lastLamport),
        tx.object.clock(),
      ],
    });
    for (const r of call.results) {
      tx.moveCall({
        target: target('commit_result'),
        arguments: [
          registry(false),
          tx.pure.vector('u8', new TextEncoder().encode(r.task)),
          tx.pure.vector('u8', r.digest),
          tx.pure.vector('u8', call.root),
        ],
      });
    }
  });
}

/** What an admin does to the fleet's registry: register a robot by its key, or revoke an address. */
export type AdminCall = { register: Uint8Array } | { revoke: string };

/**
 * A signed `register_robot` or `revoke_robot` transaction, by the holder of the AdminCap (`cap`,
 * an owned object, so its current version and digest are part of what is signed).
 */
export async function buildAdminTx(
  seed: Uint8Array,
  deployment: IotaDeployment,
  gas: GasPlan,
  cap: GasRef,
  call: AdminCall,
): Promise<SignedTx> {
  if ('register' in call && call.register.length !== 32)
    throw new IotaTxError('BAD_TX', 'a robot key is 32 bytes (Ed25519)');
  if ('revoke' in call && !/^0x[0-9a-f]{64}$/.test(call.revoke))
    throw new IotaTxError('BAD_TX', `${JSON.stringify(call.revoke)} is not an IOTA address (0x and 64 hex digits)`);
  return signedTx(seed, gas, (tx) => {
    const registry = tx.sharedObjectRef({
      objectId: deployment.registryId,
      initialSharedVersion: deployment.registryVersion,
      mutable: true,
    });
    const capArg = tx.objectRef(cap);
    if ('register' in call)
      tx.moveCall({
        target: `${deployment.packageId}::ledger::register_robot`,
        arguments: [capArg, registry, tx.pure.vector('u8', call.register)],
      });
    else
      tx.moveCall({
        target: `${deployment.packageId}::ledger::revoke_robot`,
        arguments: [capArg, registry, tx.pure.address(call.revoke)],
      });
  });
}

export interface ReadAnchorTx {
  sender: string;
  digest: string;
  packageId: string;
  root: Uint8Array;
  count: number;
  firstLamport: number;
  lastLamport: number;
  results: { task: string; digest: Uint8Array }[];
}

/**
 * Checks a signed anchor transaction without a node: the signature is the sender's, the digest
 * is of these bytes, and the Move calls are the package's anchor (and commit_result) calls.
 */
export async function readAnchorTx(bytes: Uint8Array, signature: string): Promise<ReadAnchorTx> {
  let data: ReturnType<typeof bcs.TransactionData.parse>;
  try {
    data = bcs.TransactionData.parse(bytes);
  } catch (err) {
    throw new IotaTxError('BAD_TX', `not IOTA transaction data: ${(err as Error).message}`);
  }
  const sender = data.V1.sender;
  try {
    await verifyTransactionSignature(bytes, signature, { address: sender });
  } catch (err) {
    throw new IotaTxError('BAD_TX_SIGNATURE', `transaction signature is not the sender's: ${(err as Error).message}`);
  }
  const ptb = data.V1.kind.ProgrammableTransaction;
  if (!ptb) throw new IotaTxError('BAD_TX', 'not a programmable transaction');
  const pure = (arg: unknown): Uint8Array => {
    const a = arg as { Input?: number };
    const input = a.Input === undefined ? undefined : ptb.inputs[a.Input];
    if (!input?.Pure) throw new IotaTxError('BAD_TX', 'expected a pure argument');
    return Uint8Array.from(Buffer.from(input.Pure.bytes, 'base64'));
  };
  const bytesArg = (arg: unknown): Uint8Array => bcs.vector(bcs.u8()).parse(pure(arg)) as unknown as Uint8Array;
  const u64Arg = (arg: unknown): number => Number(bcs.u64().parse(pure(arg)));
  let anchor: Omit<ReadAnchorTx, 'sender' | 'digest' | 'results'> | undefined;
  const results: ReadAnchorTx['results'] = [];
  for (const command of ptb.commands) {
    const call = command.MoveCall;
    if (!call || call.module !== 'ledger')
      throw new IotaTxError('BAD_TX', 'unexpected command in an anchor transaction');
    if (call.function === 'anchor' && !anchor && call.arguments.length === 6) {
      const [, root, count, first, last] = call.arguments;
      anchor = {
        packageId: call.package,
        root: Uint8Array.from(bytesArg(root)),
        count: u64Arg(count),
        firstLamport: u64Arg(first),
        lastLamport: u64Arg(last),
      };
    } else if (call.function === 'commit_result' && call.arguments.length === 4) {
      results.push({
        task: new TextDecoder().decode(Uint8Array.from(bytesArg(call.arguments[1]))),
        digest: Uint8Array.from(bytesArg(call.arguments[2])),
      });
    } else throw new IotaTxError('BAD_TX', `unexpected call ledger::${call.function}`);
  }
  if (!anchor) throw new IotaTxError('BAD_TX', 'no anchor call in the transaction');
  const digest = await Transaction.from(bytes).getDigest();
  return { sender, digest, ...anchor, results };
}
