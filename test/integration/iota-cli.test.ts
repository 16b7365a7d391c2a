import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IotaClient } from '@iota/iota-sdk/client';
import { signerFromSeed } from '../../protocol/ed25519.js';
import { IotaAnchorChain } from '../../nodes/ledger/anchor-chain.js';
import { MemoryAnchorQueue, SqliteAnchorQueue } from '../../nodes/ledger/anchor-queue.js';
import { Anchorer } from '../../nodes/ledger/anchorer.js';
import { iotaAddressOf } from '../../nodes/ledger/iota-tx.js';
import { SqliteLogStore } from '../../nodes/ledger/sqlite-store.js';
import { loadOrCreateIdentity } from '../../nodes/mesh/identity.js';
import { robotPaths } from '../../nodes/robot/robot.js';
import { robomesh } from '../helpers/cli.js';
import { DEPLOYMENT, FakeIotaNode, robotLedger } from '../helpers/fake-iota.js';

describe('robomesh iota (CLI): address, balance, status', function () {
  this.timeout(60_000);
  let dir: string;
  let address: string;
  let node: FakeIotaNode;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rm-iota-cli-'));
    const paths = robotPaths(dir);
    const identity = await loadOrCreateIdentity(paths.identity);
    address = iotaAddressOf(signerFromSeed(identity.seed).publicKey);
    // One anchor landed, then one aborted by the package: the state `status` reports.
    node = new FakeIotaNode(DEPLOYMENT.packageId);
    node.fund(address);
    const store = new SqliteLogStore(paths.log);
    const queue = new SqliteAnchorQueue(paths.anchors);
    const ledger = robotLedger(store, identity.seed);
    const anchorer = new Anchorer({
      ledger,
      seed: identity.seed,
      deployment: DEPLOYMENT,
      queue,
      chain: new IotaAnchorChain(new IotaClient({ transport: node.transport() })),
      finalityTimeoutMs: 3000,
    });
    await anchorer.snapshot();
    assert.equal((await anchorer.flush()).anchored.length, 1);
    ledger.append({ type: 'claim', task: 'later' });
    await anchorer.snapshot();
    node.faults.abortNext = { count: 1, code: 3 };
    assert.equal((await anchorer.flush()).failed.length, 1);
    store.close();
    queue.close();
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('address: the IOTA address of the robot’s key, offline; a missing key is one line, exit 2', async () => {
    const run = await robomesh(['iota', 'address', '--data-dir', dir]);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout.split('\n')[0], address);
    assert.equal(
      JSON.parse((await robomesh(['iota', 'address', '--data-dir', dir, '--json'])).stdout).address,
      address,
    );
    const missing = await robomesh(['iota', 'address', '--data-dir', join(dir, 'nowhere')]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /identity\.key does not exist/);
    assert.equal(missing.stderr.trim().split('\n').length, 1);
  });

  it('status: the anchor in the log, and the aborted one named with its Move constant', async () => {
    const run = await robomesh(['iota', 'status', '--data-dir', dir]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /anchors in the log: \n {2}\w+… \d+ entries, tx \w+, checkpoint \d+/);
    assert.match(run.stdout, /FAILED for good: .*ENotRegistered in ledger::anchor/);
    const json = JSON.parse((await robomesh(['iota', 'status', '--data-dir', dir, '--json'])).stdout) as {
      anchors: unknown[];
      queue: { failed?: string }[];
    };
    assert.equal(json.anchors.length, 1);
    assert.equal(json.queue.length, 1);
    assert.ok(json.queue[0].failed);
  });

  it('balance: live from the node given; without one, a one-line usage error', async () => {
    const server = await node.listen();
    try {
      const run = await robomesh(['iota', 'balance', '--data-dir', dir], { IOTA_RPC_URL: server.url });
      assert.equal(run.code, 0, run.stderr);
      assert.match(run.stdout, new RegExp(`${address}: 1\\.000000000 IOTA in 1 coin\\(s\\)`));
    } finally {
      await server.close();
    }
    const none = await robomesh(['iota', 'balance', '--data-dir', dir]);
    assert.equal(none.code, 2);
    assert.match(none.stderr, /no IOTA endpoint/);
  });
});

describe('robomesh iota register / revoke (CLI, admin)', function () {
  this.timeout(60_000);
  let adminDir: string;
  let robotDir: string;
  let robotKey: Uint8Array;
  let robotAddress: string;
  let robotSeedBytes: Uint8Array;
  let node: FakeIotaNode;
  let cap: string;
  const settings = (): Record<string, string> => ({
    IOTA_PACKAGE_ID: DEPLOYMENT.packageId,
    IOTA_REGISTRY_ID: DEPLOYMENT.registryId,
    IOTA_REGISTRY_VERSION: String(DEPLOYMENT.registryVersion),
    IOTA_ADMIN_CAP: cap,
  });
  /** One anchor by the robot, straight to the node: anchored, or why not. */
  const robotAnchors = async (): Promise<string> => {
    const anchorer = new Anchorer({
      ledger: robotLedger(undefined, robotSeedBytes),
      seed: robotSeedBytes,
      deployment: DEPLOYMENT,
      queue: new MemoryAnchorQueue(),
      chain: new IotaAnchorChain(new IotaClient({ transport: node.transport() })),
      finalityTimeoutMs: 3000,
    });
    await anchorer.snapshot();
    const report = await anchorer.flush();
    return report.anchored.length ? 'anchored' : (report.failed[0]?.reason ?? 'nothing');
  };

  before(async () => {
    adminDir = await mkdtemp(join(tmpdir(), 'rm-iota-admin-'));
    robotDir = await mkdtemp(join(tmpdir(), 'rm-iota-robot-'));
    const admin = await loadOrCreateIdentity(robotPaths(adminDir).identity);
    const robot = await loadOrCreateIdentity(robotPaths(robotDir).identity);
    robotSeedBytes = robot.seed;
    robotKey = signerFromSeed(robot.seed).publicKey;
    robotAddress = iotaAddressOf(robotKey);
    // A registry that holds to its rules: only registered robots anchor.
    node = new FakeIotaNode(DEPLOYMENT.packageId, { registry: 'enforced', checkpointDelayMs: 0 });
    const adminAddress = iotaAddressOf(signerFromSeed(admin.seed).publicKey);
    node.fund(adminAddress);
    node.fund(robotAddress);
    cap = node.grantAdminCap(adminAddress);
  });
  after(async () => {
    await rm(adminDir, { recursive: true, force: true });
    await rm(robotDir, { recursive: true, force: true });
  });

  it('offline: the robot’s address and the iota client ptb command that registers its key', async () => {
    const run = await robomesh(['iota', 'register', robotDir], settings());
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, new RegExp(`register ${robotAddress} \\(offline`));
    const ptb =
      `iota client ptb --move-call ${DEPLOYMENT.packageId}::ledger::register_robot ` +
      `@${cap} @${DEPLOYMENT.registryId} "vector[${[...robotKey].join(',')}]"`;
    assert.ok(run.stdout.includes(ptb), run.stdout);
    const missing = await robomesh(['iota', 'register', robotDir], { ...settings(), IOTA_PACKAGE_ID: '' });
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /package_id/);
    assert.equal(missing.stderr.trim().split('\n').length, 1);
  });

  it('live: unregistered: abort; registered: anchors; twice: EAlreadyRegistered; revoked: abort', async () => {
    assert.match(await robotAnchors(), /ENotRegistered in ledger::anchor/);
    const server = await node.listen();
    try {
      const live = { ...settings(), IOTA_RPC_URL: server.url };
      const notOwner = await robomesh(['iota', 'register', robotDir, '--data-dir', robotDir], live);
      assert.equal(notOwner.code, 2);
      assert.match(notOwner.stderr, /AdminCap .* belongs to 0x[0-9a-f]{64}, not to this robot/);

      const run = await robomesh(['iota', 'register', robotDir, '--data-dir', adminDir], live);
      assert.equal(run.code, 0, run.stderr);
      assert.match(run.stdout, new RegExp(`registered ${robotAddress} in transaction \\w+, checkpoint \\d+`));
      assert.ok(node.isRegistered(robotAddress));
      assert.equal(await robotAnchors(), 'anchored');

      const twice = await robomesh(
        ['iota', 'register', Buffer.from(robotKey).toString('hex'), '--data-dir', adminDir],
        live,
      );
      assert.equal(twice.code, 2);
      assert.match(twice.stderr, /EAlreadyRegistered in ledger::register_robot/);
      assert.equal(twice.stderr.trim().split('\n').length, 1);

      const revoke = await robomesh(['iota', 'revoke', robotAddress, '--data-dir', adminDir, '--json'], live);
      assert.equal(revoke.code, 0, revoke.stderr);
      assert.equal((JSON.parse(revoke.stdout) as { address: string }).address, robotAddress);
      assert.equal(node.isRegistered(robotAddress), false);
      assert.match(await robotAnchors(), /ENotRegistered in ledger::anchor/);
    } finally {
      await server.close();
    }
  });
});
