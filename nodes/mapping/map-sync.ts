import type { GossipsubMessage } from '@libp2p/gossipsub';
import type { PeerId, Stream } from '@libp2p/interface';
import { peerIdFromString } from '@libp2p/peer-id';
import { lpStream } from '@libp2p/utils';
import * as cbor from '@ipld/dag-cbor';
import { type DecodedEntry, type Hex, parseEntry } from '../../protocol/log-entry.js';
import { WireError } from '../../protocol/errors.js';
import { LIMITS } from '../../protocol/limits.js';
import { type TileContribution, TileError } from '../../protocol/map-tile.js';
import {
  MAX_TILE_REPLY,
  MAX_TILE_REQUEST,
  TILE_PROTOCOL,
  type TileRequest,
  type WireTile,
  decodeTileReply,
  decodeTileRequest,
  encodeTileReply,
  encodeTileRequest,
  packTile,
  unpackTile,
} from '../../protocol/tile-sync.js';
import { decodeLogGossip, logTopic } from '../../protocol/log-sync.js';
import { type MeshNode, RateLimit, type PeerReputation } from '../mesh/index.js';
import type { Logger, Startable } from '../util/index.js';
import type { MapService, PublishedTile } from './map-service.js';

const MAX_WANT = LIMITS.tiles.maxWant;
/** How long a peer asked for cells it is itself still fetching waits for them before answering. */
const MAX_WAIT_MS = LIMITS.tiles.maxWaitMs;

/** Contributions never change: each is deflated once, however many neighbours ask for it. */
const packed = new WeakMap<TileContribution, WireTile>();

function pack(c: TileContribution): WireTile {
  let w = packed.get(c);
  if (!w) packed.set(c, (w = packTile(c)));
  return w;
}

/**
 * What one contribution costs on the wire: its signed entry (log gossip) and its deflated cells
 * (pulled once per robot).
 */
export const gossipMessage = (p: PublishedTile): Uint8Array => cbor.encode({ ...pack(p.contribution), e: p.entry });

/**
 * Moves map contributions over the mesh. A contribution's signed tile entry travels with the
 * log (gossiped with the round's other entries, one message); its cells travel once per robot:
 * whoever receives the log gossip naming them asks the neighbour that relayed it, over
 * `/robomesh/tiles/3.0.0`, and that neighbour answers as soon as it holds them (it may still be
 * fetching them itself), so cells follow the gossip tree hop by hop instead of being flooded to
 * every mesh peer. Gossip during a partition is lost, so robots also pull every contribution
 * the (reconciled) log names and they lack, from their neighbours in turn — on connect, soon
 * after log sync brings such entries, and every `syncMs`. Cells are content-addressed: whoever
 * serves them, they must hash to the signed digest.
 */
export interface MapSyncComponents {
  node: MeshNode;
  map: MapService;
  isMember: (peer: string) => boolean;
  /** Where malformed tile messages and floods cost the sender (and become evidence). */
  reputation?: PeerReputation;
  logger: Logger;
}

export class MapSync implements Startable {
  private timer: NodeJS.Timeout | undefined;
  private readonly node: MeshNode;
  private readonly service: MapService;
  private readonly isMember: (peer: string) => boolean;
  private readonly fleet: string;
  private readonly syncMs: number;
  private readonly log: Logger;
  private stopped = false;
  rejected = 0;
  /** Contributions fetched by pull (every contribution that is not our own arrives this way). */
  pulled = 0;
  bytesOut = 0;
  bytesIn = 0;
  /** Digests named by log gossip, per relaying neighbour, not requested yet. */
  private readonly wants = new Map<string, Set<Hex>>();
  /** Neighbours with a request for gossiped cells under way. */
  private readonly asking = new Set<string>();
  /** Digests requested from someone now (not asked of a second neighbour meanwhile). */
  private readonly inFlight = new Set<Hex>();
  /** Tile entries that arrived lately: their cells are looked for unless gossip already asked a relayer. */
  private readonly arrived = new Set<Hex>();
  private arrivedTimer: NodeJS.Timeout | undefined;

  private readonly rate = new RateLimit(LIMITS.tiles.requestsPerSecond, LIMITS.tiles.burst);
  private readonly reputation: PeerReputation | undefined;

  constructor(components: MapSyncComponents, init: { fleet: string; syncMs?: number }) {
    this.reputation = components.reputation;
    this.node = components.node;
    this.service = components.map;
    this.isMember = components.isMember;
    this.log = components.logger;
    this.fleet = init.fleet;
    this.syncMs = init.syncMs ?? 2000;
  }

  /** A pull nobody waits for: a failure (the neighbour went away) is logged; the tick retries. */
  private pullInBackground(peer: string): Promise<number> {
    return this.pull(peer).catch((err) => {
      this.log('tile pull from %s failed: %s', peer, (err as Error).message);
      return 0;
    });
  }

  private readonly onConnect = (evt: CustomEvent<PeerId>): void => {
    const peer = evt.detail.toString();
    if (this.isMember(peer)) setTimeout(() => void this.pullInBackground(peer), 100);
  };

  private readonly onGossip = (evt: CustomEvent<GossipsubMessage>): void => {
    const log = logTopic(this.fleet);
    const { propagationSource, msg } = evt.detail;
    if (msg.topic !== log) return;
    const digests: Hex[] = [];
    try {
      for (const bytes of decodeLogGossip(msg.data)) {
        const d = parseEntry(bytes);
        const p = d.entry.payload;
        // The log's validator has just checked and stored what it could of this message.
        if (p.type === 'tile' && this.service.ledger.has(d.idHex)) {
          this.service.vouch(p.digest);
          digests.push(p.digest);
        }
      }
    } catch {
      return; // the log's validator rejected this message already (and penalised its sender)
    }
    if (digests.length) this.want(propagationSource.toString(), digests);
  };

  private onEntry: ((d: DecodedEntry) => void) | undefined;

  async start(): Promise<void> {
    this.node.services.pubsub.addEventListener('gossipsub:message', this.onGossip);
    await this.node.handle(
      TILE_PROTOCOL,
      (stream, connection) => void this.serve(stream, connection.remotePeer.toString()),
      { maxInboundStreams: LIMITS.tiles.streamsPerPeer },
    );
    this.node.addEventListener('peer:connect', this.onConnect);
    let running = false;
    const tick = async (): Promise<void> => {
      if (running || this.stopped) return;
      running = true;
      clearTimeout(this.timer);
      // Keep pulling while it helps (a heal can leave hundreds missing): every neighbour once, in
      // random order, as long as something is missing.
      const peers = this.node
        .getPeers()
        .map((p) => p.toString())
        .filter((p) => this.isMember(p))
        .sort(() => Math.random() - 0.5);
      for (const peer of peers) {
        if (this.stopped || this.service.missing().length === 0) break;
        await this.pullInBackground(peer);
      }
      running = false;
      if (!this.stopped) this.timer = setTimeout(() => void tick(), this.syncMs);
    };
    this.timer = setTimeout(() => void tick(), this.syncMs);
    // A tile entry arriving by log sync (not gossip) names cells we lack: fetch them soon. Gossip
    // delivers its entries just before naming their relayer, so the check waits a moment.
    this.onEntry = (d) => {
      const p = d.entry.payload;
      if (p.type !== 'tile' || this.service.has(p.digest)) return;
      this.arrived.add(p.digest);
      this.arrivedTimer ??= setTimeout(() => {
        this.arrivedTimer = undefined;
        const lacking = [...this.arrived].some((dg) => !this.service.has(dg) && !this.inFlight.has(dg));
        this.arrived.clear();
        if (lacking && !running && !this.stopped) {
          clearTimeout(this.timer);
          this.timer = setTimeout(() => void tick(), 100);
        }
      }, 100);
    };
    this.service.ledger.on('entry', this.onEntry);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    clearTimeout(this.arrivedTimer);
    this.node.services.pubsub.removeEventListener('gossipsub:message', this.onGossip);
    this.node.removeEventListener('peer:connect', this.onConnect);
    if (this.onEntry) this.service.ledger.off('entry', this.onEntry);
    await this.node.unhandle(TILE_PROTOCOL);
  }

  /** Queues digests we lack for the neighbour that relayed their entries; one request per neighbour at a time. */
  private want(peer: string, digests: Hex[]): void {
    const list = digests.filter((d) => !this.service.has(d) && !this.inFlight.has(d));
    if (list.length === 0) return;
    let set = this.wants.get(peer);
    if (!set) this.wants.set(peer, (set = new Set()));
    for (const d of list) set.add(d);
    if (!this.asking.has(peer)) {
      this.asking.add(peer);
      // Gossip arriving together (a fleet publishes in waves) shares one request.
      setTimeout(() => void this.askAnnounced(peer), 20);
    }
  }

  private async askAnnounced(peer: string): Promise<void> {
    try {
      for (;;) {
        const set = this.wants.get(peer);
        this.wants.delete(peer);
        const list = [...(set ?? [])].filter((d) => !this.service.has(d) && !this.inFlight.has(d)).slice(0, MAX_WANT);
        if (this.stopped || list.length === 0) return;
        for (const d of list) this.inFlight.add(d);
        try {
          await this.request(peer, list, MAX_WAIT_MS);
        } catch {
          // gone or slow: the periodic pull fetches what is still missing from someone else
        } finally {
          for (const d of list) this.inFlight.delete(d);
        }
      }
    } finally {
      this.asking.delete(peer);
    }
  }

  /**
   * Fetches up to 256 missing contributions (a random share when more are missing) from `peer`;
   * returns how many it gave.
   */
  async pull(peer: string): Promise<number> {
    // A random share of what is missing: after a heal a neighbour holds only some of it, and
    // asking every neighbour for the same first 256 would stall on cells none of them has yet.
    const missing = this.service.missing().filter((d) => !this.inFlight.has(d));
    for (let i = missing.length - 1; i > 0 && missing.length > MAX_WANT; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [missing[i], missing[j]] = [missing[j], missing[i]];
    }
    const want = missing.slice(0, MAX_WANT);
    if (want.length === 0) return 0;
    return this.request(peer, want, 0);
  }

  private async request(peer: string, want: Hex[], waitMs: number): Promise<number> {
    const stream = await this.node.dialProtocol(peerIdFromString(peer), TILE_PROTOCOL, {
      signal: AbortSignal.timeout(10_000),
    });
    const lp = lpStream(stream, { maxDataLength: MAX_TILE_REPLY });
    try {
      await lp.write(encodeTileRequest({ want, wait: waitMs }));
      const reply = (await lp.read({ signal: AbortSignal.timeout(30_000 + waitMs) })).subarray();
      this.bytesIn += reply.length;
      await stream.close();
      let tiles: WireTile[];
      try {
        tiles = decodeTileReply(reply);
      } catch (err) {
        if (err instanceof WireError) this.reputation?.penalise(peer, `tile sync: ${err.message}`, 5, 'malformed');
        throw err;
      }
      let got = 0;
      for (const w of tiles) {
        try {
          const held = this.service.get(this.service.accept(undefined, unpackTile(w)));
          // Served on as received: relaying cells costs no second deflate.
          if (held && !packed.has(held)) packed.set(held, w);
          got++;
          this.pulled++;
        } catch (err) {
          if (!(err instanceof TileError)) throw err;
          this.rejected++;
        }
      }
      return got;
    } catch (err) {
      stream.abort(err as Error);
      throw err;
    }
  }

  private async serve(stream: Stream, peer: string): Promise<void> {
    const lp = lpStream(stream, { maxDataLength: MAX_TILE_REQUEST });
    try {
      if (!this.isMember(peer)) throw new Error('not a fleet member');
      if (!this.rate.take(peer)) {
        this.reputation?.penalise(
          peer,
          `tile sync: more than ${LIMITS.tiles.requestsPerSecond} requests a second`,
          5,
          'flood',
        );
        throw new Error('tile requests past the rate limit');
      }
      let req: TileRequest;
      try {
        req = decodeTileRequest(
          (await lp.read({ signal: AbortSignal.timeout(LIMITS.tiles.readTimeoutMs) })).subarray(),
        );
      } catch (err) {
        if (err instanceof WireError) this.reputation?.penalise(peer, `tile sync: ${err.message}`, 5, 'malformed');
        throw err;
      }
      const want = req.want;
      // Asked for cells we heard of but are still fetching: answer once they are here.
      const wait = req.wait;
      if (wait > 0) await this.service.waitFor(want, wait);
      const out = want
        .map((d) => this.service.get(d))
        .filter((c): c is TileContribution => c !== undefined)
        .map(pack);
      const data = encodeTileReply(out);
      this.bytesOut += data.length;
      await lp.write(data);
      await stream.close();
    } catch (err) {
      stream.abort(err as Error);
    }
  }
}
