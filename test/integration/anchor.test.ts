import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IotaClient } from '@iota/iota-sdk/client';
import { verifyTransactionSignature } from '@iota/iota-sdk/verify';
import { signerFromSeed } from '../../protocol/ed25519.js';
import { MerkleTree, verifyInclusion } from '../../protocol/merkle.js';
import { IotaAnchorChain, iotaClientFor, timeoutTransport } from '../../nodes/ledger/anchor-chain.js';
import { type AnchorQueue, MemoryAnchorQueue, SqliteAnchorQueue } from '../../nodes/ledger/anchor-queue.js';
import { Anchorer } from '../../nodes/ledger/anchorer.js';
import { buildAnchorTx, iotaAddressOf, readAnchorTx } from '../../nodes/ledger/iota-tx.js';
import { Ledger } from '../../nodes/ledger/ledger.js';
import { SqliteLogStore } from '../../nodes/ledger/sqlite-store.js';
import { prng } from '../../nodes/util/prng.js';
import { DEPLOYMENT, FakeIotaNode, robotLedger, robotSeed } from '../helpers/fake-iota.js';
import { testSeed, withSeed } from '../helpers/seed.js';

const sha = (s: string): Uint8Array => new Uint8Array(createHash('sha256').update(s).digest());

describe('IOTA anchor transactions, offline', () => {
  const seed = new Uint8Array(32).map((_, i) => i);
  const gas = {
    coin: { objectId: `0x${'11'.repeat(32)}`, version: '5', digest: '4vJ9JU1bJJE96FWSJKvHsmmFADCg4gpZQff4P3bkLKi' },
    price: 1000n,
    budget: 10_000_000n,
  };
  const call = {
    root: sha('root'),
    count: 10,
    firstLamport: 1,
    lastLamport: 9,
    results: [{ task: 't1', digest: sha('digest') }],
  };

  it('golden vectors: robot key → IOTA address, transaction bytes, digest and signature', async () => {
    const publicKey = signerFromSeed(seed).publicKey;
    assert.equal(iotaAddressOf(publicKey), GOLDEN.address);
    const tx = await buildAnchorTx(seed, DEPLOYMENT, gas, call);
    assert.equal(tx.sender, GOLDEN.address);
    assert.equal(createHash('sha256').update(tx.bytes).digest('hex'), GOLDEN.bytesSha256);
    assert.equal(tx.bytes.length, GOLDEN.bytesLength);
    assert.equal(tx.digest, GOLDEN.digest);
    assert.equal(tx.signature, GOLDEN.signature);
    await verifyTransactionSignature(tx.bytes, tx.signature, { address: GOLDEN.address });
  });

  it('reads back what it committed; tampered bytes and foreign signatures are rejected', async () => {
    const tx = await buildAnchorTx(seed, DEPLOYMENT, gas, call);
    const read = await readAnchorTx(tx.bytes, tx.signature);
    assert.deepEqual(
      [read.sender, read.digest, read.packageId, read.count, read.firstLamport, read.lastLamport],
      [tx.sender, tx.digest, DEPLOYMENT.packageId, 10, 1, 9],
    );
    assert.deepEqual(read.root, call.root);
    assert.deepEqual(read.results, call.results);
    for (const at of [0, 40, 100, tx.bytes.length - 1]) {
      const bad = Uint8Array.from(tx.bytes);
      bad[at] ^= 0x01;
      await assert.rejects(
        verifyTransactionSignature(bad, tx.signature, { address: tx.sender }),
        `byte ${at} flipped must not verify`,
      );
      await assert.rejects(readAnchorTx(bad, tx.signature), /BAD_TX|signature|transaction/i);
    }
    const other = await buildAnchorTx(robotSeed(9), DEPLOYMENT, gas, call);
    await assert.rejects(readAnchorTx(tx.bytes, other.signature), /not the sender's/);
  });
});

describe('Merkle tree over log ids', () => {
  it(
    'every leaf of trees of 1..130 leaves proves; any change to leaf, ' +
      'index, path or root fails (the count comes from the anchor)',
    () => {
      const seed = testSeed();
      return withSeed(seed, () => {
        const random = prng(seed);
        for (let n = 1; n <= 130; n++) {
          const leaves = Array.from({ length: n }, (_, i) => sha(`${seed}:${n}:${i}`));
          const tree = new MerkleTree(leaves);
          const i = Math.floor(random() * n);
          for (const k of n <= 17 ? leaves.keys() : [i]) {
            const proof = tree.prove(k);
            assert.ok(verifyInclusion(leaves[k], proof, tree.root), `leaf ${k} of ${n}`);
            assert.equal(verifyInclusion(sha('other'), proof, tree.root), false);
            assert.equal(verifyInclusion(leaves[k], { ...proof, index: (k + 1) % n }, tree.root), n === 1);
            assert.equal(
              verifyInclusion(leaves[k], { ...proof, count: k }, tree.root),
              false,
              'index beyond the count',
            );
            if (proof.siblings.length) {
              const s = Math.floor(random() * proof.siblings.length);
              const siblings = proof.siblings.map((x, j) =>
                j === s ? Uint8Array.from(x, (b, q) => (q === 0 ? b ^ 1 : b)) : x,
              );
              assert.equal(verifyInclusion(leaves[k], { ...proof, siblings }, tree.root), false);
              assert.equal(
                verifyInclusion(leaves[k], { ...proof, siblings: proof.siblings.slice(1) }, tree.root),
                false,
              );
            }
            assert.equal(verifyInclusion(leaves[k], proof, sha('root')), false);
          }
        }
      });
    },
  );
});

describe('Anchorer against a scripted IOTA node (in-process transport)', () => {
  let node: FakeIotaNode;
  let clock: number;
  const now = (): number => clock;
  const anchorer = (
    ledger: Ledger,
    transportTimeoutMs = 2000,
    queue: AnchorQueue = new MemoryAnchorQueue(),
  ): Anchorer =>
    new Anchorer({
      ledger,
      seed: robotSeed(0),
      deployment: DEPLOYMENT,
      queue,
      chain: new IotaAnchorChain(new IotaClient({ transport: timeoutTransport(node.transport(), transportTimeoutMs) })),
      probeTimeoutMs: 300,
      finalityTimeoutMs: 2000,
      now,
    });

  beforeEach(() => {
    node = new FakeIotaNode(DEPLOYMENT.packageId);
    node.fund(iotaAddressOf(signerFromSeed(robotSeed(0)).publicKey));
    clock = 1_000_000;
  });

  it('probes, fetches gas, submits, waits for the checkpoint and logs the receipt, in that order', async () => {
    const ledger = robotLedger();
    const a = anchorer(ledger);
    const item = (await a.snapshot())!;
    assert.equal(item.count, 6);
    assert.equal(item.signed, undefined, 'no gas known yet: signed at submission');
    const report = await a.flush();
    // Polled until the checkpoint shows: one lookup or several, in a row.
    assert.deepEqual(
      node.calls.filter((c, i) => c !== node.calls[i - 1]),
      [
        'iota_getLatestCheckpointSequenceNumber',
        'iotax_getCoins',
        'iotax_getReferenceGasPrice',
        'iota_executeTransactionBlock',
        'iota_getTransactionBlock',
      ],
    );
    assert.equal(report.anchored.length, 1);
    const receipt = ledger.state.anchors[0];
    assert.equal(receipt.root, item.root);
    assert.equal(receipt.tx, report.anchored[0].tx);
    assert.equal(receipt.checkpoint, node.executed.get(receipt.tx)!.checkpoint);
    assert.equal(a.queued.length, 0);
    assert.equal(await a.snapshot().then((x) => x?.count), 7, 'the next anchor covers the receipt too');
  });

  it('node down, then rejected, then hanging: the anchor stays queued with backoff and lands later, once', async () => {
    const ledger = robotLedger();
    const a = anchorer(ledger, 300);
    const root = (await a.snapshot())!.root;

    node.faults.down = true;
    let report = await a.flush();
    assert.match(report.waiting[0].reason, /did not answer/);
    assert.equal(a.queued[0].attempts, 1);
    assert.deepEqual(
      await a.flush(),
      { anchored: [], waiting: [], failed: [] },
      'nothing is retried before its backoff',
    );
    node.faults.down = false;

    clock += 1_000;
    node.faults.rejectNext = 1;
    report = await a.flush();
    assert.equal(report.waiting[0].reason.includes('inputs'), true, report.waiting[0].reason);
    assert.equal(a.queued[0].attempts, 2);
    assert.equal(a.queued[0].signed, undefined, 'a rejected transaction is rebuilt, not resent');

    clock += 2_000;
    node.faults.hang.add('iota_executeTransactionBlock');
    report = await a.flush();
    assert.match(report.waiting[0].reason, /TimeoutError|timed out|abort/i);
    assert.equal(a.queued[0].attempts, 3);
    node.faults.hang.clear();

    clock += 4_000;
    report = await a.flush();
    assert.deepEqual(
      report.anchored.map((x) => x.root),
      [root],
    );
    assert.equal(ledger.state.anchors.length, 1);
    assert.equal(node.executed.size, 1);
  });

  it('a transaction executed whose answer was lost is found by digest, not signed again', async () => {
    const ledger = robotLedger();
    const a = anchorer(ledger, 300);
    await a.snapshot();
    node.faults.loseReply.add('iota_executeTransactionBlock');
    const first = await a.flush();
    assert.equal(first.anchored.length, 0);
    assert.equal(node.executed.size, 1, 'it did execute');
    node.faults.loseReply.clear();
    clock += 1_000;
    const calls = node.calls.length;
    const second = await a.flush();
    assert.equal(second.anchored.length, 1);
    assert.deepEqual(
      node.calls.slice(calls).filter((c, i, all) => c !== all[i - 1]),
      ['iota_getLatestCheckpointSequenceNumber', 'iota_getTransactionBlock'],
      'looked up, not resubmitted',
    );
    assert.equal(second.anchored[0].tx, [...node.executed.keys()][0]);
  });

  it('signed offline while partitioned, kept across a restart, submitted unchanged when a node is back', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'rm-anchor-'));
    try {
      const seed = robotSeed(0);
      const coin = node.coinOf(iotaAddressOf(signerFromSeed(seed).publicKey))!;
      let store = new SqliteLogStore(join(dir, 'log.db'));
      let queue = new SqliteAnchorQueue(join(dir, 'anchors.db'));
      const offline = new Anchorer({
        ledger: robotLedger(store),
        seed,
        deployment: DEPLOYMENT,
        queue,
        gas: { coin, price: 1000n, budget: 20_000_000n },
      });
      const item = (await offline.snapshot())!;
      assert.ok(item.signed, 'gas known: signed with no node');
      assert.equal((await offline.flush()).waiting[0].reason, 'no IOTA node configured');
      store.close();
      queue.close();

      store = new SqliteLogStore(join(dir, 'log.db'));
      queue = new SqliteAnchorQueue(join(dir, 'anchors.db'));
      const ledger = robotLedger(store);
      const online = anchorer(ledger, 2000, queue);
      assert.equal(online.queued[0].signed?.digest, item.signed.digest, 'the queue survived the restart');
      const report = await online.flush();
      assert.equal(report.anchored[0].tx, item.signed.digest, 'the transaction signed offline is the one on chain');
      assert.equal(node.calls.includes('iotax_getCoins'), false);
      assert.equal(ledger.state.anchors[0].tx, item.signed.digest);
      store.close();
      queue.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('Anchorer against a JSON-RPC stub on 127.0.0.1', () => {
  it('anchors over HTTP; with the node gone it queues; on the same port again it lands', async () => {
    const node = new FakeIotaNode(DEPLOYMENT.packageId);
    node.fund(iotaAddressOf(signerFromSeed(robotSeed(0)).publicKey));
    let server = await node.listen();
    let clock = 0;
    const ledger = robotLedger();
    const chain = new IotaAnchorChain(iotaClientFor(server.url, 2000));
    const a = new Anchorer({
      ledger,
      seed: robotSeed(0),
      deployment: DEPLOYMENT,
      queue: new MemoryAnchorQueue(),
      chain,
      probeTimeoutMs: 500,
      now: () => clock,
    });
    try {
      await a.snapshot();
      assert.equal((await a.flush()).anchored.length, 1);
      assert.deepEqual(node.calls.slice(0, 4), [
        'iota_getLatestCheckpointSequenceNumber',
        'iotax_getCoins',
        'iotax_getReferenceGasPrice',
        'iota_executeTransactionBlock',
      ]);

      await server.close();
      ledger.append({ type: 'claim', task: 'after-first-anchor' });
      await a.snapshot();
      const waiting = await a.flush();
      assert.match(waiting.waiting[0].reason, /did not answer/);
      assert.equal(a.queued.length, 1);

      server = await node.listen(server.port);
      clock += 10_000;
      const landed = await a.flush();
      assert.equal(landed.anchored.length, 1);
      assert.equal(ledger.state.anchors.length, 2);
      assert.equal(node.executed.size, 2);
    } finally {
      await server.close();
    }
  });
});

/** Pinned by the first run of this exact input; any change in encoding or signing shows up here. */
const GOLDEN = {
  // Independently: Python's hashlib.blake2b(public_key, digest_size=32) — IOTA Rebased hashes a
  // bare Ed25519 key (no scheme flag, unlike Sui) — gives the same address.
  address: '0x9d24e2eeaf27c2a088a564a32fc03a882dcd9804dbc0d03a119491e54ba0c933',
  bytesSha256: '00e2f097a567ef6972484f22381c21184823e50601e81feb6708c863d54e76b9',
  bytesLength: 520,
  digest: '8BXtdVK5my9VDsRCuAZo1dvmTfmnGj1B6jXcyLZv9LEq',
  signature:
    'AGnxbcZ6oY8GTvwo0tl3Qjwl+MvMlNeG21rwQdXJ6SoS3kBpoODykIRIks6KPe9iezC9l/lbMQ+hzGWH9vsswQQDoQe/' +
    '884Qvh1w3RjnS8CZZ+TWMJulDV8d3IZkElUxuA==',
};

describe('anchor settings', () => {
  it('off when nothing is set; half-filled settings are an error naming what is missing', async () => {
    const { anchorSettings } = await import('../../nodes/ledger/anchor-settings.js');
    assert.equal(anchorSettings({}), undefined);
    assert.throws(() => anchorSettings({ rpcUrl: 'http://127.0.0.1:9000' }), /package id and registry id/);
    assert.throws(
      () => anchorSettings({ packageId: 'nope', registryId: '0x2', registryVersion: 1 }),
      /iota.package_id/,
    );
    assert.throws(() => anchorSettings({ packageId: '0x1', registryId: '0x2' }), /iota.registry_version/);
    const on = anchorSettings({ packageId: '0x1', registryId: '0x2', registryVersion: 4 })!;
    assert.deepEqual(on.deployment, { packageId: '0x1', registryId: '0x2', registryVersion: 4 });
    assert.equal(on.chain, undefined, 'no URL: anchors queue and relay');
    assert.ok(
      anchorSettings({ packageId: '0x1', registryId: '0x2', registryVersion: 4, rpcUrl: 'http://127.0.0.1:1' })!.chain,
    );
  });
});
