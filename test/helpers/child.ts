import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const ROBOT_CHILD = fileURLToPath(new URL('./robot-child.js', import.meta.url));

/** One line a child printed: `TAG {json}`. */
export interface Line {
  tag: string;
  value: Record<string, unknown>;
}

/** A robot process; `until` waits (bounded) for an event line, including ones already printed. */
export class Child {
  readonly lines: Line[] = [];
  private readonly waiters = new Set<() => void>();
  private exited = false;
  readonly stderr: string[] = [];

  constructor(
    readonly name: string,
    readonly proc: ChildProcess,
  ) {
    createInterface({ input: proc.stdout! }).on('line', (line) => {
      const at = line.indexOf(' ');
      try {
        this.lines.push({ tag: line.slice(0, at), value: JSON.parse(line.slice(at + 1)) as Record<string, unknown> });
      } catch {
        return;
      }
      for (const w of this.waiters) w();
    });
    proc.stderr!.on('data', (d: Buffer) => this.stderr.push(d.toString()));
    proc.on('exit', () => {
      this.exited = true;
      for (const w of this.waiters) w();
    });
  }

  until(what: string, match: (l: Line) => boolean, timeoutMs: number): Promise<Line> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const hit = this.lines.find(match);
        if (hit) return done(() => resolve(hit));
        if (this.exited)
          done(() => reject(new Error(`${this.name} exited before ${what}: ${this.stderr.join('').slice(-2000)}`)));
      };
      const timer = setTimeout(
        () => done(() => reject(new Error(`${this.name}: no ${what} within ${timeoutMs} ms`))),
        timeoutMs,
      );
      const done = (settle: () => void): void => {
        clearTimeout(timer);
        this.waiters.delete(check);
        settle();
      };
      this.waiters.add(check);
      check();
    });
  }

  send(line: string): void {
    this.proc.stdin!.write(`${line}\n`);
  }

  async stop(): Promise<void> {
    if (this.exited) return;
    const gone = new Promise<void>((resolve) => this.proc.once('exit', () => resolve()));
    this.proc.stdin!.end();
    this.proc.kill('SIGTERM');
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), 5000);
    await gone;
    clearTimeout(timer);
  }
}

/**
 * Starts robot-child.js (under `prefix`, e.g. `ip netns exec NS` or `taskset -c 1`); resolves once
 * it is up, or stops it and rejects after `readyMs` (a robot profiling a detector on a quarter of
 * a core takes minutes).
 */
export async function startRobotChild(
  name: string,
  prefix: string[],
  config: Record<string, unknown>,
  readyMs = 60_000,
): Promise<Child> {
  const argv = [...prefix, process.execPath, ROBOT_CHILD, JSON.stringify({ name, ...config })];
  const child = new Child(name, spawn(argv[0], argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] }));
  try {
    await child.until('ready', (l) => l.tag === 'ready', readyMs);
  } catch (err) {
    await child.stop();
    throw err;
  }
  return child;
}

/** A robot child's listen addresses, dialable (with its PeerId). */
export function dialAddrs(child: Child, peerId: string): string[] {
  const { addrs } = child.lines.find((l) => l.tag === 'ready')!.value as { addrs: string[] };
  return addrs.map((x) => (x.includes('/p2p/') ? x : `${x}/p2p/${peerId}`));
}

/** Waits (up to 60 s) until `child` holds fresh adverts from `peers` robots. */
export async function waitForAdverts(child: Child, peers: number): Promise<void> {
  for (let i = 0; i < 600; i++) {
    if (Object.keys(await ask<Record<string, number>>(child, 'adverts', 'adverts')).length >= peers) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${child.name}: adverts from ${peers} peers did not arrive within 60 s`);
}

/** Sends a command and waits for its answer (the first line tagged `tag` after it). */
export async function ask<T>(child: Child, command: string, tag: string, timeoutMs = 30_000): Promise<T> {
  const from = child.lines.length;
  child.send(command);
  const line = await child.until(
    command,
    (l) => child.lines.indexOf(l) >= from && (l.tag === tag || l.tag === 'error'),
    timeoutMs,
  );
  if (line.tag === 'error') throw new Error(`${child.name}: ${String(line.value.message)}`);
  return line.value as T;
}
