import { createHash } from 'node:crypto';
import { type Server, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { bcs } from '@iota/iota-sdk/bcs';
import { type IotaTransport, JsonRpcError } from '@iota/iota-sdk/client';
import { Ed25519PublicKey } from '@iota/iota-sdk/keypairs/ed25519';
import { Transaction } from '@iota/iota-sdk/transactions';
import { toBase58 } from '@iota/iota-sdk/utils';
import { verifyTransactionSignature } from '@iota/iota-sdk/verify';

/**
 * A stand-in for an IOTA full node — the test implementation of the anchor's outside system,
 * NOT IOTA: it answers the JSON-RPC methods the adapter calls with the rules that matter to it
 * (signatures checked, one transaction per gas coin version, execution idempotent per digest,
 * Anchored events carrying the committed root), in-process or on 127.0.0.1, shaped as a node
 * answers: a transaction is known before its checkpoint, failed executions are checkpointed with
 * `effects.status = failure` and gas charged, object versions are integers, responses hold what
 * the `options` asked for, events carry id, packageId, transactionModule, bcs and timestampMs.
 * Tests switch faults on (node down, busy, next execution rejected / aborted / out of gas,
 * requests hanging, answers lost, old transactions pruned); the local fleet uses it so a
 * newcomer sees anchoring and audit work, and its report says it ran on the stand-in.
 */
export interface FakeNodeFaults {
  down: boolean;
  rejectNext: number;
  /** Methods whose requests never answer (until the caller aborts). */
  hang: Set<string>;
  /** Methods that take effect but whose answer is lost on the way back. */
  loseReply: Set<string>;
  /** Per method, how many more requests are answered -32009 (the node's rate limiter: "server is busy"). */
  busy: Map<string, number>;
  /** The next n executions abort in `ledger::anchor` with this code (3 = ENotRegistered). */
  abortNext: { count: number; code: number };
  /** The next n executions run out of gas. */
  outOfGasNext: number;
  /** Lookups of executed transactions answer -32602, as a pruning full node does for old ones. */
  pruned: boolean;
}

interface Executed {
  digest: string;
  /** When its checkpoint is certified (ms since epoch); until then the node shows none. */
  checkpointAt: number;
  checkpoint: number;
  sender: string;
  status: { status: 'success' } | { status: 'failure'; error: string };
  events: { type: string; sender: string; parsedJson: unknown; bcs: Uint8Array }[];
  gas: { objectId: string; version: number; digest: string };
  /** The transaction as the node renders it for `showInput` (a TransactionBlock). */
  input: { data: unknown; txSignatures: string[] };
  gasUsed: { computationCost: string; storageCost: string; storageRebate: string };
}

interface ResponseOptions {
  showEffects?: boolean;
  showEvents?: boolean;
  showInput?: boolean;
}

const fakeDigest = (seed: string): string => toBase58(createHash('sha256').update(seed).digest());
const EPOCH = 42;

type TxData = ReturnType<typeof bcs.TransactionData.parse>['V1'];

/** Pure arguments of the package's calls, as the node renders them once it knows the Move types. */
const PURE_TYPES: Record<string, (string | null)[]> = {
  anchor: [null, 'vector<u8>', 'u64', 'u64', 'u64', null],
  commit_result: [null, 'vector<u8>', 'vector<u8>', 'vector<u8>'],
  register_robot: [null, null, 'vector<u8>'],
  revoke_robot: [null, null, 'address'],
};

/** A programmable transaction as the node shows it (`TransactionBlockData`): inputs typed from the calls. */
function renderTransaction(data: TxData): unknown {
  const ptb = data.kind.ProgrammableTransaction!;
  const typeOf = new Map<number, string>();
  for (const c of ptb.commands) {
    const call = c.MoveCall;
    if (!call) continue;
    call.arguments.forEach((a, i) => {
      const t = PURE_TYPES[call.function]?.[i];
      if (t && a.$kind === 'Input') typeOf.set(a.Input, t);
    });
  }
  const inputs = ptb.inputs.map((input, i) => {
    const shared = input.Object?.SharedObject;
    if (shared)
      return {
        type: 'object',
        objectType: 'sharedObject',
        objectId: shared.objectId,
        initialSharedVersion: String(shared.initialSharedVersion),
        mutable: shared.mutable,
      };
    const owned = input.Object?.ImmOrOwnedObject;
    if (owned)
      return {
        type: 'object',
        objectType: 'immOrOwnedObject',
        objectId: owned.objectId,
        version: String(owned.version),
        digest: owned.digest,
      };
    const bytes = new Uint8Array(Buffer.from(input.Pure!.bytes, 'base64'));
    const type = typeOf.get(i);
    if (type === 'address') return { type: 'pure', valueType: 'address', value: bcs.Address.parse(bytes) };
    if (type === 'u64') return { type: 'pure', valueType: 'u64', value: bcs.u64().parse(bytes) };
    if (type === 'vector<u8>')
      return { type: 'pure', valueType: 'vector<u8>', value: bcs.vector(bcs.u8()).parse(bytes) };
    return { type: 'pure', valueType: null, value: [...bytes] };
  });
  const arg = (a: { $kind: string; Input?: number; Result?: number; NestedResult?: [number, number] }) =>
    a.$kind === 'GasCoin'
      ? 'GasCoin'
      : a.$kind === 'Input'
        ? { Input: a.Input }
        : a.$kind === 'Result'
          ? { Result: a.Result }
          : { NestedResult: a.NestedResult };
  const transactions = ptb.commands.map((c) => ({
    MoveCall: {
      package: c.MoveCall!.package,
      module: c.MoveCall!.module,
      function: c.MoveCall!.function,
      ...(c.MoveCall!.typeArguments.length ? { type_arguments: c.MoveCall!.typeArguments } : {}),
      arguments: c.MoveCall!.arguments.map(arg),
    },
  }));
  return {
    messageVersion: 'v1',
    transaction: { kind: 'ProgrammableTransaction', inputs, transactions },
    sender: data.sender,
    gasData: {
      payment: data.gasData.payment.map((p) => ({
        objectId: p.objectId,
        version: Number(p.version),
        digest: p.digest,
      })),
      owner: data.gasData.owner,
      price: String(data.gasData.price),
      budget: String(data.gasData.budget),
    },
  };
}

/** The Anchored event's struct (contracts/move/sources/ledger.move), for the events' `bcs` field. */
const AnchoredBcs = bcs.struct('Anchored', {
  registry: bcs.Address,
  robot: bcs.Address,
  root: bcs.vector(bcs.u8()),
  count: bcs.u64(),
  first_lamport: bcs.u64(),
  last_lamport: bcs.u64(),
  sequence: bcs.u64(),
  timestamp_ms: bcs.u64(),
});
const RobotRegisteredBcs = bcs.struct('RobotRegistered', {
  registry: bcs.Address,
  robot: bcs.Address,
  public_key: bcs.vector(bcs.u8()),
});
const RobotRevokedBcs = bcs.struct('RobotRevoked', { registry: bcs.Address, robot: bcs.Address });
/** ledger.move's functions in the order it declares them (a MoveAbort names the function by index). */
const MOVE_FUNCTIONS = ['init', 'register_robot', 'revoke_robot', 'anchor', 'commit_result'];
const ResultCommittedBcs = bcs.struct('ResultCommitted', {
  registry: bcs.Address,
  robot: bcs.Address,
  task: bcs.vector(bcs.u8()),
  digest: bcs.vector(bcs.u8()),
  root: bcs.vector(bcs.u8()),
});

export class IotaStandIn {
  readonly calls: string[] = [];
  readonly faults: FakeNodeFaults = {
    down: false,
    rejectNext: 0,
    hang: new Set(),
    loseReply: new Set(),
    busy: new Map(),
    abortNext: { count: 0, code: 3 },
    outOfGasNext: 0,
    pruned: false,
  };
  readonly executed = new Map<string, Executed>();
  private readonly coins = new Map<string, { objectId: string; version: number; digest: string }>();
  private checkpoint = 100;
  private anchors = 0;
  /** The registry's robots (address → key); checked only when `options.registry` is 'enforced'. */
  private registered = new Map<string, Uint8Array>();
  /** AdminCaps by object id: who owns each, at which version. */
  private readonly caps = new Map<string, { owner: string; version: number; digest: string }>();

  /**
   * `packageId` is the package transactions call; `definedBy` the package that first defined the
   * event structs (differs after an upgrade: event types keep the original package's id).
   */
  constructor(
    readonly packageId: string,
    readonly options: {
      checkpointDelayMs?: number;
      definedBy?: string;
      /**
       * 'enforced': anchor and commit_result abort with ENotRegistered unless the sender was
       * registered (register_robot, or register() here). 'any' (default): every sender may anchor,
       * a fleet whose operator registered every robot it funded.
       */
      registry?: 'enforced' | 'any';
    } = {},
  ) {}

  /** An AdminCap owned by `owner` (what publishing the package gives its publisher). */
  grantAdminCap(owner: string): string {
    const objectId = `0x${createHash('sha256').update(`cap:${owner}`).digest('hex')}`;
    this.caps.set(objectId, { owner, version: 3, digest: fakeDigest(`cap:${objectId}:3`) });
    return objectId;
  }

  /** Registers a robot's key as its admin would have, before the test starts. */
  register(publicKey: Uint8Array): string {
    const robot = new Ed25519PublicKey(publicKey).toIotaAddress();
    this.registered.set(robot, publicKey);
    return robot;
  }

  isRegistered(address: string): boolean {
    return this.registered.has(address);
  }

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
        this.answerBusy(input.method);
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
            this.answerBusy(method);
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

  private answerBusy(method: string): void {
    const left = this.faults.busy.get(method) ?? 0;
    if (left <= 0) return;
    this.faults.busy.set(method, left - 1);
    throw new JsonRpcError('Server is busy, please try again later', -32009);
  }

  private async answer(method: string, params: unknown[]): Promise<unknown> {
    switch (method) {
      case 'iota_getLatestCheckpointSequenceNumber':
        return String(this.checkpoint);
      case 'iotax_getReferenceGasPrice':
        return '1000';
      case 'iotax_getBalance': {
        const c = this.coins.get(params[0] as string);
        return {
          coinType: '0x2::iota::IOTA',
          coinObjectCount: c ? 1 : 0,
          totalBalance: c ? '1000000000' : '0',
          lockedBalance: {},
        };
      }
      case 'iotax_getCoins': {
        const c = this.coins.get(params[0] as string);
        const data = c
          ? [
              {
                coinType: '0x2::iota::IOTA',
                coinObjectId: c.objectId,
                version: c.version,
                digest: c.digest,
                balance: '1000000000',
                previousTransaction: fakeDigest('genesis'),
              },
            ]
          : [];
        return { data, hasNextPage: false, nextCursor: null };
      }
      case 'iota_executeTransactionBlock': {
        const t = await this.execute(params[0] as string, (params[1] as string[])[0]);
        return this.response(t, params[2] as ResponseOptions | undefined, false);
      }
      case 'iota_getObject': {
        const id = params[0] as string;
        const cap = this.caps.get(id);
        const coin = [...this.coins.entries()].find(([, c]) => c.objectId === id);
        const found = cap
          ? { ...cap, type: `${this.packageId}::ledger::AdminCap` }
          : coin && { owner: coin[0], ...coin[1], type: '0x2::coin::Coin<0x2::iota::IOTA>' };
        if (!found) return { error: { code: 'notExists', object_id: id } };
        const options = (params[1] ?? {}) as { showType?: boolean; showOwner?: boolean };
        return {
          data: {
            objectId: id,
            version: found.version,
            digest: found.digest,
            ...(options.showType ? { type: found.type } : {}),
            ...(options.showOwner ? { owner: { AddressOwner: found.owner } } : {}),
          },
        };
      }
      case 'iota_getTransactionBlock': {
        const t = this.executed.get(params[0] as string);
        if (!t || this.faults.pruned)
          throw new JsonRpcError(
            `Could not find the referenced transaction [TransactionDigest(${String(params[0])})]`,
            -32602,
          );
        return this.response(t, params[1] as ResponseOptions | undefined, true);
      }
      default:
        throw new JsonRpcError(`Method not found: ${method}`, -32601);
    }
  }

  private async execute(b64: string, signature: string): Promise<Executed> {
    const bytes = new Uint8Array(Buffer.from(b64, 'base64'));
    const digest = await Transaction.from(bytes).getDigest();
    const done = this.executed.get(digest);
    if (done) return done;
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
    const definedBy = this.options.definedBy ?? this.packageId;
    const registryOf = (a: unknown): string => {
      const input = ptb.inputs[(a as { Input: number }).Input] as { Object?: { SharedObject?: { objectId: string } } };
      return input.Object?.SharedObject?.objectId ?? `0x${'0'.repeat(64)}`;
    };
    const sender = data.sender;
    const abortIn = (fn: string, command: number, code: number): Executed['status'] => ({
      status: 'failure',
      error:
        `MoveAbort(MoveLocation { module: ModuleId { address: ${this.packageId.slice(2)}, ` +
        `name: Identifier("ledger") }, function: ${MOVE_FUNCTIONS.indexOf(fn)}, instruction: 12, ` +
        `function_name: Some("${fn}") }, ${code}) in command ${command}`,
    });
    let status: Executed['status'] = { status: 'success' };
    const events: Executed['events'] = [];
    // The package's rules, command by command; the first abort fails the whole transaction.
    const registered = new Map(this.registered);
    for (const [i, c] of ptb.commands.entries()) {
      const call = c.MoveCall!;
      const bytesOf = (a: unknown) => [...bcs.vector(bcs.u8()).parse(arg(a))];
      const robotCall = call.function === 'anchor' || call.function === 'commit_result';
      if (robotCall && this.options.registry === 'enforced' && !registered.has(sender)) {
        status = abortIn(call.function, i, 3); // ENotRegistered
        break;
      }
      if (call.function === 'anchor') {
        const fields = {
          registry: registryOf(call.arguments[0]),
          robot: sender,
          root: bytesOf(call.arguments[1]),
          count: bcs.u64().parse(arg(call.arguments[2])),
          first_lamport: bcs.u64().parse(arg(call.arguments[3])),
          last_lamport: bcs.u64().parse(arg(call.arguments[4])),
          sequence: String(this.anchors + 1),
          timestamp_ms: String(Date.now()),
        };
        events.push({
          type: `${definedBy}::ledger::Anchored`,
          sender,
          parsedJson: fields,
          bcs: AnchoredBcs.serialize(fields).toBytes(),
        });
      } else if (call.function === 'commit_result') {
        const fields = {
          registry: registryOf(call.arguments[0]),
          robot: sender,
          task: bytesOf(call.arguments[1]),
          digest: bytesOf(call.arguments[2]),
          root: bytesOf(call.arguments[3]),
        };
        events.push({
          type: `${definedBy}::ledger::ResultCommitted`,
          sender,
          parsedJson: fields,
          bcs: ResultCommittedBcs.serialize(fields).toBytes(),
        });
      } else if (call.function === 'register_robot' || call.function === 'revoke_robot') {
        const capInput = ptb.inputs[(call.arguments[0] as { Input: number }).Input];
        const capId = capInput.Object?.ImmOrOwnedObject?.objectId;
        const cap = capId === undefined ? undefined : this.caps.get(capId);
        if (!cap || cap.owner !== sender)
          throw new JsonRpcError(
            `Transaction needs the AdminCap ${capId ?? '?'}, which ${sender} does not own`,
            -32002,
          );
        if (call.function === 'register_robot') {
          const key = Uint8Array.from(bytesOf(call.arguments[2]));
          if (key.length !== 32) {
            status = abortIn(call.function, i, 1); // EBadKeyLength
            break;
          }
          const robot = new Ed25519PublicKey(key).toIotaAddress();
          if (registered.has(robot)) {
            status = abortIn(call.function, i, 2); // EAlreadyRegistered
            break;
          }
          registered.set(robot, key);
          const fields = { registry: registryOf(call.arguments[1]), robot, public_key: [...key] };
          events.push({
            type: `${definedBy}::ledger::RobotRegistered`,
            sender,
            parsedJson: fields,
            bcs: RobotRegisteredBcs.serialize(fields).toBytes(),
          });
        } else {
          const robot = bcs.Address.parse(arg(call.arguments[2]));
          if (!registered.has(robot)) {
            status = abortIn(call.function, i, 3); // ENotRegistered
            break;
          }
          registered.delete(robot);
          const fields = { registry: registryOf(call.arguments[1]), robot };
          events.push({
            type: `${definedBy}::ledger::RobotRevoked`,
            sender,
            parsedJson: fields,
            bcs: RobotRevokedBcs.serialize(fields).toBytes(),
          });
        }
      } else throw new JsonRpcError(`Function ledger::${call.function} not found`, -32002);
    }
    if (status.status === 'success' && this.faults.abortNext.count > 0) {
      this.faults.abortNext.count--;
      status = abortIn('anchor', 0, this.faults.abortNext.code);
    } else if (status.status === 'success' && this.faults.outOfGasNext > 0) {
      this.faults.outOfGasNext--;
      status = { status: 'failure', error: 'InsufficientGas' };
    }
    // Owned inputs (the gas coin, an AdminCap) get new versions whether the transaction succeeds or not.
    for (const input of ptb.inputs) {
      const owned = input.Object?.ImmOrOwnedObject;
      const cap = owned && this.caps.get(owned.objectId);
      if (cap) {
        cap.version++;
        cap.digest = fakeDigest(`cap:${owned.objectId}:${cap.version}`);
      }
    }
    if (status.status === 'failure') events.length = 0;
    else {
      this.registered = registered;
      this.anchors += events.filter((e) => e.type.endsWith('::Anchored')).length;
    }
    const t: Executed = {
      digest,
      checkpointAt: Date.now() + (this.options.checkpointDelayMs ?? 100),
      checkpoint: ++this.checkpoint,
      sender: data.sender,
      status,
      events,
      gas: { ...coin },
      input: { data: renderTransaction(data), txSignatures: [signature] },
      // A failed execution is charged computation and refunded its storage; a successful anchor stores nothing.
      gasUsed: { computationCost: '1000000', storageCost: '988000', storageRebate: '978120' },
    };
    this.executed.set(digest, t);
    return t;
  }

  /** An IotaTransactionBlockResponse with what `options` asked for (and a checkpoint once certified). */
  private response(t: Executed, requested: ResponseOptions | null | undefined, lookup: boolean): unknown {
    const options = requested ?? {}; // JSON-RPC clients send null for "no options"
    const checkpointed = lookup && Date.now() >= t.checkpointAt;
    const timestampMs = String(t.checkpointAt);
    return {
      digest: t.digest,
      ...(checkpointed ? { checkpoint: String(t.checkpoint), timestampMs } : {}),
      ...(options.showInput ? { transaction: t.input } : {}),
      ...(options.showEffects
        ? {
            effects: {
              messageVersion: 'v1',
              status: t.status,
              executedEpoch: String(EPOCH),
              gasUsed: {
                ...t.gasUsed,
                computationCostBurned: t.gasUsed.computationCost,
                nonRefundableStorageFee: '9880',
              },
              modifiedAtVersions: [{ objectId: t.gas.objectId, sequenceNumber: String(t.gas.version - 1) }],
              transactionDigest: t.digest,
              mutated: [{ owner: { AddressOwner: t.sender }, reference: t.gas }],
              gasObject: { owner: { AddressOwner: t.sender }, reference: t.gas },
              ...(t.events.length ? { eventsDigest: fakeDigest(`events:${t.digest}`) } : {}),
              dependencies: [fakeDigest('genesis')],
            },
          }
        : {}),
      ...(options.showEvents
        ? {
            events: t.events.map((e, i) => ({
              id: { txDigest: t.digest, eventSeq: String(i) },
              packageId: this.packageId,
              transactionModule: 'ledger',
              sender: e.sender,
              type: e.type,
              parsedJson: e.parsedJson,
              bcsEncoding: 'base58',
              bcs: toBase58(e.bcs),
              timestampMs,
            })),
          }
        : {}),
    };
  }
}
