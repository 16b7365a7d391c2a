import '../../mesh/polyfill.js';
import { type Command, RobotRuntime, type RuntimeInit } from './robot-runtime.js';

/**
 * A process hosting robots for the fleet (one, or several: a shard), driven over the IPC
 * channel. Every message names its robot: `{ init }` starts it, then commands; every reply
 * carries the request id. The process exits once its last robot has been stopped, and when its
 * parent goes away, stopping every robot first (no orphaned robots).
 */
const runtimes = new Map<string, RobotRuntime>();
/** Robots whose start is under way (the process does not exit while one is). */
const starting = new Set<string>();

type Request = { id: number; robot: string } & ({ init: RuntimeInit } | Command);

async function serve(m: Request): Promise<{ reply: object; stopped: boolean }> {
  if ('init' in m) {
    if (runtimes.has(m.robot) || starting.has(m.robot))
      throw new Error(`${m.robot} is already running in this process`);
    starting.add(m.robot);
    try {
      const rt = await RobotRuntime.start(m.init);
      runtimes.set(m.robot, rt);
      return { reply: { peerId: rt.robot.peerId, addresses: rt.robot.host.addresses() }, stopped: false };
    } finally {
      starting.delete(m.robot);
    }
  }
  const rt = runtimes.get(m.robot);
  if (!rt) throw new Error(`${m.robot} is not running in this process`);
  if (m.cmd !== 'stop') return { reply: (await rt.handle(m)) as object, stopped: false };
  try {
    return { reply: (await rt.handle(m)) as object, stopped: true };
  } finally {
    runtimes.delete(m.robot);
  }
}

const empty = (): boolean => runtimes.size === 0 && starting.size === 0;

process.on('message', (m: Request) => {
  void serve(m).then(
    ({ reply, stopped }) => {
      process.send?.({ id: m.id, ok: true, result: reply }, undefined, {}, () => {
        if (stopped && empty()) process.exit(0);
      });
    },
    (err: Error) => {
      const stopped = 'cmd' in m && m.cmd === 'stop';
      process.send?.({ id: m.id, ok: false, error: err.message }, undefined, {}, () => {
        if (stopped && empty()) process.exit(0);
      });
    },
  );
});

process.on('disconnect', () => {
  // Whatever happens to the robots' stop, do not outlive the fleet by more than a few seconds.
  setTimeout(() => process.exit(0), 10_000).unref();
  void Promise.allSettled([...runtimes.values()].map((rt) => rt.stop())).finally(() => process.exit(0));
});
