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
  /** The Anchored events and checkpoint of a transaction, or undefined if the chain lacks it. */
  lookup(digest: string): Promise<ChainAnchor | undefined>;
}

export interface ChainAnchor {
  digest: string;
  checkpoint?: number;
  sender?: string;
  /** Anchored events, with the package that emitted each. */
  anchors: { packageId: string; root: string; count: number; robot: string }[];
}

export type ChainErrorCode = 'UNREACHABLE' | 'REJECTED' | 'TIMEOUT';

export class ChainError extends RobomeshError<ChainErrorCode> {
  constructor(code: ChainErrorCode, message: string) {
    super(code, message);
  }
}

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
  // The SDK raises JsonRpcError (numeric code) when the node answered with an error; busy and
  // transient answers are worth retrying as they are, anything else rejected what we sent.
  if (typeof e.code === 'number')
    return new ChainError(e.code === -32604 || e.code === -32050 ? 'UNREACHABLE' : 'REJECTED', text);
  return new ChainError('UNREACHABLE', text);
}

interface TxResponse {
  digest: string;
  checkpoint?: string | null;
  effects?: { status?: { status: string; error?: string }; gasObject?: { reference: GasRef } } | null;
  events?: { type: string; sender?: string; parsedJson?: unknown }[] | null;
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
      return { coin: { objectId: best.coinObjectId, version: best.version, digest: best.digest }, price };
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
    const status = res.effects?.status;
    if (status?.status !== 'success')
      throw new ChainError('REJECTED', `transaction ${res.digest} failed: ${status?.error ?? 'no effects returned'}`);
    if (res.digest !== tx.digest)
      throw new ChainError('REJECTED', `node answered for ${res.digest}, submitted ${tx.digest}`);
    return { digest: res.digest, gas: res.effects?.gasObject?.reference };
  }

  async waitFinal(digest: string, timeoutMs: number): Promise<{ checkpoint: number }> {
    try {
      const res = (await this.client.waitForTransaction({
        digest,
        timeout: timeoutMs,
        pollInterval: Math.min(1000, timeoutMs / 4),
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
        options: { showEvents: true, showInput: true },
      })) as unknown as TxResponse;
    } catch (err) {
      const c = classify(err, `looking up ${digest}`);
      if (c.code === 'REJECTED') return undefined; // the node does not know this digest
      throw c;
    }
    const anchors = (res.events ?? [])
      .filter((e) => e.type.endsWith('::ledger::Anchored'))
      .map((e) => {
        const j = e.parsedJson as { root?: unknown; count?: unknown; robot?: unknown };
        return {
          packageId: e.type.slice(0, -'::ledger::Anchored'.length),
          root: b64ToHex(j.root),
          count: Number(j.count),
          robot: String(j.robot),
        };
      });
    return {
      digest: res.digest,
      checkpoint: res.checkpoint == null ? undefined : Number(res.checkpoint),
      sender: res.transaction?.data?.sender,
      anchors,
    };
  }
}
