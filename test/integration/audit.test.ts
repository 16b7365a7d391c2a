import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IotaClient } from '@iota/iota-sdk/client';
import { signerFromSeed } from '../../protocol/ed25519.js';
import { fromHex, toHex } from '../../protocol/log-entry.js';
import { IotaAnchorChain } from '../../nodes/ledger/anchor-chain.js';
import { MemoryAnchorQueue } from '../../nodes/ledger/anchor-queue.js';
import { Anchorer } from '../../nodes/ledger/anchorer.js';
import { type AuditProof, AuditError, buildProof, verifyProof } from '../../nodes/ledger/audit.js';
import { iotaAddressOf } from '../../nodes/ledger/iota-tx.js';
import { Ledger } from '../../nodes/ledger/ledger.js';
import { SqliteLogStore } from '../../nodes/ledger/sqlite-store.js';
import { type LogStore, MemoryLogStore } from '../../nodes/ledger/store.js';
import { prng } from '../../nodes/util/prng.js';
import { robomesh } from '../helpers/cli.js';
import { DEPLOYMENT, FakeIotaNode, robotSeed } from '../helpers/fake-iota.js';
import { testSeed, withSeed } from '../helpers/seed.js';
import { resultPayload, taskPayload } from '../helpers/tasks.js';

const digest = (s: string): string => createHash('sha256').update(s).digest('hex');

/**
 * Three robots: r0 posts task t-1 (k = 2) and assigns r0, r1, r2; r1 and r2 agree, r0 returns
 * something else; r0's log (which holds everyone's entries) is anchored on the fake node.
 */
async function anchoredFleet(
  store: LogStore = new MemoryLogStore(),
  /** Anchor through an upgraded package: calls go to it, event types keep DEPLOYMENT's id. */
  upgraded?: string,
): Promise<{ ledger: Ledger; node: FakeIotaNode; chain: IotaAnchorChain }> {
  const ledgers = [0, 1, 2].map(
    (i) => new Ledger(i === 0 ? store : new MemoryLogStore(), signerFromSeed(robotSeed(i))),
  );
  const keys = ledgers.map((l) => l.self!);
  const share = (): void => {
    for (const a of ledgers)
      for (const b of ledgers) if (a !== b) for (const id of a.ids()) if (!b.has(id)) b.ingest(a.get(id)!);
  };
  ledgers[0].append({ type: 'genesis', fleet: 'audit-test', members: keys, admins: [keys[0]] });
  share();
  ledgers[0].append(taskPayload('t-1', { model: digest('model'), input: digest('input') }));
  ledgers[0].append(taskPayload('t-2', { model: digest('model'), input: digest('input-2') }));
  ledgers[0].append({ type: 'assign', task: 't-1', executors: keys });
  share();
  ledgers[1].append(resultPayload('t-1', 1));
  ledgers[2].append(resultPayload('t-1', 1, 1e-6));
  ledgers[0].append(resultPayload('t-1', 9));
  ledgers[1].append({ type: 'claim', task: 't-2' });
  share();
  const node = upgraded
    ? new FakeIotaNode(upgraded, { definedBy: DEPLOYMENT.packageId })
    : new FakeIotaNode(DEPLOYMENT.packageId);
  node.fund(iotaAddressOf(signerFromSeed(robotSeed(0)).publicKey));
  const chain = new IotaAnchorChain(new IotaClient({ transport: node.transport() }));
  const anchorer = new Anchorer({
    ledger: ledgers[0],
    seed: robotSeed(0),
    deployment: upgraded ? { ...DEPLOYMENT, packageId: upgraded } : DEPLOYMENT,
    queue: new MemoryAnchorQueue(),
    chain,
  });
  await anchorer.snapshot();
  assert.equal((await anchorer.flush()).anchored.length, 1);
  return { ledger: ledgers[0], node, chain };
}

describe('audit: proofs for a result', () => {
  let proof: AuditProof;
  let chain: IotaAnchorChain;

  before(async () => {
    const fleet = await anchoredFleet();
    chain = fleet.chain;
    proof = buildProof(fleet.ledger, 't-1');
  });

  it('a proof verifies offline: assignment, results, quorum, Merkle inclusion, anchor transaction', async () => {
    const report = await verifyProof(structuredClone(proof));
    assert.equal(report.decision.status, 'final');
    assert.match(report.why, /final: 2 of 3 assigned executors agree/);
    assert.equal(report.decision.executors!.length, 2);
    assert.deepEqual(report.results.map((r) => r.agrees).sort(), [false, true, true]);
    assert.ok(report.results.every((r) => r.counted));
    assert.equal(report.anchor.resultCommitted, true, 'the accepted digest was committed in the anchor transaction');
    assert.equal(report.merkle.entries, proof.entries.length - 1);
    assert.deepEqual(report.live, { checked: false, reason: 'no IOTA endpoint given' });
  });

  it('with an IOTA endpoint, the anchor is checked on chain; a chain without it fails', async () => {
    const report = await verifyProof(structuredClone(proof), chain);
    assert.equal(report.live.checked, true);
    const empty = new IotaAnchorChain(
      new IotaClient({ transport: new FakeIotaNode(DEPLOYMENT.packageId).transport() }),
    );
    await assert.rejects(verifyProof(structuredClone(proof), empty), (e: AuditError) => e.code === 'NOT_ON_CHAIN');
  });

  it('after a package upgrade the anchor checks out: the event names the package called', async () => {
    const fleet = await anchoredFleet(new MemoryLogStore(), `0x${'ab'.repeat(32)}`);
    const report = await verifyProof(buildProof(fleet.ledger, 't-1'), fleet.chain);
    assert.equal(report.live.checked, true);
  });

  it('a pruning node does not know the transaction: NOT_ON_CHAIN, saying an archive node may', async () => {
    const fleet = await anchoredFleet();
    fleet.node.faults.pruned = true;
    await assert.rejects(
      verifyProof(buildProof(fleet.ledger, 't-1'), fleet.chain),
      (e: AuditError) => e.code === 'NOT_ON_CHAIN' && /archive node/.test(e.message),
    );
  });

  it('every single-field tampering is caught, with a reason', async () => {
    const seed = testSeed();
    await withSeed(seed, async () => {
      const random = prng(seed);
      const flipHex = (s: string, at: number): string =>
        s.slice(0, at) + (parseInt(s[at], 16) ^ (1 + Math.floor(random() * 15))).toString(16) + s.slice(at + 1);
      const mutations: { what: string; mutate: (p: AuditProof) => void }[] = [];
      proof.entries.forEach((hex, e) => {
        const positions = new Set([
          0,
          1,
          hex.length - 1,
          ...Array.from({ length: 40 }, () => Math.floor(random() * hex.length)),
        ]);
        for (const at of positions)
          mutations.push({
            what: `entry ${e} hex char ${at}`,
            mutate: (p) => void (p.entries[e] = flipHex(p.entries[e], at)),
          });
      });
      proof.paths.forEach((path, i) => {
        mutations.push({ what: `path ${i} index`, mutate: (p) => void (p.paths[i].index += 1) });
        path.siblings.forEach((s, j) => {
          mutations.push({
            what: `path ${i} sibling ${j}`,
            mutate: (p) => void (p.paths[i].siblings[j] = flipHex(s, Math.floor(random() * 64))),
          });
        });
        if (path.siblings.length)
          mutations.push({ what: `path ${i} sibling dropped`, mutate: (p) => void p.paths[i].siblings.pop() });
      });
      mutations.push({ what: 'task id', mutate: (p) => void (p.task = 't-2') });
      mutations.push({
        what: 'format',
        mutate: (p) => void ((p as { format: string }).format = 'robomesh-audit-proof/0'),
      });
      mutations.push({ what: 'decision status', mutate: (p) => void (p.decision.status = 'assigned') });
      mutations.push({ what: 'decision digest', mutate: (p) => void (p.decision.digest = digest('bad')) });
      mutations.push({ what: 'decision executors', mutate: (p) => void p.decision.executors!.pop() });
      mutations.push({ what: 'an entry dropped', mutate: (p) => void (p.entries.splice(2, 1), p.paths.splice(2, 1)) });
      mutations.push({
        what: 'entries swapped',
        mutate: (p) => void ([p.entries[1], p.entries[2]] = [p.entries[2], p.entries[1]]),
      });
      const reasons = new Map<string, number>();
      for (const m of mutations) {
        const copy = structuredClone(proof);
        m.mutate(copy);
        const err = await verifyProof(copy).then(
          () => undefined,
          (e: unknown) => e,
        );
        assert.ok(err instanceof AuditError, `tampering with ${m.what} was not caught`);
        assert.ok(err.message.length > 10);
        reasons.set(err.code, (reasons.get(err.code) ?? 0) + 1);
      }
      assert.ok(mutations.length > 200, `${mutations.length} tamperings`);
      assert.ok(reasons.size >= 5, `distinct reasons: ${[...reasons.keys()].join(', ')}`);
    });
  });

  it('a task not covered by an anchor yet says so', async () => {
    const { ledger } = await anchoredFleet();
    ledger.append(taskPayload('t-late', { input: digest('late') }));
    assert.throws(
      () => buildProof(ledger, 't-late'),
      (e: AuditError) => e.code === 'NOT_ANCHORED',
    );
    assert.throws(
      () => buildProof(ledger, 'nope'),
      (e: AuditError) => e.code === 'UNKNOWN_TASK',
    );
  });
});

describe('robomesh audit (CLI)', () => {
  let dir: string;
  let node: FakeIotaNode;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rm-audit-'));
    const store = new SqliteLogStore(join(dir, 'log.sqlite'));
    node = (await anchoredFleet(store)).node;
    store.close();
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('audit result prints the evidence and says plainly the anchor was not verified live', async () => {
    const run = await robomesh(['audit', 'result', 't-1', '--store', join(dir, 'log.sqlite')]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /decision: FINAL — final: 2 of 3 assigned executors agree/);
    assert.match(run.stdout, /result by \w+…: \w+… counted, DISAGREES/);
    assert.match(run.stdout, /anchored in tx \w+ \(checkpoint \d+\), not verified live/);
    const json = await robomesh(['audit', 'result', 't-1', '--store', join(dir, 'log.sqlite'), '--json']);
    assert.equal(JSON.parse(json.stdout).ok, true);
  });

  it(
    'audit tasks lists the tasks with their state, ' + 'filtered; audit result shows an unanchored task plainly',
    async () => {
      const store = join(dir, 'log.sqlite');
      const all = await robomesh(['audit', 'tasks', '--store', store]);
      assert.equal(all.code, 0, all.stderr);
      assert.match(all.stdout, /^task\s+state\s+poster/);
      assert.match(all.stdout, /t-1\s+final/);
      assert.match(all.stdout, /t-2\s+open/);
      assert.match(all.stdout, /2 task\(s\): 1 open, 0 assigned, 0 provisional, 1 final, 0 overturned/);
      const final = await robomesh(['audit', 'tasks', '--store', store, '--state', 'final', '--json']);
      assert.deepEqual(
        (JSON.parse(final.stdout) as { task: string }[]).map((t) => t.task),
        ['t-1'],
      );
      const bad = await robomesh(['audit', 'tasks', '--store', store, '--state', 'decided']);
      assert.equal(bad.code, 2);
      assert.match(bad.stderr, /--state must be one of/);
      const open = await robomesh(['audit', 'result', 't-2', '--store', store]);
      assert.equal(open.code, 0, open.stderr);
      assert.match(open.stdout, /decision: OPEN — posted, nobody assigned yet/);
      const unknown = await robomesh(['audit', 'result', 'nope', '--store', store]);
      assert.equal(unknown.code, 2);
      assert.match(unknown.stderr, /no task nope in this log \(robomesh audit tasks lists them\)/);
    },
  );

  it('with IOTA_RPC_URL set (a 127.0.0.1 stub), the anchor is verified live', async () => {
    const server = await node.listen();
    try {
      const run = await robomesh(['audit', 'result', 't-1', '--store', join(dir, 'log.sqlite')], {
        IOTA_RPC_URL: server.url,
      });
      assert.equal(run.code, 0, run.stderr);
      assert.match(run.stdout, /verified live on IOTA \(checkpoint \d+\)/);
    } finally {
      await server.close();
    }
  });

  it(
    'export then verify with the proof file alone; a tampered ' +
      'file fails with a reason; bad input is a clear error',
    async () => {
      const file = join(dir, 'proof.json');
      const exported = await robomesh(['audit', 'export', 't-1', '--store', join(dir, 'log.sqlite'), '--out', file]);
      assert.equal(exported.code, 0, exported.stderr);
      const ok = await robomesh(['audit', 'verify', file]);
      assert.equal(ok.code, 0, ok.stderr);
      assert.match(ok.stdout, /OK: the evidence holds/);

      const proof = JSON.parse(await readFile(file, 'utf8')) as AuditProof;
      const root = proof.paths[0].siblings[0];
      proof.paths[0].siblings[0] = toHex(fromHex(root).map((b, i) => (i === 5 ? b ^ 0x80 : b)));
      await writeFile(join(dir, 'tampered.json'), JSON.stringify(proof));
      const bad = await robomesh(['audit', 'verify', join(dir, 'tampered.json')]);
      assert.equal(bad.code, 1);
      assert.match(bad.stderr, /FAILED \(BAD_INCLUSION\): entry 0/);

      const missing = await robomesh(['audit', 'result', 't-1', '--store', join(dir, 'nope.db')]);
      assert.equal(missing.code, 2);
      assert.match(missing.stderr, /no log store at/);
      await writeFile(join(dir, 'garbage.json'), '{"format": 3');
      const garbage = await robomesh(['audit', 'verify', join(dir, 'garbage.json')]);
      assert.equal(garbage.code, 2);
      assert.match(garbage.stderr, /cannot read a proof/);
    },
  );
});
