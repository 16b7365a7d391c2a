import {
  IotaClient,
  IotaHTTPTransport,
  type IotaTransport,
  type IotaTransportRequestOptions,
} from '@iota/iota-sdk/client';
import { RobomeshError } from '../../protocol/errors.js';
import type { GasRef, SignedTx } from './iota-tx.js';

/**
 * The chain an anchor lands on, as robomesh needs it: the IOTA adapter below talks JSON-RPC
 * through @iota/iota-sdk; tests use it with a scripted transport or a 127.0.0.1 stub.
 */
export interface AnchorChain {
  /** True when a node answers within the timeout. Never throws. */
  probe(timeoutMs: number): Promise<boolean>;
  gasFor(owner: string): Promise<{ coin: GasRef; price: bigint }>;
  /** Submits signed bytes; resolves with the gas coin's new reference. Idempotent per digest. */
  execute(tx: SignedTx): Promise<{ digest: string; gas?: GasRef }>;
  /** Waits until the transaction is in a checkpoint. */
  waitFinal(digest: string, timeoutMs: number): Promise<{ checkpoint: number }>;
  /**
   * The Anchored events, checkpoint and status of a transaction, or undefined when the node does
   * not know it (a pruning node forgets old ones).
   */
  lookup(digest: string): Promise<ChainAnchor | undefined>;
}

export interface ChainAnchor {
  digest: string;
  checkpoint?: number;
  sender?: string;
  /** Set when the transaction executed and failed (it is checkpointed all the same, gas charged). */
  failure?: TxFailure;
  /** Anchored events, with the package that emitted each. */
  anchors: { packageId: string; root: string; count: number; robot: string }[];
}

/** A transaction that executed and failed: its status error, and the Move abort when it was one. */
export interface TxFailure {
  error: string;
  abort?: MoveAbort;
}

export interface MoveAbort {
  module: string;
  function?: string;
  code: number;
  /** The Move constant with this code in robomesh's package (contracts/move), when known. */
  name?: string;
}

/**
 * What went wrong, and what a caller may do about it:
 * - UNREACHABLE, TIMEOUT, BUSY: the node was not reached, did not answer, or answered that it is
 *   busy or hit an internal error (-32009, -32604, -32050, -32603, or a code we do not know):
 *   retry the same signed bytes later.
 * - REJECTED: the node refused the transaction before executing it (-32002: stale gas coin, bad
 *   signature): nothing was charged; build and sign it anew.
 * - NOT_FOUND: the node does not know the digest (-32602); a pruning full node answers the same
 *   for old transactions.
 * - FAILED: executed and failed (out of gas, …): gas was charged, the coin moved; sign anew.
 * - ABORTED: executed and the Move code aborted (`abort` names the constant): it will abort again,
 *   never retried.
 */
export type ChainErrorCode = 'UNREACHABLE' | 'TIMEOUT' | 'BUSY' | 'REJECTED' | 'NOT_FOUND' | 'FAILED' | 'ABORTED';

export class ChainError extends RobomeshError<ChainErrorCode> {
  constructor(
    code: ChainErrorCode,
    message: string,
    /** For FAILED and ABORTED: the failure, and the gas coin's reference after the charge. */
    readonly executed?: { failure: TxFailure; gas?: GasRef },
  ) {
    super(code, message);
  }
}

/** Abort codes of robomesh's Move package (contracts/move/sources/ledger.move; a test holds them equal). */
export const LEDGER_ABORTS: Readonly<Record<number, string>> = {
  1: 'EBadKeyLength',
  2: 'EAlreadyRegistered',
  3: 'ENotRegistered',
  4: 'EBadHashLength',
  5: 'EEmptyAnchor',
  6: 'EBadLamportRange',
  7: 'EBadTaskLength',
};

/**
 * The Move abort in an execution status error, as the node prints it:
 * `MoveAbort(MoveLocation { module: ModuleId { address: 0x…, name: Identifier("ledger") }, function: 3,
 * instruction: 12, function_name: Some("anchor") }, 3) in command 0`.
 */
export function parseMoveAbort(error: string): MoveAbort | undefined {
  if (!error.startsWith('MoveAbort(')) return undefined;
  const module = /name: Identifier\("(\w+)"\)/.exec(error)?.[1];
  const fn = /function_name: Some\("(\w+)"\)/.exec(error)?.[1];
  const code = /\},\s*(\d+)\)( in command \d+)?$/.exec(error)?.[1];
  if (!module || code === undefined) return undefined;
  const abort: MoveAbort = { module, code: Number(code) };
  if (fn) abort.function = fn;
  if (module === 'ledger' && LEDGER_ABORTS[abort.code]) abort.name = LEDGER_ABORTS[abort.code];
  return abort;
}

function failureOf(status: { status: string; error?: string } | undefined): TxFailure | undefined {
  if (!status || status.status === 'success') return undefined;
  const error = status.error ?? 'failed without an error message';
  return { error, abort: parseMoveAbort(error) };
}

const describeFailure = (f: TxFailure): string =>
  f.abort
    ? `Move abort ${f.abort.name ?? `code ${f.abort.code}`} in ${f.abort.module}` +
      `${f.abort.function ? `::${f.abort.function}` : ''}`
    : f.error;

/** Every JSON-RPC request gets a deadline: a hung node must not hang a robot. */
export function timeoutTransport(inner: IotaTransport, timeoutMs: number): IotaTransport {
  return {
    request<T>(input: IotaTransportRequestOptions): Promise<T> {
      const signal = input.signal
        ? AbortSignal.any([input.signal, AbortSignal.timeout(timeoutMs)])
        : AbortSignal.timeout(timeoutMs);
      return inner.request<T>({ ...input, signal });
    },
    subscribe: (input) => inner.subscribe(input),
  };
}

export function iotaClientFor(url: string, timeoutMs = 10_000): IotaClient {
  return new IotaClient({ transport: timeoutTransport(new IotaHTTPTransport({ url }), timeoutMs) });
}

function classify(err: unknown, what: string): ChainError {
  if (err instanceof ChainError) return err;
  const e = err as Error & { code?: unknown; cause?: { code?: unknown } };
  const text = `${what}: ${e.message ?? String(err)}`;
  if (e.name === 'TimeoutError' || e.name === 'AbortError') return new ChainError('TIMEOUT', text);
  // The SDK raises JsonRpcError (numeric code) when the node answered with an error. IOTA's
  // server (jsonrpsee) answers rate limiting with -32009; -32604 is the SDK's older table.
  if (typeof e.code === 'number') {
    if (e.code === -32002) return new ChainError('REJECTED', text);
    if (e.code === -32602) return new ChainError('NOT_FOUND', text);
    return new ChainError('BUSY', `${text} (JSON-RPC ${e.code})`);
  }
  return new ChainError('UNREACHABLE', text);
}

interface TxResponse {
  digest: string;
  checkpoint?: string | null;
  effects?: {
    status?: { status: string; error?: string };
    gasObject?: { reference: { objectId: string; version: string | number; digest: string } };
  } | null;
  events?: { type: string; packageId?: string; sender?: string; parsedJson?: unknown }[] | null;
  transaction?: { data?: { sender?: string } } | null;
}

const b64ToHex = (v: unknown): string =>
  Array.isArray(v)
    ? Buffer.from(v as number[]).toString('hex')
    : typeof v === 'string'
      ? Buffer.from(v, 'base64').toString('hex')
      : '';

export class IotaAnchorChain implements AnchorChain {
  constructor(private readonly client: IotaClient) {}

  async probe(timeoutMs: number): Promise<boolean> {
    try {
      await this.client.getLatestCheckpointSequenceNumber({ signal: AbortSignal.timeout(timeoutMs) });
      return true;
    } catch {
      return false;
    }
  }

  async gasFor(owner: string): Promise<{ coin: GasRef; price: bigint }> {
    try {
      const [coins, price] = await Promise.all([this.client.getCoins({ owner }), this.client.getReferenceGasPrice()]);
      const best = [...coins.data].sort((a, b) => (BigInt(b.balance) > BigInt(a.balance) ? 1 : -1))[0];
      if (!best) throw new ChainError('REJECTED', `address ${owner} holds no gas coin: fund it (iota client faucet)`);
      // A node sends the version as an integer (the spec's SequenceNumber); the SDK types it a string.
      return { coin: { objectId: best.coinObjectId, version: String(best.version), digest: best.digest }, price };
    } catch (err) {
      throw classify(err, 'fetching gas');
    }
  }

  async execute(tx: SignedTx): Promise<{ digest: string; gas?: GasRef }> {
    let res: TxResponse;
    try {
      res = (await this.client.executeTransactionBlock({
        transactionBlock: tx.bytes,
        signature: tx.signature,
        options: { showEffects: true },
      })) as unknown as TxResponse;
    } catch (err) {
      throw classify(err, `executing ${tx.digest}`);
    }
    if (res.digest !== tx.digest)
      throw new ChainError('REJECTED', `node answered for ${res.digest}, submitted ${tx.digest}`);
    const ref = res.effects?.gasObject?.reference;
    // A node sends versions as integers; a GasRef keeps them as decimal strings.
    const gas = ref && { objectId: ref.objectId, version: String(ref.version), digest: ref.digest };
    if (!res.effects?.status) throw new ChainError('BUSY', `the node returned no effects for ${res.digest}`);
    const failure = failureOf(res.effects.status);
    if (failure) {
      const code = failure.abort ? 'ABORTED' : 'FAILED';
      throw new ChainError(code, `transaction ${res.digest} failed: ${describeFailure(failure)}`, { failure, gas });
    }
    return { digest: res.digest, gas };
  }

  /** The current reference of an owned object (an AdminCap), to sign a transaction that uses it. */
  async objectRef(objectId: string): Promise<GasRef & { owner?: string; type?: string }> {
    let res: Awaited<ReturnType<IotaClient['getObject']>>;
    try {
      res = await this.client.getObject({ id: objectId, options: { showOwner: true, showType: true } });
    } catch (err) {
      throw classify(err, `fetching object ${objectId}`);
    }
    if (!res.data) throw new ChainError('NOT_FOUND', `object ${objectId}: ${res.error?.code ?? 'not found'}`);
    const owner = res.data.owner as { AddressOwner?: string } | undefined;
    return {
      objectId: res.data.objectId,
      version: String(res.data.version),
      digest: res.data.digest,
      owner: owner?.AddressOwner,
      type: res.data.type ?? undefined,
    };
  }

  async waitFinal(digest: string, timeoutMs: number): Promise<{ checkpoint: number }> {
    try {
      const res = (await this.client.waitForTransaction({
        digest,
        timeout: timeoutMs,
        pollInterval: Math.min(250, timeoutMs / 4),
      })) as unknown as TxResponse;
      return { checkpoint: Number(res.checkpoint) };
    } catch (err) {
      throw classify(err, `waiting for ${digest}`);
    }
  }

  async lookup(digest: string): Promise<ChainAnchor | undefined> {
    let res: TxResponse;
    try {
      res = (await this.client.getTransactionBlock({
        digest,
        options: { showEvents: true, showInput: true, showEffects: true },
      })) as unknown as TxResponse;
    } catch (err) {
      const c = classify(err, `looking up ${digest}`);
      if (c.code === 'NOT_FOUND') return undefined;
      throw c;
    }
    const anchors = (res.events ?? [])
      .filter((e) => e.type.endsWith('::ledger::Anchored'))
      .map((e) => {
        const j = e.parsedJson as { root?: unknown; count?: unknown; robot?: unknown };
        return {
          // The package the transaction called; the type names the package that first defined
          // the struct, which stays the same across upgrades.
          packageId: e.packageId ?? e.type.slice(0, -'::ledger::Anchored'.length),
          root: b64ToHex(j.root),
          count: Number(j.count),
          robot: String(j.robot),
        };
      });
    return {
      digest: res.digest,
      checkpoint: res.checkpoint == null ? undefined : Number(res.checkpoint),
      sender: res.transaction?.data?.sender,
      failure: failureOf(res.effects?.status ?? undefined),
      anchors,
    };
  }
}
