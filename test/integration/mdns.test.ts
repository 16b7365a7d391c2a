import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Child, type Line } from '../helpers/child.js';
import { testIdentities } from '../helpers/fleet.js';

/**
 * mDNS discovery between robots on different hosts: two network namespaces joined by a veth
 * pair (created inside the namespaces, so no real interface ever carries the multicast), with a
 * 224.0.0.0/4 route on each end. Robots run as child processes (`ip netns exec`) with mDNS on and
 * no bootstrap list. Needs root and iproute2; skipped otherwise.
 */
const NS = [`rmmdns-${process.pid}-a`, `rmmdns-${process.pid}-b`];
const DEV = ['rmmdns-a', 'rmmdns-b'];
const IP = ['10.79.0.1', '10.79.0.2'];
const CHILD = fileURLToPath(new URL('../helpers/mdns-robot.js', import.meta.url));

const ip = (...args: string[]): string =>
  execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

function whyNot(): string | undefined {
  if (process.platform !== 'linux') return 'network namespaces are Linux-only';
  if (process.getuid?.() !== 0) return 'needs root to create network namespaces (ip netns)';
  try {
    ip('-V');
  } catch {
    return 'iproute2 (`ip`) is not installed';
  }
  return undefined;
}

function teardown(): void {
  for (const ns of NS) {
    try {
      ip('netns', 'del', ns);
    } catch {
      // not there
    }
  }
}

function setup(): void {
  teardown();
  ip('netns', 'add', NS[0]);
  ip('netns', 'add', NS[1]);
  // Both ends are created straight inside the namespaces: the host's own interfaces stay untouched.
  ip('-n', NS[0], 'link', 'add', DEV[0], 'type', 'veth', 'peer', 'name', DEV[1], 'netns', NS[1]);
  for (const k of [0, 1]) {
    ip('-n', NS[k], 'addr', 'add', `${IP[k]}/24`, 'dev', DEV[k]);
    ip('-n', NS[k], 'link', 'set', DEV[k], 'multicast', 'on', 'up');
    ip('-n', NS[k], 'link', 'set', 'lo', 'up');
    ip('-n', NS[k], 'route', 'add', '224.0.0.0/4', 'dev', DEV[k]);
  }
}

describe('mDNS discovery (robots in two network namespaces, no bootstrap)', function () {
  this.timeout(60_000);
  const children: Child[] = [];
  let created = false;

  before(function () {
    const reason = whyNot();
    if (reason) {
      process.stderr.write(`      (skipped: ${reason})\n`);
      this.skip();
    }
    created = true;
    setup();
  });

  after(async () => {
    // Children first: a namespace stays alive while a process still runs in it.
    await Promise.allSettled(children.map((c) => c.stop()));
    if (created) teardown();
  });

  const start = (name: string, ns: number, seed: Uint8Array, members: string[]): Child => {
    const argv = [
      'netns',
      'exec',
      NS[ns],
      process.execPath,
      CHILD,
      Buffer.from(seed).toString('hex'),
      members.join(','),
      `/ip4/${IP[ns]}/tcp/0`,
    ];
    const child = new Child(name, spawn('ip', argv, { stdio: ['pipe', 'pipe', 'pipe'] }));
    children.push(child);
    return child;
  };

  it(
    'two fleet robots find and connect to each other by ' + 'mDNS alone; a stranger announced by mDNS is refused',
    async () => {
      const [a, b, stranger] = await testIdentities(3, 120);
      const fleet = [a, b].map((i) => i.peerId.toString());
      const [idA, idB] = fleet;
      const idS = stranger.peerId.toString();
      const robotA = start('robot A', 0, a.seed, fleet);
      const robotB = start('robot B', 1, b.seed, fleet);
      // The stranger (next to B) believes it belongs to the fleet; the fleet's list does not name it.
      const robotS = start('stranger', 1, stranger.seed, [...fleet, idS]);
      await Promise.all([robotA, robotB, robotS].map((r) => r.until('ready', (l) => l.tag === 'ready', 20_000)));

      const connected = (peer: string) => (l: Line) => l.tag === 'connected' && l.value.peer === peer;
      const discovered = (peer: string) => (l: Line) => l.tag === 'discovered' && l.value.peer === peer;
      // No bootstrap list and no other discovery: an address for the first dial can only come from mDNS.
      await robotA.until('a connection to B', connected(idB), 20_000);
      await robotB.until('a connection to A', connected(idA), 20_000);
      const seen = await robotA.until('B discovered', discovered(idB), 20_000);
      assert.ok(
        (seen.value.addrs as string[]).some((addr) => addr.startsWith(`/ip4/${IP[1]}/tcp/`)),
        JSON.stringify(seen.value),
      );

      // The stranger's announcement reached A, and A's announcement reached the stranger...
      await robotA.until('the stranger discovered', discovered(idS), 20_000);
      await robotS.until('A discovered', discovered(idA), 20_000);
      // ...yet when it dials A at the address mDNS gave it, A's gater refuses it.
      robotS.send(`dial ${idA}`);
      const dial = await robotS.until('its dial result', (l) => l.tag === 'dial' && l.value.peer === idA, 20_000);
      assert.equal(dial.value.ok, false, 'the stranger opened a stream on A');
      robotA.send('conns');
      const conns = await robotA.until('its connection list', (l) => l.tag === 'conns', 10_000);
      const peers = conns.value.peers as string[];
      assert.ok(peers.includes(idB), 'A is still connected to B');
      assert.ok(!peers.includes(idS), 'A holds no connection to the stranger');
      assert.ok(!robotA.lines.some(connected(idS)), 'A never connected to the stranger');
    },
  );
});

describe(
  'inbound connections: a stranger holding idle ' + 'handshakes cannot lock members out (three namespaces)',
  function () {
    this.timeout(90_000);
    const children: Child[] = [];
    const ns = [`rmflood-${process.pid}-a`, `rmflood-${process.pid}-b`, `rmflood-${process.pid}-c`];
    let created = false;
    let stranger: ChildProcess | undefined;

    const down = (): void => {
      for (const n of ns) {
        try {
          ip('netns', 'del', n);
        } catch {
          // not there
        }
      }
    };

    before(function () {
      const reason = whyNot();
      if (reason) {
        process.stderr.write(`      (skipped: ${reason})\n`);
        this.skip();
      }
      created = true;
      down();
      for (const n of ns) ip('netns', 'add', n);
      // The robot in a; the stranger in b (10.80.1.x) and a member in c (10.80.2.x), each on its own link to a.
      ip('-n', ns[0], 'link', 'add', 'rmf-ab', 'type', 'veth', 'peer', 'name', 'rmf-ba', 'netns', ns[1]);
      ip('-n', ns[0], 'link', 'add', 'rmf-ac', 'type', 'veth', 'peer', 'name', 'rmf-ca', 'netns', ns[2]);
      const up = (n: string, dev: string, addr: string): void => {
        ip('-n', n, 'addr', 'add', addr, 'dev', dev);
        ip('-n', n, 'link', 'set', dev, 'up');
        ip('-n', n, 'link', 'set', 'lo', 'up');
      };
      up(ns[0], 'rmf-ab', '10.80.1.1/24');
      up(ns[0], 'rmf-ac', '10.80.2.1/24');
      up(ns[1], 'rmf-ba', '10.80.1.2/24');
      up(ns[2], 'rmf-ca', '10.80.2.2/24');
    });

    after(async () => {
      stranger?.kill('SIGKILL');
      await Promise.allSettled(children.map((c) => c.stop()));
      if (created) down();
    });

    it('five idle TCP connections a second from a keyless host: every member dial still succeeds', async () => {
      const [victim, member] = await testIdentities(2, 130);
      const fleet = [victim, member].map((i) => i.peerId.toString());
      const port = 4300 + (process.pid % 500);
      const spawnRobot = (name: string, n: string, seed: Uint8Array, listen: string): Child => {
        const argv = [
          'netns',
          'exec',
          n,
          process.execPath,
          CHILD,
          Buffer.from(seed).toString('hex'),
          fleet.join(','),
          listen,
        ];
        const child = new Child(name, spawn('ip', argv, { stdio: ['pipe', 'pipe', 'pipe'] }));
        children.push(child);
        return child;
      };
      const robot = spawnRobot('robot', ns[0], victim.seed, `/ip4/0.0.0.0/tcp/${port}`);
      const m = spawnRobot('member', ns[2], member.seed, '/ip4/10.80.2.2/tcp/0');
      await Promise.all([robot, m].map((r) => r.until('ready', (l) => l.tag === 'ready', 20_000)));
      // The stranger: 5 new connections a second to the robot, each left open and silent.
      const flood =
        `const net=require('net');const s=[];setInterval(()=>{const ` +
        `c=net.connect(${port},'10.80.1.1');c.on('error',()=>{});s.push(c)},200);`;
      stranger = spawn('ip', ['netns', 'exec', ns[1], process.execPath, '-e', flood], { stdio: 'ignore' });
      await new Promise((resolve) => setTimeout(resolve, 3000));
      const target = `/ip4/10.80.2.1/tcp/${port}/p2p/${fleet[0]}`;
      const results: Line[] = [];
      for (let i = 0; i < 15; i++) {
        const before = m.lines.length;
        m.send(`connect ${target}`);
        results.push(await m.until(`dial ${i}`, (l) => l.tag === 'connect' && m.lines.indexOf(l) >= before, 10_000));
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      const failed = results.filter((r) => r.value.ok !== true);
      assert.equal(failed.length, 0, `member dials failed: ${JSON.stringify(failed.map((f) => f.value))}`);
    });
  },
);
