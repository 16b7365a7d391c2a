import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { RobomeshError } from '../../protocol/errors.js';
import { type Command, RobotRuntime, type RuntimeInit } from './robot-runtime.js';

/** The fleet's grip on one robot, in another process or in this one. */
export interface RobotHandle {
  readonly name: string;
  readonly inProcess: boolean;
  up: boolean;
  start(init: RuntimeInit): Promise<{ peerId: string; addresses: string[] }>;
  request<T>(c: Command, timeoutMs?: number): Promise<T>;
  stop(): Promise<void>;
}

export class InProcessRobot implements RobotHandle {
  readonly inProcess = true;
  up = false;
  private runtime: RobotRuntime | undefined;

  constructor(readonly name: string) {}

  async start(init: RuntimeInit): Promise<{ peerId: string; addresses: string[] }> {
    this.runtime = await RobotRuntime.start(init);
    this.up = true;
    return { peerId: this.runtime.robot.peerId, addresses: this.runtime.robot.host.addresses() };
  }

  async request<T>(c: Command): Promise<T> {
    if (!this.runtime) throw new RobomeshError('ROBOT_DOWN', `${this.name} is not running`);
    return (await this.runtime.handle(c)) as T;
  }

  async stop(): Promise<void> {
    if (this.up) await this.runtime?.stop();
    this.up = false;
  }
}

const ENTRY = fileURLToPath(new URL('./robot-process.js', import.meta.url));

export class ChildRobot implements RobotHandle {
  readonly inProcess = false;
  up = false;
  private child: ChildProcess | undefined;
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();

  constructor(readonly name: string) {}

  async start(init: RuntimeInit): Promise<{ peerId: string; addresses: string[] }> {
    const child = fork(ENTRY, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'advanced' });
    this.child = child;
    child.on('message', (m: { id: number; ok: boolean; result?: unknown; error?: string }) => {
      const w = this.waiting.get(m.id);
      if (!w) return;
      this.waiting.delete(m.id);
      clearTimeout(w.timer);
      if (m.ok) w.resolve(m.result);
      else w.reject(new RobomeshError('ROBOT_ERROR', `${this.name}: ${m.error}`));
    });
    child.on('exit', (code) => {
      this.up = false;
      for (const [id, w] of this.waiting) {
        clearTimeout(w.timer);
        w.reject(new RobomeshError('ROBOT_DOWN', `${this.name} exited (code ${code})`));
        this.waiting.delete(id);
      }
    });
    const started = await this.send<{ peerId: string; addresses: string[] }>({ init }, 180_000);
    this.up = true;
    return started;
  }

  request<T>(c: Command, timeoutMs = 20_000): Promise<T> {
    return this.send<T>(c, timeoutMs);
  }

  private send<T>(payload: object, timeoutMs: number): Promise<T> {
    const child = this.child;
    if (!child?.connected) return Promise.reject(new RobomeshError('ROBOT_DOWN', `${this.name} is not running`));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(new RobomeshError('ROBOT_TIMEOUT', `${this.name} did not answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiting.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      child.send({ id, ...payload });
    });
  }

  async stop(): Promise<void> {
    if (!this.child) return;
    if (this.up) await this.request({ cmd: 'stop' }, 10_000).catch(() => undefined);
    if (this.child.exitCode === null) this.child.kill('SIGKILL');
    this.up = false;
  }
}
