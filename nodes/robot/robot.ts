import { join } from 'node:path';
import type { Precision } from '../inference/boundary.js';
import { loadModelArg } from '../inference/bundled-models.js';
import { ModelRegistry } from '../inference/model-registry.js';
import { type LoadedModel, parseModel } from '../inference/onnx-model.js';
import { analyzeInChildProcess, profileInChildProcess } from '../inference/child-work.js';
import { ProfileStore, defaultCacheDir, profileKey } from '../inference/profiler.js';
import { SessionCache } from '../inference/sessions.js';
import { AdvertBoard, advertTopic } from '../mesh/adverts.js';
import { type MeshHost, createMeshHost } from '../mesh/host.js';
import type { LinkShaper } from '../mesh/link-shaper.js';
import { type RobotIdentity, loadOrCreateIdentity } from '../mesh/identity.js';
import { InferClient } from '../mesh/infer-client.js';
import { type InferServiceOptions, InferService } from '../mesh/infer-service.js';
import { fetchModel, serveModels } from '../mesh/model-fetch.js';
import { handleProbes, probe } from '../mesh/probe.js';
import { PeerReputation } from '../mesh/reputation.js';
import { createHash } from 'node:crypto';
import { peerIdFromString } from '@libp2p/peer-id';
import { signerFromSeed } from '../../protocol/ed25519.js';
import { RobomeshError } from '../../protocol/errors.js';
import { toHex } from '../../protocol/log-entry.js';
import { resultDigest } from '../../protocol/result-summary.js';
import { type Tensor, encodeFrame } from '../../protocol/tensor-frame.js';
import { Ledger } from '../ledger/ledger.js';
import type { AnchorChain } from '../ledger/anchor-chain.js';
import type { AnchorQueue } from '../ledger/anchor-queue.js';
import { AnchorRelay, anchorRelayTopic } from '../ledger/anchor-relay.js';
import { Anchorer } from '../ledger/anchorer.js';
import type { GasPlan, IotaDeployment } from '../ledger/iota-tx.js';
import { LogReplicator, logTopic } from '../ledger/replication.js';
import { MapService } from '../mapping/map-service.js';
import { MapSync } from '../mapping/map-sync.js';
import type { MapFrame } from '../mapping/occupancy-grid.js';
import type { LogStore } from '../ledger/store.js';
import { LinkEstimator } from '../scheduler/links.js';
import { Scheduler } from '../scheduler/scheduler.js';

export interface RobotConfig {
  name: string;
  identity?: RobotIdentity;
  /** Key file, created on first start; default `<dataDir>/identity.key`. */
  keyFile?: string;
  dataDir?: string;
  fleet: { name: string; members: string[]; bootstrap?: string[] };
  listen?: string[];
  mdns?: boolean;
  models: { arg: string; inputShape?: Record<string, number[]> }[];
  /** Timed runs per part when profiling; profiles are reused from `cacheDir` when they match. */
  profileRuns?: number;
  cacheDir?: string;
  threads?: number;
  linkBytesPerSecond?: number;
  /** Simulated radio links (a fleet scenario's link shaping). */
  linkShaper?: LinkShaper;
  /** libp2p's own reconnect attempts before it gives up (our redial loop never does). */
  reconnectRetries?: number;
  /** Keep about this many connections (ring neighbours and random chords) instead of one to every member: large fleets. */
  meshDegree?: number;
  advertPeriodMs?: number;
  /**
   * Build every head ('head'), tail ('tail') or both sessions at start, for every cut and
   * precision, so no request pays session creation (tens to hundreds of ms) — costs memory.
   */
  prewarm?: 'head' | 'tail' | 'both';
  /** Idle bandwidth probes of links with no recent transfer; 0 disables. */
  probeIntervalMs?: number;
  service?: InferServiceOptions;
  /** The replicated log: its store and the fleet's genesis entry (bytes). Absent: no log. */
  ledger?: { store: LogStore; genesis: Uint8Array; antiEntropyMs?: number };
  /**
   * Anchoring of the log on IOTA (needs `ledger`): every `everyMs` the log is snapshotted into a
   * queued anchor and the queue flushed. Without `chain` (no node) anchors signed with a known
   * `gas` coin are relayed over the mesh for a peer with a node to submit.
   */
  /** Collaborative mapping (needs `ledger`): tile contributions logged and synced over the mesh. */
  mapping?: { frame: MapFrame; syncMs?: number };
  anchor?: {
    deployment: IotaDeployment;
    queue: AnchorQueue;
    chain?: AnchorChain;
    gas?: GasPlan;
    everyMs?: number;
    relayRepublishMs?: number;
  };
}

/**
 * One robot: mesh host, models, inference service and client, adverts, link estimates and the
 * scheduler, wired together. The composition root for `robomesh robot` and for tests.
 */
export class Robot {
  private timers: NodeJS.Timeout[] = [];

  private constructor(
    readonly name: string,
    readonly host: MeshHost,
    readonly models: ModelRegistry,
    readonly service: InferService,
    readonly client: InferClient,
    readonly adverts: AdvertBoard,
    readonly links: LinkEstimator,
    readonly reputation: PeerReputation,
    readonly scheduler: Scheduler,
    /** Registers a model and loads or measures its profile. */
    private readonly addModel: (model: LoadedModel, inputShape?: Record<string, number[]>) => Promise<void>,
    readonly ledger?: Ledger,
    readonly replicator?: LogReplicator,
    readonly anchorer?: Anchorer,
    readonly anchorRelay?: AnchorRelay,
    readonly map?: MapService,
    readonly mapSync?: MapSync,
  ) {}

  private tasks = 0;

  get peerId(): string {
    return this.host.peerId;
  }

  static async start(config: RobotConfig): Promise<Robot> {
    const dataDir = config.dataDir ?? join(defaultCacheDir(), 'robots', config.name);
    const identity = config.identity ?? (await loadOrCreateIdentity(config.keyFile ?? join(dataDir, 'identity.key')));
    // Each session holds its model's weights and activation arena (the detector's: ~17 MB): a
    // robot keeps the parts it served last, not every cut and precision it ever ran.
    const sessions = new SessionCache({ threads: config.threads ?? 1 }, 24);
    const models = new ModelRegistry(sessions);
    const store = new ProfileStore(config.cacheDir ? join(config.cacheDir, 'profiles') : undefined);
    const addModel = async (model: LoadedModel, inputShape?: Record<string, number[]>): Promise<void> => {
      const slicer = await models.add(model, inputShape, analyzeInChildProcess);
      const key = profileKey(slicer, 'fp32', config.threads ?? 1);
      let profile = await store.load(slicer.hash, key);
      if (!profile) {
        profile = await profileInChildProcess(slicer, {
          runs: config.profileRuns ?? 5,
          warmup: 1,
          precision: 'fp32',
          threads: config.threads ?? 1,
        });
        await store.save(profile);
      }
      models.setProfile(profile);
    };
    for (const m of config.models) await addModel(await loadModelArg(m.arg), m.inputShape);
    if (config.prewarm) for (const hash of models.hashes()) await models.get(hash).prewarm(config.prewarm);

    const host = await createMeshHost({
      identity,
      fleetName: config.fleet.name,
      members: config.fleet.members,
      listen: config.listen,
      bootstrap: config.fleet.bootstrap,
      mdns: config.mdns,
      linkBytesPerSecond: config.linkBytesPerSecond,
      reconnectRetries: config.reconnectRetries,
      degree: config.meshDegree,
      linkShaper: config.linkShaper,
      topics: [advertTopic(config.fleet.name), logTopic(config.fleet.name), anchorRelayTopic(config.fleet.name)],
    });
    const links = new LinkEstimator();
    const reputation = new PeerReputation((peer) => {
      void host.partition([peer]);
    });
    const service = new InferService(host.node, models, reputation, config.service);
    await service.start();
    await handleProbes(host.node);
    await serveModels(host.node, (hash) => (models.has(hash) ? models.get(hash).analysis.model.bytes : undefined));
    const client = new InferClient(host.node, reputation);
    const adverts = new AdvertBoard(
      host.node,
      signerFromSeed(identity.seed),
      config.fleet.name,
      () => ({
        queue: service.queue.length,
        models: models.hashes().flatMap((hash) => {
          const p = models.profile(hash);
          return p
            ? [{ hash, wholeMs: p.wholeMs, tailMs: Object.fromEntries(p.cuts.map((c) => [c.id, c.tailMs])) }]
            : [];
        }),
      }),
      config.advertPeriodMs ?? 1000,
    );
    adverts.start();
    const scheduler = new Scheduler({
      self: host.peerId,
      models,
      queue: service.queue,
      client,
      links,
      peers: () => {
        const connected = new Set(host.connectedPeers());
        return adverts.fresh().filter((a) => connected.has(a.robot) && !reputation.isIsolated(a.robot));
      },
    });
    let ledger: Ledger | undefined;
    let replicator: LogReplicator | undefined;
    if (config.ledger) {
      ledger = new Ledger(config.ledger.store, signerFromSeed(identity.seed));
      ledger.ingest(config.ledger.genesis);
      replicator = new LogReplicator(
        host.node,
        ledger,
        config.fleet.name,
        (p) => host.gater.admits(p),
        config.ledger.antiEntropyMs,
      );
      await replicator.start();
    }
    let anchorer: Anchorer | undefined;
    let relay: AnchorRelay | undefined;
    if (config.anchor && ledger) {
      const { deployment, queue, chain, gas } = config.anchor;
      anchorer = new Anchorer({ ledger, seed: identity.seed, deployment, queue, chain, gas });
      relay = new AnchorRelay(
        host.node,
        anchorer,
        config.fleet.name,
        () => ledger.state.members,
        config.anchor.relayRepublishMs,
      );
      relay.start();
    }
    let map: MapService | undefined;
    let mapSync: MapSync | undefined;
    if (config.mapping && ledger) {
      map = new MapService(ledger, config.mapping.frame);
      mapSync = new MapSync(host.node, map, config.fleet.name, (p) => host.gater.admits(p), config.mapping.syncMs);
      await mapSync.start();
    }
    const robot = new Robot(
      config.name,
      host,
      models,
      service,
      client,
      adverts,
      links,
      reputation,
      scheduler,
      addModel,
      ledger,
      replicator,
      anchorer,
      relay,
      map,
      mapSync,
    );
    if (mapSync) robot.onStop(() => mapSync.stop());
    if (anchorer) {
      robot.onStop(() => relay!.stop());
      let busy = false;
      robot.every(config.anchor!.everyMs ?? 30_000, async () => {
        if (busy) return;
        busy = true;
        try {
          await anchorer.snapshot();
          await anchorer.flush();
        } finally {
          busy = false;
        }
      });
    }
    // An executor records what it computed for a logged task; the quorum contract compares.
    service.on('served', (_peer, request, outputs) => {
      if (ledger && request.task) ledger.append({ type: 'result', task: request.task, ...resultDigest(outputs) });
    });
    robot.every(1000, () => robot.sampleRtt());
    if ((config.probeIntervalMs ?? 5000) > 0) robot.every(config.probeIntervalMs ?? 5000, () => robot.probeIdleLinks());
    return robot;
  }

  private readonly stoppers: (() => void)[] = [];
  private onStop(fn: () => void): void {
    this.stoppers.push(fn);
  }

  private every(ms: number, fn: () => void | Promise<void>): void {
    const t = setInterval(() => void Promise.resolve(fn()).catch(() => undefined), ms);
    t.unref();
    this.timers.push(t);
  }

  private sampleRtt(): void {
    for (const c of this.host.node.getConnections())
      if (c.rtt !== undefined) this.links.recordRtt(c.remotePeer.toString(), c.rtt);
  }

  /** When nothing is queued, measure links that carried no transfer recently with a 256 KiB probe. */
  async probeIdleLinks(): Promise<void> {
    if (this.service.queue.length > 0) return;
    for (const peer of this.links.stale(this.host.connectedPeers(), 10_000)) {
      const bytes = 256 * 1024;
      // The round trip stays in: on a fast link it is most of the time, and the planner adds
      // rtt separately only once per request, so this errs on the slow (safe) side.
      this.links.recordTransfer(peer, bytes, await probe(this.host.node, peer, bytes));
    }
  }

  /** Get a model this robot lacks from a peer that advertises it, verified against its hash. */
  async fetchModel(hash: string, inputShape?: Record<string, number[]>): Promise<void> {
    const holders = this.adverts.fresh().filter((a) => a.models.some((m) => m.hash === hash));
    let lastError: unknown = new Error(`no peer advertises model ${hash.slice(0, 12)}…`);
    for (const h of holders) {
      try {
        const bytes = await fetchModel(this.host.node, h.robot, hash);
        await this.addModel(parseModel(bytes, `model from ${h.robot}`), inputShape);
        return;
      } catch (err) {
        lastError = err;
      }
    }
    throw lastError;
  }

  /**
   * A task recorded in the log: picks the best plan that k distinct peers can execute, posts
   * the task and its assignment, runs it on all k, and lets their logged results decide (the
   * quorum contract, on every robot). Returns the task id and the run's outcome.
   */
  async inferTask(
    model: string,
    inputs: Tensor[],
    k = 2,
    options: { deadlineMs?: number; precisions?: Precision[] } = {},
  ) {
    if (!this.ledger) throw new RobomeshError('NO_LEDGER', 'this robot runs without a log');
    const ranked = this.scheduler.plans(model, inputs, options.precisions);
    const choice = ranked.find(
      (p) =>
        p.kind !== 'local' &&
        new Set(
          ranked.filter((q) => q.kind === p.kind && q.cut === p.cut && q.precision === p.precision).map((q) => q.peer),
        ).size >= k,
    );
    if (!choice) throw new RobomeshError('NO_EXECUTORS', `fewer than ${k} peers can run model ${model.slice(0, 12)}…`);
    const peers = [
      ...new Set(
        ranked
          .filter((q) => q.kind === choice.kind && q.cut === choice.cut && q.precision === choice.precision)
          .map((q) => q.peer!),
      ),
    ].slice(0, k);
    const task = `${this.name}-${Date.now().toString(36)}-${(this.tasks++).toString(36)}`;
    const input = createHash('sha256').update(encodeFrame(inputs)).digest('hex');
    this.ledger.appendBatch([
      { type: 'task', task, model, input, k, timeout: 1000 },
      { type: 'assign', task, executors: peers.map((p) => toHex(peerIdFromString(p).publicKey!.raw)) },
    ]);
    const outcome = await this.scheduler.infer(model, inputs, {
      redundancy: k,
      task,
      executors: peers,
      deadlineMs: options.deadlineMs,
      force: { kind: choice.kind, cut: choice.cut, precision: choice.precision },
    });
    return { task, outcome };
  }

  /** Run a model on an input, split as the scheduler decides. */
  infer(
    model: string,
    inputs: Parameters<Scheduler['infer']>[1],
    options?: Parameters<Scheduler['infer']>[2] & { precisions?: Precision[] },
  ) {
    return this.scheduler.infer(model, inputs, options);
  }

  async stop(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    for (const stop of this.stoppers) stop();
    this.replicator?.stop();
    this.adverts.stop();
    await this.host.stop();
    await this.models.sessions.close();
    this.ledger?.store.close();
  }
}
