import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { FleetError } from './errors.js';
import { robotProcessEnv } from '../../util/index.js';
import { type Command, RobotRuntime, type RuntimeInit } from './robot-runtime.js';

/** The fleet's grip on one robot, in another process or in this one. */
export interface RobotHandle {
  readonly name: string;
  readonly inProcess: boolean;
  /** The OS process the robot runs in (this one for in-process robots; undefined before a child is forked). */
  readonly pid: number | undefined;
  up: boolean;
  start(init: RuntimeInit): Promise<{ peerId: string; addresses: string[] }>;
  request<T>(c: Command, timeoutMs?: number): Promise<T>;
  stop(): Promise<void>;
}

export class InProcessRobot implements RobotHandle {
  readonly inProcess = true;
  readonly pid = process.pid;
  up = false;
  private runtime: RobotRuntime | undefined;

  constructor(readonly name: string) {}

  async start(init: RuntimeInit): Promise<{ peerId: string; addresses: string[] }> {
    this.runtime = await RobotRuntime.start(init);
    this.up = true;
    return { peerId: this.runtime.robot.peerId, addresses: this.runtime.robot.host.addresses() };
  }

  async request<T>(c: Command): Promise<T> {
    if (!this.runtime) throw new FleetError('ROBOT_DOWN', `${this.name} is not running`);
    return (await this.runtime.handle(c)) as T;
  }

  async stop(): Promise<void> {
    if (this.up) await this.runtime?.stop();
    this.up = false;
  }
}

const ENTRY = fileURLToPath(new URL('./robot-process.js', import.meta.url));

interface Pending {
  robot: string;
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

/**
 * A child process (robot-process.ts) hosting any number of robots, shared by their handles:
 * every request names its robot, every reply carries the request id. One process per robot is
 * the case of a process with one robot. Forked when its first robot starts; it exits by itself
 * once its last robot has stopped (or when this process goes away). If it dies, every pending
 * request of its robots fails with ROBOT_DOWN and every handle on it shows down.
 */
export class RobotProcess {
  private child: ChildProcess | undefined;
  private nextId = 1;
  private readonly waiting = new Map<number, Pending>();
  private readonly robots = new Map<string, ChildRobot>();
  private exited: Promise<void> | undefined;
  /** How the process ended, once it has. */
  exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;

  constructor(readonly label: string) {}

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Names of the robots placed on this process (started or starting). */
  get hosted(): string[] {
    return [...this.robots.keys()];
  }

  private describe(): string {
    const how = this.exit
      ? this.exit.signal
        ? `was killed by ${this.exit.signal}`
        : `exited with code ${this.exit.code}`
      : 'is not running';
    return `its process (${this.label}${this.child?.pid ? `, pid ${this.child.pid}` : ''}) ${how}`;
  }

  /** Places a robot on this process (forking it on the first). */
  attach(robot: ChildRobot): void {
    if (this.exit) throw new FleetError('ROBOT_DOWN', `${robot.name}: ${this.describe()}`);
    this.robots.set(robot.name, robot);
    if (!this.child) this.spawn();
  }

  /** Removes a robot from this process; returns how many remain. */
  detach(name: string): number {
    this.robots.delete(name);
    return this.robots.size;
  }

  private spawn(): void {
    const child = fork(ENTRY, [], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      serialization: 'advanced',
      env: robotProcessEnv(),
    });
    this.child = child;
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    child.on('message', (m: { id: number; ok: boolean; result?: unknown; error?: string }) => {
      const w = this.waiting.get(m.id);
      if (!w) return;
      this.waiting.delete(m.id);
      clearTimeout(w.timer);
      if (m.ok) w.resolve(m.result);
      else w.reject(new FleetError('ROBOT_ERROR', `${w.robot}: ${m.error}`));
    });
    // Sending to a process that just died reports through the send callback; nothing else may throw here.
    child.on('error', () => undefined);
    child.on('exit', (code, signal) => {
      this.exit = { code, signal };
      for (const r of this.robots.values()) r.up = false;
      for (const [id, w] of this.waiting) {
        clearTimeout(w.timer);
        this.waiting.delete(id);
        w.reject(new FleetError('ROBOT_DOWN', `${w.robot} is down: ${this.describe()}`));
      }
    });
  }

  send<T>(robot: string, payload: object, timeoutMs: number): Promise<T> {
    const child = this.child;
    if (!child?.connected || this.exit)
      return Promise.reject(new FleetError('ROBOT_DOWN', `${robot} is not running: ${this.describe()}`));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(new FleetError('ROBOT_TIMEOUT', `${robot} did not answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiting.set(id, { robot, resolve: resolve as (v: unknown) => void, reject, timer });
      child.send({ id, robot, ...payload }, (err) => {
        if (!err || !this.waiting.has(id)) return;
        this.waiting.delete(id);
        clearTimeout(timer);
        reject(new FleetError('ROBOT_DOWN', `${robot} is down: ${this.describe()} (${err.message})`));
      });
    });
  }

  /** Signals the process (SIGKILL by default); pending requests then fail with ROBOT_DOWN. */
  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    if (this.child && !this.exit) this.child.kill(signal);
  }

  /** Waits up to graceMs for the process to exit by itself, then kills it. */
  async close(graceMs = 3000): Promise<void> {
    if (!this.child || this.exit) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.exited, new Promise((r) => (timer = setTimeout(r, graceMs)))]);
    clearTimeout(timer);
    if (!this.exit) {
      this.kill();
      await this.exited;
    }
  }
}

/**
 * A robot in a child process: its own (one process per robot, the default) or one shared with
 * other robots (a shard: pass the same RobotProcess to several handles).
 */
export class ChildRobot implements RobotHandle {
  readonly inProcess = false;
  up = false;
  readonly process: RobotProcess;

  constructor(
    readonly name: string,
    process?: RobotProcess,
  ) {
    this.process = process ?? new RobotProcess(name);
  }

  get pid(): number | undefined {
    return this.process.pid;
  }

  async start(init: RuntimeInit): Promise<{ peerId: string; addresses: string[] }> {
    this.process.attach(this);
    try {
      const started = await this.process.send<{ peerId: string; addresses: string[] }>(this.name, { init }, 180_000);
      this.up = true;
      return started;
    } catch (err) {
      if (this.process.detach(this.name) === 0) await this.process.close(0);
      throw err;
    }
  }

  request<T>(c: Command, timeoutMs = 20_000): Promise<T> {
    return this.process.send<T>(this.name, c, timeoutMs);
  }

  /** Stops the robot; the process exits (or is killed) once none of its robots is left. */
  async stop(): Promise<void> {
    // No answer in time: closing the process below kills it.
    if (this.up) await this.request({ cmd: 'stop' }, 10_000).catch(() => undefined);
    this.up = false;
    if (this.process.detach(this.name) === 0) await this.process.close();
  }
}
