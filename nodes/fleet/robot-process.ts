import '../mesh/polyfill.js';
import { type Command, RobotRuntime, type RuntimeInit } from './robot-runtime.js';

/**
 * A robot in its own process, driven by the fleet over the IPC channel: the first message is
 * its RuntimeInit, then commands; every reply carries the request id. The process exits when
 * told to stop or when its parent goes away (no orphaned robots).
 */
let runtime: RobotRuntime | undefined;

type Request = { id: number } & ({ init: RuntimeInit } | Command);

process.on('message', (m: Request) => {
  void (async () => {
    try {
      let result: unknown;
      if ('init' in m) {
        runtime = await RobotRuntime.start(m.init);
        result = { peerId: runtime.robot.peerId, addresses: runtime.robot.host.addresses() };
      } else if (!runtime) throw new Error('not started');
      else result = await runtime.handle(m);
      const last = !('init' in m) && m.cmd === 'stop';
      process.send?.({ id: m.id, ok: true, result }, undefined, {}, () => {
        if (last) process.exit(0);
      });
    } catch (err) {
      process.send?.({ id: m.id, ok: false, error: (err as Error).message });
    }
  })();
});

process.on('disconnect', () => {
  void (runtime?.stop() ?? Promise.resolve()).finally(() => process.exit(0));
});
