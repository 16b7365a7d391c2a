import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { signerFromSeed } from '../../protocol/ed25519.js';
import type { Tensor } from '../../protocol/tensor-frame.js';
import {
  type Precision,
  loadExit,
  loadModelArg,
  analyzeInChildProcess,
  profileInChildProcess,
  ModelRegistry,
  ComputeLoad,
  type LoadedModel,
  parseModel,
  stageInfoOf,
  ProfileStore,
  defaultCacheDir,
  profileKey,
  SessionCache,
} from '../inference/index.js';
import {
  type AnchorChain,
  type AnchorQueue,
  AnchorRelay,
  anchorRelayTopic,
  Anchorer,
  type GasPlan,
  type IotaDeployment,
  EvidenceRecorder,
  checkOwnEntries,
  markOwnEntries,
  Ledger,
  LogReplicator,
  type LogStore,
} from '../ledger/index.js';
import { EntryError } from '../../protocol/log-entry.js';
import { logTopic } from '../../protocol/log-sync.js';
import { MapService, MapSync, type MapFrame } from '../mapping/index.js';
import {
  AdvertBoard,
  advertTopic,
  BlobService,
  fetchBlob,
  type MeshHost,
  createMeshHost,
  type RobotIdentity,
  keyOfPeer,
  loadOrCreateIdentity,
  InferClient,
  InferService,
  type InferServiceInit,
  type LinkShaper,
  ProbeService,
  probe,
  PeerReputation,
  WorkQueue,
} from '../mesh/index.js';
import { ChainRunner, LinkEstimator, Scheduler, type StageRun } from '../scheduler/index.js';
import { type ChainManifest, chainManifestHash, decodeChainManifest } from '../../protocol/chain-manifest.js';
import {
  type BlobStore,
  FileBlobStore,
  TaskExecutor,
  type TaskOptions,
  type TaskOutcome,
  TaskRequester,
} from '../tasks/index.js';
import { componentLogger, type Startable, Timers } from '../util/index.js';
import { RobotError } from './errors.js';
import { MembershipFollower } from './membership.js';
import { anchorTurnNow } from '../ledger/anchor-turns.js';

/** A robot probes while it asked for a plan within this long. */
const PROBE_WHILE_PLANNING_MS = 60_000;
/** How often the CPU load is read (ComputeLoad), an idle robot calibrating then. */
const LOAD_SAMPLE_MS = 1000;

/** The files a robot keeps in its data folder: one place names them for every caller. */
export function robotPaths(dataDir: string) {
  return {
    identity: join(dataDir, 'identity.key'),
    log: join(dataDir, 'log.sqlite'),
    anchors: join(dataDir, 'anchors.sqlite'),
    blobs: join(dataDir, 'blobs'),
    /** Marks that this identity has written to its log (a store found without its entries is refused). */
    written: join(dataDir, 'log.written'),
  };
}

export interface RobotConfig {
  name: string;
  identity?: RobotIdentity;
  /** Key file, created on first start; default `<dataDir>/identity.key`. */
  keyFile?: string;
  dataDir?: string;
  /**
   * `members`: PeerIds admitted at start. With a log, its genesis, admit and revoke entries
   * decide membership from then on (this list only covers the moments before the genesis is read).
   */
  fleet: { name: string; members: string[]; bootstrap?: string[] };
  listen?: string[];
  mdns?: boolean;
  /** `exits`: exit files (`robomesh exits fit`) to attach to the model. */
  models: { arg: string; inputShape?: Record<string, number[]>; exits?: string[] }[];
  /** Chain stage files (`robomesh chain build`) this robot holds and serves, without their whole model. */
  stages?: string[];
  /**
   * Chain manifests this robot helps run: asked for one of their stages it does not hold, it
   * fetches the stage from a peer that holds it (verified by hash) if its memory budget allows.
   */
  chains?: string[];
  /** Weights this robot may hold, MB (inference.memory_mb): models and stages past it are refused at start. */
  memoryBudgetMb?: number;
  /**
   * Run ORT on a worker thread, keeping the event loop free while computing (default: on for a
   * robot that holds stages, which serves while it computes; off otherwise, saving a copy per run).
   */
  inferenceThread?: boolean;
  /** Timed runs per part when profiling; profiles are reused from `cacheDir` when they match. */
  profileRuns?: number;
  cacheDir?: string;
  threads?: number;
  linkBytesPerSecond?: number;
  /** Simulated radio links (a fleet scenario's link shaping). */
  linkShaper?: LinkShaper;
  /** Keep about this many connections (ring neighbours, random chords) instead of one to every member. */
  meshDegree?: number;
  advertPeriodMs?: number;
  /**
   * Build every head ('head'), tail ('tail') or both sessions at start, for every cut and
   * precision, so no request pays session creation (tens to hundreds of ms) — costs memory.
   */
  prewarm?: 'head' | 'tail' | 'both';
  /** How often links idle for 750 ms are checked for a bandwidth probe (default 250 ms); 0 disables. */
  probeIntervalMs?: number;
  /** Where the CPU's run-queue figures come from (ComputeLoad); Linux schedstat by default. */
  schedstat?: () => { run: number; wait: number } | undefined;
  service?: InferServiceInit & { maxQueue?: number };
  /** The replicated log: its store and the fleet's genesis entry (bytes). Absent: no log. */
  ledger?: { store: LogStore; genesis: Uint8Array; antiEntropyMs?: number };
  /**
   * Logged tasks (needs `ledger`): where task inputs are kept (default: `blobs/` in the data
   * folder), and the stewarding pace.
   */
  tasks?: { blobs?: BlobStore; pushGraceMs?: number; volunteerDelayMs?: number; tickMs?: number };
  /** Collaborative mapping (needs `ledger`): tile contributions logged and synced over the mesh. */
  mapping?: { frame: MapFrame; syncMs?: number };
  /**
   * Anchoring of the log on IOTA (needs `ledger`): every `everyMs` the log is snapshotted into a
   * queued anchor and the queue flushed. Without `chain` (no node) anchors signed with a known
   * `gas` coin are relayed over the mesh for a peer with a node to submit.
   */
  anchor?: {
    deployment: IotaDeployment;
    queue: AnchorQueue;
    chain?: AnchorChain;
    gas?: GasPlan;
    everyMs?: number;
    relayRepublishMs?: number;
  };
}

/** Everything a robot is made of; present parts depend on its config (log, tasks, map, anchoring). */
export interface RobotComponents {
  name: string;
  host: MeshHost;
  models: ModelRegistry;
  queue: WorkQueue;
  service: InferService;
  client: InferClient;
  adverts: AdvertBoard;
  links: LinkEstimator;
  load: ComputeLoad;
  reputation: PeerReputation;
  scheduler: Scheduler;
  chains: ChainRunner;
  /** The chains of its `chains` config by file, read once at start. */
  chainManifests: ReadonlyMap<string, ChainManifest>;
  ledger?: Ledger;
  replicator?: LogReplicator;
  taskExecutor?: TaskExecutor;
  tasks?: TaskRequester;
  anchorer?: Anchorer;
  anchorRelay?: AnchorRelay;
  map?: MapService;
  mapSync?: MapSync;
}

/**
 * One robot: mesh host, models, inference service and client, adverts, link estimates, the
 * scheduler, and (with a log) task execution, mapping and anchoring. The composition root for
 * `robomesh robot`, the fleet and tests: services start in order and stop in reverse; a start
 * that fails part-way stops what it started and releases the host before rethrowing.
 */
export class Robot {
  private readonly timers = new Timers();
  private readonly log = componentLogger('robot');

  private constructor(
    private readonly parts: RobotComponents,
    private readonly services: Startable[],
    /** Registers a model and loads or measures its profile. */
    private readonly addModel: (model: LoadedModel, inputShape?: Record<string, number[]>) => Promise<void>,
  ) {}

  get name(): string {
    return this.parts.name;
  }
  get host(): MeshHost {
    return this.parts.host;
  }
  get models(): ModelRegistry {
    return this.parts.models;
  }
  get service(): InferService {
    return this.parts.service;
  }
  get client(): InferClient {
    return this.parts.client;
  }
  get adverts(): AdvertBoard {
    return this.parts.adverts;
  }
  get links(): LinkEstimator {
    return this.parts.links;
  }
  /** How much slower than unloaded this robot computes now (what its adverts carry). */
  get load(): ComputeLoad {
    return this.parts.load;
  }
  get reputation(): PeerReputation {
    return this.parts.reputation;
  }
  get scheduler(): Scheduler {
    return this.parts.scheduler;
  }
  /** Runs chains of stages held across the fleet (one request, or a pipelined stream). */
  get chains(): ChainRunner {
    return this.parts.chains;
  }
  /** The chain its `chains` config names by this file (read at start), if it does. */
  chainManifest(file: string): ChainManifest | undefined {
    return this.parts.chainManifests.get(file);
  }
  get ledger(): Ledger | undefined {
    return this.parts.ledger;
  }
  get replicator(): LogReplicator | undefined {
    return this.parts.replicator;
  }
  get taskExecutor(): TaskExecutor | undefined {
    return this.parts.taskExecutor;
  }
  get tasks(): TaskRequester | undefined {
    return this.parts.tasks;
  }
  get anchorer(): Anchorer | undefined {
    return this.parts.anchorer;
  }
  get anchorRelay(): AnchorRelay | undefined {
    return this.parts.anchorRelay;
  }
  get map(): MapService | undefined {
    return this.parts.map;
  }
  get mapSync(): MapSync | undefined {
    return this.parts.mapSync;
  }
  get peerId(): string {
    return this.host.peerId;
  }

  static async start(config: RobotConfig): Promise<Robot> {
    const dataDir = config.dataDir ?? join(defaultCacheDir(), 'robots', config.name);
    const paths = robotPaths(dataDir);
    const identity = config.identity ?? (await loadOrCreateIdentity(config.keyFile ?? paths.identity));
    // Each session holds its model's weights and activation arena (the detector's: ~17 MB): a
    // robot keeps the parts it served last, not every cut and precision it ever ran.
    const thread = config.inferenceThread ?? (config.stages ?? []).length > 0;
    const sessions = new SessionCache({ threads: config.threads ?? 1, thread }, 24);
    const budget = config.memoryBudgetMb === undefined ? Infinity : config.memoryBudgetMb * 1e6;
    const models = new ModelRegistry(sessions, budget);
    const profiles = new ProfileStore(config.cacheDir ? join(config.cacheDir, 'profiles') : undefined);
    const addModel = async (model: LoadedModel, inputShape?: Record<string, number[]>): Promise<void> => {
      const slicer = await models.add(model, inputShape, analyzeInChildProcess);
      const key = profileKey(slicer, 'fp32', config.threads ?? 1);
      let profile = await profiles.load(slicer.hash, key);
      if (!profile) {
        profile = await profileInChildProcess(slicer, {
          runs: config.profileRuns ?? 5,
          warmup: 1,
          precision: 'fp32',
          threads: config.threads ?? 1,
        });
        await profiles.save(profile);
      }
      models.setProfile(profile);
    };
    for (const m of config.models) {
      const model = await loadModelArg(m.arg);
      await addModel(model, m.inputShape);
      for (const file of m.exits ?? []) await models.addExit(await loadExit(file), file);
    }
    for (const file of config.stages ?? []) await models.addStage(await loadModelArg(file), file);
    if (config.prewarm) for (const hash of models.hashes()) await models.get(hash).prewarm(config.prewarm);

    const host = await createMeshHost({
      identity,
      fleetName: config.fleet.name,
      members: config.fleet.members,
      listen: config.listen,
      bootstrap: config.fleet.bootstrap,
      mdns: config.mdns,
      linkBytesPerSecond: config.linkBytesPerSecond,
      degree: config.meshDegree,
      linkShaper: config.linkShaper,
      topics: [advertTopic(config.fleet.name), logTopic(config.fleet.name), anchorRelayTopic(config.fleet.name)],
    });
    const started: Startable[] = [];
    try {
      const parts = await assemble(config, host, models, identity, paths, started);
      const robot = new Robot(parts, started, addModel);
      robot.startTimers(config);
      return robot;
    } catch (err) {
      // The start's error is the one to report; a stop failing on top of it is only logged.
      const log = componentLogger('robot');
      for (const service of started.reverse())
        await Promise.resolve(service.stop()).catch((e) => log.error('stopping after a failed start: %s', e));
      await host.stop();
      await sessions.close();
      config.ledger?.store.close();
      throw err;
    }
  }

  private startTimers(config: RobotConfig): void {
    const onError = (what: string) => (err: unknown) => this.log.error('%s failed: %s', what, err);
    const { anchorer, ledger } = this.parts;
    if (anchorer && ledger) {
      // Every robot with anchoring on takes its turn (anchorTurnNow): one anchor per period, the
      // next in turn stepping in a slot later when none came. Queued anchors are retried each slot.
      const everyMs = config.anchor!.everyMs ?? 30_000;
      // A slot outlasts an anchor's way to the others (submission, finality, gossip: ~1 s on IOTA).
      const slotMs = Math.min(everyMs, Math.max(Math.min(5000, everyMs / 2), everyMs / ledger.state.members.size));
      // Just started, a robot may not know yet the anchors others made (not connected, not synced):
      // it sits out its first period.
      const startedAt = Date.now();
      let busy = false;
      this.timers.every(
        slotMs / 2,
        async () => {
          if (busy) return;
          busy = true;
          try {
            const turn = anchorTurnNow({
              members: ledger.state.members,
              self: ledger.self!,
              now: Date.now(),
              everyMs,
              slotMs,
              lastAnchorAt: anchorer.lastAnchorAt,
            });
            // Our own anchor still on its way: the next turn is someone else's.
            if (turn && anchorer.queued.length === 0 && Date.now() - startedAt >= everyMs) await anchorer.snapshot();
            await anchorer.flush();
          } finally {
            busy = false;
          }
        },
        onError('anchoring'),
      );
    }
    this.timers.every(1000, () => this.sampleRtt(), onError('rtt sampling'));
    const probeEvery = config.probeIntervalMs ?? 250;
    if (probeEvery > 0) {
      let probing = false;
      const probeIfIdle = async () => {
        if (probing) return;
        probing = true;
        await this.probeIdleLinks().finally(() => (probing = false));
      };
      this.timers.every(probeEvery, probeIfIdle, onError('link probing'));
    }
    this.timers.every(LOAD_SAMPLE_MS, () => this.sampleLoad(), onError('load sampling'));
  }

  /**
   * Reads how loaded the CPU was over the last interval (ComputeLoad); a robot too idle to tell
   * runs a short calibration, so its advert says whether another process took the CPU before a
   * peer sends it work.
   */
  private async sampleLoad(): Promise<void> {
    const { models, queue, load } = this.parts;
    if (!load.sample() && queue.length === 0) await queue.run(() => models.calibrate());
  }

  private sampleRtt(): void {
    for (const c of this.host.node.getConnections())
      if (c.rtt !== undefined) this.links.recordRtt(c.remotePeer.toString(), c.rtt);
  }

  /**
   * Probes each link that carried nothing for 0.5–1.5 s (longer while probes agree with the
   * estimate: links/dueForProbe) with ~50 ms of its estimated rate (links/probeBytes, at least
   * 16 KiB), so a link that stepped while the scheduler avoided it is learnt within seconds: a few
   * % of an idle link, none of a busy one. Only a robot that asked
   * for a plan lately probes: a robot that only serves has no use for the figures and sends
   * nothing. A probe takes a turn of the work queue: beside local inference a CPU-limited robot
   * read a 100 Mbit/s link as 1–10 (its own encryption starved), and never offloaded again.
   */
  async probeIdleLinks(): Promise<void> {
    if (Date.now() - this.scheduler.lastPlannedAt > PROBE_WHILE_PLANNING_MS) return;
    // A link carrying a request is measured by it; a probe beside it would read half the link.
    const idle = this.host.connectedPeers().filter((p) => this.parts.client.inFlight(p) === 0);
    for (const peer of this.links.dueForProbe(idle)) {
      const link = this.links.get(peer);
      const bytes = this.links.probeBytes(peer, 50);
      // It holds the work queue for up to this long. A 200 ms floor lost every probe of a link
      // that had just dropped (tc tbf), so the drop was never learnt; the cost of a second is
      // paid once per step down, by a robot that runs locally over such a link anyway. Never over
      // 2 s: the queue's local inference waits behind it.
      const timeoutMs = Math.round(Math.min(2000, Math.max(1000, (20 * bytes) / link.bandwidth)));
      let started = 0;
      try {
        const timing = await this.parts.queue.run(() => {
          started = performance.now();
          return probe(this.host.node, peer, bytes, timeoutMs);
        });
        this.links.recordProbe(peer, bytes, timing);
      } catch (err) {
        // Nothing came back in time (whatever error the cut-off stream gave): the link moved less
        // than these bytes in that time.
        const ms = started > 0 ? performance.now() - started : 0;
        if (ms >= 0.9 * timeoutMs) this.links.recordTransfer(peer, bytes, ms);
        else this.log('probe of %s failed: %s', peer, err);
      }
    }
  }

  /** Get a model this robot lacks from a peer that advertises it, verified against its hash. */
  async fetchModel(hash: string, inputShape?: Record<string, number[]>): Promise<void> {
    const holders = this.adverts.fresh().filter((a) => a.models.some((m) => m.hash === hash));
    let lastError: unknown = new Error(`no peer advertises model ${hash.slice(0, 12)}…`);
    for (const h of holders) {
      try {
        const bytes = await fetchBlob(this.host.node, h.robot, hash);
        await this.addModel(parseModel(bytes, `model from ${h.robot}`), inputShape);
        return;
      } catch (err) {
        lastError = err;
      }
    }
    throw lastError;
  }

  /**
   * A task recorded in the log, decided by the task contract on every robot: 2f + 1 executors,
   * f + 1 agreeing results (nodes/tasks/task-requester.ts). Resolves with the outcome once decided,
   * provisional, or at the deadline.
   */
  /**
   * A chain whose last stage is a logged task: the stages before it run as `chains.run` would,
   * then the boundary they give is committed in a task entry naming the chain (its manifest's
   * sha256) and decided by the task contract on 2f + 1 holders of the last stage.
   */
  async inferChainTask(
    manifest: ChainManifest,
    inputs: Tensor[],
    options: TaskOptions = {},
  ): Promise<TaskOutcome & { stages: StageRun[] }> {
    if (!this.parts.tasks) throw new RobotError('NO_LEDGER', 'this robot runs without a log');
    const last = manifest.stages.length - 1;
    const stages: StageRun[] = [];
    let tensors = inputs;
    for (let k = 0; k < last; k++) {
      const { outputs, run } = await this.chains.runStage(manifest, k, tensors);
      stages.push(run);
      tensors = outputs;
    }
    const chain = chainManifestHash(manifest);
    return { ...(await this.parts.tasks.infer(manifest.stages[last].hash, tensors, { ...options, chain })), stages };
  }

  inferTask(model: string, inputs: Tensor[], options: TaskOptions = {}): Promise<TaskOutcome> {
    if (!this.parts.tasks) throw new RobotError('NO_LEDGER', 'this robot runs without a log');
    return this.parts.tasks.infer(model, inputs, options);
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
    this.timers.clear();
    for (const service of [...this.services].reverse()) {
      try {
        await service.stop();
      } catch (err) {
        this.log.error('stopping a service of %s: %s', this.name, err);
      }
    }
    await this.host.stop();
    await this.models.sessions.close();
    this.ledger?.store.close();
  }
}

/** Builds and starts a robot's services in order, recording each in `started` as it starts. */
/**
 * What a robot does when asked for a stage it lacks: only stages of the chains in its config,
 * fetched by hash from a peer holding one (the bytes must hash to it and be that chain's stage),
 * and only within its memory budget (addStage refuses past it). One fetch per stage at a time.
 */
async function loadManifests(files: string[]): Promise<Map<string, ChainManifest>> {
  const manifests = new Map<string, ChainManifest>();
  for (const file of files) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      throw new RobotError('BAD_CONFIG', `chains: cannot read ${file}: ${(err as Error).message}`);
    }
    manifests.set(file, decodeChainManifest(text, file));
  }
  return manifests;
}

function stageFetcher(
  manifests: readonly ChainManifest[],
  models: ModelRegistry,
  holders: (hash: string) => string[],
): (node: MeshHost['node'], hash: string, signal: AbortSignal) => Promise<boolean> {
  const allowed = new Map<string, string>();
  for (const manifest of manifests) for (const s of manifest.stages) allowed.set(s.hash, manifest.model);
  const fetching = new Map<string, Promise<boolean>>();
  /** Stages fetched on demand, oldest first: what gives way when a newer one needs the room. */
  const fetched: string[] = [];
  const log = componentLogger('chains');
  const add = async (stage: LoadedModel, source: string): Promise<void> => {
    for (;;) {
      try {
        await models.addStage(stage, source);
        fetched.push(stage.hash);
        return;
      } catch (err) {
        const oldest = fetched.shift();
        if ((err as { code?: string }).code !== 'OVER_BUDGET' || oldest === undefined) throw err;
        log('dropping stage %s fetched earlier, to make room', oldest.slice(0, 12));
        await models.remove(oldest);
      }
    }
  };
  return (node, hash, signal) => {
    const model = allowed.get(hash);
    if (!model) return Promise.resolve(false);
    let pending = fetching.get(hash);
    if (!pending) {
      pending = (async () => {
        for (const peer of holders(hash)) {
          try {
            const bytes = await fetchBlob(node, peer, hash, { signal, maxBytes: 512 * 1024 * 1024 });
            const stage = parseModel(bytes, `stage from ${peer}`);
            if (stageInfoOf(stage, `stage from ${peer}`)?.model !== model) continue;
            await add(stage, `stage ${hash.slice(0, 12)}… from ${peer}`);
            log('fetched stage %s from %s', hash.slice(0, 12), peer);
            return true;
          } catch (err) {
            log('fetching stage %s from %s failed: %s', hash.slice(0, 12), peer, (err as Error).message);
            if ((err as { code?: string }).code === 'OVER_BUDGET') return false;
          }
        }
        return false;
      })().finally(() => fetching.delete(hash));
      fetching.set(hash, pending);
    }
    return pending;
  };
}

async function assemble(
  config: RobotConfig,
  host: MeshHost,
  models: ModelRegistry,
  identity: RobotIdentity,
  paths: ReturnType<typeof robotPaths>,
  started: Startable[],
): Promise<RobotComponents> {
  const run = async <S extends Startable>(service: S): Promise<S> => {
    await service.start();
    started.push(service);
    return service;
  };
  const fleet = config.fleet.name;
  const node = host.node;
  const isMember = (peer: string): boolean => host.gater.admits(peer);
  const queue = new WorkQueue(1, config.service?.maxQueue ?? 16);
  const links = new LinkEstimator();
  const load = new ComputeLoad(undefined, undefined, undefined, config.schedstat);
  const reputation = new PeerReputation((peer) => {
    void host.partition([peer]);
  });
  const client = new InferClient(node, reputation);

  let ledger: Ledger | undefined;
  let replicator: LogReplicator | undefined;
  let taskExecutor: TaskExecutor | undefined;
  let blobs: BlobStore | undefined;
  if (config.ledger) {
    ledger = new Ledger(config.ledger.store, signerFromSeed(identity.seed));
    const location = config.ledger.store.location;
    if (location) {
      checkOwnEntries(ledger, paths.written, location);
      const unmark = markOwnEntries(ledger, paths.written);
      started.push({ start: () => undefined, stop: unmark });
    }
    try {
      ledger.ingest(config.ledger.genesis);
    } catch (err) {
      if (!(err instanceof EntryError)) throw err;
      throw new RobotError('BAD_GENESIS', `the fleet's genesis is not a valid log entry: ${err.message}`);
    }
    // From here on the log, not the configured list, says who may connect.
    // A change of membership is news worth a pull: every member hears of it at once.
    const membership = await run(
      new MembershipFollower(ledger, host, componentLogger('membership'), () => replicator?.tellNews()),
    );
    await membership.settled();
    const evidence = new EvidenceRecorder(ledger, keyOfPeer);
    const log = componentLogger('evidence');
    reputation.report = (o) => {
      if (evidence.record(o)) log('reported %s for %s: %s', o.peer, o.kind, o.reason);
    };
    replicator = await run(
      new LogReplicator(
        { node, ledger, isMember, reputation, logger: componentLogger('log') },
        { fleet, antiEntropyMs: config.ledger.antiEntropyMs },
      ),
    );
    blobs = config.tasks?.blobs ?? new FileBlobStore(paths.blobs);
    const sync = replicator;
    taskExecutor = await run(
      new TaskExecutor(
        {
          ledger,
          blobs,
          models,
          queue,
          node,
          syncWith: (peer) => sync.syncWith(peer),
          connectedPeers: () => host.connectedPeers(),
          logger: componentLogger('tasks'),
        },
        { pushGraceMs: config.tasks?.pushGraceMs, tickMs: config.tasks?.tickMs },
      ),
    );
  }
  // Set once adverts exist (the fetcher finds holders through them); until then nothing is fetched.
  const late: { fetchStage?: (hash: string, signal: AbortSignal) => Promise<boolean> } = {};
  const service = await run(
    new InferService(
      {
        node,
        models,
        queue,
        reputation,
        tasks: taskExecutor,
        fetchStage: (hash, signal) => late.fetchStage?.(hash, signal) ?? Promise.resolve(false),
        logger: componentLogger('infer'),
      },
      config.service,
    ),
  );
  await run(new ProbeService({ node }));
  const taskBlobs = blobs;
  await run(
    new BlobService({
      node,
      bytesOf: async (digest) =>
        models.has(digest) ? models.get(digest).analysis.model.bytes : await taskBlobs?.get(digest),
      logger: componentLogger('blobs'),
    }),
  );
  const adverts = await run(
    new AdvertBoard(
      {
        node,
        signer: signerFromSeed(identity.seed),
        current: () => ({
          queue: queue.length,
          slowdown: Math.round(100 * load.slowdown()) / 100,
          models: models.hashes().flatMap((hash) => {
            const p = models.profile(hash);
            return p
              ? [{ hash, wholeMs: p.wholeMs, tailMs: Object.fromEntries(p.cuts.map((c) => [c.id, c.tailMs])) }]
              : [];
          }),
        }),
      },
      { fleet, periodMs: config.advertPeriodMs ?? 1000 },
    ),
  );
  const goodPeers = () => {
    const connected = new Set(host.connectedPeers());
    return adverts.fresh().filter((a) => connected.has(a.robot) && !reputation.isIsolated(a.robot));
  };
  const chains = new ChainRunner({ self: host.peerId, models, queue, client, peers: goodPeers, reputation });
  const chainManifests = await loadManifests(config.chains ?? []);
  const manifests = [...chainManifests.values()];
  const scheduler = new Scheduler({
    self: host.peerId,
    models,
    queue,
    client,
    links,
    load,
    peers: goodPeers,
    chains: { runner: chains, manifests },
  });
  late.fetchStage = stageFetcher(manifests, models, (hash) =>
    goodPeers()
      .filter((a) => a.models.some((m) => m.hash === hash))
      .map((a) => a.robot),
  ).bind(undefined, node);

  let tasks: TaskRequester | undefined;
  if (ledger && taskExecutor && blobs && replicator) {
    const sync = replicator;
    tasks = await run(
      new TaskRequester(
        {
          ledger,
          blobs,
          models,
          queue,
          scheduler,
          client,
          links,
          executor: taskExecutor,
          reputation,
          self: host.peerId,
          capablePeers: (model) =>
            goodPeers()
              .filter((a) => a.models.some((m) => m.hash === model))
              .map((a) => a.robot),
          syncWith: (peer) => sync.syncWith(peer),
          logger: componentLogger('tasks'),
        },
        { tickMs: config.tasks?.tickMs, volunteerDelayMs: config.tasks?.volunteerDelayMs },
      ),
    );
  }

  let anchorer: Anchorer | undefined;
  let anchorRelay: AnchorRelay | undefined;
  if (config.anchor && ledger) {
    const { deployment, queue: anchorQueue, chain, gas } = config.anchor;
    const log = ledger;
    const made = new Anchorer({ ledger, seed: identity.seed, deployment, queue: anchorQueue, chain, gas });
    anchorer = made;
    started.push({ start: () => undefined, stop: () => made.close() });
    // An anchor the package aborted will never land: said on stderr, not only to DEBUG.
    anchorer.on('failed', ({ root, reason }) =>
      process.emitWarning(`anchor of root ${root.slice(0, 12)}… will not be retried: ${reason}`, 'RobomeshAnchor'),
    );
    anchorRelay = await run(
      new AnchorRelay(
        { node, anchorer, members: () => log.state.members, logger: componentLogger('anchor') },
        { fleet, republishMs: config.anchor.relayRepublishMs },
      ),
    );
  }
  let map: MapService | undefined;
  let mapSync: MapSync | undefined;
  if (config.mapping && ledger) {
    map = new MapService(ledger, config.mapping.frame);
    mapSync = await run(
      new MapSync(
        { node, map, isMember, reputation, logger: componentLogger('map') },
        { fleet, syncMs: config.mapping.syncMs },
      ),
    );
  }
  return {
    name: config.name,
    host,
    models,
    queue,
    service,
    client,
    adverts,
    links,
    load,
    reputation,
    scheduler,
    chains,
    chainManifests,
    ledger,
    replicator,
    taskExecutor,
    tasks,
    anchorer,
    anchorRelay,
    map,
    mapSync,
  };
}
