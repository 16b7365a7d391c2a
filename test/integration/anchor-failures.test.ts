import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { IotaClient } from '@iota/iota-sdk/client';
import { signerFromSeed } from '../../protocol/ed25519.js';
import {
  ChainError,
  IotaAnchorChain,
  LEDGER_ABORTS,
  parseMoveAbort,
  timeoutTransport,
} from '../../nodes/ledger/anchor-chain.js';
import { MemoryAnchorQueue } from '../../nodes/ledger/anchor-queue.js';
import { Anchorer } from '../../nodes/ledger/anchorer.js';
import { iotaAddressOf } from '../../nodes/ledger/iota-tx.js';
import type { Ledger } from '../../nodes/ledger/ledger.js';
import { DEPLOYMENT, FakeIotaNode, robotLedger, robotSeed } from '../helpers/fake-iota.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/**
 * What a real IOTA node answers and the stand-in used to hide: failed executions are checkpointed
 * with a failure status, busy and internal errors are not rejections, aborts never succeed on a
 * retry, a pruning node forgets old transactions, events name the package called.
 */
describe('anchoring against a node that answers as IOTA does: failures, busy, aborts, upgrades', () => {
  let node: FakeIotaNode;
  let clock: number;
  const now = (): number => clock;
  const chainOf = (n: FakeIotaNode) =>
    new IotaAnchorChain(new IotaClient({ transport: timeoutTransport(n.transport(), 500) }));
  const anchorer = (ledger: Ledger): Anchorer =>
    new Anchorer({
      ledger,
      seed: robotSeed(0),
      deployment: DEPLOYMENT,
      queue: new MemoryAnchorQueue(),
      chain: chainOf(node),
      probeTimeoutMs: 300,
      finalityTimeoutMs: 3000,
      now,
    });
  const executions = () => node.calls.filter((c) => c === 'iota_executeTransactionBlock').length;

  beforeEach(() => {
    node = new FakeIotaNode(DEPLOYMENT.packageId);
    node.fund(iotaAddressOf(signerFromSeed(robotSeed(0)).publicKey));
    clock = 1_000_000;
  });

  it('an anchor whose transaction aborts (ENotRegistered) is not recorded and never submitted again', async () => {
    const ledger = robotLedger();
    const a = anchorer(ledger);
    const item = (await a.snapshot())!;
    node.faults.abortNext = { count: 1, code: 3 };
    const report = await a.flush();
    assert.equal(report.anchored.length, 0);
    assert.equal(ledger.state.anchors.length, 0, 'a failed transaction is no anchor');
    assert.equal(report.failed[0].root, item.root);
    assert.match(report.failed[0].reason, /ENotRegistered in ledger::anchor/);
    const executed = node.executed.get([...node.executed.keys()][0])!;
    assert.equal(executed.status.status, 'failure', 'the node did execute it, and charged gas');

    clock += 3_600_000;
    ledger.append({ type: 'claim', task: 'after-the-abort' });
    assert.ok(await a.snapshot(), 'a newer anchor is queued');
    const again = await a.flush();
    assert.equal(executions(), 1, 'neither the aborted anchor nor a newer one was submitted again');
    assert.equal(again.failed.length, 1);
    assert.match(again.waiting[0].reason, /register 0x[0-9a-f]{64}/);
  });

  it('a lost reply, then the lookup finds the transaction failed: not recorded as anchored', async () => {
    const ledger = robotLedger();
    const a = anchorer(ledger);
    await a.snapshot();
    node.faults.abortNext = { count: 1, code: 3 };
    node.faults.loseReply.add('iota_executeTransactionBlock');
    const first = await a.flush();
    assert.equal(first.waiting.length, 1, 'the answer was lost: it waits');
    node.faults.loseReply.clear();
    await new Promise<void>((resolve) => setImmediate(resolve));
    clock += 10_000;
    const second = await a.flush();
    assert.equal(second.anchored.length, 0);
    assert.equal(ledger.state.anchors.length, 0);
    assert.match(second.failed[0].reason, /MoveAbort/);
    assert.equal(executions(), 1, 'found by its digest, not resubmitted');
  });

  it('out of gas: gas was charged and the coin moved; signed anew with the moved coin, it lands', async () => {
    const ledger = robotLedger();
    const a = anchorer(ledger);
    await a.snapshot();
    node.faults.outOfGasNext = 1;
    const first = await a.flush();
    assert.match(first.waiting[0].reason, /InsufficientGas/);
    assert.equal(a.queued[0].signed, undefined, 'the failed signature is dropped');
    clock += 10_000;
    const second = await a.flush();
    assert.equal(second.anchored.length, 1);
    assert.equal(node.executed.size, 2, 'two transactions: the failed one and the new one');
    assert.equal(
      node.calls.filter((c) => c === 'iotax_getCoins').length,
      1,
      'the coin reference came from the failed effects',
    );
  });

  it('a busy node (-32009) keeps the signature: the same transaction lands on the next pass', async () => {
    const ledger = robotLedger();
    const a = anchorer(ledger);
    await a.snapshot();
    await a.flush(); // gas known, signed
    await a.snapshot();
    const probed = node.calls.length;
    node.faults.busy.set('iota_executeTransactionBlock', 1);
    const busy = await a.flush();
    assert.deepEqual(busy.anchored, []);
    assert.ok(node.calls.length > probed);
    assert.match(busy.waiting[0]?.reason ?? '', /busy|-32009/i);
    const signed = a.queued[0]?.signed?.digest;
    assert.ok(signed, 'the signature is kept');
    clock += 10_000;
    const later = await a.flush();
    assert.equal(later.anchored[0].tx, signed);
  });

  it('JSON-RPC codes: -32009 and -32603 are BUSY, -32002 REJECTED, -32602 not found', async () => {
    const scripted = (code: number) =>
      new IotaAnchorChain(
        new IotaClient({
          transport: {
            request: async () => {
              const { JsonRpcError } = await import('@iota/iota-sdk/client');
              throw new JsonRpcError(`code ${code}`, code);
            },
            subscribe: () => Promise.reject(new Error('no subscriptions')),
          },
        }),
      );
    const digest = '11111111111111111111111111111111'; // base58 of 32 zero bytes
    const tx = { bytes: new Uint8Array(0), signature: '', digest, sender: '0x0' };
    for (const [code, want] of [
      [-32009, 'BUSY'],
      [-32603, 'BUSY'],
      [-32604, 'BUSY'],
      [-32002, 'REJECTED'],
      [-32602, 'NOT_FOUND'],
    ] as const) {
      await assert.rejects(scripted(code).execute(tx), (e: unknown) => e instanceof ChainError && e.code === want);
    }
    assert.equal(await scripted(-32602).lookup(digest), undefined, 'not found is no error for a lookup');
    await assert.rejects(scripted(-32009).lookup(digest), (e: unknown) => e instanceof ChainError && e.code === 'BUSY');
  });

  it('a transaction is known before its checkpoint; waitFinal waits for the checkpoint', async () => {
    const slow = new FakeIotaNode(DEPLOYMENT.packageId, { checkpointDelayMs: 400 });
    slow.fund(iotaAddressOf(signerFromSeed(robotSeed(0)).publicKey));
    node = slow;
    const ledger = robotLedger();
    const a = anchorer(ledger);
    await a.snapshot();
    const report = await a.flush();
    assert.equal(report.anchored.length, 1);
    const t = slow.executed.get(report.anchored[0].tx)!;
    assert.equal(report.anchored[0].checkpoint, t.checkpoint);
    assert.ok(
      node.calls.filter((c) => c === 'iota_getTransactionBlock').length >= 2,
      'polled until the checkpoint showed',
    );
  });

  it('after a package upgrade, lookups report the package called (the event type keeps the old one)', async () => {
    const upgraded = `0x${'ab'.repeat(32)}`;
    node = new FakeIotaNode(upgraded, { definedBy: DEPLOYMENT.packageId });
    node.fund(iotaAddressOf(signerFromSeed(robotSeed(0)).publicKey));
    const ledger = robotLedger();
    const a = new Anchorer({
      ledger,
      seed: robotSeed(0),
      deployment: { ...DEPLOYMENT, packageId: upgraded },
      queue: new MemoryAnchorQueue(),
      chain: chainOf(node),
      probeTimeoutMs: 300,
      finalityTimeoutMs: 3000,
      now,
    });
    await a.snapshot();
    const tx = (await a.flush()).anchored[0].tx;
    const looked = await chainOf(node).lookup(tx);
    assert.equal(looked?.anchors[0].packageId, upgraded);
    node.faults.pruned = true;
    assert.equal(await chainOf(node).lookup(tx), undefined, 'a pruning node: unknown, not an error');
  });

  it('Move abort codes: parsed from the node’s status text; the table matches ledger.move', () => {
    const text =
      'MoveAbort(MoveLocation { module: ModuleId { address: ' +
      '8ee5e7cd4a1b5cf5c6b18a7d3b3e8b0a1f2e3d4c5b6a79880706050403020100, name: Identifier("ledger") }, ' +
      'function: 3, instruction: 12, function_name: Some("anchor") }, 3) in command 0';
    assert.deepEqual(parseMoveAbort(text), { module: 'ledger', function: 'anchor', code: 3, name: 'ENotRegistered' });
    assert.equal(parseMoveAbort('InsufficientGas'), undefined);
    const move = readFileSync(join(ROOT, 'contracts', 'move', 'sources', 'ledger.move'), 'utf8');
    const declared = Object.fromEntries(
      [...move.matchAll(/const (E\w+): u64 = (\d+);/g)].map((m) => [Number(m[2]), m[1]]),
    );
    assert.deepEqual(LEDGER_ABORTS, declared);
  });
});
