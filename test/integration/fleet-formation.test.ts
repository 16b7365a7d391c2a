import assert from 'node:assert/strict';
import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import type { FleetView } from '../../nodes/apps/dashboard/view.js';
import { identityFromSeed } from '../../nodes/mesh/identity.js';
import { codec } from '../../ros/messages.js';
import { devFleet } from '../../ros/robot-setup.js';
import { writeSimBag } from '../../ros/sim-bag.js';
import { robomesh } from '../helpers/cli.js';
import { runLaunch } from '../helpers/launch-files.js';
import { freePort } from '../helpers/ports.js';
import { waitFor } from '../helpers/wait.js';

/**
 * A fleet formed the way a user forms one: `robomesh keygen` for each robot, `robomesh genesis`
 * from their keys, then the three robot processes `ros2 launch robomesh fleet.launch.xml` would
 * start (the launch file expanded as launch_ros does), pointed at the genesis. They find each
 * other, share one log, and `robomesh revoke` cuts one off while the other two carry on. Without
 * ROS each robot replays a short bag of its own and then stays up serving its dashboard, which
 * is where the test reads what each robot knows.
 */
describe('forming a fleet: keygen, genesis, fleet.launch.xml, revoke (robot processes, loopback)', function () {
  this.timeout(180_000);
  let children: ChildProcess[] = [];
  let stderr: string[][] = [];
  let dir: string;

  /** Stops the robot processes (SIGTERM, then SIGKILL after 10 s): the next test reuses their ports. */
  const stopAll = async (): Promise<void> => {
    await Promise.allSettled(
      children.map(
        (c) =>
          new Promise<void>((resolve) => {
            if (c.exitCode !== null || c.signalCode !== null) return resolve();
            const timer = setTimeout(() => c.kill('SIGKILL'), 10_000);
            c.once('exit', () => {
              clearTimeout(timer);
              resolve();
            });
            c.kill('SIGTERM');
          }),
      ),
    );
    children = [];
    stderr = [];
  };
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'rm-formation-'));
  });
  afterEach(stopAll);
  after(() => rmSync(dir, { recursive: true, force: true }));

  const json = <T>(r: { code: number; stdout: string; stderr: string }): T => {
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as T;
  };
  const state = async (port: number, netns?: string): Promise<FleetView | undefined> => {
    if (netns) {
      // The robot's dashboard listens on its namespace's own loopback: ask from inside it.
      const get =
        `fetch('http://127.0.0.1:${port}/state.json',{signal:AbortSignal.timeout(2000)})` +
        '.then(r=>r.text()).then(t=>process.stdout.write(t)).catch(()=>process.exit(1))';
      return new Promise((resolve) =>
        execFile('ip', ['netns', 'exec', netns, process.execPath, '-e', get], { timeout: 5000 }, (err, out) =>
          resolve(err ? undefined : (JSON.parse(out) as FleetView)),
        ),
      );
    }
    try {
      const res = await fetch(`http://127.0.0.1:${port}/state.json`, { signal: AbortSignal.timeout(2000) });
      return (await res.json()) as FleetView;
    } catch {
      return undefined; // not serving yet
    }
  };
  const upPeers = (v: FleetView | undefined): string[] =>
    (v?.robots ?? []).slice(1).flatMap((r) => (r.up ? [r.peerId] : []));

  const NAMES = ['r0', 'r1', 'r2'];

  /**
   * Starts the robots of the expanded fleet.launch.xml, as ros2 launch would, each replaying a
   * short bag of its own (without ROS) and then serving its dashboard; `extra(i)` adds parameters.
   */
  async function launchFleet(
    tag: string,
    extra: (i: number) => string[],
    wrap: (i: number, argv: string[]) => string[] = (_, argv) => argv,
  ) {
    const launched = runLaunch('fleet.launch.xml', {}, dir);
    assert.deepEqual(
      launched.map((n) => n.name),
      NAMES,
    );
    const ports = await Promise.all(NAMES.map(() => freePort()));
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      PATH: `${dirname(process.execPath)}${delimiter}${process.env.PATH ?? ''}`,
    };
    delete env.ROBOMESH_NODE;
    for (const [i, node] of launched.entries()) {
      const bag = join(dir, `${tag}-${NAMES[i]}.mcap`);
      const ns = `/${NAMES[i]}`;
      await writeSimBag(bag, codec, {
        plan: 'builtin:small',
        seconds: 3,
        seed: i + 1,
        robot: i,
        topics: { scan: `${ns}/scan`, odom: `${ns}/odom`, camera: `${ns}/camera/image_raw` },
      });
      const [exec, ...args] = wrap(i, [
        node.argv[0],
        '--replay',
        bag,
        ...node.argv.slice(1),
        '--ros-args',
        '-p',
        'models:=[]',
        '-p',
        'map.publish_period:=1.0',
        '-p',
        `dashboard.port:=${ports[i]}`,
        ...extra(i),
      ]);
      const child = spawn(exec, args, { cwd: dir, env, stdio: ['ignore', 'ignore', 'pipe'] });
      const lines: string[] = [];
      stderr.push(lines);
      child.stderr!.on('data', (d: Buffer) => lines.push(d.toString()));
      children.push(child);
    }
    const why = (): string => stderr.map((l, i) => `${NAMES[i]}: ${l.join('').slice(-1500)}`).join('\n');
    return { ports, why };
  }

  /** Every robot connected to both others and holding the same log. */
  const oneFleet = async (ports: number[], ids?: string[], netns?: string[]): Promise<boolean> => {
    const views = await Promise.all(ports.map((p, i) => state(p, netns?.[i])));
    return (
      views.every((v, i) => upPeers(v).length === 2 && (!ids || v!.robots[0].peerId === ids[i])) &&
      views.every((v) => v!.robots[0].logSize > 3 && v!.robots[0].stateHash === views[0]!.robots[0].stateHash)
    );
  };

  it('fleet.launch.xml robots form the fleet robomesh genesis and admit make; a revoke cuts one off', async () => {
    // 1. Identities, then the fleet's genesis (r0 and r1; r2 comes later), as an operator makes them.
    const ids: string[] = [];
    for (const name of NAMES)
      ids.push(json<{ peerId: string }>(await robomesh(['keygen', '--data-dir', join(dir, name), '--json'])).peerId);
    const genesis = join(dir, 'genesis.bin');
    const admin = join(dir, 'admin');
    const made = json<{ members: string[] }>(
      await robomesh([
        'genesis',
        '--fleet',
        'lab',
        ...NAMES.slice(0, 2).flatMap((n) => ['--member', join(dir, n)]),
        '--admin-dir',
        admin,
        '--out',
        genesis,
        '--json',
      ]),
    );
    assert.deepEqual(made.members, ids.slice(0, 2));
    const again = await robomesh(['genesis', '--fleet', 'lab', '--admin-dir', admin, '--out', genesis]);
    assert.equal(again.code, 2, 'a genesis file is never overwritten');
    assert.match(again.stderr, /exists/);

    // 2. The three processes of `ros2 launch robomesh fleet.launch.xml`, each told the genesis.
    const { ports, why } = await launchFleet('formed', (i) => [
      '-p',
      `fleet.genesis_file:=${genesis}`,
      '-p',
      'fleet.dev_members:=[]',
      '-p',
      `fleet.bootstrap:=[${ids
        .slice(0, i)
        .map((id, k) => `/ip4/127.0.0.1/tcp/${4700 + k}/p2p/${id}`)
        .join(', ')}]`,
      '-p',
      'fleet.mdns:=false',
      '-p',
      `data_dir:=${join(dir, NAMES[i])}`,
    ]);

    // 3. r0 and r1 form the fleet; r2, not in the genesis, is refused by both.
    const twoOnly = async (): Promise<boolean> => {
      const [v0, v1] = await Promise.all(ports.slice(0, 2).map((p) => state(p)));
      return upPeers(v0).join() === ids[1] && upPeers(v1).join() === ids[0];
    };
    await waitFor(twoOnly, `r0 and r1 connected\n${why()}`, 90_000, 250);
    for (let k = 0; k < 8; k++) {
      assert.ok(await twoOnly(), 'r2 got in before its admission');
      await new Promise((r) => setTimeout(r, 250));
    }

    /** `robomesh admit|revoke ROBOT`, the admin joining through robot `via`'s loopback address. */
    const membership = async (kind: 'admit' | 'revoke', robot: string, via: number) =>
      json<{ changed: boolean; holders?: string[] }>(
        await robomesh([
          kind,
          robot,
          '--genesis',
          genesis,
          '--admin-dir',
          admin,
          '--bootstrap',
          `/ip4/127.0.0.1/tcp/${4700 + via}/p2p/${ids[via]}`,
          '--no-mdns',
          '--json',
        ]),
      );

    // 4. The admin admits r2: one fleet, everyone connected to both others, one log.
    const admitted = await membership('admit', join(dir, 'r2'), 1);
    assert.equal(admitted.changed, true);
    await waitFor(() => oneFleet(ports, ids), `three connected robots with one log\n${why()}`, 60_000, 250);

    // 5. The admin revokes r2: r0 and r1 cut it off, and carry on with each other.
    const revoked = await membership('revoke', join(dir, 'r2'), 0);
    assert.equal(revoked.changed, true);
    assert.ok(revoked.holders!.length >= 1);
    await waitFor(
      async () => {
        const [v0, v1] = await Promise.all(ports.slice(0, 2).map((p) => state(p)));
        return (
          upPeers(v0).join() === ids[1] &&
          upPeers(v1).join() === ids[0] &&
          v0!.robots[0].stateHash === v1!.robots[0].stateHash
        );
      },
      `r0 and r1 connected to each other only, with one log\n${why()}`,
      30_000,
      250,
    );
    // r2 keeps redialling (every second) and is refused: for three seconds neither lets it in.
    for (let k = 0; k < 12; k++) {
      const views = await Promise.all(ports.slice(0, 2).map((p) => state(p)));
      for (const v of views)
        assert.ok(!upPeers(v).includes(ids[2]), `r2 reached ${v!.robots[0].name} after its revocation`);
      await new Promise((r) => setTimeout(r, 250));
    }
    // Revoking again changes nothing.
    assert.equal((await membership('revoke', ids[2], 1)).changed, false, 'by PeerId this time');
  });

  it('fleet.launch.xml as shipped forms one development fleet, and says plainly that it is one', async () => {
    // Only what a checkout has no say in: where data goes, no models, the dashboard to read from.
    const { ports, why } = await launchFleet('dev', (i) => ['-p', `data_dir:=${join(dir, 'dev', NAMES[i])}`]);
    await waitFor(() => oneFleet(ports), `three connected robots with one log\n${why()}`, 90_000, 250);
    assert.match(why(), /DEVELOPMENT fleet \(r0, r1, r2\)/);
    // The same names give the same keys: the PeerIds are the development fleet's, not random ones.
    const views = await Promise.all(ports.map((p) => state(p)));
    const dev = devFleet('local', NAMES);
    const again = await Promise.all(NAMES.map(async (n) => (await identityFromSeed(dev.seedOf(n)!)).peerId.toString()));
    assert.deepEqual(
      views.map((v) => v!.robots[0].peerId),
      again,
    );
  });

  describe('in three network namespaces, found by mDNS alone', () => {
    const NS = NAMES.map((n) => `rmform-${process.pid}-${n}`);
    const HUB = `rmform-${process.pid}-hub`;
    const ip = (...args: string[]): string =>
      execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    const down = (): void => {
      for (const n of [...NS, HUB])
        try {
          ip('netns', 'del', n);
        } catch {
          // not there
        }
    };
    let created = false;
    before(function () {
      let reason: string | undefined;
      if (process.platform !== 'linux') reason = 'network namespaces are Linux-only';
      else if (process.getuid?.() !== 0) reason = 'needs root to create network namespaces (ip netns)';
      if (reason) {
        process.stderr.write(`      (skipped: ${reason})\n`);
        this.skip();
      }
      created = true;
      down();
      // One segment: a bridge in a hub namespace, a veth from it into each robot's namespace (all
      // created inside the namespaces: no interface of the host is touched).
      ip('netns', 'add', HUB);
      ip('-n', HUB, 'link', 'add', 'rmbr0', 'type', 'bridge');
      ip('-n', HUB, 'link', 'set', 'rmbr0', 'up');
      NS.forEach((n, k) => {
        ip('netns', 'add', n);
        ip('-n', HUB, 'link', 'add', `h${k}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', n);
        ip('-n', HUB, 'link', 'set', `h${k}`, 'master', 'rmbr0', 'up');
        ip('-n', n, 'addr', 'add', `10.81.0.${k + 1}/24`, 'dev', 'eth0');
        ip('-n', n, 'link', 'set', 'eth0', 'multicast', 'on', 'up');
        ip('-n', n, 'link', 'set', 'lo', 'up');
        ip('-n', n, 'route', 'add', '224.0.0.0/4', 'dev', 'eth0');
      });
    });
    after(async () => {
      await stopAll();
      if (created) down();
    });

    it('robots from fleet.launch.xml with no bootstrap address find each other by mDNS and share one log', async () => {
      const ids: string[] = [];
      for (const name of NAMES)
        ids.push(
          json<{ peerId: string }>(await robomesh(['keygen', '--data-dir', join(dir, 'ns', name), '--json'])).peerId,
        );
      const genesis = join(dir, 'ns', 'genesis.bin');
      json(
        await robomesh([
          'genesis',
          '--fleet',
          'lab',
          ...NAMES.flatMap((n) => ['--member', join(dir, 'ns', n)]),
          '--admin-dir',
          join(dir, 'ns', 'admin'),
          '--out',
          genesis,
          '--json',
        ]),
      );
      const { ports, why } = await launchFleet(
        'ns',
        (i) => [
          '-p',
          `fleet.genesis_file:=${genesis}`,
          '-p',
          'fleet.dev_members:=[]',
          '-p',
          'fleet.bootstrap:=[]',
          '-p',
          `fleet.listen:=[/ip4/10.81.0.${i + 1}/tcp/4700]`,
          '-p',
          `data_dir:=${join(dir, 'ns', NAMES[i])}`,
        ],
        (i, argv) => ['ip', 'netns', 'exec', NS[i], ...argv],
      );
      await waitFor(
        () => oneFleet(ports, ids, NS),
        `three robots connected by mDNS with one log\n${why()}`,
        90_000,
        500,
      );
    });
  });
});
