import { createHash } from 'node:crypto';
import { type Server, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { bcs } from '@iota/iota-sdk/bcs';
import { type IotaTransport, JsonRpcError } from '@iota/iota-sdk/client';
import { Transaction } from '@iota/iota-sdk/transactions';
import { toBase58 } from '@iota/iota-sdk/utils';
import { verifyTransactionSignature } from '@iota/iota-sdk/verify';

/**
 * A stand-in for an IOTA full node — the test implementation of the anchor's outside system,
 * NOT IOTA: it answers the JSON-RPC methods the adapter calls with the rules that matter to it
 * (signatures checked, one transaction per gas coin version, execution idempotent per digest,
 * Anchored events carrying the committed root), in-process or on 127.0.0.1. Tests switch faults
 * on (node down, next execution rejected, requests hanging, answers lost); the local fleet uses
 * it so a newcomer sees anchoring and audit work, and its report says it ran on the stand-in.
 */
export interface FakeNodeFaults {
  down: boolean;
  rejectNext: number;
  /** Methods whose requests never answer (until the caller aborts). */
  hang: Set<string>;
  /** Methods that take effect but whose answer is lost on the way back. */
  loseReply: Set<string>;
}

interface Executed {
  digest: string;
  checkpoint: number;
  sender: string;
  events: { type: string; sender: string; parsedJson: unknown }[];
  gas: { objectId: string; version: string; digest: string };
}

const fakeDigest = (seed: string): string => toBase58(createHash('sha256').update(seed).digest());

export class IotaStandIn {
  readonly calls: string[] = [];
  readonly faults: FakeNodeFaults = { down: false, rejectNext: 0, hang: new Set(), loseReply: new Set() };
  readonly executed = new Map<string, Executed>();
  private readonly coins = new Map<string, { objectId: string; version: number; digest: string }>();
  private checkpoint = 100;

  constructor(readonly packageId: string) {}

  fund(owner: string): { objectId: string; version: string; digest: string } {
    const coin = {
      objectId: `0x${createHash('sha256').update(`coin:${owner}`).digest('hex')}`,
      version: 7,
      digest: fakeDigest(`coin:${owner}:7`),
    };
    this.coins.set(owner, coin);
    return { ...coin, version: String(coin.version) };
  }

  coinOf(owner: string): { objectId: string; version: string; digest: string } | undefined {
    const c = this.coins.get(owner);
    return c && { ...c, version: String(c.version) };
  }

  /** The transport the SDK's IotaClient uses in-process. */
  transport(): IotaTransport {
    return {
      request: async <T>(input: { method: string; params: unknown[]; signal?: AbortSignal }): Promise<T> => {
        this.calls.push(input.method);
        if (this.faults.down) throw new TypeError('fetch failed');
        if (this.faults.hang.has(input.method)) {
          await new Promise((_, reject) => input.signal?.addEventListener('abort', () => reject(input.signal!.reason)));
        }
        const answer = (await this.answer(input.method, input.params)) as T;
        if (this.faults.loseReply.has(input.method)) throw new DOMException('the answer was lost', 'TimeoutError');
        return answer;
      },
      subscribe: () => Promise.reject(new Error('subscriptions are not scripted')),
    };
  }

  /** The same node over HTTP on 127.0.0.1 (an ephemeral port, or `port` to come back on the same one). */
  async listen(port = 0): Promise<{ url: string; port: number; close: () => Promise<void> }> {
    const server: Server = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        void (async () => {
          const { id, method, params } = JSON.parse(body) as { id: number; method: string; params: unknown[] };
          this.calls.push(method);
          // The same faults as in-process: down resets the connection, a hang never answers
          // (the client's deadline ends it), a lost answer takes effect and then resets.
          if (this.faults.down) return req.socket.destroy();
          if (this.faults.hang.has(method)) return;
          let reply: unknown;
          try {
            reply = { jsonrpc: '2.0', id, result: await this.answer(method, params) };
          } catch (err) {
            const e = err as JsonRpcError;
            reply = { jsonrpc: '2.0', id, error: { code: e.code ?? -32603, message: e.message } };
          }
          if (this.faults.loseReply.has(method)) return req.socket.destroy();
          res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(reply));
        })();
      });
    });
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    const actual = (server.address() as AddressInfo).port;
    return {
      url: `http://127.0.0.1:${actual}`,
      port: actual,
      close: () =>
        new Promise<void>((resolve) => {
          server.closeAllConnections();
          server.close(() => resolve());
        }),
    };
  }

  private async answer(method: string, params: unknown[]): Promise<unknown> {
    switch (method) {
      case 'iota_getLatestCheckpointSequenceNumber':
        return String(this.checkpoint);
      case 'iotax_getReferenceGasPrice':
        return '1000';
      case 'iotax_getCoins': {
        const c = this.coins.get(params[0] as string);
        const data = c
          ? [
              {
                coinType: '0x2::iota::IOTA',
                coinObjectId: c.objectId,
                version: String(c.version),
                digest: c.digest,
                balance: '1000000000',
                previousTransaction: fakeDigest('genesis'),
              },
            ]
          : [];
        return { data, hasNextPage: false, nextCursor: null };
      }
      case 'iota_executeTransactionBlock':
        return this.execute(params[0] as string, (params[1] as string[])[0]);
      case 'iota_getTransactionBlock': {
        const t = this.executed.get(params[0] as string);
        if (!t)
          throw new JsonRpcError(
            `Could not find the referenced transaction [TransactionDigest(${String(params[0])})]`,
            -32602,
          );
        return {
          digest: t.digest,
          checkpoint: String(t.checkpoint),
          events: t.events,
          transaction: { data: { sender: t.sender } },
        };
      }
      default:
        throw new JsonRpcError(`Method not found: ${method}`, -32601);
    }
  }

  private async execute(b64: string, signature: string): Promise<unknown> {
    const bytes = new Uint8Array(Buffer.from(b64, 'base64'));
    const digest = await Transaction.from(bytes).getDigest();
    const done = this.executed.get(digest);
    if (done) return this.effects(done);
    if (this.faults.rejectNext > 0) {
      this.faults.rejectNext--;
      throw new JsonRpcError('Transaction execution failed due to issues with transaction inputs', -32002);
    }
    const data = bcs.TransactionData.parse(bytes).V1;
    try {
      await verifyTransactionSignature(bytes, signature, { address: data.sender });
    } catch {
      throw new JsonRpcError('Invalid user signature', -32002);
    }
    const pay = data.gasData.payment[0];
    const coin = this.coins.get(data.sender);
    if (!coin || coin.objectId !== pay.objectId || String(coin.version) !== String(pay.version)) {
      throw new JsonRpcError(`Object ${pay.objectId} version ${pay.version} is unavailable for consumption`, -32002);
    }
    coin.version++;
    coin.digest = fakeDigest(`coin:${data.sender}:${coin.version}`);
    const ptb = data.kind.ProgrammableTransaction!;
    const arg = (a: unknown): Uint8Array =>
      new Uint8Array(Buffer.from(ptb.inputs[(a as { Input: number }).Input].Pure!.bytes, 'base64'));
    const events = ptb.commands.map((c) => {
      const call = c.MoveCall!;
      if (call.function === 'anchor') {
        const root = [...bcs.vector(bcs.u8()).parse(arg(call.arguments[1]))];
        const count = bcs.u64().parse(arg(call.arguments[2]));
        return {
          type: `${this.packageId}::ledger::Anchored`,
          sender: data.sender,
          parsedJson: { root, count, robot: data.sender },
        };
      }
      return { type: `${this.packageId}::ledger::ResultCommitted`, sender: data.sender, parsedJson: {} };
    });
    const t: Executed = {
      digest,
      checkpoint: ++this.checkpoint,
      sender: data.sender,
      events,
      gas: { ...coin, version: String(coin.version) },
    };
    this.executed.set(digest, t);
    return this.effects(t);
  }

  private effects(t: Executed): unknown {
    return {
      digest: t.digest,
      effects: { status: { status: 'success' }, gasObject: { owner: { AddressOwner: t.sender }, reference: t.gas } },
    };
  }
}
