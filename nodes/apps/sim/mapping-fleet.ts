import { type Signer, signerFromSeed } from '../../../protocol/ed25519.js';
import { type Hex, toHex } from '../../../protocol/log-entry.js';
import { Ledger, MemoryLogStore } from '../../ledger/index.js';
import { defaultRobots, floorPlan } from './floor-plans.js';
import { WorldSimulator } from './simulator.js';
import type { GridWorld } from './world.js';
import {
  ScanMatchingLocalizer,
  type FakeWall,
  MapService,
  type PublishedTile,
  assemble,
  mapDigest,
} from '../../mapping/index.js';
import { mapQuality, type MapQuality } from './map-quality.js';

export interface MappingFleetOptions {
  plan?: string;
  robots?: number;
  seed: number;
  /** Robots (by index) that draw fake walls into every map they publish. */
  byzantine?: { robot: number; walls: FakeWall[] }[];
  /** Simulated seconds between publishes. */
  publishEvery?: number;
  /**
   * Where scans are inserted: odometry corrected by scan matching (as a robot would), raw
   * odometry, or the true pose (perfect localisation).
   */
  poses?: 'matched' | 'odometry' | 'true';
  maxTime?: number;
  /** Every lidar beam, or every n-th. */
  beamStride?: number;
}

/**
 * N mapping robots in one process with an in-memory network: each simulates its lidar in the
 * shared world, maps with its own grid, logs its tile contributions and hands them to the others
 * (`deliver`); tests use it to reorder, drop and partition deliveries; the mesh version is
 * MapSync. Robot i's key is derived from (seed, i), so runs are reproducible.
 */
export class MappingFleet {
  readonly world: GridWorld;
  readonly sim: WorldSimulator;
  readonly services: MapService[];
  readonly signers: Signer[];
  readonly keys: Hex[];
  readonly publishEvery: number;
  private readonly poses: 'matched' | 'odometry' | 'true';
  private readonly localizers: ScanMatchingLocalizer[];
  private readonly stride: number;
  private lastPublish = 0;

  constructor(options: MappingFleetOptions) {
    const plan = floorPlan(options.plan ?? 'builtin:office');
    const n = options.robots ?? 8;
    this.world = plan.world;
    this.sim = new WorldSimulator({
      world: plan.world,
      robots: defaultRobots(plan, n),
      seed: options.seed,
      scanEvery: 5,
      maxTime: options.maxTime ?? 900,
    });
    this.signers = Array.from({ length: n }, (_, i) =>
      signerFromSeed(new Uint8Array(32).map((_, k) => (options.seed * 131 + i * 17 + k * 7 + 3) & 0xff)),
    );
    this.keys = this.signers.map((s) => toHex(s.publicKey));
    const ledgers = this.signers.map((s) => new Ledger(new MemoryLogStore(), s));
    const genesis = ledgers[0].append({
      type: 'genesis',
      fleet: 'mapping',
      members: this.keys,
      admins: [this.keys[0]],
    });
    for (const l of ledgers.slice(1)) l.ingest(genesis.bytes);
    const frame = { resolution: plan.world.resolution, origin: plan.world.origin };
    this.services = ledgers.map((l) => new MapService(l, frame));
    for (const b of options.byzantine ?? []) this.services[b.robot].fakeWalls = b.walls;
    this.publishEvery = options.publishEvery ?? 10;
    this.poses = options.poses ?? 'matched';
    this.localizers = plan.starts.slice(0, n).map((start) => new ScanMatchingLocalizer(start));
    this.stride = options.beamStride ?? 2;
  }

  get done(): boolean {
    return this.sim.done;
  }

  /** Advances the world one step; returns what robots published if a publish was due. */
  step(): PublishedTile[][] | undefined {
    for (const [i, s] of this.sim.step().entries()) {
      if (!s.scan) continue;
      const m = this.services[i];
      const pose =
        this.poses === 'true'
          ? s.truePose
          : this.poses === 'odometry'
            ? s.odomPose
            : this.localizers[i].update(s.odomPose, s.scan, m.grid);
      m.insert(pose, s.scan, this.stride);
    }
    if (this.sim.time - this.lastPublish < this.publishEvery && !this.sim.done) return undefined;
    this.lastPublish = this.sim.time;
    return this.services.map((s) => s.publish());
  }

  /**
   * Runs to the end on a fully connected network: every publish reaches every robot at once,
   * each robot then checks for liars and the logs (flags included) are exchanged.
   * Returns simulated seconds; `onRound` sees each publish round.
   */
  runConnected(onRound?: (time: number) => void): number {
    while (!this.done) {
      const out = this.step();
      if (!out) continue;
      this.deliverAll(out);
      for (const s of this.services) s.detect();
      this.syncLogs();
      onRound?.(this.sim.time);
    }
    return this.sim.time;
  }

  /** Every robot in `group` gets every log entry any of them holds (in log order). */
  syncLogs(group: number[] = this.services.map((_, i) => i)): void {
    for (const from of group) for (const to of group) if (from !== to) this.reconcile(from, to);
  }

  deliverAll(out: PublishedTile[][], to: number[] = this.services.map((_, i) => i)): void {
    for (const [from, published] of out.entries())
      for (const i of to) if (i !== from) deliver(this.services[i], published);
  }

  /** Log entries and cells `to` lacks, pulled from `from` (anti-entropy after a partition). */
  reconcile(from: number, to: number): void {
    const a = this.services[from];
    const b = this.services[to];
    for (const id of a.ledger.ids()) if (!b.ledger.has(id)) b.ledger.ingest(a.ledger.get(id)!);
    for (const d of b.missing()) {
      const c = a.get(d);
      if (c) b.accept(undefined, c);
    }
  }

  quality(i: number): MapQuality {
    return mapQuality(assemble(this.services[i].merged(), this.services[i].grid.frame), this.world);
  }

  digest(i: number): string {
    return mapDigest(this.services[i].merged());
  }
}

export function deliver(to: MapService, published: PublishedTile[]): void {
  for (const p of published) to.accept(p.entry, p.contribution);
}
