import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Tensor } from '../../../protocol/tensor-frame.js';
import { builtinInputShape, median, textLikeImage } from '../../inference/index.js';
import { signerFromSeed } from '../../../protocol/ed25519.js';
import { signEntry, toHex } from '../../../protocol/log-entry.js';
import { SqliteAnchorQueue, anchorSettingsFromEnv, SqliteLogStore } from '../../ledger/index.js';
import { loadOrCreateIdentity } from '../../mesh/index.js';
import { Robot, robotPaths } from '../../robot/index.js';
import type { Decision } from '../../scheduler/index.js';

export interface FleetArgs {
  robots: number;
  requests: number;
  dataDir?: string;
}

const short = (id: string): string => id.slice(-6);

function describe(d: Decision, names: Map<string, string>): string {
  const p = d.plan;
  const where =
    p.kind === 'local'
      ? 'all local'
      : p.kind === 'offload'
        ? `offload → ${names.get(p.peer!)}`
        : `split ${p.cut} ${p.precision} → ${names.get(p.peer!)}`;
  const fail = d.failovers.length
    ? `  failover: ${d.failovers.map((f) => `${names.get(f.peer) ?? short(f.peer)} ${f.code}`).join(', ')} ` +
      `→ ran on ${names.get(d.executor)}`
    : '';
  return (
    `${where.padEnd(34)} predicted ${p.predictedMs.toFixed(1).padStart(7)} ` +
    `ms  actual ${d.actualMs.toFixed(1).padStart(7)} ms${fail}`
  );
}

/**
 * A local fleet on this machine: N robots on loopback (real libp2p, real ONNX), each asking the
 * scheduler to run the PaddleOCR detector on document images; halfway a partition cuts r0 off
 * from r1 and heals, then the last robot starts answering garbage and is isolated.
 */
export async function meshDemoCommand(args: FleetArgs): Promise<void> {
  const dir = args.dataDir ?? (await mkdtemp(join(tmpdir(), 'robomesh-fleet-')));
  const n = Math.max(2, args.robots);
  const identities = await Promise.all(
    Array.from({ length: n }, (_, i) => loadOrCreateIdentity(robotPaths(join(dir, `r${i}`)).identity)),
  );
  const members = identities.map((i) => i.peerId.toString());
  const names = new Map(members.map((m, i) => [m, `r${i}`]));
  const model = { arg: 'builtin:ocr-det', inputShape: builtinInputShape('builtin:ocr-det') };
  const log = (s: string): void => void process.stdout.write(`${s}\n`);
  log(`starting ${n} robots on loopback (data in ${dir}); first start profiles the detector once`);
  // The fleet's genesis: r0 is the admin, every robot a member (the same key as its PeerId).
  const keys = identities.map((i) => toHex(i.privateKey.publicKey.raw));
  const genesis = signEntry(
    { seq: 1, lamport: 1, parents: [], payload: { type: 'genesis', fleet: 'local', members: keys, admins: [keys[0]] } },
    signerFromSeed(identities[0].seed),
  );
  // Only with a real deployment (IOTA_PACKAGE_ID, IOTA_REGISTRY_ID, IOTA_REGISTRY_VERSION, IOTA_RPC_URL).
  const anchoring = anchorSettingsFromEnv();
  log(
    anchoring?.chain
      ? `anchoring on IOTA via ${process.env.IOTA_RPC_URL}`
      : 'IOTA anchoring off (no IOTA_PACKAGE_ID / IOTA_RPC_URL): the log is kept and replicated, not anchored',
  );
  const robots: Robot[] = [];
  for (const [i, identity] of identities.entries()) {
    robots.push(
      await Robot.start({
        name: `r${i}`,
        identity,
        dataDir: join(dir, `r${i}`),
        cacheDir: dir,
        fleet: { name: 'local', members, bootstrap: robots.flatMap((r) => r.host.addresses()) },
        models: [model],
        profileRuns: 3,
        advertPeriodMs: 500,
        ledger: {
          store: new SqliteLogStore(robotPaths(join(dir, `r${i}`)).log),
          genesis: genesis.bytes,
          antiEntropyMs: 2000,
        },
        anchor: anchoring && {
          ...anchoring,
          queue: new SqliteAnchorQueue(robotPaths(join(dir, `r${i}`)).anchors),
          everyMs: 20_000,
        },
      }),
    );
    log(`  r${i} up: ${identities[i].peerId.toString()}`);
  }
  const deadline = Date.now() + 30_000;
  while (robots.some((r) => r.adverts.fresh().length < n - 1) && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 100));
  // Measure every link once before the first request, so plans start from real bandwidth.
  for (const r of robots)
    await r.probeIdleLinks().catch((err) => log(`  probing ${r.peerId}: ${(err as Error).message}`));
  const hash = robots[0].models.hashes()[0];
  const bw = robots[0].links.get(robots[1].peerId);
  log(`links probed: r0 → r1 ${(bw.bandwidth / 1000).toFixed(0)} MB/s, rtt ${bw.rttMs.toFixed(1)} ms`);
  const image = (seed: number): Tensor[] => [
    { name: 'x', dtype: 'float32', dims: [1, 3, 320, 320], data: textLikeImage(320, 320, seed) },
  ];
  const decisions: Decision[] = [];
  const phase = async (title: string, count: number): Promise<void> => {
    log(`\n${title}`);
    for (let k = 0; k < count; k++) {
      const requester = robots[k % n];
      const out = await requester.infer(hash, image(k), { deadlineMs: 5000 });
      decisions.push(out.decision);
      log(`  ${requester.name}: ${describe(out.decision, names)}`);
    }
  };
  const per = Math.max(n, Math.ceil(args.requests / 3));
  await phase('1. healthy mesh: each robot runs the detector where the scheduler predicts it is fastest', per);

  const logged = async (title: string): Promise<void> => {
    const outcome = await robots[0].inferTask(hash, image(500 + decisions.length), { f: 1, deadlineMs: 10_000 });
    const { task } = outcome;
    const waitUntil = Date.now() + 10_000;
    const settled = (r: Robot): boolean => r.ledger!.state.tasks.get(task)?.status === outcome.status;
    while (!robots.every(settled) && Date.now() < waitUntil) await new Promise((r) => setTimeout(r, 50));
    const by = (outcome.decision?.executors ?? []).map(
      (k) => names.get(identities[keys.indexOf(k)]?.peerId.toString() ?? '') ?? k.slice(0, 8),
    );
    log(
      `  ${title}: task ${task} (${outcome.plan.kind} at ${outcome.plan.cut}) ran on ` +
        `${outcome.plan.executors.map((e) => names.get(e)).join(', ')} in ${outcome.elapsedMs.toFixed(0)} ms; ` +
        (outcome.decision
          ? `${outcome.status}: ${by.join(' + ')} agree, on all ${n} logs: ${robots.every(settled)}`
          : `no decision yet (${outcome.status})`),
    );
  };
  log('\n1b. a logged task (f = 1): three executors, two agreeing results decide it on every robot');
  await logged('r0');

  log('\n2. partition: r0 and r1 lose radio contact');
  await robots[0].host.partition([robots[1].peerId]);
  await robots[1].host.partition([robots[0].peerId]);
  await phase('   requests during the partition', Math.min(per, n));
  robots[0].ledger!.append({ type: 'claim', task: 'written-on-the-r0-side' });
  robots[1].ledger!.append({ type: 'claim', task: 'written-on-the-r1-side' });
  robots[0].host.heal();
  robots[1].host.heal();
  const healStart = Date.now();
  while (!robots[0].host.connectedPeers().includes(robots[1].peerId) && Date.now() - healStart < 20_000)
    await new Promise((r) => setTimeout(r, 50));
  log(`   healed: r0 ↔ r1 reconnected after ${Date.now() - healStart} ms`);
  const same = (): boolean => robots.every((r) => r.ledger!.stateHash() === robots[0].ledger!.stateHash());
  while (!same() && Date.now() - healStart < 30_000) await new Promise((r) => setTimeout(r, 20));
  log(
    `   logs converged ${Date.now() - healStart} ms after the heal: ` +
      `${same() ? 'every robot holds the same entries and state' : 'NOT converged'}`,
  );

  const liar = robots[n - 1];
  liar.service.tamper = (_r, out) => {
    const junk = out.slice();
    junk.fill(0xab, 0, 32);
    return junk;
  };
  log(`\n3. ${liar.name} turns Byzantine: its answers are garbage from now on`);
  for (let k = 0; k < 3; k++) {
    const out = await robots[0].infer(hash, image(100 + k), {
      deadlineMs: 5000,
      force: { kind: 'offload', peer: liar.peerId },
    });
    decisions.push(out.decision);
    log(`  r0 (asking ${liar.name} on purpose): ${describe(out.decision, names)}`);
    if (robots[0].reputation.isIsolated(liar.peerId)) break;
  }
  log(
    `   ${liar.name} isolated by r0: ${robots[0].reputation.isIsolated(liar.peerId)} ` +
      `(score ${robots[0].reputation.score(liar.peerId)})`,
  );
  await phase('   requests after isolating the liar', per);

  const actual = decisions.map((d) => d.actualMs).sort((a, b) => a - b);
  const kinds = new Map<string, number>();
  for (const d of decisions) kinds.set(d.plan.kind, (kinds.get(d.plan.kind) ?? 0) + 1);
  log(
    `\nsummary: ${decisions.length} requests, all completed; latency median ${median(actual).toFixed(1)} ` +
      `ms, p95 ${actual[Math.floor(0.95 * (actual.length - 1))].toFixed(1)} ms`,
  );
  log(
    `  plans: ${[...kinds].map(([k, v]) => `${k} ${v}`).join(', ')}; ` +
      `failovers: ${decisions.filter((d) => d.failovers.length).length}`,
  );
  const hashes = new Set(robots.map((r) => r.ledger!.stateHash()));
  log(
    `  log: ${robots[0].ledger!.size} entries on every robot, ` +
      `${hashes.size === 1 ? 'one state hash' : 'DIVERGENT states'}; ` +
      `equivocations ${robots[0].ledger!.state.equivocations.length}, tasks final ` +
      `${[...robots[0].ledger!.state.tasks.values()].filter((t) => t.status === 'final').length}`,
  );
  log("  (all robots share this machine's CPU, so a remote tail is rarely faster than a local run here;");
  log("   `npm run bench:split` throttles the requester's CPU and shapes links to show where splitting wins)");
  log('  not in this run yet: IOTA anchoring, mapping, ROS 2 and the dashboard (see README).');
  await Promise.all(robots.map((r) => r.stop()));
  if (!args.dataDir) await rm(dir, { recursive: true, force: true });
}
