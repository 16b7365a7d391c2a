import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { signerFromSeed } from '../../protocol/ed25519.js';
import { type AnchorChain, ChainError } from '../../nodes/ledger/anchor-chain.js';
import { buildAnchorTx, iotaAddressOf, type IotaDeployment } from '../../nodes/ledger/iota-tx.js';
import type { FakeNodeFaults } from '../../nodes/ledger/iota-standin.js';

/** An AnchorChain wired to a node the test controls. */
export interface AnchorChainHarness {
  chain: AnchorChain;
  deployment: IotaDeployment;
  /** Gives `owner` a gas coin. */
  fund(owner: string): void;
  /** The node's fault switches. */
  faults: FakeNodeFaults;
  cleanup(): Promise<void>;
}

const seed = new Uint8Array(32).fill(5);
const owner = iotaAddressOf(signerFromSeed(seed).publicKey);
const root = createHash('sha256').update('compliance root').digest();
const call = { root, count: 12, firstLamport: 1, lastLamport: 12, results: [{ task: 't1', digest: root }] };

/** The contract every AnchorChain keeps (nodes/ledger/anchor-chain.ts), run against one node. */
export function anchorChainCompliance(name: string, make: () => Promise<AnchorChainHarness>): void {
  describe(`AnchorChain compliance: ${name}`, () => {
    let h: AnchorChainHarness;
    beforeEach(async () => {
      h = await make();
    });
    afterEach(() => h.cleanup());

    const signed = async () => {
      h.fund(owner);
      const { coin, price } = await h.chain.gasFor(owner);
      return buildAnchorTx(seed, h.deployment, { coin, price, budget: 10_000_000n }, call);
    };

    it('probes true when the node answers and false, without throwing, when it is down', async () => {
      assert.equal(await h.chain.probe(1000), true);
      h.faults.down = true;
      assert.equal(await h.chain.probe(1000), false);
    });

    it('finds a funded address’s gas coin and the price; an unfunded one is refused with a typed error', async () => {
      h.fund(owner);
      const gas = await h.chain.gasFor(owner);
      assert.match(gas.coin.objectId, /^0x[0-9a-f]{64}$/);
      assert.equal(typeof gas.price, 'bigint');
      const stranger = iotaAddressOf(signerFromSeed(new Uint8Array(32).fill(6)).publicKey);
      await assert.rejects(h.chain.gasFor(stranger), (e: unknown) => e instanceof ChainError && e.code === 'REJECTED');
    });

    it('executes signed bytes once per digest, reaches a checkpoint, and shows the Anchored event', async () => {
      h.fund(owner);
      const gas = await h.chain.gasFor(owner);
      const tx = await buildAnchorTx(seed, h.deployment, { ...gas, budget: 10_000_000n }, call);
      const first = await h.chain.execute(tx);
      assert.equal(first.digest, tx.digest);
      assert.notEqual(first.gas?.version, gas.coin.version, 'the gas coin moved on');
      assert.deepEqual(first.gas, (await h.chain.gasFor(owner)).coin);
      assert.equal((await h.chain.execute(tx)).digest, tx.digest, 'idempotent per digest');
      const { checkpoint } = await h.chain.waitFinal(tx.digest, 5000);
      assert.ok(Number.isInteger(checkpoint) && checkpoint > 0);
      const seen = await h.chain.lookup(tx.digest);
      assert.equal(seen?.checkpoint, checkpoint);
      assert.equal(seen?.sender, owner);
      assert.deepEqual(seen?.anchors, [
        { packageId: h.deployment.packageId, root: root.toString('hex'), count: 12, robot: owner },
      ]);
    });

    it('looks up an unknown digest as undefined', async () => {
      const tx = await signed();
      assert.equal(await h.chain.lookup(tx.digest), undefined);
    });

    it('a rejected submission is a REJECTED ChainError; a retry of the same bytes then lands', async () => {
      const tx = await signed();
      h.faults.rejectNext = 1;
      await assert.rejects(h.chain.execute(tx), (e: unknown) => e instanceof ChainError && e.code === 'REJECTED');
      assert.equal((await h.chain.execute(tx)).digest, tx.digest);
    });

    it('a node that never answers is a TIMEOUT ChainError, within the client’s deadline', async () => {
      const tx = await signed();
      h.faults.hang.add('iota_executeTransactionBlock');
      const started = Date.now();
      await assert.rejects(h.chain.execute(tx), (e: unknown) => e instanceof ChainError && e.code === 'TIMEOUT');
      assert.ok(Date.now() - started < 10_000);
    });
  });
}
