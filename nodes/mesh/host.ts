import './polyfill.js';
import { noise } from '@chainsafe/libp2p-noise';
import { yamux } from '@chainsafe/libp2p-yamux';
import { bootstrap } from '@libp2p/bootstrap';
import { gossipsub, type GossipSub } from '@libp2p/gossipsub';
import { createTopicScoreParams } from '@libp2p/gossipsub/score';
import { identify } from '@libp2p/identify';
import type { ComponentLogger, Libp2p, Logger } from '@libp2p/interface';
import { mdns } from '@libp2p/mdns';
import { peerIdFromString } from '@libp2p/peer-id';
import { ping } from '@libp2p/ping';
import { tcp } from '@libp2p/tcp';
import { multiaddr } from '@multiformats/multiaddr';
import { createLibp2p } from 'libp2p';
import { corkWrites } from './corked-writes.js';
import { FleetGater } from './gater.js';
import type { RobotIdentity } from './identity.js';
import type { LinkShaper } from './link-shaper.js';
import { componentLogger } from '../util/index.js';

const meshLog = componentLogger('mesh');

const silent: Logger = Object.assign((): void => undefined, {
  enabled: false,
  error: (): void => undefined,
  trace: (): void => undefined,
  newScope: (): Logger => silent,
});

/**
 * libp2p's default logger builds a few `debug` instances for every stream it opens (each asking
 * the OS whether stderr is a terminal): ~2 % of a 25-robot shard's CPU, measured. With DEBUG
 * unset nothing would be printed, so every component gets one silent logger.
 */
const silentLogger: ComponentLogger = { forComponent: () => silent };

export interface MeshOptions {
  identity: RobotIdentity;
  fleetName: string;
  /** PeerIds of every robot admitted to the fleet (self included or not). */
  members: string[];
  listen?: string[];
  /** Multiaddrs (with /p2p/ID) dialled at start and whenever not connected. */
  bootstrap?: string[];
  mdns?: boolean;
  /** Expected link rate: sizes the yamux window to ~1 s of it so pings never starve (notes, pitfall 1). */
  linkBytesPerSecond?: number;
  /** Gossip topics this fleet uses; others are neither joined nor relayed. */
  topics?: string[];
  /** How often the redial loop looks for fleet peers that are reachable again. */
  redialMs?: number;
  /** Simulated radio links (scenario link shaping): what this robot sends to a peer is paced and delayed. */
  linkShaper?: LinkShaper;
  /**
   * Connections each robot keeps (about): ring neighbours and random chords among the members
   * (FleetGater.neighbours) instead of every member it knows. For fleets too big for a full
   * mesh; gossip and anti-entropy carry everything else. Absent: dial every member known.
   */
  degree?: number;
}

export type MeshNode = Libp2p<{ pubsub: GossipSub; identify: unknown; ping: unknown }>;

export interface MeshHost {
  node: MeshNode;
  gater: FleetGater;
  peerId: string;
  addresses(): string[];
  /** Fleet peers with an open connection now. */
  connectedPeers(): string[];
  /** Refuse and hang up on these peers (a radio partition), until healed. */
  partition(peers: string[]): Promise<void>;
  heal(peers?: string[]): void;
  /** Remember addresses of a fleet peer so the redial loop can bring it back after a partition. */
  addPeerAddresses(peer: string, addrs: string[]): Promise<void>;
  /**
   * The fleet's members from now on (the log admitted or revoked robots): robots no longer members
   * are hung up on and refused; new ones are dialled once their addresses are known.
   */
  setMembers(peers: Iterable<string>): Promise<{ added: string[]; removed: string[] }>;
  stop(): Promise<void>;
}

export async function createMeshHost(options: MeshOptions): Promise<MeshHost> {
  const self = options.identity.peerId.toString();
  const gater = new FleetGater(options.members, self);
  const bounded = options.degree !== undefined && new Set(options.members).size - 1 > options.degree;
  // Gossip mesh degree sized to the connections a robot has (gossipsub's defaults, D = 6 of up
  // to 12, assume more peers than a bounded robot keeps).
  const D = bounded ? Math.max(3, Math.min(6, options.degree! - 3)) : undefined;
  // ~1 s of the expected link per stream window (default 512 KiB, i.e. a 4 Mbit/s radio): a
  // bigger window lets a tensor queue seconds ahead of the connection monitor's pings. Yamux
  // refuses windows under its initial 256 KiB (every stream would fail), so that is the floor:
  // ~2 s of a 1 Mbit/s link, well inside the monitor's 10 s ping timeout.
  const window = Math.max(256 * 1024, Math.min(16 * 1024 * 1024, options.linkBytesPerSecond ?? 512 * 1024));
  const node = (await createLibp2p({
    // With DEBUG set, libp2p's own logger.
    ...(process.env.DEBUG ? {} : { logger: silentLogger }),
    privateKey: options.identity.privateKey,
    addresses: { listen: options.listen ?? ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux({ streamOptions: { maxStreamWindowSize: window, initialStreamWindowSize: 256 * 1024 } })],
    connectionGater: gater,
    // The only layer that sees the raw connection: its writes are batched per tick (corked-writes.ts),
    // and the scenario's link shaping, if any, wraps it.
    connectionProtector: () => {
      const shaper = options.linkShaper?.protector();
      return {
        protect: async (connection, opts) => {
          corkWrites(connection);
          return shaper ? shaper.protect(connection, opts) : connection;
        },
      };
    },
    // A robot link stalls for seconds at a time; only a long silence means the peer is gone.
    // The interval must exceed the longest timeout: the monitor allows one ping stream, and a
    // second ping started while the first waits behind a tensor aborts the whole connection.
    connectionMonitor: { pingInterval: 15_000, pingTimeout: { minTimeout: 10_000, maxTimeout: 14_000 } },
    connectionManager: {
      maxConnections: 300,
      // Fleet peers come back through our redial loop, paced. libp2p's reconnect queue re-dials a
      // keep-alive peer the moment it disconnects, and a peer that refuses us after the handshake
      // (it cut us off) looks like a dial that succeeded: a tight loop of ~30 handshakes a second
      // per peer (measured in bench:hostile). Our tag is therefore not a keep-alive one.
      reconnectRetries: 0,
      // Connections from this machine skip libp2p's per-IP inbound rate limit (5 a second) and
      // pending-handshake cap (10): robots sharing a host all come from 127.0.0.1, and a fleet
      // of dozens reconnecting at once after a heal exceeds both. The gater still admits members only.
      allow: ['/ip4/127.0.0.0/ipcidr/8'],
      // Strangers open connections and never finish the handshake: more pending slots (libp2p
      // keeps 10), held for a shorter while (10 s; a noise handshake on a radio link takes well
      // under a second), and at most HANDSHAKES_PER_ADDRESS of them per address (gater.ts).
      maxIncomingPendingConnections: 64,
      inboundUpgradeTimeout: 4000,
    },
    peerDiscovery: [
      ...(options.mdns ? [mdns({ interval: 2000 })] : []),
      // The bootstrap module dials its whole list; a bounded robot dials only its neighbours (redial loop).
      ...(options.bootstrap?.length && !bounded ? [bootstrap({ list: options.bootstrap, timeout: 100 })] : []),
    ],
    services: {
      identify: identify(),
      ping: ping(),
      pubsub: gossipsub({
        // Every message we gossip is signed by its author inside the payload (log entries,
        // tiles through their entries, adverts, IOTA transactions): gossipsub's own signature
        // would be a second Ed25519 sign and verify per message, the largest CPU cost of a
        // 25-robot fleet (measured). Message ids are then content hashes.
        globalSignaturePolicy: 'StrictNoSign',
        allowPublishToZeroTopicPeers: true,
        emitSelf: false,
        fallbackToFloodsub: false,
        maxInboundDataLength: 1024 * 1024,
        heartbeatInterval: bounded ? 1000 : 500,
        ...(D ? { D, Dlo: D - 1, Dhi: 2 * D, Dout: 1, Dlazy: D, Dscore: Math.min(D - 1, 4) } : {}),
        // IDONTWANT costs a control message to every mesh peer per message received; ours are small.
        idontwantMinDataSize: 16 * 1024,
        allowedTopics: options.topics,
        scoreParams: {
          // Every test robot shares 127.0.0.1; colocation is no sign of a Sybil here.
          IPColocationFactorThreshold: 1000,
          IPColocationFactorWeight: 0,
          // A message our validators Reject costs its sender dearly: liars get graylisted.
          topics: Object.fromEntries(
            (options.topics ?? []).map((t) => [
              t,
              createTopicScoreParams({
                topicWeight: 1,
                // Time in mesh earns at most +1 (the default quantum of 1 ms let it swamp everything).
                timeInMeshWeight: 0.1,
                timeInMeshQuantum: 1000,
                timeInMeshCap: 10,
                firstMessageDeliveriesWeight: 1,
                firstMessageDeliveriesCap: 5,
                // No mesh-delivery quota (P3/P3b): the defaults expect ≥ 20 messages per window from
                // every mesh peer, and our topics are quiet (an advert a second, log entries as they
                // come), so honest robots were penalised quadratically and graylisted.
                meshMessageDeliveriesWeight: 0,
                meshFailurePenaltyWeight: 0,
                invalidMessageDeliveriesWeight: -100,
                invalidMessageDeliveriesDecay: 0.9,
              }),
            ]),
          ),
        },
      }),
    },
  })) as unknown as MeshNode;

  const known = new Map<string, string[]>();
  const tagFleet = async (peer: string): Promise<void> => {
    await node.peerStore.merge(peerIdFromString(peer), { tags: { 'robomesh-fleet': { value: 100 } } });
  };
  /** Bootstrap addresses by PeerId: a robot the log admits later is dialled there too. */
  const bootstrapAddrs = new Map<string, string[]>();
  for (const addr of options.bootstrap ?? []) {
    const ma = multiaddr(addr);
    const id = ma.getComponents().find((c) => c.name === 'p2p')?.value;
    if (id) bootstrapAddrs.set(id, [...(bootstrapAddrs.get(id) ?? []), addr]);
  }
  for (const [id, addrs] of bootstrapAddrs) if (gater.isMember(id)) known.set(id, addrs);

  let stopped = false;
  let redialTimer: NodeJS.Timeout | undefined;
  const redialMs = options.redialMs ?? 1000;
  const dialing = new Set<string>();
  const dial = async (peer: string): Promise<void> => {
    const addrs = known.get(peer);
    if (!addrs || dialing.has(peer) || stopped) return;
    dialing.add(peer);
    try {
      await node.dial(
        addrs.map((a) => multiaddr(a)),
        { signal: AbortSignal.timeout(3000) },
      );
      await tagFleet(peer);
    } catch {
      // unreachable now: the redial loop tries again, for as long as the partition lasts
    } finally {
      dialing.delete(peer);
    }
  };
  const connectedNow = (): Set<string> => new Set(node.getConnections().map((c) => c.remotePeer.toString()));
  /** Members to be connected to now: our neighbours (bounded), else every member known. */
  const wanted = (): Set<string> => (bounded ? gater.neighbours(options.degree!) : new Set(known.keys()));
  // Of two bounded neighbours, the one later in the fleet's order dials (two dials at once would
  // leave two connections); the earlier one dials only if that has not come after a few rounds
  // (it may not know our address, or we may be down).
  const unansweredSince = new Map<string, number>();
  const dialsFirst = (peer: string): boolean => !bounded || gater.rank(self) > gater.rank(peer);
  const redial = async (): Promise<void> => {
    if (stopped) return;
    const connected = connectedNow();
    const now = Date.now();
    const targets = [...wanted()].filter((peer) => !connected.has(peer) && known.has(peer) && gater.admits(peer));
    for (const peer of unansweredSince.keys()) if (!targets.includes(peer)) unansweredSince.delete(peer);
    await Promise.all(
      targets
        .filter((peer) => {
          if (dialsFirst(peer)) return true;
          const since = unansweredSince.get(peer) ?? now;
          unansweredSince.set(peer, since);
          return now - since >= 3 * redialMs;
        })
        .map(dial),
    );
    if (!stopped) redialTimer = setTimeout(() => void redial(), redialMs);
  };

  if (options.linkShaper) {
    const shaper = options.linkShaper;
    node.addEventListener('connection:open', (evt) =>
      shaper.bind(evt.detail.remoteAddr, evt.detail.remotePeer.toString()),
    );
  }
  node.addEventListener('peer:connect', (evt) => {
    const peer = evt.detail.toString();
    if (gater.isMember(peer))
      void tagFleet(peer).catch((err) => meshLog('tagging %s: %s', peer, (err as Error).message));
  });
  // mDNS only tells libp2p where a peer is (libp2p 3 dials nothing by itself): dial fleet members
  // found that way, and remember them so the redial loop brings them back after a partition.
  // Both robots hear each other: only the lower PeerId dials at once (two dials at the same
  // moment leave two connections); the other one's redial loop dials if that never comes. A
  // bounded robot dials only its neighbours, by the fleet's order (see dialsFirst).
  // Anyone else announcing itself is left alone (and the gater refuses it if it dials us).
  node.addEventListener('peer:discovery', (evt) => {
    const peer = evt.detail.id.toString();
    if (!gater.isMember(peer) || peer === self || evt.detail.multiaddrs.length === 0) return;
    if (!known.has(peer))
      known.set(
        peer,
        evt.detail.multiaddrs.map((a) => `${a.toString()}/p2p/${peer}`),
      );
    if (bounded ? !wanted().has(peer) || !dialsFirst(peer) : self > peer) return;
    if (stopped || !gater.admits(peer) || node.getConnections(evt.detail.id).length > 0) return;
    void node
      .dial(evt.detail.id, { signal: AbortSignal.timeout(3000) })
      .then(() => tagFleet(peer))
      .catch((err) =>
        meshLog('dialling %s found by mDNS: %s (the redial loop tries again)', peer, (err as Error).message),
      );
  });
  node.addEventListener('peer:identify', (evt) => {
    const peer = evt.detail.peerId.toString();
    if (!gater.isMember(peer)) return;
    const addrs = evt.detail.listenAddrs.map((a) => `${a.toString()}/p2p/${peer}`);
    if (addrs.length) known.set(peer, addrs);
  });

  await node.start();
  void redial();

  return {
    node,
    gater,
    peerId: self,
    addresses: () => node.getMultiaddrs().map((a) => a.toString()),
    connectedPeers: () =>
      [...new Set(node.getConnections().map((c) => c.remotePeer.toString()))].filter((p) => gater.isMember(p)),
    async partition(peers) {
      gater.partition(peers);
      // Already gone is what a partition wants: nothing to report.
      await Promise.allSettled(peers.map((p) => node.hangUp(peerIdFromString(p))));
    },
    heal(peers) {
      gater.heal(peers);
      // Our own refusal lifted: dial the healed peers now rather than at the loop's next round,
      // outside the loop (which keeps its own pace, one round at a time).
      const healed = peers ? new Set(peers) : undefined;
      const connected = connectedNow();
      for (const peer of wanted()) {
        if ((!healed || healed.has(peer)) && !connected.has(peer) && gater.admits(peer) && dialsFirst(peer))
          void dial(peer);
      }
    },
    async addPeerAddresses(peer, addrs) {
      if (gater.isMember(peer)) known.set(peer, addrs);
    },
    async setMembers(peers) {
      const change = gater.setMembers([...peers, self]);
      for (const peer of change.added) {
        const addrs = bootstrapAddrs.get(peer);
        if (addrs && !known.has(peer)) known.set(peer, addrs);
      }
      for (const peer of change.removed) {
        known.delete(peer);
        unansweredSince.delete(peer);
      }
      // Gone already is what a revocation wants: nothing to report.
      await Promise.allSettled(change.removed.map((p) => node.hangUp(peerIdFromString(p))));
      return change;
    },
    async stop() {
      stopped = true;
      clearTimeout(redialTimer);
      await node.stop();
    },
  };
}
