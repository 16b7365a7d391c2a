import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { IotaClient, type IotaTransport } from '@iota/iota-sdk/client';
import { Ajv, type ValidateFunction } from 'ajv';
import { signerFromSeed } from '../../protocol/ed25519.js';
import { IotaAnchorChain } from '../../nodes/ledger/anchor-chain.js';
import { MemoryAnchorQueue } from '../../nodes/ledger/anchor-queue.js';
import { Anchorer } from '../../nodes/ledger/anchorer.js';
import { buildAdminTx, iotaAddressOf } from '../../nodes/ledger/iota-tx.js';
import { DEPLOYMENT, FakeIotaNode, robotLedger, robotSeed } from '../helpers/fake-iota.js';

const SPEC_PATH = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'test', 'fixtures', 'iota-openrpc');

interface OpenRpcSpec {
  info: { version: string };
  methods: {
    name: string;
    params: { name: string; required?: boolean; schema: object }[];
    result: { schema: object };
  }[];
  components: { schemas: Record<string, object> };
}

/** Validators for each method's result and params, from IOTA's OpenRPC spec (JSON Schema draft 7). */
function validators(spec: OpenRpcSpec) {
  // The spec's own numeric formats (Rust integer widths), checked as what they say.
  const ajv = new Ajv({ strict: false, allErrors: true });
  const int = (min: number, max: number) => ({
    type: 'number' as const,
    validate: (n: number) => Number.isInteger(n) && n >= min && n <= max,
  });
  ajv.addFormat('uint8', int(0, 255));
  ajv.addFormat('uint16', int(0, 65_535));
  ajv.addFormat('uint32', int(0, 4_294_967_295));
  ajv.addFormat('uint64', int(0, Number.MAX_SAFE_INTEGER));
  ajv.addFormat('uint', int(0, Number.MAX_SAFE_INTEGER));
  ajv.addFormat('int64', int(Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER));
  ajv.addFormat('double', { type: 'number', validate: (n: number) => Number.isFinite(n) });
  // One place where the schema and the node differ: the node serialises a GenericSignature as its
  // base64 bytes (flag ‖ signature ‖ key), as the spec's own examples show, while the generated
  // schema describes the Rust enum. Both are accepted; nothing else is loosened.
  const schemas = {
    ...spec.components.schemas,
    GenericSignature: {
      oneOf: [...(spec.components.schemas.GenericSignature as { oneOf: object[] }).oneOf, { type: 'string' }],
    },
  };
  // $refs point at #/components/schemas/…: every schema is compiled with the components beside it.
  const compile = (schema: object): ValidateFunction => ajv.compile({ components: { schemas }, allOf: [schema] });
  return new Map(
    spec.methods.map((m) => [
      m.name,
      { result: compile(m.result.schema), params: m.params.map((p) => ({ ...p, validate: compile(p.schema) })) },
    ]),
  );
}

interface Exchange {
  method: string;
  params: unknown[];
  result?: unknown;
  error?: unknown;
}

/** The stand-in's transport, every request and answer kept (answers through a JSON round trip, as on the wire). */
function recording(inner: IotaTransport, log: Exchange[]): IotaTransport {
  return {
    request: async <T>(input: { method: string; params: unknown[]; signal?: AbortSignal }): Promise<T> => {
      const exchange: Exchange = {
        method: input.method,
        params: JSON.parse(JSON.stringify(input.params)) as unknown[],
      };
      log.push(exchange);
      try {
        const result = await inner.request<T>(input);
        exchange.result = JSON.parse(JSON.stringify(result)) as unknown;
        return result;
      } catch (err) {
        exchange.error = err;
        throw err;
      }
    },
    subscribe: inner.subscribe,
  };
}

describe('the IOTA node stand-in answers as the OpenRPC spec declares', () => {
  const spec = JSON.parse(readFileSync(join(SPEC_PATH, 'openrpc.json'), 'utf8')) as OpenRpcSpec;
  const check = validators(spec);

  /** Every answer valid against its method's result schema, every request against its params. */
  function assertValid(log: Exchange[]): void {
    for (const x of log) {
      const v = check.get(x.method);
      assert.ok(v, `${x.method} is not among the methods the spec subset holds`);
      v.params.forEach((p, i) => {
        const value = x.params[i];
        if (value === undefined || value === null) return assert.ok(!p.required, `${x.method}: ${p.name} is required`);
        assert.ok(p.validate(value), `${x.method} param ${p.name}: ${JSON.stringify(p.validate.errors?.slice(0, 3))}`);
      });
      if (x.error) continue;
      assert.ok(
        v.result(x.result),
        `${x.method} answer ${JSON.stringify(x.result).slice(0, 300)}: ${JSON.stringify(v.result.errors?.slice(0, 3))}`,
      );
    }
  }

  function setUp(checkpointDelayMs = 150) {
    const log: Exchange[] = [];
    const node = new FakeIotaNode(DEPLOYMENT.packageId, { checkpointDelayMs });
    const owner = iotaAddressOf(signerFromSeed(robotSeed(0)).publicKey);
    node.fund(owner);
    const client = new IotaClient({ transport: recording(node.transport(), log) });
    const chain = new IotaAnchorChain(client);
    const ledger = robotLedger();
    const anchorer = new Anchorer({
      ledger,
      seed: robotSeed(0),
      deployment: DEPLOYMENT,
      queue: new MemoryAnchorQueue(),
      chain,
      probeTimeoutMs: 500,
      finalityTimeoutMs: 5000,
    });
    return { log, node, owner, client, chain, ledger, anchorer };
  }

  it('uses the spec of IOTA 0.12.0-alpha, holding the seven methods the stand-in answers', () => {
    assert.equal(spec.info.version, '0.12.0-alpha');
    assert.deepEqual(
      spec.methods.map((m) => m.name),
      [
        'iota_executeTransactionBlock',
        'iota_getLatestCheckpointSequenceNumber',
        'iota_getObject',
        'iota_getTransactionBlock',
        'iotax_getBalance',
        'iotax_getCoins',
        'iotax_getReferenceGasPrice',
      ],
    );
  });

  it('an anchor submitted, waited for past its checkpoint and looked up: every reply valid', async () => {
    const { log, anchorer, chain, client, owner, node } = setUp();
    await anchorer.snapshot();
    const report = await anchorer.flush();
    assert.equal(report.anchored.length, 1);
    const digest = log.find((x) => x.method === 'iota_executeTransactionBlock' && x.result) as Exchange;
    const found = await chain.lookup((digest.result as { digest: string }).digest);
    assert.equal(found?.anchors.length, 1);
    await client.getBalance({ owner });
    assert.ok(await chain.probe(500));
    await chain.objectRef(node.grantAdminCap(owner));
    await chain.objectRef(`0x${'99'.repeat(32)}`).catch(() => undefined); // a node answers notExists in the result
    const lookups = log.filter((x) => x.method === 'iota_getTransactionBlock');
    assert.ok(
      lookups.some((x) => !(x.result as { checkpoint?: string }).checkpoint),
      'a lookup before the checkpoint (the node shows the transaction without one)',
    );
    assert.ok(lookups.some((x) => (x.result as { checkpoint?: string }).checkpoint));
    assert.deepEqual(
      [...new Set(log.map((x) => x.method))].sort(),
      spec.methods.map((m) => m.name).sort(),
      'every method the spec subset holds was exercised',
    );
    assertValid(log);
  });

  it('executions that abort in Move or run out of gas: failure statuses valid, and looked up valid', async () => {
    for (const fault of ['abort', 'gas'] as const) {
      const { log, node, anchorer, chain } = setUp(0);
      if (fault === 'abort') node.faults.abortNext = { count: 1, code: 3 };
      else node.faults.outOfGasNext = 1;
      await anchorer.snapshot();
      const report = await anchorer.flush();
      assert.equal(report.anchored.length, 0, fault);
      const executed = [...node.executed.keys()];
      assert.equal(executed.length, 1, fault);
      const found = await chain.lookup(executed[0]);
      assert.ok(found?.failure, `${fault}: the lookup shows the failure`);
      assertValid(log);
    }
  });

  it('register_robot and revoke_robot by the AdminCap holder, and a second register that aborts', async () => {
    const { log, node, chain, owner } = setUp(0);
    const cap = node.grantAdminCap(owner);
    const robotKey = signerFromSeed(robotSeed(5)).publicKey;
    const calls = [{ register: robotKey }, { register: robotKey }, { revoke: iotaAddressOf(robotKey) }];
    for (const call of calls) {
      const gas = await chain.gasFor(owner);
      const tx = await buildAdminTx(
        robotSeed(0),
        DEPLOYMENT,
        { ...gas, budget: 20_000_000n },
        await chain.objectRef(cap),
        call,
      );
      await chain
        .execute(tx)
        .catch((err: Error) => assert.match(err.message, /EAlreadyRegistered in ledger::register_robot/));
      const found = await chain.lookup(tx.digest);
      assert.ok(found);
    }
    assert.equal(node.isRegistered(iotaAddressOf(robotKey)), false);
    assertValid(log);
  });

  it('a lookup that asks for nothing, and one that sends null options: the bare response is valid', async () => {
    const { log, node, anchorer } = setUp(0);
    await anchorer.snapshot();
    await anchorer.flush();
    const digest = [...node.executed.keys()][0];
    const transport = recording(node.transport(), log);
    await transport.request({ method: 'iota_getTransactionBlock', params: [digest] });
    await transport.request({ method: 'iota_getTransactionBlock', params: [digest, null] });
    await transport.request({
      method: 'iota_getTransactionBlock',
      params: [digest, { showInput: true, showEffects: true, showEvents: true }],
    });
    assertValid(log);
  });
});
