import { createHash } from 'node:crypto';
import { peerIdFromString } from '@libp2p/peer-id';
import { isExcluded } from '../contracts/fleet-state.js';
import { type Payload, toHex } from '../protocol/log-entry.js';
import { resultDigest } from '../protocol/result-summary.js';
import type { Tensor } from '../protocol/tensor-frame.js';
import { RosError } from './errors.js';
import { assemble, toOccupancyGrid, ScanMatchingLocalizer } from '../nodes/mapping/index.js';
import type { Robot } from '../nodes/robot/index.js';
import type { OpenStream } from '../nodes/scheduler/index.js';
import type { ChainManifest } from '../protocol/chain-manifest.js';
import type { LaserScan, Pose } from '../protocol/sensors.js';
import { type CameraFit, type RosCompressedImage, type RosImage, compressedToTensor, imageToTensor } from './image.js';
import type { RobotParams } from './params.js';
import { type QosProfile, type RosPublisher, type RosTransport, parseQos, resolveTopic } from './transport.js';

interface Stamp {
  sec: number;
  nanosec: number;
}

interface ScanMsg {
  header: { stamp: Stamp };
  angle_min: number;
  angle_max: number;
  angle_increment: number;
  range_min: number;
  range_max: number;
  ranges: ArrayLike<number>;
}

interface OdomMsg {
  pose: { pose: { position: { x: number; y: number }; orientation: { z: number; w: number } } };
}

const stamp = (ns: bigint): Stamp => ({ sec: Number(ns / 1_000_000_000n), nanosec: Number(ns % 1_000_000_000n) });

/**
 * A robot on ROS topics: camera frames run through the split-inference scheduler (results and
 * split decisions published), lidar and odometry feed collaborative mapping (the merged map
 * published as nav_msgs/OccupancyGrid every `map.publish_period`), peers and log entries
 * published as they change. The same code runs on rclnodejs and on MCAP replay.
 */
export class RobotRosNode {
  private readonly pubs: Record<'results' | 'decisions' | 'peers' | 'map' | 'ledger' | 'diagnostics', RosPublisher>;
  private odom: Pose | undefined;
  private localizer: ScanMatchingLocalizer | undefined;
  private lastMapPublish = -1n;
  readonly counts = { images: 0, framesDropped: 0, scans: 0, results: 0, maps: 0, ledgerEvents: 0, errors: 0 };
  /** A frame waits here while the last one is inferred; a newer one replaces it (counted as dropped). */
  private nextFrame: (() => Promise<void>) | undefined;
  private inferring = false;
  private readonly unsubscribe: (() => void)[] = [];
  /** With `inference.chain`: the chain and the stream every camera frame is offered to. */
  private readonly chain: { manifest: ChainManifest; stream: OpenStream } | undefined;

  constructor(
    private readonly robot: Robot,
    private readonly transport: RosTransport,
    private readonly params: RobotParams,
  ) {
    const t = (name: keyof RobotParams['topics']): string => resolveTopic(params.namespace, params.topics[name]);
    // resolveParams checked every qos.* value.
    const q = (name: keyof RobotParams['topics']): QosProfile => parseQos(params.qos[name])!;
    const pub = (name: keyof RobotParams['topics'], type: string) => transport.publisher(t(name), type, q(name));
    this.pubs = {
      results: pub('results', 'robomesh_msgs/msg/InferenceResult'),
      decisions: pub('decisions', 'robomesh_msgs/msg/SplitDecision'),
      peers: pub('peers', 'robomesh_msgs/msg/PeerStatus'),
      map: pub('map', 'nav_msgs/msg/OccupancyGrid'),
      ledger: pub('ledger', 'robomesh_msgs/msg/LedgerEvent'),
      diagnostics: pub('diagnostics', 'diagnostic_msgs/msg/DiagnosticArray'),
    };
    // robot-setup gives the robot `inference.chain` as its one chain (read and checked at its start).
    if (params.inference.chain) {
      const manifest = robot.chainManifest(params.inference.chain);
      if (!manifest)
        throw new RosError(
          'BAD_CONFIG',
          `inference.chain: ${params.inference.chain}: the robot was started without it`,
        );
      this.chain = { manifest, stream: robot.chains.open(manifest, { maxQueue: 2 }) };
    }
    this.unsubscribe.push(
      transport.subscribe(
        t('camera'),
        'sensor_msgs/msg/Image',
        (m) => this.onFrame(m as RosImage & { header: { stamp: Stamp } }, imageToTensor),
        q('camera'),
      ),
      transport.subscribe(
        t('camera_compressed'),
        'sensor_msgs/msg/CompressedImage',
        (m) => this.onFrame(m as RosCompressedImage & { header: { stamp: Stamp } }, compressedToTensor),
        q('camera_compressed'),
      ),
      transport.subscribe(t('scan'), 'sensor_msgs/msg/LaserScan', (m) => this.onScan(m as ScanMsg), q('scan')),
      transport.subscribe(t('odom'), 'nav_msgs/msg/Odometry', (m) => this.onOdom(m as OdomMsg), q('odom')),
    );
    robot.ledger?.on('entry', (d) =>
      this.onEntry(toHex(d.entry.author), d.entry.seq, d.entry.lamport, d.idHex, d.entry.payload),
    );
  }

  /**
   * Where the robot is in the shared map frame: the localised pose once scans came, else odometry;
   * undefined before any.
   */
  get pose(): Pose | undefined {
    return this.localizer?.pose ?? this.odom;
  }

  private header(frame = 'map') {
    return { stamp: stamp(this.transport.now()), frame_id: frame };
  }

  /**
   * One camera frame at a time: a camera outruns inference, so a frame arriving while one is
   * inferred waits, and a newer one takes its place (the older counted in framesDropped).
   */
  private async onFrame<F extends { header: { stamp: Stamp } }>(
    frame: F,
    toTensor: (f: F, fit: CameraFit, name: string) => Promise<Tensor>,
  ): Promise<void> {
    this.counts.images++;
    if (this.chain) return this.offer(this.chain, frame.header.stamp, (fit, name) => toTensor(frame, fit, name));
    const run = () => this.infer(frame.header.stamp, (fit, name) => toTensor(frame, fit, name));
    if (this.inferring) {
      if (this.nextFrame) this.counts.framesDropped++;
      this.nextFrame = run;
      return;
    }
    this.inferring = true;
    try {
      await run();
      for (let next = this.nextFrame; next; next = this.nextFrame) {
        this.nextFrame = undefined;
        await next();
      }
    } finally {
      this.inferring = false;
    }
  }

  /**
   * A camera frame offered to the chain's pipelined stream (frames overlap across its stages; the
   * stream drops the oldest waiting frame when the camera outruns it, counted in framesDropped).
   * Resolves once the frame's result is published, or it was dropped or failed.
   */
  private async offer(
    chain: NonNullable<RobotRosNode['chain']>,
    stamp: Stamp,
    toTensor: (fit: CameraFit, name: string) => Promise<Tensor>,
  ): Promise<void> {
    try {
      const { fit, name } = this.fitOf(chain.manifest.inputShapes);
      const outcome = await chain.stream.offer([await toTensor(fit, name)]);
      if ('dropped' in outcome) {
        this.counts.framesDropped++;
        return;
      }
      if ('failed' in outcome) throw new Error(outcome.failed);
      const last = outcome.runs[outcome.runs.length - 1];
      const summary = resultDigest(outcome.outputs);
      this.pubs.results.publish({
        header: { stamp, frame_id: 'camera' },
        model_hash: chain.manifest.model,
        task_id: '',
        executor: last.robot,
        plan: 'chain',
        cut: chain.manifest.stages.map((s) => s.to).join(' '),
        precision: chain.manifest.stages[0].outPrecision,
        latency_ms: outcome.ms,
        predicted_ms: 0,
        output_names: outcome.outputs.map((o) => o.name),
        output_sizes: Uint32Array.from(outcome.outputs.map((o) => o.data.length)),
        summary: Float32Array.from(summary.values.map((v) => v / 1e6)),
        digest: Uint8Array.from(Buffer.from(summary.digest, 'hex')),
      });
      this.counts.results++;
    } catch (err) {
      this.counts.errors++;
      process.stderr.write(`robomesh: a camera frame through the chain failed: ${(err as Error).message}\n`);
    }
  }

  /** The model's camera input: its first input's name and height × width, fitted as camera.resize says. */
  private fitFor(model: string): { fit: CameraFit; name: string } {
    return this.fitOf(this.robot.models.get(model).analysis.inputShapes);
  }

  private fitOf(inputShapes: Record<string, number[]>): { fit: CameraFit; name: string } {
    const [name, dims] = Object.entries(inputShapes)[0] ?? [];
    if (!name || dims.length !== 4 || !(dims[2] > 0 && dims[3] > 0))
      throw new RosError(
        'BAD_IMAGE',
        `the model's first input is not a fixed-size NCHW image (${JSON.stringify(dims)})`,
      );
    return { name, fit: { height: dims[2], width: dims[3], resize: this.params.camera.resize as CameraFit['resize'] } };
  }

  private async infer(stamp: Stamp, toTensor: (fit: CameraFit, name: string) => Promise<Tensor>): Promise<void> {
    const model = this.robot.models.hashes()[0];
    if (!model) return;
    try {
      const { fit, name } = this.fitFor(model);
      const input = await toTensor(fit, name);
      const out = await this.robot.infer(model, [input], { deadlineMs: 10_000 });
      const d = out.decision;
      const summary = resultDigest(out.outputs);
      this.pubs.results.publish({
        header: { stamp, frame_id: 'camera' },
        model_hash: model,
        task_id: '',
        executor: d.executor,
        plan: d.plan.kind,
        cut: d.plan.cut ?? '',
        precision: d.plan.precision,
        latency_ms: d.actualMs,
        predicted_ms: d.plan.predictedMs,
        output_names: out.outputs.map((o) => o.name),
        output_sizes: Uint32Array.from(out.outputs.map((o) => o.data.length)),
        summary: Float32Array.from(summary.values.map((v) => v / 1e6)),
        digest: Uint8Array.from(Buffer.from(summary.digest, 'hex')),
      });
      this.pubs.decisions.publish({
        header: this.header(),
        model_hash: model,
        plan: d.plan.kind,
        cut: d.plan.cut ?? '',
        precision: d.plan.precision,
        peer: d.plan.peer ?? '',
        predicted_ms: d.plan.predictedMs,
        actual_ms: d.actualMs,
        failover_peers: d.failovers.map((f) => f.peer),
        failover_codes: d.failovers.map((f) => f.code),
      });
      this.counts.results++;
    } catch (err) {
      this.counts.errors++;
      process.stderr.write(`robomesh: inference on a camera frame failed: ${(err as Error).message}\n`);
    }
  }

  private onOdom(m: OdomMsg): void {
    const p = m.pose.pose;
    this.odom = { x: p.position.x, y: p.position.y, theta: 2 * Math.atan2(p.orientation.z, p.orientation.w) };
  }

  private onScan(m: ScanMsg): void {
    const map = this.robot.map;
    if (!map || !this.odom) return;
    this.counts.scans++;
    // The first odometry pose is the known start pose in the shared map frame.
    this.localizer ??= new ScanMatchingLocalizer(this.odom);
    const scan: LaserScan = {
      angleMin: m.angle_min,
      angleMax: m.angle_max,
      angleIncrement: m.angle_increment,
      rangeMin: m.range_min,
      rangeMax: m.range_max,
      ranges: Float32Array.from(m.ranges),
    };
    map.insert(this.localizer.update(this.odom, scan, map.grid), scan);
    const now = this.transport.now();
    const period = BigInt(Math.round(this.params.map.publish_period * 1e9));
    if (this.lastMapPublish < 0n || now - this.lastMapPublish >= period) {
      this.lastMapPublish = now;
      this.publishMap();
    }
  }

  /** Publishes this robot's new tile versions to the fleet and the merged map to ROS. */
  publishMap(): void {
    const map = this.robot.map;
    if (!map) return;
    map.publish();
    map.detect();
    const merged = assemble(map.merged(), map.grid.frame);
    this.pubs.map.publish(toOccupancyGrid(merged, Number(this.transport.now() / 1_000_000n)));
    this.counts.maps++;
    this.publishPeers();
  }

  private publishPeers(): void {
    const connected = new Set(this.robot.host.connectedPeers());
    const adverts = new Map(this.robot.adverts.fresh().map((a) => [a.robot, a]));
    const state = this.robot.ledger?.state;
    for (const peer of this.robot.host.node.getPeers().map((p) => p.toString())) {
      const link = this.robot.links.get(peer);
      const key = toHex(peerIdFromString(peer).publicKey!.raw);
      this.pubs.peers.publish({
        header: this.header(),
        peer_id: peer,
        name: '', // peers' ROS names are not exchanged over the mesh
        connected: connected.has(peer),
        bandwidth_bps: link.bandwidth * 8000,
        rtt_ms: link.rttMs,
        queue_length: adverts.get(peer)?.queue ?? 0,
        speed_factor: 0, // not measured per peer: 0 = unknown
        reputation: state?.reputation.get(key) ?? 0,
        excluded: this.robot.reputation.isIsolated(peer) || (state ? isExcluded(state, key) : false),
      });
    }
    const ledger = this.robot.ledger;
    this.pubs.diagnostics.publish({
      header: this.header(),
      status: [
        {
          level: 0,
          name: `robomesh/${this.params.robot_name}`,
          message: 'running',
          hardware_id: this.robot.peerId,
          values: [
            { key: 'peers_connected', value: String(connected.size) },
            { key: 'log_entries', value: String(ledger?.size ?? 0) },
            { key: 'map_tiles', value: String(this.robot.map?.grid.tileCount ?? 0) },
            { key: 'inference_results', value: String(this.counts.results) },
          ],
        },
      ],
    });
  }

  private onEntry(author: string, seq: number, lamport: number, id: string, p: Payload): void {
    this.counts.ledgerEvents++;
    const ledger = this.robot.ledger!;
    this.pubs.ledger.publish({
      header: this.header(),
      entry_id: id,
      author,
      seq: BigInt(seq),
      lamport: BigInt(lamport),
      kind: p.type,
      task_id: 'task' in p ? p.task : '',
      detail:
        p.type === 'tile'
          ? `${p.tile} v${p.version}`
          : p.type === 'flag'
            ? `flags ${p.robot.slice(0, 12)}`
            : p.type === 'anchor'
              ? `tx ${p.tx}`
              : '',
      log_size: ledger.size,
      state_hash: createHash('sha256').update(ledger.stateHash()).digest('hex').slice(0, 16),
    });
  }

  close(): void {
    for (const u of this.unsubscribe) u();
    void this.chain?.stream.close();
  }
}
