import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { TopicValidatorResult } from '@libp2p/gossipsub';
import type { Stream } from '@libp2p/interface';
import { peerIdFromString } from '@libp2p/peer-id';
import { lpStream } from '@libp2p/utils';
import * as cbor from '@ipld/dag-cbor';
import { EntryError, type Hex } from '../../protocol/log-entry.js';
import { TILE, type TileContribution, TileError } from '../../protocol/map-tile.js';
import type { MeshNode } from '../mesh/host.js';
import type { MapService, PublishedTile } from './map-service.js';

export const TILE_PROTOCOL = '/robomesh/tiles/2.0.0';
export const tileTopic = (fleet: string): string => `robomesh/${fleet}/tiles/2`;
const MAX_WANT = 256;
const MAX_CELLS = TILE * TILE;

interface WireTile {
  t: string;
  v: number;
  c: Uint8Array;
}

const pack = (c: TileContribution): WireTile => ({ t: c.tile, v: c.version, c: deflateRawSync(new Uint8Array(c.cells.buffer, c.cells.byteOffset, c.cells.byteLength)) });

function unpack(w: WireTile): TileContribution {
  if (typeof w?.t !== 'string' || !Number.isSafeInteger(w.v) || !(w.c instanceof Uint8Array)) throw new TileError('BAD_TILE', 'malformed tile message');
  let raw: Buffer;
  try {
    raw = inflateRawSync(w.c, { maxOutputLength: MAX_CELLS });
  } catch (err) {
    throw new TileError('BAD_TILE', `tile cells do not inflate: ${(err as Error).message}`);
  }
  return { tile: w.t, version: w.v, cells: new Int8Array(raw.buffer, raw.byteOffset, raw.byteLength) };
}

/** The gossip message for one new contribution: its signed entry and its deflated cells. */
export const gossipMessage = (p: PublishedTile): Uint8Array => cbor.encode({ ...pack(p.contribution), e: p.entry });

/**
 * Moves map contributions over the mesh: each new version is gossiped with its signed log
 * entry; gossip during a partition is lost, so robots also pull, over `/robomesh/tiles/2.0.0`,
 * every contribution the (reconciled) log names and they lack — on connect and every `syncMs`.
 * Cells are content-addressed: whoever serves them, they must hash to the signed digest.
 */
export class MapSync {
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  rejected = 0;
  /** Contributions fetched by pull (missed gossip: partitions, late joiners). */
  pulled = 0;
  bytesOut = 0;
  bytesIn = 0;

  constructor(
    private readonly node: MeshNode,
    private readonly service: MapService,
    private readonly fleet: string,
    private readonly isMember: (peer: string) => boolean,
    private readonly syncMs = 2000,
  ) {}

  async start(): Promise<void> {
    const topic = tileTopic(this.fleet);
    const pubsub = this.node.services.pubsub;
    pubsub.topicValidators.set(topic, (_from, msg) => {
      try {
        const m = cbor.decode(msg.data) as WireTile & { e: Uint8Array };
        if (!(m?.e instanceof Uint8Array)) throw new TileError('BAD_TILE', 'tile message without its entry');
        this.bytesIn += msg.data.length;
        this.service.accept(m.e, unpack(m));
        return TopicValidatorResult.Accept;
      } catch (err) {
        if (err instanceof TileError || err instanceof EntryError) {
          this.rejected++;
          return TopicValidatorResult.Reject;
        }
        return TopicValidatorResult.Ignore;
      }
    });
    pubsub.subscribe(topic);
    this.service.on('published', (list) => void this.gossip(list));
    await this.node.handle(TILE_PROTOCOL, (stream, connection) => void this.serve(stream, connection.remotePeer.toString()), { maxInboundStreams: 8 });
    this.node.addEventListener('peer:connect', (evt) => {
      const peer = evt.detail.toString();
      if (this.isMember(peer)) setTimeout(() => void this.pull(peer).catch(() => undefined), 100);
    });
    let running = false;
    const tick = async (): Promise<void> => {
      if (running || this.stopped) return;
      running = true;
      clearTimeout(this.timer);
      // Keep pulling while it helps (a heal can leave hundreds missing), from random peers.
      for (let round = 0; round < 16 && this.service.missing().length; round++) {
        const peers = this.node.getPeers().map((p) => p.toString()).filter((p) => this.isMember(p));
        if (peers.length === 0) break;
        const got = await this.pull(peers[Math.floor(Math.random() * peers.length)]).catch(() => 0);
        if (got === 0 && round > 2) break;
      }
      running = false;
      if (!this.stopped) this.timer = setTimeout(() => void tick(), this.syncMs);
    };
    this.timer = setTimeout(() => void tick(), this.syncMs);
    // A tile entry arriving by log sync (not gossip) names cells we lack: fetch them soon.
    this.service.ledger.on('entry', (d) => {
      const p = d.entry.payload;
      if (p.type === 'tile' && !this.service.has(p.digest) && !running) {
        clearTimeout(this.timer);
        this.timer = setTimeout(() => void tick(), 200);
      }
    });
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  private async gossip(list: PublishedTile[]): Promise<void> {
    for (const p of list) {
      const data = gossipMessage(p);
      this.bytesOut += data.length;
      await this.node.services.pubsub.publish(tileTopic(this.fleet), data).catch(() => undefined);
    }
  }

  /** Fetches up to 256 missing contributions from `peer`; returns how many it gave. */
  async pull(peer: string): Promise<number> {
    const want = this.service.missing().slice(0, MAX_WANT);
    if (want.length === 0) return 0;
    const stream = await this.node.dialProtocol(peerIdFromString(peer), TILE_PROTOCOL, { signal: AbortSignal.timeout(10_000) });
    const lp = lpStream(stream, { maxDataLength: MAX_WANT * (MAX_CELLS + 256) });
    try {
      await lp.write(cbor.encode({ want }));
      const reply = (await lp.read({ signal: AbortSignal.timeout(30_000) })).subarray();
      this.bytesIn += reply.length;
      await stream.close();
      let got = 0;
      for (const w of cbor.decode(reply) as WireTile[]) {
        try {
          this.service.accept(undefined, unpack(w));
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
    const lp = lpStream(stream, { maxDataLength: MAX_WANT * 70 + 64 });
    try {
      if (!this.isMember(peer)) throw new Error('not a fleet member');
      const req = cbor.decode((await lp.read({ signal: AbortSignal.timeout(10_000) })).subarray()) as { want?: unknown };
      if (!Array.isArray(req?.want) || req.want.length > MAX_WANT) throw new Error('malformed tile request');
      const out = (req.want as Hex[]).map((d) => this.service.get(d)).filter((c): c is TileContribution => c !== undefined).map(pack);
      const data = cbor.encode(out);
      this.bytesOut += data.length;
      await lp.write(data);
      await stream.close();
    } catch (err) {
      stream.abort(err as Error);
    }
  }
}
