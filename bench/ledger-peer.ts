import { join } from 'node:path';
import { startHealProfile } from './ledger-profile.js';
import { SqliteLogStore } from '../nodes/ledger/index.js';
import { identityFromSeed } from '../nodes/mesh/index.js';
import { Robot } from '../nodes/robot/index.js';

/**
 * The second robot of bench:ledger's heal, in its own process as on a real robot (its own
 * event loop and core). Driven over IPC by bench/ledger.ts.
 */
export type PeerCommand =
  | { t: 'start'; seed: number[]; members: string[]; genesis: number[]; dir: string; bootstrap: string[] }
  | { t: 'partition'; peer: string }
  | { t: 'append'; count: number; group: number; prefix: string }
  | { t: 'heal'; total: number }
  | { t: 'stop' };

export type PeerReply =
  | { t: 'started'; addresses: string[]; peerId: string }
  | { t: 'partitioned' }
  | { t: 'appended' }
  | { t: 'converged'; stateHash: string; cpuMs: number }
  | { t: 'error'; message: string };

let robot: Robot | undefined;
let store: SqliteLogStore | undefined;
const reply = (r: PeerReply): void => void process.send!(r);

process.on('message', (cmd: PeerCommand) => {
  void handle(cmd).catch((err: Error) => reply({ t: 'error', message: err.stack ?? err.message }));
});

async function handle(cmd: PeerCommand): Promise<void> {
  switch (cmd.t) {
    case 'start': {
      const identity = await identityFromSeed(new Uint8Array(cmd.seed));
      robot = await Robot.start({
        name: 'peer',
        identity,
        fleet: { name: 'bench', members: cmd.members, bootstrap: cmd.bootstrap },
        models: [],
        dataDir: join(cmd.dir, 'peer'),
        cacheDir: cmd.dir,
        probeIntervalMs: 0,
        ledger: {
          store: (store = new SqliteLogStore(join(cmd.dir, 'peer.sqlite'))),
          genesis: new Uint8Array(cmd.genesis),
          antiEntropyMs: 60_000,
        },
      });
      reply({ t: 'started', addresses: robot.host.addresses(), peerId: robot.peerId });
      return;
    }
    case 'partition':
      await robot!.host.partition([cmd.peer]);
      reply({ t: 'partitioned' });
      return;
    case 'append':
      for (let i = 0; i < cmd.count; i += cmd.group) {
        robot!.ledger!.appendBatch(
          Array.from({ length: Math.min(cmd.group, cmd.count - i) }, (_, k) => ({
            type: 'claim' as const,
            task: `${cmd.prefix}${i + k}`,
          })),
        );
      }
      // Checkpointed now, as a robot that wrote them over a long partition would have long since.
      store!.checkpoint();
      reply({ t: 'appended' });
      return;
    case 'heal': {
      const ledger = robot!.ledger!;
      const done = (): boolean => ledger.size >= cmd.total;
      const profile = await startHealProfile('peer');
      const cpu = process.cpuUsage();
      robot!.host.heal();
      // Bounded: the bench gives up after two minutes.
      const end = Date.now() + 120_000;
      while (!done() && Date.now() < end) await new Promise((r) => setTimeout(r, 2));
      const used = process.cpuUsage(cpu);
      await profile?.stop();
      reply({ t: 'converged', stateHash: ledger.stateHash(), cpuMs: (used.user + used.system) / 1000 });
      return;
    }
    case 'stop':
      await robot?.stop();
      process.exit(0);
  }
}
