import { EventEmitter } from 'node:events';
import { join } from 'node:path';
import { signerFromSeed } from '../../../protocol/ed25519.js';
import { signEntry, toHex } from '../../../protocol/log-entry.js';
import { anchorSettingsFromEnv, IotaStandIn, iotaAddressOf } from '../../ledger/index.js';
import { assemble } from '../../mapping/index.js';
import { floorPlan } from '../sim/index.js';
import { identityFromSeed } from '../../mesh/index.js';
import type { FleetView, FleetViewSource } from '../dashboard/index.js';
import { ChildRobot, InProcessRobot, type RobotHandle, RobotProcess } from './robot-handle.js';
import type { Command, RobotStatus, RuntimeInit, TaskReply } from './robot-runtime.js';
import { FleetError } from './errors.js';
import { type Scenario, chainHolders } from './scenario.js';
import { type ChainFiles, writeChainFiles } from '../../inference/index.js';
import { type FleetReport, type TaskRun, auditRobotStore, inferenceSummary, mapReport } from './fleet-report.js';
import { type Placement, type ProcessUsage, describePlacement, resolvePlacement } from './placement.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
/** Fleets up to this size connect every pair of robots; larger ones keep MESH_DEGREE links per robot. */
const FULL_MESH_UP_TO = 12;
const MESH_DEGREE = 6;

/**
 * Runs a scenario: N robots (in this process, one process each, or spread over K shared
 * processes), a shared simulated world, partitions and heals, Byzantine robots, a logged
 * inference workload and anchoring (on a real IOTA node when IOTA_* is set, else on the local
 * stand-in, and the report says which). Emits `update` for the dashboard and progress lines
 * through `log`; returns the report.
 */
export class FleetRun extends EventEmitter<{ update: [FleetView] }> implements FleetViewSource {
  private readonly handles: RobotHandle[] = [];
  private readonly processes: RobotProcess[] = [];
  private readonly placement: Placement;
  private readonly statuses = new Map<string, RobotStatus>();
  private readonly feed: FleetView['log'] = [];
  private readonly latency: FleetView['latency'] = [];
  private phase = 'starting';
  private mapView: FleetView['map'];
  private peerName = new Map<string, string>();
  private keyName = new Map<string, string>();
  private readonly t0 = Date.now();
  private readonly shapings: FleetReport['links'] = [];
  /** Per stage of the scenario's chain, the robots holding it. */
  private chainHolders: string[][] | undefined;

  constructor(
    private readonly scenario: Scenario,
    private readonly o: {
      /** Where the robots run (default: one process each, or in this process if inProcess). */
      placement?: Placement;
      /** Shorthand for placement 'in-process'. */
      inProcess?: boolean;
      dataDir: string;
      log: (line: string) => void;
    },
  ) {
    super();
    this.placement = resolvePlacement(o.placement ?? (o.inProcess ? 'in-process' : 'separate'), scenario.robots);
  }

  /** The latest status of every robot (for benches and tests). */
  robotStatuses(): RobotStatus[] {
    return [...this.statuses.values()];
  }

  /**
   * Every OS process hosting robots, each once, with its robots and its RSS and CPU time (since
   * it started) from the latest status of any of them: a status reports its whole process.
   */
  processUsage(): ProcessUsage[] {
    const byPid = new Map<number, ProcessUsage & { seen: number }>();
    for (const h of this.handles) {
      if (h.pid === undefined) continue;
      let u = byPid.get(h.pid);
      if (!u) byPid.set(h.pid, (u = { pid: h.pid, robots: [], rss: 0, cpuMs: 0, seen: -1 }));
      u.robots.push(h.name);
      const s = this.statuses.get(h.name);
      // CPU time only grows: the status with the most is the latest.
      if (s && s.cpuMs > u.seen) {
        u.seen = s.cpuMs;
        u.rss = s.rss;
        u.cpuMs = s.cpuMs;
      }
    }
    return [...byPid.values()].map((u) => ({ pid: u.pid, robots: u.robots, rss: u.rss, cpuMs: u.cpuMs }));
  }

  current(): FleetView {
    const robots = [...this.statuses.values()];
    const flagged = new Set(robots.flatMap((r) => r.flagged));
    const links: FleetView['links'] = [];
    for (let i = 0; i < robots.length; i++) {
      for (let j = i + 1; j < robots.length; j++) {
        const a = robots[i];
        const b = robots[j];
        const l = a.links.find((x) => x.peer === b.peerId);
        links.push({
          a: a.name,
          b: b.name,
          connected: a.connected.includes(b.peerId),
          bandwidthBps: l?.bandwidthBps,
          rttMs: l?.rttMs,
          shapedBps: l?.shapedBps || undefined,
        });
      }
    }
    return {
      time: Date.now() - this.t0,
      phase: this.phase,
      tasks: robots.find((r) => r.tasks)?.tasks,
      robots: this.handles.map((h) => {
        const s = this.statuses.get(h.name);
        return {
          name: h.name,
          peerId: s?.peerId ?? '',
          pose: s?.pose,
          up: h.up,
          flagged: s ? flagged.has(s.key) : false,
          logSize: s?.logSize ?? 0,
          stateHash: s?.stateHash ?? '',
          ...(s
            ? {
                rssMb: s.rss / 2 ** 20,
                loopLagMs: s.loopLagMs.p99,
                slowdown: s.slowdown,
                predictionErrorPct: s.predictionError === undefined ? undefined : 100 * s.predictionError,
                exits: s.exits,
                chains: s.chain && {
                  offered: s.chain.offered,
                  delivered: s.chain.delivered,
                  dropped: s.chain.dropped,
                  failed: s.chain.failed,
                  replaced: s.chain.replaced,
                  fps: s.chain.fps,
                },
              }
            : {}),
        };
      }),
      links,
      log: this.feed.slice(-200),
      latency: this.latency.slice(-500),
      map: this.mapView,
    };
  }

  /** Sends a command to one robot while the fleet runs (benchmarks probe robots this way). */
  command<T>(robot: string, c: Command, timeoutMs = 30_000): Promise<T> {
    const h = this.handles.find((x) => x.name === robot);
    if (!h) throw new FleetError('ROBOT_DOWN', `no robot ${robot} in this fleet`);
    return h.request<T>(c, timeoutMs);
  }

  /** The latest status of every robot (as polled). */
  statusOf(robot: string): RobotStatus | undefined {
    return this.statuses.get(robot);
  }

  async run(): Promise<FleetReport> {
    const { scenario: sc, o } = this;
    const n = sc.robots;
    const seeds = Array.from({ length: n }, (_, i) =>
      new Uint8Array(32).map((_, k) => (sc.seed * 97 + i * 31 + k * 13 + 5) & 0xff),
    );
    const identities = await Promise.all(seeds.map((s) => identityFromSeed(s)));
    const members = identities.map((i) => i.peerId.toString());
    const keys = identities.map((i) => toHex(i.privateKey.publicKey.raw));
    members.forEach((m, i) => this.peerName.set(m, `r${i}`));
    keys.forEach((k, i) => this.keyName.set(k, `r${i}`));
    const genesis = signEntry(
      {
        seq: 1,
        lamport: 1,
        parents: [],
        payload: { type: 'genesis', fleet: 'local', members: keys, admins: [keys[0]] },
      },
      signerFromSeed(seeds[0]),
    );

    // Anchoring: a real deployment if configured, else the stand-in node on 127.0.0.1.
    const real = anchorSettingsFromEnv();
    let standIn: { url: string; close: () => Promise<void> } | undefined;
    let anchorOn: string;
    let anchor: RuntimeInit['anchor'];
    if (real?.chain) {
      anchorOn = `IOTA at ${process.env.IOTA_RPC_URL}`;
      anchor = { deployment: real.deployment, rpcUrl: process.env.IOTA_RPC_URL!, everyMs: sc.anchorEvery * 1000 };
    } else {
      const deployment = { packageId: `0x${'a1'.repeat(32)}`, registryId: `0x${'b2'.repeat(32)}`, registryVersion: 1 };
      const node = new IotaStandIn(deployment.packageId);
      // Every robot may anchor in its turn: each has gas on the stand-in.
      for (const seed of seeds) node.fund(iotaAddressOf(signerFromSeed(seed).publicKey));
      standIn = await node.listen();
      anchorOn = `the local IOTA stand-in at ${standIn.url} (not IOTA: no IOTA_* settings)`;
      anchor = { deployment, rpcUrl: standIn.url, everyMs: sc.anchorEvery * 1000 };
    }
    o.log(
      `fleet: ${n} robots ${describePlacement(this.placement, n)}, ` +
        `world ${sc.world}, ${sc.duration} s; anchoring on ${anchorOn}`,
    );

    // The chain: built here once, its stages handed to the robots that hold them.
    let chain: { files: ChainFiles; holders: string[][] } | undefined;
    if (sc.chain && sc.workload.model) {
      const files = await writeChainFiles(
        sc.workload.model,
        { stages: sc.chain.stages, precision: sc.chain.precision },
        join(o.dataDir, 'chain'),
      );
      const holders = chainHolders(
        sc.chain,
        members.map((_, i) => `r${i}`),
      );
      chain = { files, holders };
      o.log(
        `chain: ${sc.workload.model} as ${sc.chain.stages} ${sc.chain.precision} stages (balanced by ` +
          `${files.balancedBy}), held by ${holders.map((h, k) => `${k + 1}: ${h.join(' ')}`).join('; ')}; ` +
          `${sc.chain.from} streams ${sc.chain.fps} fps`,
      );
    }
    this.chainHolders = chain?.holders;

    try {
      const p = this.placement;
      if (typeof p === 'number')
        this.processes.push(...Array.from({ length: p }, (_, k) => new RobotProcess(`shard ${k}`)));
      for (let i = 0; i < n; i++) {
        let h: RobotHandle;
        if (p === 'in-process') h = new InProcessRobot(`r${i}`);
        else if (p === 'separate') this.processes.push((h = new ChildRobot(`r${i}`)).process);
        else h = new ChildRobot(`r${i}`, this.processes[i % p]);
        // Every robot knows where the earlier ones are. Small fleets: a full mesh. Larger: each
        // robot keeps ~MESH_DEGREE connections (ring neighbours and random chords, connected
        // inside any partition group); gossip and anti-entropy carry the rest.
        const bootstrap = [...this.statuses.values()].flatMap((s) => s.addresses);
        const started = await h.start({
          name: `r${i}`,
          index: i,
          seed: Buffer.from(seeds[i]).toString('hex'),
          fleet: { name: 'local', members, genesis: Buffer.from(genesis.bytes).toString('base64') },
          bootstrap,
          dataDir: join(o.dataDir, `r${i}`),
          cacheDir: o.dataDir,
          sim: { world: sc.world, seed: sc.seed, speed: sc.simSpeed, publishEvery: 5 },
          model: sc.workload.every > 0 ? sc.workload.model : null,
          // On a real network only r0's address is known to hold gas; on the stand-in every robot's does.
          anchor: sc.anchorEvery > 0 && (i === 0 || !real?.chain) ? anchor : undefined,
          meshDegree: n > FULL_MESH_UP_TO ? MESH_DEGREE : undefined,
          // A shaper layer costs every message a little: only when the scenario shapes links.
          linkShaping: sc.events.some((e) => 'shape' in e),
          // Starting 50 robots takes a while: the first ones would map (and fill the log) alone.
          holdUntilGo: true,
          chain: chain && {
            manifest: chain.files.manifestPath,
            stages: chain.files.stageFiles.filter((_, k) => chain.holders[k].includes(`r${i}`)),
            fps: sc.chain!.from === `r${i}` ? sc.chain!.fps : undefined,
          },
        });
        this.handles.push(h);
        this.statuses.set(h.name, {
          ...(await h.request<RobotStatus>({ cmd: 'status' })),
          addresses: started.addresses,
        });
        o.log(`  r${i} up: ${started.peerId}`);
      }
      // A bounded robot is sure of its two ring neighbours only (its chords are random).
      const formed = Math.min(n - 1, n > FULL_MESH_UP_TO ? 2 : 3);
      await this.until(
        () => [...this.statuses.values()].every((s) => s.connected.length >= formed),
        60_000,
        'the mesh to form',
      );
      await Promise.all(this.handles.map((h) => h.request({ cmd: 'go' })));
      this.phase = 'running';
      return await this.timeline(anchorOn);
    } finally {
      // Each handle kills what does not stop in time; a failure to stop has nothing left to undo.
      await Promise.allSettled(this.handles.map((h) => h.stop()));
      // Processes whose robots did not all start (or stop) cleanly.
      await Promise.all(this.processes.map((p) => p.close(0)));
      await standIn?.close();
    }
  }

  private async poll(): Promise<void> {
    await Promise.all(
      this.handles.map(async (h) => {
        if (!h.up) return;
        try {
          const s = await h.request<RobotStatus>({ cmd: 'status' }, 10_000);
          this.statuses.set(h.name, s);
          for (const e of s.events) this.feed.push({ at: e.at, robot: h.name, kind: e.kind, detail: e.detail });
          for (const l of s.latencies) this.latency.push({ ...l, robot: h.name });
        } catch {
          // a robot busy for 10 s shows as stale; the next poll tries again
        }
      }),
    );
    if (this.feed.length > 2000) this.feed.splice(0, this.feed.length - 2000);
    this.emit('update', this.current());
  }

  /**
   * Pause between status polls: a status costs each robot its state hash and summaries, so a
   * large fleet is polled less often (50 robots: once a second). Catch-up times do not depend
   * on it: the robots note those themselves.
   */
  private pollGap(ms: number): number {
    return Math.max(ms, 20 * this.handles.length);
  }

  private async until(done: () => boolean, timeoutMs: number, what: string): Promise<number | null> {
    const start = Date.now();
    while (Date.now() - start < timeoutMs) {
      await this.poll();
      if (done()) return Date.now() - start;
      await sleep(this.pollGap(250));
    }
    this.o.log(`  (gave up waiting for ${what} after ${timeoutMs / 1000} s)`);
    return null;
  }

  /**
   * Waits until every robot holds every entry any robot had written when this was called, and
   * the cells of every tile those entries name. Robots keep mapping meanwhile: tile versions
   * written after this call are ongoing sync, not catching up (a fleet of 50 always has some
   * in flight), and a moment where all states are equal is not the measure either.
   */
  private async catchUp(
    what: string,
    then?: () => Promise<unknown>,
  ): Promise<{
    logMs: number | null;
    convergedMs: number | null;
    medianRobotMs: number | null;
    lastRobot: string | null;
    /** Robots left out: excluded by the log. */
    leftOut: string[];
  }> {
    await this.poll();
    // Members the log excludes (by most robots' reckoning) are left out both ways: honest robots
    // need not hold what an excluded robot writes, and an excluded robot cut off by its peers
    // never catches up.
    const all = [...this.statuses.values()];
    const excluded = new Set(
      [...new Set(all.flatMap((s) => s.excludedKeys))].filter(
        (k) => all.filter((s) => s.excludedKeys.includes(k)).length * 2 > all.length,
      ),
    );
    const counted = all.filter((s) => !excluded.has(s.key));
    const written = Object.fromEntries(counted.map((s) => [s.key, s.seqs[s.key] ?? 0]));
    // Each robot notes when it got there by its own clock (the machine's): polling 50 robots
    // whose processes lag takes seconds, which would be the resolution otherwise. Told before
    // `then` (the heal), so a late command cannot delay the time it notes.
    const told = Date.now();
    // A robot that does not answer is counted as not caught up below.
    await Promise.allSettled(this.handles.map((h) => h.request({ cmd: 'catch-up', written })));
    const start = Date.now();
    await then?.();
    const reached = (at: (s: RobotStatus) => number | undefined): number | null => {
      // A status from before the command may still show the previous target's time.
      const times = counted
        .map((s) => at(this.statuses.get(s.name)!))
        .map((t) => (t !== undefined && t >= told ? t : undefined));
      return times.every((t) => t !== undefined) ? Math.max(start, ...(times as number[])) - start : null;
    };
    const done = await this.until(() => reached((s) => s.caughtUp?.allAt) !== null, 60_000, what);
    const each =
      done === null
        ? []
        : counted
            .map((s) => this.statuses.get(s.name)!)
            .map((s) => ({ name: s.name, ms: Math.max(start, s.caughtUp!.allAt!) - start }))
            .sort((a, b) => a.ms - b.ms);
    return {
      logMs: reached((s) => s.caughtUp?.logAt),
      convergedMs: done === null ? null : reached((s) => s.caughtUp?.allAt),
      medianRobotMs: each.length ? each[Math.floor((each.length - 1) / 2)].ms : null,
      lastRobot: each.at(-1)?.name ?? null,
      leftOut: all.filter((s) => excluded.has(s.key)).map((s) => s.name),
    };
  }

  private async refreshMap(): Promise<void> {
    const r0 = this.handles[0];
    if (!r0?.up) return;
    const { tiles } = await r0.request<{ tiles: [string, string][] }>({ cmd: 'map' }, 10_000);
    const world = floorPlan(this.scenario.world).world;
    const dense = assemble(new Map(tiles.map(([id, b64]) => [id, new Int8Array(Buffer.from(b64, 'base64'))])), {
      resolution: world.resolution,
      origin: world.origin,
    });
    this.mapView = {
      width: dense.width,
      height: dense.height,
      resolution: dense.resolution,
      origin: dense.origin,
      states: Buffer.from(dense.states.buffer).toString('base64'),
    };
  }

  private async timeline(anchorOn: string): Promise<FleetReport> {
    const { scenario: sc, o } = this;
    const start = Date.now();
    const events = [...sc.events];
    const heals: FleetReport['heals'] = [];
    const tasks: Promise<TaskReply>[] = [];
    const liars = new Set<string>();
    // On their own clock: the loop below waits on polls and heals, which take seconds in a large fleet.
    let taskSeed = 0;
    const issueTask = (): void => {
      const candidates = this.handles.filter((h) => h.up && !liars.has(h.name));
      const h = candidates[taskSeed % candidates.length];
      if (!h) return;
      tasks.push(
        h
          .request<TaskReply>({ cmd: 'task', seed: 1000 + taskSeed++, f: sc.workload.f }, 60_000)
          .catch((err: Error) => ({ error: err.message })),
      );
    };
    const taskTimer =
      sc.workload.every > 0 && sc.workload.model ? setInterval(issueTask, sc.workload.every * 1000) : undefined;
    let nextMap = 0;
    let nextProgress = 5;
    try {
      while ((Date.now() - start) / 1000 < sc.duration) {
        const t = (Date.now() - start) / 1000;
        while (events.length && events[0].at <= t) {
          const e = events.shift()!;
          if ('partition' in e) {
            const groupOf = new Map(e.partition.flatMap((g, gi) => g.map((r) => [r, gi])));
            await Promise.all(
              this.handles.map((h) => {
                const mine = groupOf.get(h.name);
                const others = [...this.statuses.values()]
                  .filter((s) => groupOf.get(s.name) !== mine)
                  .map((s) => s.peerId);
                return h.request({ cmd: 'partition', peers: others });
              }),
            );
            this.phase = `partition ${e.partition.map((g) => g.join(' ')).join(' | ')}`;
          } else if ('heal' in e) {
            // Caught up = every robot holds every entry any robot had written when the heal came,
            // and the cells of every tile its log names (robots keep mapping meanwhile, so a moment
            // where all states are equal is not what a heal is measured by).
            this.phase = 'healed';
            const at = t;
            const { logMs, convergedMs, medianRobotMs, lastRobot } = await this.catchUp(
              'convergence after the heal',
              () => Promise.all(this.handles.map((h) => h.request({ cmd: 'heal' }))),
            );
            const reconnected = Math.max(0, ...[...this.statuses.values()].map((s) => s.connected.length));
            heals.push({ at, convergedMs, logMs, reconnectedPeers: reconnected, medianRobotMs, lastRobot });
            const tiles =
              convergedMs === null
                ? 'NOT within 60 s'
                : `in ${convergedMs} ms (the median robot in ${medianRobotMs} ms, the last ${lastRobot})`;
            o.log(
              `  t=${at.toFixed(0)} s heal: logs caught up ` +
                `${logMs === null ? 'NOT within 60 s' : `in ${logMs} ms`}, logs and map tiles ${tiles}`,
            );
          } else if ('shape' in e) {
            const byName = new Map([...this.statuses.values()].map((s) => [s.name, s.peerId]));
            await Promise.all(
              this.handles.map((h) => {
                const peers = e.shape.links
                  .filter((l) => l.includes(h.name))
                  .map(([a, b]) => byName.get(a === h.name ? b : a)!);
                return peers.length
                  ? h.request({
                      cmd: 'shape',
                      links: peers.map((peer) => ({
                        peer,
                        shape: { bytesPerSecond: e.shape.bytesPerSecond, delayMs: e.shape.delayMs },
                      })),
                    })
                  : undefined;
              }),
            );
            this.shapings.push({ at: t, shaping: e.shape.text, measured: [] });
            this.phase = `links shaped (${e.shape.text})`;
          } else if ('unshape' in e) {
            await Promise.all(this.handles.map((h) => h.request({ cmd: 'shape', clear: true, links: [] })));
            this.phase = 'links at full speed';
          } else {
            const h = this.handles.find((x) => x.name === e.byzantine.robot)!;
            await h.request({ cmd: 'fault', fault: e.byzantine.fault });
            liars.add(h.name);
            this.phase = `${h.name} byzantine: ${e.byzantine.fault.type}`;
          }
          o.log(`  t=${t.toFixed(0)} s ${this.phase}`);
        }
        if (t >= nextMap) {
          nextMap = t + 2;
          await this.refreshMap().catch((err) => o.log(`  merged map not refreshed: ${(err as Error).message}`));
        }
        await this.poll();
        this.recordShapedLinks();
        if (t >= nextProgress) {
          nextProgress += 5;
          const s = [...this.statuses.values()];
          o.log(
            `  t=${t.toFixed(0)}/${sc.duration} s  ${this.phase}; log ` +
              `${Math.min(...s.map((x) => x.logSize))}–${Math.max(...s.map((x) => x.logSize))} ` +
              `entries, ${new Set(s.map((x) => x.stateHash)).size} state(s); ${this.latency.length} inferences`,
          );
        }
        await sleep(this.pollGap(500));
      }
    } finally {
      clearInterval(taskTimer);
    }
    const finished = await Promise.all(tasks);
    o.log('  end of the timeline: waiting for every robot to hold everything written so far');
    const last = await this.catchUp('final convergence');
    const leftOut = last.leftOut.length ? ` (not counting ${last.leftOut.join(', ')}: excluded by the log)` : '';
    o.log(`  caught up after ${last.convergedMs ?? 'more than 60 000'} ms${leftOut}`);
    await this.refreshMap().catch((err) => o.log(`  merged map not refreshed: ${(err as Error).message}`));
    return this.report(anchorOn, heals, finished, liars, last);
  }

  /** What robots measure on the links shaped now (latest poll), kept with the shaping that slowed them. */
  private recordShapedLinks(): void {
    const current = this.shapings.at(-1);
    if (!current) return;
    const measured = [...this.statuses.values()].flatMap((s) =>
      s.links
        .filter((l) => l.shapedBps > 0)
        .map((l) => ({
          from: s.name,
          to: this.peerName.get(l.peer) ?? l.peer.slice(0, 12),
          shapedMbit: l.shapedBps / 1e6,
          measuredMbit: l.bandwidthBps / 1e6,
          rttMs: l.rttMs,
        })),
    );
    if (measured.length) current.measured = measured;
  }

  private chainReport(): FleetReport['chain'] {
    const c = this.scenario.chain;
    const stream = c && this.statuses.get(c.from)?.chain;
    if (!c || !stream || !this.chainHolders) return null;
    const runs = Object.entries(stream.runs).map(([peer, n]) => [this.peerName.get(peer) ?? peer.slice(0, 12), n]);
    return {
      ...c,
      holders: this.chainHolders,
      stream: { ...stream, runs: Object.fromEntries(runs.sort(([a], [b]) => String(a).localeCompare(String(b)))) },
    };
  }

  private async report(
    anchorOn: string,
    heals: FleetReport['heals'],
    tasks: TaskRun[],
    liars: Set<string>,
    last: { convergedMs: number | null; leftOut: string[] },
  ): Promise<FleetReport> {
    const statuses = [...this.statuses.values()];
    const r0 = this.statuses.get('r0')!;
    const named = (k: string): string => this.keyName.get(k) ?? k.slice(0, 12);
    // Stop the robots, then audit one accepted result end to end from r0's store.
    await Promise.allSettled(this.handles.map((h) => h.stop()));
    const { anchors, decisions, audit } = await auditRobotStore(this.o.dataDir, 'r0', anchorOn);
    const usage = this.processUsage();
    return {
      scenario: this.scenario,
      processes: typeof this.placement === 'number' ? 'sharded' : this.placement,
      placement: usage.map((u) => u.robots),
      robots: this.handles.map((h) => h.name),
      inference: inferenceSummary(tasks, decisions),
      heals,
      final: { convergedMs: last.convergedMs, leftOut: last.leftOut },
      map: mapReport(this.mapView, this.scenario.world),
      liars: {
        scheduled: [...liars],
        flaggedInLog: r0.flagged.map(named),
        excludedInLog: r0.excludedKeys.map(named),
        equivocations: r0.equivocations,
        forgedEntriesRejected: statuses.reduce((a, s) => a + s.rejectedEntries, 0),
        isolatedByPeers: [...new Set(statuses.flatMap((s) => s.excludedPeers.map((p) => this.peerName.get(p) ?? p)))],
      },
      anchoring: { on: anchorOn, anchors },
      audit,
      links: this.shapings,
      exits: [...this.statuses.entries()]
        .filter(([, s]) => s.exits?.asked)
        .map(([robot, s]) => ({ robot, asked: s.exits.asked, taken: s.exits.taken })),
      chain: this.chainReport(),
      resources: {
        maxRssMb: Math.max(...usage.map((u) => u.rss)) / 2 ** 20,
        rssMbPerRobot: usage.reduce((a, u) => a + u.rss, 0) / 2 ** 20 / statuses.length,
        cpuSeconds: usage.reduce((a, u) => a + u.cpuMs, 0) / 1000,
      },
    };
  }
}
