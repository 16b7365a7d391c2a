import { countTasks } from '../../../contracts/tasks.js';
import { EventEmitter } from 'node:events';
import { publicKeyFromRaw } from '@libp2p/crypto/keys';
import { peerIdFromPublicKey, peerIdFromString } from '@libp2p/peer-id';
import { type DecodedEntry, type Hex, type Payload, fromHex, toHex } from '../../../protocol/log-entry.js';
import type { IngestStatus } from '../../ledger/index.js';
import { assemble } from '../../mapping/index.js';
import type { Robot } from '../../robot/index.js';
import type { ChainCounters, Decision } from '../../scheduler/index.js';
import type { Pose } from '../../../protocol/sensors.js';
import {
  LATENCY_LIMIT,
  LOG_FEED_LIMIT,
  mapView,
  type FleetView,
  type FleetViewSource,
  type LogLine,
  type RobotView,
} from './view.js';

/** What the view reads from a running robot (a `Robot`, or anything shaped like one). */
export type ViewedRobot = Pick<
  Robot,
  'name' | 'peerId' | 'host' | 'ledger' | 'map' | 'scheduler' | 'links' | 'adverts' | 'anchorer' | 'load'
> &
  Partial<Pick<Robot, 'chains'>>;

export interface RobotViewOptions {
  /** This robot's pose in the shared map frame when known (odometry / localisation); drawn on the map. */
  pose?: () => Pose | undefined;
  /**
   * Display names of peers by PeerId: names are not exchanged over the mesh; others show as the end of
   * their PeerId.
   */
  names?: ReadonlyMap<string, string> | Record<string, string>;
  /**
   * Fleet members (PeerIds) known besides the log's membership, the adverts heard and the open
   * connections (e.g. fleet.members).
   */
  members?: string[];
  /** Refresh when nothing else happens (map, pose, round-trip times move on their own); default 1000 ms. */
  refreshMs?: number;
}

/** Log lines kept here; /state.json carries them all, update events the newest LOG_FEED_LIMIT. */
const FEED_KEEP = 2000;
/** Tile versions one author logs within this long share one feed line. */
const TILE_COALESCE_MS = 2000;
/** Emits are coalesced: at most one view is built per this many ms, however busy the log. */
const EMIT_COALESCE_MS = 50;

const short = (hex: string): string => hex.slice(0, 10);
const percent = (x: number | undefined): number | undefined => (x === undefined ? undefined : 100 * x);

/**
 * The dashboard's view from ONE robot, with no fleet controller: this robot (with its pose when a
 * provider is given) and every fleet member it knows of — from the log's membership, the adverts
 * it hears, its connections — `up` when connected; its own link to each of them (connected or
 * not: partitioned or down) with the link estimator's bandwidth and round-trip time; the log as
 * it arrives here (every author: tasks, assignments, results, accepted quorums, anchors, flags;
 * tile versions coalesced per author); its scheduler's latencies; its merged map.
 * Close it to detach from the robot.
 */
export class RobotViewSource extends EventEmitter<{ update: [FleetView] }> implements FleetViewSource {
  private readonly t0 = Date.now();
  private readonly feed: LogLine[] = [];
  private readonly latency: FleetView['latency'] = [];
  private readonly announced = new Map<string, string>();
  private readonly keyToPeer = new Map<Hex, string | null>();
  private readonly names: Map<string, string>;
  private lastFoldVersion = -1;
  /** The feed's last line when it is a run of tile versions, and how many. */
  private tileRun: { line: LogLine; count: number } | undefined;
  private map: { tiles: Map<string, Int8Array>; view: FleetView['map'] } | undefined;
  private readonly timer: NodeJS.Timeout;
  private pending: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly detach: (() => void)[] = [];

  constructor(
    private readonly robot: ViewedRobot,
    private readonly options: RobotViewOptions = {},
  ) {
    super();
    const names = options.names;
    this.names = new Map(names instanceof Map ? names : Object.entries(names ?? {}));
    this.names.set(robot.peerId, robot.name);

    const ledger = robot.ledger;
    if (ledger) {
      // What the log already held at start: the newest lines, at time 0.
      const items = ledger.fold.items();
      for (const item of items.slice(-LOG_FEED_LIMIT)) this.pushLine(0, item.author, item.payload, 'added');
      for (const t of ledger.state.tasks.values()) this.announced.set(t.task, t.status);
      this.lastFoldVersion = ledger.fold.version;
      const onEntry = (d: DecodedEntry, status: IngestStatus): void => {
        this.pushLine(Date.now() - this.t0, toHex(d.entry.author), d.entry.payload, status);
        this.checkQuorums();
        this.schedule();
      };
      ledger.on('entry', onEntry);
      this.detach.push(() => ledger.off('entry', onEntry));
    }

    // An anchor that can never land (the package aborted it, e.g. ENotRegistered) leaves no log
    // entry: it is said here, with the Move constant, as well as on stderr.
    const anchorer = robot.anchorer;
    if (anchorer) {
      const onFailed = ({ root, reason }: { root: string; reason: string }): void => {
        this.push({
          at: Date.now() - this.t0,
          robot: robot.name,
          kind: 'anchor-failed',
          detail: `root ${short(root)}: ${reason}`,
        });
        this.schedule();
      };
      anchorer.on('failed', onFailed);
      this.detach.push(() => anchorer.off('failed', onFailed));
    }

    const onDecision = (d: Decision): void => {
      const plan = d.plan.kind === 'split' && d.plan.cut ? `split@${d.plan.cut}` : d.plan.kind;
      this.latency.push({
        at: Date.now() - this.t0,
        robot: robot.name,
        ms: d.actualMs,
        plan,
        predictedMs: d.plan.predictedMs,
      });
      if (this.latency.length > LATENCY_LIMIT) this.latency.splice(0, this.latency.length - LATENCY_LIMIT);
      this.schedule();
    };
    robot.scheduler.on('decision', onDecision);
    this.detach.push(() => robot.scheduler.off('decision', onDecision));

    const onPeer = (): void => this.schedule();
    const node = robot.host.node;
    node.addEventListener('peer:connect', onPeer);
    node.addEventListener('peer:disconnect', onPeer);
    this.detach.push(() => {
      node.removeEventListener('peer:connect', onPeer);
      node.removeEventListener('peer:disconnect', onPeer);
    });

    this.timer = setInterval(() => {
      // Folds deferred during a bulk sync can accept quorums with no entry event of their own.
      this.checkQuorums();
      this.emitNow();
    }, options.refreshMs ?? 1000);
    this.timer.unref();
  }

  current(): FleetView {
    const r = this.robot;
    const state = r.ledger?.state;
    const connected = new Set(r.host.connectedPeers());
    const gater = r.host.gater;
    const flagged = new Set(state?.flagged ?? []);
    const self: RobotView = {
      name: r.name,
      peerId: r.peerId,
      pose: this.options.pose?.(),
      up: true,
      flagged: r.ledger?.self !== undefined && flagged.has(r.ledger.self),
      logSize: r.ledger?.size ?? 0,
      stateHash: r.ledger?.stateHash() ?? '',
      predictionErrorPct: percent(r.scheduler.predictionError()),
      slowdown: r.load.slowdown(),
      exits: { ...r.scheduler.exitCounts },
      chains: chainView(r.chains?.counters),
    };
    const peers = this.peers().sort((a, b) =>
      this.nameOf(a) < this.nameOf(b) ? -1 : this.nameOf(a) > this.nameOf(b) ? 1 : 0,
    );
    const robots: RobotView[] = [
      self,
      ...peers.map((p) => ({
        name: this.nameOf(p),
        peerId: p,
        up: connected.has(p),
        flagged: flagged.has(keyOf(p) ?? ''),
        // Unknown from here: a peer's log and state are its own (the page shows only what it knows).
        logSize: 0,
        stateHash: '',
      })),
    ];
    const links: FleetView['links'] = peers.map((p) => {
      const est = r.links.get(p);
      return {
        a: r.name,
        b: this.nameOf(p),
        connected: connected.has(p),
        // Only what was measured: the estimator's assumed default is not a measurement.
        bandwidthBps: est.samples > 0 ? est.bandwidth * 8000 : undefined,
        rttMs: est.updatedAt > 0 ? est.rttMs : undefined,
      };
    });
    const cut = peers.filter((p) => gater.isMember(p) && !gater.admits(p)).map((p) => this.nameOf(p));
    const phase =
      `${r.name}: ${peers.filter((p) => connected.has(p)).length}/${peers.length} ` +
      `peers connected${cut.length ? `; partitioned from ${cut.join(' ')}` : ''}`;
    return {
      time: Date.now() - this.t0,
      phase,
      robots,
      links,
      log: [...this.feed],
      latency: [...this.latency],
      map: this.mapNow(),
      tasks: state && countTasks(state.tasks.values()),
    };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    clearTimeout(this.pending);
    for (const d of this.detach) d();
  }

  /** Every fleet member this robot knows of, itself excluded. */
  private peers(): string[] {
    const r = this.robot;
    const known = new Set<string>([
      ...(this.options.members ?? []),
      ...r.host.connectedPeers(),
      ...r.adverts.fresh().map((a) => a.robot),
    ]);
    for (const key of r.ledger?.state.members ?? []) {
      const peer = this.peerOf(key);
      if (peer) known.add(peer);
    }
    known.delete(r.peerId);
    return [...known];
  }

  private nameOf(peer: string): string {
    return this.names.get(peer) ?? `…${peer.slice(-6)}`;
  }

  private peerOf(key: Hex): string | null {
    let peer = this.keyToPeer.get(key);
    if (peer === undefined) {
      try {
        peer = peerIdFromPublicKey(publicKeyFromRaw(fromHex(key))).toString();
      } catch {
        peer = null;
      }
      this.keyToPeer.set(key, peer);
    }
    return peer;
  }

  private authorName(key: Hex): string {
    const peer = this.peerOf(key);
    return peer ? this.nameOf(peer) : short(key);
  }

  private pushLine(at: number, author: Hex, p: Payload, status: IngestStatus): void {
    if (status === 'duplicate') return;
    const robot = this.authorName(author);
    if (status === 'equivocation') {
      this.push({ at, robot, kind: 'equivocation', detail: `a second ${p.type} entry in one of its slots` });
      return;
    }
    if (p.type === 'tile') {
      // Robots log tile versions by the dozen: one line per author and burst.
      const run = this.tileRun;
      const count =
        run &&
        run.line === this.feed[this.feed.length - 1] &&
        run.line.robot === robot &&
        at - run.line.at <= TILE_COALESCE_MS
          ? run.count + 1
          : 1;
      const line = {
        at: count > 1 ? run!.line.at : at,
        robot,
        kind: 'tile',
        detail: `${count} tile version${count > 1 ? 's' : ''}, latest ${p.tile} v${p.version}`,
      };
      if (count > 1) this.feed[this.feed.length - 1] = line;
      else this.push(line);
      this.tileRun = { line, count };
      return;
    }
    this.push({ at, robot, kind: p.type, detail: this.describe(p) });
  }

  private describe(p: Payload): string {
    switch (p.type) {
      case 'genesis':
        return (
          `fleet ${p.fleet}: ${p.members.length} member${p.members.length === 1 ? '' : 's'}, ` +
          `admins ${p.admins.map((a) => this.authorName(a)).join(' ')}`
        );
      case 'admit':
      case 'revoke':
        return this.authorName(p.member);
      case 'task':
        return `${p.task} model ${short(p.model)} f=${p.f}`;
      case 'assign':
        return `${p.task} → ${p.executors.map((x) => this.authorName(x)).join(' ')}`;
      case 'claim':
        return p.task;
      case 'result':
        return `${p.task} ${short(p.digest)}`;
      case 'offence':
        return `reports ${this.authorName(p.robot)} for ${p.kind}: ${p.detail}`;
      case 'flag':
        return (
          `flags ${this.authorName(p.robot)} (${p.evidence.length} ` +
          `tile${p.evidence.length === 1 ? '' : 's'} of evidence)`
        );
      case 'anchor':
        return `${p.count} entries, root ${short(p.root)}, tx ${p.tx}`;
      default:
        return '';
    }
  }

  /** A line per task that became provisional, final or overturned since the last look. */
  private checkQuorums(): void {
    const ledger = this.robot.ledger;
    if (!ledger || ledger.fold.version === this.lastFoldVersion) return;
    this.lastFoldVersion = ledger.fold.version;
    const at = Date.now() - this.t0;
    for (const t of ledger.state.tasks.values()) {
      const answer = t.decision ?? t.provisional;
      if (!answer || this.announced.get(t.task) === t.status) continue;
      this.announced.set(t.task, t.status);
      const by = answer.executors.map((x) => this.authorName(x)).join(' ');
      this.push({
        at,
        robot: this.authorName(t.poster),
        kind: 'quorum',
        detail: `${t.task} ${t.status}: ${by} agree on ${short(answer.digest)}`,
      });
    }
  }

  private push(line: LogLine): void {
    this.feed.push(line);
    if (this.feed.length > FEED_KEEP) this.feed.splice(0, this.feed.length - FEED_KEEP);
  }

  /** The merged map, rebuilt only when the robot's merged tiles changed (MapService caches them). */
  private mapNow(): FleetView['map'] {
    const service = this.robot.map;
    if (!service) return undefined;
    const tiles = service.merged();
    if (this.map?.tiles !== tiles) {
      const dense = assemble(tiles, service.grid.frame);
      this.map = { tiles, view: dense.width > 0 ? mapView(dense) : undefined };
    }
    return this.map.view;
  }

  private schedule(): void {
    if (this.pending || this.closed) return;
    this.pending = setTimeout(() => {
      this.pending = undefined;
      this.emitNow();
    }, EMIT_COALESCE_MS);
    this.pending.unref();
  }

  private emitNow(): void {
    if (this.closed || this.listenerCount('update') === 0) return;
    try {
      this.emit('update', this.current());
    } catch {
      // a robot stopping under us: the next refresh (if any) tries again
    }
  }
}

function keyOf(peer: string): Hex | undefined {
  try {
    const id = peerIdFromString(peer);
    return id.publicKey ? toHex(id.publicKey.raw) : undefined;
  } catch {
    return undefined;
  }
}

function chainView(c: ChainCounters | undefined): RobotView['chains'] {
  if (!c?.offered) return undefined;
  const { offered, delivered, dropped, failed, replaced } = c;
  return { offered, delivered, dropped, failed, replaced, fps: c.lastStream?.fps };
}
