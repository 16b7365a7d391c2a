import { TopicValidatorResult } from '@libp2p/gossipsub';
import type { Stream } from '@libp2p/interface';
import { peerIdFromString } from '@libp2p/peer-id';
import { lpStream } from '@libp2p/utils';
import * as cbor from '@ipld/dag-cbor';
import { EntryError, type Hex, MAX_ENTRY_BYTES } from '../../protocol/log-entry.js';
import type { MeshNode } from '../mesh/host.js';
import { type Ledger, MissingParentsError } from './ledger.js';
import { MAX_REPLY_BYTES, type PullResult, type RangesReply, type SyncPeer, pullFrom, servedRanges } from './sync.js';

export const LOG_PROTOCOL = '/robomesh/log/2.0.0';
export const logTopic = (fleet: string): string => `robomesh/${fleet}/log/2`;
const BATCH = 4096;
const MAX_MESSAGE = MAX_REPLY_BYTES + MAX_ENTRY_BYTES + BATCH * 64 + 1024;

type Request =
  | { t: 'summary' }
  | { t: 'ranges'; want: { author: Hex; lo: number; hi: number }[]; limit: number };

/**
 * Replicates a ledger over the mesh: every entry is published on gossipsub as it is appended;
 * receivers check it like any ingestion (invalid → Reject, so the sender's gossip score
 * falls). Gossip during a partition is lost, so on every (re)connection — and every
 * `antiEntropyMs` with a random peer — the robots reconcile over `/robomesh/log/2.0.0`.
 */
export class LogReplicator {
  private timer: NodeJS.Timeout | undefined;
  private readonly syncing = new Map<string, Promise<PullResult>>();
  rejected = 0;
  /** Bytes of our own entries published on gossip (one copy; gossipsub's fan-out not counted). */
  bytesPublished = 0;

  constructor(
    private readonly node: MeshNode,
    private readonly ledger: Ledger,
    private readonly fleet: string,
    private readonly isMember: (peer: string) => boolean,
    private readonly antiEntropyMs = 5000,
  ) {}

  async start(): Promise<void> {
    const topic = logTopic(this.fleet);
    const pubsub = this.node.services.pubsub;
    pubsub.topicValidators.set(topic, (relayer, msg) => {
      try {
        // A held entry is not forwarded: a copy carrying some other signature must not travel
        // on to robots that would blame the honest relayer for it.
        return this.ledger.ingest(msg.data) === 'duplicate' ? TopicValidatorResult.Ignore : TopicValidatorResult.Accept;
      } catch (err) {
        if (err instanceof MissingParentsError) {
          void this.syncWith(relayer.toString()).catch(() => undefined);
          return TopicValidatorResult.Ignore;
        }
        if (err instanceof EntryError) {
          this.rejected++;
          return TopicValidatorResult.Reject;
        }
        return TopicValidatorResult.Ignore;
      }
    });
    pubsub.subscribe(topic);
    this.ledger.on('entry', (d) => {
      if (this.ledger.self && d.entry.author && Buffer.from(d.entry.author).toString('hex') === this.ledger.self) {
        // Alone (partitioned): nobody to tell; anti-entropy hands it over on reconnection. Skipping
        // saves gossipsub's per-message signature on every entry written while cut off.
        if (pubsub.getSubscribers(topic).length === 0) return;
        this.bytesPublished += d.bytes.length;
        void pubsub.publish(topic, d.bytes).catch(() => undefined);
      }
    });
    await this.node.handle(LOG_PROTOCOL, (stream, connection) => void this.serve(stream, connection.remotePeer.toString()), { maxInboundStreams: 8 });
    this.node.addEventListener('peer:connect', (evt) => {
      const peer = evt.detail.toString();
      if (this.isMember(peer)) setTimeout(() => void this.syncWith(peer).catch(() => undefined), 50);
    });
    const tick = (): void => {
      const peers = this.node.getPeers().map((p) => p.toString()).filter((p) => this.isMember(p));
      if (peers.length) void this.syncWith(peers[Math.floor(Math.random() * peers.length)]).catch(() => undefined);
      this.timer = setTimeout(tick, this.antiEntropyMs);
    };
    this.timer = setTimeout(tick, this.antiEntropyMs);
  }

  stop(): void {
    clearTimeout(this.timer);
  }

  /** Pulls what `peer` has and we lack; one sync per peer at a time. */
  syncWith(peer: string): Promise<PullResult> {
    let running = this.syncing.get(peer);
    if (!running) {
      running = pullFrom(this.ledger, this.remote(peer), BATCH).finally(() => this.syncing.delete(peer));
      this.syncing.set(peer, running);
    }
    return running;
  }

  private remote(peer: string): SyncPeer {
    const ask = async <T>(req: Request): Promise<T> => {
      const stream = await this.node.dialProtocol(peerIdFromString(peer), LOG_PROTOCOL, { signal: AbortSignal.timeout(10_000) });
      const lp = lpStream(stream, { maxDataLength: MAX_MESSAGE, maxBufferSize: 2 * MAX_MESSAGE });
      try {
        await lp.write(cbor.encode(req));
        const reply = cbor.decode((await lp.read({ signal: AbortSignal.timeout(30_000) })).subarray()) as T;
        await stream.close();
        return reply;
      } catch (err) {
        stream.abort(err as Error);
        throw err;
      }
    };
    return {
      summary: async () => new Map(await ask<[Hex, { maxSeq: number; count: number }][]>({ t: 'summary' })),
      ranges: (want, limit) => ask<RangesReply>({ t: 'ranges', want, limit: Math.min(limit, BATCH) }),
    };
  }

  private async serve(stream: Stream, peer: string): Promise<void> {
    const lp = lpStream(stream, { maxDataLength: 256 * 1024 });
    try {
      if (!this.isMember(peer)) throw new Error('not a fleet member');
      const req = cbor.decode((await lp.read({ signal: AbortSignal.timeout(10_000) })).subarray()) as Request;
      let reply: unknown;
      if (req?.t === 'summary') reply = [...this.ledger.summary()];
      else if (req?.t === 'ranges' && Array.isArray(req.want) && req.want.length <= 1024 && Number.isSafeInteger(req.limit)) {
        const valid = req.want.every((w) => typeof w?.author === 'string' && Number.isSafeInteger(w.lo) && Number.isSafeInteger(w.hi));
        if (!valid) throw new Error('malformed log request');
        reply = servedRanges(this.ledger, req.want, Math.min(req.limit, BATCH));
      } else throw new Error('malformed log request');
      await lp.write(cbor.encode(reply));
      await stream.close();
    } catch (err) {
      stream.abort(err as Error);
    }
  }
}
