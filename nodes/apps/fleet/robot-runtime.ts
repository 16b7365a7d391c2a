import { isExcluded } from '../../../contracts/fleet-state.js';
import { type TaskStatus, countTasks } from '../../../contracts/tasks.js';

export { countTasks };
import { signerFromSeed } from '../../../protocol/ed25519.js';
import { signEntry } from '../../../protocol/log-entry.js';
import { decodeFrame, encodeFrame, type Tensor } from '../../../protocol/tensor-frame.js';
import { CameraChainStream, type ChainStreamStatus } from './chain-stream.js';
import { builtinInputShape, textLikeImage } from '../../inference/index.js';
import {
  SqliteAnchorQueue,
  IotaAnchorChain,
  iotaClientFor,
  type IotaDeployment,
  SqliteLogStore,
} from '../../ledger/index.js';
import { logTopic, packLogGossip } from '../../../protocol/log-sync.js';
import { ScanMatchingLocalizer } from '../../mapping/index.js';
import { identityFromSeed, type LinkShape, LinkShaper } from '../../mesh/index.js';
import { Robot, robotPaths } from '../../robot/index.js';
import { lie } from '../../tasks/index.js';
import { attack } from './attacks.js';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { peerIdFromString } from '@libp2p/peer-id';
import { defaultRobots, floorPlan, WorldSimulator } from '../sim/index.js';
import type { Pose } from '../../../protocol/sensors.js';
import type { Fault } from './scenario.js';

/** What a robot answers to a `task` command. */
export interface TaskReply {
  task?: string;
  status?: TaskStatus;
  plan?: string;
  ms?: number;
  executors?: string[];
  reassigned?: number;
  error?: string;
  skipped?: string;
}

/** Everything a robot process needs to start (JSON: it crosses the IPC channel). */
export interface RuntimeInit {
  name: string;
  index: number;
  seed: string;
  fleet: { name: string; members: string[]; genesis: string };
  bootstrap: string[];
  dataDir: string;
  cacheDir: string;
  sim: { world: string; seed: number; speed: number; publishEvery: number };
  model: string | null;
  anchor?: { deployment: IotaDeployment; rpcUrl: string; everyMs: number };
  /** The scenario shapes links: wrap connections in a shaper (otherwise they stay unwrapped). */
  linkShaping?: boolean;
  /** Connections per robot in a large fleet (ring neighbours and chords); absent: a full mesh. */
  meshDegree?: number;
  /**
   * The body stays still (nothing mapped or published) until a `go` command: the scenario's clock
   * starts once the whole fleet is up.
   */
  holdUntilGo?: boolean;
  /** Stage files this robot holds, the chain's manifest, and (the streaming robot) frames per second. */
  chain?: { manifest: string; stages: string[]; fps?: number };
}

export type Command =
  | { cmd: 'status' }
  | { cmd: 'map' }
  | { cmd: 'partition'; peers: string[] }
  | { cmd: 'heal' }
  /** Start moving and mapping (robots started with holdUntilGo). */
  | { cmd: 'go' }
  /**
   * Note when this robot holds these authors' entries up to these seqs (logAt), and the cells of the
   * tiles they name (allAt).
   */
  | { cmd: 'catch-up'; written: Record<string, number> }
  /** Pace and delay what this robot sends to these peers (null lifts it); `clear` lifts all first. */
  | { cmd: 'shape'; clear?: boolean; links: { peer: string; shape: LinkShape | null }[] }
  | { cmd: 'fault'; fault: Fault }
  | { cmd: 'task'; seed: number; f: number }
  /** Open a fresh connection to each connected member (not reused) and close it: can members still get in? */
  | { cmd: 'dial-check'; skip?: string[] }
  /** Clear a peer's local score and lift its cut-off (benchmarks measure attacks one at a time). */
  | { cmd: 'forgive'; peer: string }
  | { cmd: 'stop' };

export interface RobotStatus {
  name: string;
  peerId: string;
  key: string;
  addresses: string[];
  pose?: Pose;
  simTime: number;
  logSize: number;
  stateHash: string;
  /** Per author (key): the highest sequence number held. */
  seqs: Record<string, number>;
  /** The latest catch-up target: when (epoch ms) this robot reached it, as seen by its own clock and event loop. */
  caughtUp?: { logAt?: number; allAt?: number };
  flagged: string[];
  /** Members whose reputation in the log excludes them (equivocation, lost quorums, map flags). */
  excludedKeys: string[];
  equivocations: number;
  rejectedEntries: number;
  excludedPeers: string[];
  /** The latest map comparison: per robot pair (keys), conflicting and agreeing tiles. */
  mapPairs: { a: string; b: string; conflicts: number; agreements: number }[];
  connected: string[];
  /** Measured per connected peer; shapedBps is the scenario's rate toward it (0 = not shaped). */
  links: { peer: string; bandwidthBps: number; rttMs: number; shapedBps: number }[];
  events: { at: number; kind: string; detail: string }[];
  latencies: { at: number; ms: number; plan: string; predictedMs?: number }[];
  /** Median |predicted ÷ measured − 1| of the scheduler's latest decisions; compute slowdown (1 = unloaded). */
  predictionError?: number;
  slowdown: number;
  /** Requests whose plan ran an exit, and how many it answered. */
  exits: { asked: number; taken: number };
  /** The camera stream through the scenario's chain (the streaming robot only). */
  chain?: ChainStreamStatus;
  /** Logged tasks in this robot's log, by state. */
  tasks: Record<TaskStatus, number>;
  rss: number;
  cpuMs: number;
  /** Event-loop delay since the last status: p99 and max, ms. */
  loopLagMs: { p99: number; max: number };
  bytes: { tilesOut: number; tilesIn: number; logOut: number; tensorsOut: number };
}

/**
 * One robot of the local fleet, the same whether it runs in its own process (robot-process.ts)
 * or in the fleet's: a Robot with its log and map, driving its own simulated body (its lidar and
 * odometry from the shared world, at `speed` × real time), and the faults a scenario injects.
 */
export class RobotRuntime {
  private sim: WorldSimulator;
  private localizer: ScanMatchingLocalizer;
  private timer: NodeJS.Timeout | undefined;
  private pose: Pose | undefined;
  private lastPublish = 0;
  private publishes = 0;
  private going: boolean;
  private readonly events: RobotStatus['events'] = [];
  private readonly latencies: RobotStatus['latencies'] = [];
  private readonly started = Date.now();
  private catchUp: { written: Record<string, number>; logAt?: number; allAt?: number } | undefined;

  private constructor(
    readonly robot: Robot,
    private readonly init: RuntimeInit,
    private readonly linkShaper: LinkShaper | undefined,
    private readonly camera: CameraChainStream | undefined,
  ) {
    const plan = floorPlan(init.sim.world);
    // Plans have 8 start poses and routes; a larger fleet reuses them (robots do not collide).
    const spec = defaultRobots(plan, Math.min(8, plan.starts.length))[init.index % plan.starts.length];
    this.sim = new WorldSimulator({
      world: plan.world,
      robots: [spec],
      seed: init.sim.seed,
      scanEvery: 5,
      maxTime: 3600,
    });
    this.localizer = new ScanMatchingLocalizer(spec.start);
    this.going = !init.holdUntilGo;
    robot.ledger!.on('entry', (d) => {
      const p = d.entry.payload;
      const detail =
        'task' in p
          ? p.task
          : p.type === 'tile'
            ? `${p.tile} v${p.version}`
            : p.type === 'flag'
              ? p.robot.slice(0, 12)
              : p.type === 'anchor'
                ? `tx ${p.tx}`
                : '';
      if (robot.ledger!.isOwn(d)) this.events.push({ at: Date.now() - this.started, kind: p.type, detail });
      if (this.events.length > 500) this.events.splice(0, this.events.length - 500);
    });
    robot.anchorer?.on('failed', ({ root, reason }) =>
      this.events.push({
        at: Date.now() - this.started,
        kind: 'anchor-failed',
        detail: `${root.slice(0, 12)}…: ${reason}`,
      }),
    );
  }

  static async start(init: RuntimeInit): Promise<RobotRuntime> {
    const identity = await identityFromSeed(new Uint8Array(Buffer.from(init.seed, 'hex')));
    const plan = floorPlan(init.sim.world);
    const anchor = init.anchor && {
      deployment: init.anchor.deployment,
      queue: new SqliteAnchorQueue(robotPaths(init.dataDir).anchors),
      chain: new IotaAnchorChain(iotaClientFor(init.anchor.rpcUrl, 5000)),
      everyMs: init.anchor.everyMs,
    };
    const linkShaper = init.linkShaping ? new LinkShaper() : undefined;
    const robot = await Robot.start({
      linkShaper,
      name: init.name,
      identity,
      dataDir: init.dataDir,
      cacheDir: init.cacheDir,
      fleet: { name: init.fleet.name, members: init.fleet.members, bootstrap: init.bootstrap },
      models: init.model ? [{ arg: init.model, inputShape: builtinInputShape(init.model) }] : [],
      // Every robot may stand in for a stage of the scenario's chain (fetching it from a holder).
      stages: init.chain?.stages,
      chains: init.chain && [init.chain.manifest],
      profileRuns: 3,
      // Every robot verifies every advert: a large fleet advertises less often (peers' adverts
      // stay fresh for three periods; the scheduler reads queue lengths from them).
      advertPeriodMs: init.meshDegree ? 10_000 : 1000,
      meshDegree: init.meshDegree,
      probeIntervalMs: 10_000,
      ledger: {
        store: new SqliteLogStore(robotPaths(init.dataDir).log),
        genesis: new Uint8Array(Buffer.from(init.fleet.genesis, 'base64')),
        antiEntropyMs: 2000,
      },
      mapping: { frame: { resolution: plan.world.resolution, origin: plan.world.origin }, syncMs: 1000 },
      anchor,
    });
    let camera: CameraChainStream | undefined;
    // The chain as the robot read it from `chains`.
    const manifest = init.chain && robot.chainManifest(init.chain.manifest);
    if (manifest && init.chain?.fps)
      camera = new CameraChainStream(robot, manifest, RobotRuntime.frame(init, 0), init.chain.fps);
    const rt = new RobotRuntime(robot, init, linkShaper, camera);
    if (rt.going) camera?.start();
    rt.timer = setInterval(() => rt.tick(), 100);
    rt.lag.enable();
    return rt;
  }

  /** 100 ms of wall time: speed × 0.1 s of simulated body, scans into the map, periodic publish. */
  /** Checked every tick: a fleet of 50 answers status polls seconds late, so robots time themselves. */
  private checkCatchUp(): void {
    const c = this.catchUp;
    if (!c || c.allAt !== undefined) return;
    if (c.logAt === undefined) {
      const held = this.robot.ledger!.summary();
      if (Object.entries(c.written).every(([k, seq]) => (held.get(k)?.maxSeq ?? 0) >= seq)) c.logAt = Date.now();
    }
    if (
      c.logAt !== undefined &&
      Object.entries(this.robot.map!.missingSince()).every(([k, seq]) => seq > (c.written[k] ?? 0))
    )
      c.allAt = Date.now();
  }

  private tick(): void {
    this.checkCatchUp();
    if (!this.going) return;
    const map = this.robot.map!;
    const target = this.sim.time + this.init.sim.speed * 0.1;
    while (this.sim.time < target && !this.sim.done) {
      const [s] = this.sim.step();
      this.pose = s.truePose;
      if (s.scan) map.insert(this.localizer.update(s.odomPose, s.scan, map.grid), s.scan);
    }
    // Wall-clock cadence: a robot whose route is done still publishes changes (and checks peers).
    const now = Date.now();
    if (now - this.lastPublish >= (this.init.sim.publishEvery / this.init.sim.speed) * 1000) {
      this.lastPublish = now;
      map.publish();
      // Every robot compares every pair of contributions to a tile, so the work grows with the
      // square of the fleet: a large fleet checks every few publishes (one check per 16 members).
      if (this.publishes++ % Math.ceil(this.init.fleet.members.length / 16) === 0) map.detect();
    }
  }

  async handle(c: Command): Promise<unknown> {
    switch (c.cmd) {
      case 'status':
        return this.status();
      case 'map': {
        const tiles = this.robot.map!.merged();
        return {
          tiles: [...tiles].map(([id, cells]) => [
            id,
            Buffer.from(cells.buffer, cells.byteOffset, cells.byteLength).toString('base64'),
          ]),
        };
      }
      case 'partition':
        await this.robot.host.partition(c.peers);
        return { ok: true };
      case 'heal':
        this.robot.host.heal();
        return { ok: true };
      case 'go':
        this.going = true;
        this.camera?.start();
        return { ok: true };
      case 'catch-up':
        this.catchUp = { written: c.written };
        this.checkCatchUp();
        return { ok: true };
      case 'shape':
        if (!this.linkShaper) throw new Error('this robot was started without link shaping');
        if (c.clear) this.linkShaper.clear();
        for (const l of c.links) this.linkShaper.set(l.peer, l.shape);
        return { ok: true };
      case 'fault':
        this.fault(c.fault);
        return { ok: true };
      case 'task':
        return this.task(c.seed, c.f);
      case 'dial-check':
        return this.dialCheck(c.skip ?? []);
      case 'forgive':
        this.robot.reputation.forgive(c.peer);
        this.robot.host.heal([c.peer]);
        return { ok: true };
      case 'stop':
        await this.stop();
        return { ok: true };
    }
  }

  private status(): RobotStatus {
    const r = this.robot;
    const ledger = r.ledger!;
    const map = r.map!;
    const connected = r.host.connectedPeers();
    const state = ledger.state;
    return {
      name: r.name,
      peerId: r.peerId,
      key: ledger.self!,
      addresses: r.host.addresses(),
      pose: this.pose,
      simTime: this.sim.time,
      logSize: ledger.size,
      stateHash: ledger.stateHash(),
      seqs: Object.fromEntries([...ledger.summary()].map(([k, v]) => [k, v.maxSeq])),
      caughtUp: this.catchUp && { logAt: this.catchUp.logAt, allAt: this.catchUp.allAt },
      flagged: [...state.flagged],
      excludedKeys: [...state.members].filter((m) => isExcluded(state, m)),
      equivocations: state.equivocations.length,
      rejectedEntries: r.replicator?.rejected ?? 0,
      excludedPeers: connected.filter((p) => r.reputation.isIsolated(p)),
      mapPairs: map.lastCheck?.pairs ?? [],
      connected,
      links: connected.map((p) => {
        const l = r.links.get(p);
        return {
          peer: p,
          bandwidthBps: l.bandwidth * 8000,
          rttMs: l.rttMs,
          shapedBps: (this.linkShaper?.shapeFor(p)?.bytesPerSecond ?? 0) * 8,
        };
      }),
      events: this.events.splice(0),
      latencies: this.latencies.splice(0),
      tasks: countTasks(state.tasks.values()),
      predictionError: r.scheduler.predictionError(),
      slowdown: r.load.slowdown(),
      exits: { ...r.scheduler.exitCounts },
      chain: this.camera?.status(),
      rss: process.memoryUsage().rss,
      loopLagMs: this.loopLag(),
      cpuMs: process.cpuUsage().user / 1000 + process.cpuUsage().system / 1000,
      bytes: {
        tilesOut: r.mapSync!.bytesOut,
        tilesIn: r.mapSync!.bytesIn,
        logOut: r.replicator?.bytesPublished ?? 0,
        tensorsOut: r.service.bytesOut,
      },
    };
  }

  private readonly lag = monitorEventLoopDelay({ resolution: 10 });

  private loopLag(): { p99: number; max: number } {
    const out = { p99: this.lag.percentile(99) / 1e6, max: this.lag.max / 1e6 };
    this.lag.reset();
    return out;
  }

  private async dialCheck(skip: string[]): Promise<{ ok: number; failed: string[] }> {
    const node = this.robot.host.node;
    const failed: string[] = [];
    let ok = 0;
    for (const peer of this.robot.host.connectedPeers()) {
      if (skip.includes(peer)) continue;
      const addr = node.getConnections(peerIdFromString(peer))[0]?.remoteAddr;
      if (!addr) continue;
      try {
        // Only connections we accepted have the peer's listen address; others use its identify address.
        const target = (await node.peerStore.get(peerIdFromString(peer))).addresses[0]?.multiaddr ?? addr;
        const conn = await node.dial(target.encapsulate(`/p2p/${peer}`), {
          force: true,
          signal: AbortSignal.timeout(5000),
        });
        await conn.close();
        ok++;
      } catch (err) {
        failed.push(`${peer.slice(-6)}: ${(err as Error).message}`);
      }
    }
    return { ok, failed };
  }

  private async task(seed: number, f: number): Promise<TaskReply> {
    const model = this.robot.models.hashes()[0];
    if (!model) return { skipped: 'no model' };
    const image = RobotRuntime.frame(this.init, seed);
    try {
      const outcome = await this.robot.inferTask(model, image, { f, deadlineMs: 15_000 });
      this.latencies.push({ at: Date.now() - this.started, ms: outcome.elapsedMs, plan: outcome.plan.kind });
      return {
        task: outcome.task,
        status: outcome.status,
        plan: outcome.plan.kind,
        ms: outcome.elapsedMs,
        executors: outcome.plan.executors,
        reassigned: outcome.reassigned,
      };
    } catch (err) {
      return { error: (err as Error).message };
    }
  }

  /** A camera frame for the workload's model: text-like, so the detector finds something. */
  private static frame(init: RuntimeInit, seed: number): Tensor[] {
    const [name, shape] = Object.entries(builtinInputShape(init.model!) ?? { x: [1, 3, 320, 320] })[0];
    return [{ name, dtype: 'float32', dims: shape, data: textLikeImage(shape[2], shape[3], seed) }];
  }

  private fault(f: Fault): void {
    const r = this.robot;
    switch (f.type) {
      case 'wrong-results':
        // Valid frames, wrong numbers, signed in the log: the task contract has to catch it.
        r.taskExecutor!.misbehave = lie('wrong');
        r.service.tamper = (_req, out) =>
          encodeFrame(
            decodeFrame(out).map((t) => ({ ...t, data: (t.data as Float32Array).map((v) => v * 0.5 + 0.25) })),
          );
        return;
      case 'garbage-tensors':
        r.taskExecutor!.misbehave = lie('garbage');
        r.service.tamper = (_req, out) => out.slice().fill(0xab, 0, Math.min(out.length, 64));
        return;
      case 'fake-walls':
        r.map!.fakeWalls = [{ from: f.from, to: f.to, thickness: f.thickness }];
        return;
      case 'attack':
        void attack(r, f.attack, f.seconds, this.init.fleet.name).then(
          (sent) =>
            this.events.push({ at: Date.now() - this.started, kind: 'attack', detail: `${f.attack}: ${sent} sent` }),
          (err: Error) => this.events.push({ at: Date.now() - this.started, kind: 'attack', detail: err.message }),
        );
        return;
      case 'equivocate': {
        // A second, different entry in the slot of our latest one, published like any entry.
        const ledger = r.ledger!;
        const me = ledger.self!;
        const seq = ledger.summary().get(me)?.maxSeq ?? 1;
        const twin = signEntry(
          {
            seq,
            lamport: 1 + Math.max(0, ...ledger.heads().map((h) => ledger.lamportOf(h) ?? 0)),
            parents: [],
            payload: { type: 'claim', task: `equivocation-${seq}` },
          },
          signerFromSeed(new Uint8Array(Buffer.from(this.init.seed, 'hex'))),
        );
        void r.host.node.services.pubsub
          .publish(logTopic(this.init.fleet.name), packLogGossip([twin.bytes])[0])
          .catch(() => undefined); // an attack: nobody to tell if no peer takes it
        return;
      }
      case 'forge': {
        // An entry claiming to be another robot's, signed with a key that is not its.
        const victim = this.init.fleet.members.find((m) => m !== r.peerId)!;
        const forged = signEntry(
          { seq: 1, lamport: 1, parents: [], payload: { type: 'claim', task: `forged-${victim.slice(-6)}` } },
          signerFromSeed(new Uint8Array(32).fill(0x66)),
        );
        void r.host.node.services.pubsub
          .publish(logTopic(this.init.fleet.name), packLogGossip([forged.bytes])[0])
          .catch(() => undefined); // an attack: nobody to tell if no peer takes it
        return;
      }
    }
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.camera?.stop();
    this.lag.disable();
    await this.robot.stop();
  }
}
