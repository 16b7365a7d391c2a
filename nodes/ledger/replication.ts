import { TopicValidatorResult } from '@libp2p/gossipsub';
import type { PeerId, Stream } from '@libp2p/interface';
import { peerIdFromString } from '@libp2p/peer-id';
import { lpStream } from '@libp2p/utils';
import * as cbor from '@ipld/dag-cbor';
import { WireError } from '../../protocol/errors.js';
import { LIMITS } from '../../protocol/limits.js';
import { type DecodedEntry, EntryError } from '../../protocol/log-entry.js';
import {
  LOG_PROTOCOL,
  MAX_REPLY_MESSAGE,
  MAX_REQUEST_BYTES,
  type SyncRequest,
  decodeLogGossip,
  decodeRangesReply,
  decodeSummary,
  decodeSyncRequest,
  encodeRangesReply,
  encodeSummary,
  encodeSyncRequest,
  logTopic,
  packLogGossip,
} from '../../protocol/log-sync.js';
import { BytePacer, type MeshNode, RateLimit, type PeerReputation } from '../mesh/index.js';
import type { Logger, Startable } from '../util/index.js';
import { type Ledger, MissingParentsError } from './ledger.js';
import { type PullResult, type SyncPeer, pullFrom, servedRanges, servedStart } from './sync.js';

const BATCH = LIMITS.log.maxBatch;

/**
 * Replicates a ledger over the mesh: every entry is published on gossipsub as it is appended;
 * receivers check it like any ingestion (invalid → Reject, so the sender's gossip score
 * falls). Gossip during a partition is lost, so on every (re)connection — and every
 * `antiEntropyMs` with a random peer — the robots reconcile over `/robomesh/log/4.0.0`.
 * What a robot learns by sync it tells its other peers about (`news`), and they pull it at once:
 * after a heal, entries cross a bounded mesh at the speed of its links rather than one
 * anti-entropy period per hop. Robots that add nothing tell no one, so the wave stops.
 */
export interface LogReplicatorComponents {
  node: MeshNode;
  ledger: Ledger;
  /** Whether a peer is a fleet member now (only members are synced with). */
  isMember: (peer: string) => boolean;
  /** Where malformed sync messages and floods cost the sender (and become evidence). */
  reputation?: PeerReputation;
  logger: Logger;
}

export interface LogReplicatorInit {
  fleet: string;
  /** A sync with a random member this often (default 5 s), besides every (re)connection. */
  antiEntropyMs?: number;
}

export class LogReplicator implements Startable {
  private timer: NodeJS.Timeout | undefined;
  private readonly node: MeshNode;
  private readonly ledger: Ledger;
  private readonly fleet: string;
  private readonly isMember: (peer: string) => boolean;
  private readonly antiEntropyMs: number;
  private readonly log: Logger;
  private readonly syncing = new Map<string, Promise<PullResult>>();
  rejected = 0;
  /** Bytes of our own entries published on gossip (one copy; gossipsub's fan-out not counted). */
  bytesPublished = 0;
  private readonly outbox: Uint8Array[] = [];
  /** Peers that told us news, pulled from one after another (the first pull fetches most). */
  private readonly newsFrom = new Set<string>();
  private newsPulling = false;

  constructor(
    private readonly components: LogReplicatorComponents,
    init: LogReplicatorInit,
  ) {
    this.node = components.node;
    this.ledger = components.ledger;
    this.isMember = components.isMember;
    this.log = components.logger;
    this.fleet = init.fleet;
    this.antiEntropyMs = init.antiEntropyMs ?? 5000;
  }

  private readonly onEntry = (d: DecodedEntry): void => {
    if (!this.ledger.isOwn(d)) return;
    // Entries appended together (a batch, or within one tick) go out as one message: every
    // gossip message costs a socket write per peer and a yamux window update back.
    this.outbox.push(d.bytes);
    if (this.outbox.length === 1) queueMicrotask(() => this.flush());
  };

  private readonly onConnect = (evt: CustomEvent<PeerId>): void => {
    const peer = evt.detail.toString();
    if (this.isMember(peer)) setImmediate(() => this.syncInBackground(peer));
  };

  /** When each peer's last sync failed: syncs nobody waits for hold off a while after one. */
  private readonly failedAt = new Map<string, number>();

  /** One retry per peer, due when its hold-off ends. */
  private readonly retries = new Map<string, NodeJS.Timeout>();

  /**
   * A sync nobody waits for: its failure (a peer gone mid-way) is logged, a later one retries.
   * After a failure, triggers within the hold-off become one retry when it ends: dropping them
   * left a heal whose first sync failed waiting for the next anti-entropy round (60 s).
   */
  private syncInBackground(peer: string): void {
    const wait = (this.failedAt.get(peer) ?? -Infinity) + LIMITS.log.retryAfterMs - Date.now();
    if (wait > 0) {
      if (!this.retries.has(peer))
        this.retries.set(
          peer,
          setTimeout(() => {
            this.retries.delete(peer);
            if (this.isMember(peer)) this.syncInBackground(peer);
          }, wait),
        );
      return;
    }
    this.syncWith(peer).then(
      () => this.failedAt.delete(peer),
      (err) => {
        this.failedAt.set(peer, Date.now());
        this.log('sync with %s failed: %s', peer, (err as Error).message);
      },
    );
  }

  async start(): Promise<void> {
    const topic = logTopic(this.fleet);
    const pubsub = this.node.services.pubsub;
    pubsub.topicValidators.set(topic, (relayer, msg) => {
      let list: Uint8Array[];
      try {
        list = decodeLogGossip(msg.data);
      } catch (err) {
        if (!(err instanceof WireError)) throw err;
        this.rejected++;
        return TopicValidatorResult.Reject;
      }
      const statuses = this.ledger.ingestBatch(list);
      if (statuses.some((st) => st instanceof EntryError && !(st instanceof MissingParentsError))) {
        this.rejected++;
        return TopicValidatorResult.Reject;
      }
      if (statuses.some((st) => st instanceof MissingParentsError)) this.syncInBackground(relayer.toString());
      // Nothing new (held entries, or some with parents still to come): not forwarded. A held
      // entry's copy may carry another signature, and must not travel on to robots that would
      // blame the honest relayer for it.
      return statuses.some((st) => st === 'added' || st === 'equivocation')
        ? TopicValidatorResult.Accept
        : TopicValidatorResult.Ignore;
    });
    pubsub.subscribe(topic);
    this.ledger.on('entry', this.onEntry);
    await this.node.handle(
      LOG_PROTOCOL,
      (stream, connection) => void this.serve(stream, connection.remotePeer.toString()),
      { maxInboundStreams: LIMITS.log.streamsPerPeer },
    );
    this.node.addEventListener('peer:connect', this.onConnect);
    const tick = (): void => {
      const peers = this.node
        .getPeers()
        .map((p) => p.toString())
        .filter((p) => this.isMember(p));
      if (peers.length) this.syncInBackground(peers[Math.floor(Math.random() * peers.length)]);
      this.timer = setTimeout(tick, this.antiEntropyMs);
    };
    this.timer = setTimeout(tick, this.antiEntropyMs);
  }

  async stop(): Promise<void> {
    clearTimeout(this.timer);
    const pubsub = this.node.services.pubsub;
    pubsub.topicValidators.delete(logTopic(this.fleet));
    pubsub.unsubscribe(logTopic(this.fleet));
    this.ledger.off('entry', this.onEntry);
    this.node.removeEventListener('peer:connect', this.onConnect);
    for (const t of this.retries.values()) clearTimeout(t);
    this.retries.clear();
    await this.node.unhandle(LOG_PROTOCOL);
  }

  private flush(): void {
    const pubsub = this.node.services.pubsub;
    const topic = logTopic(this.fleet);
    const list = this.outbox.splice(0);
    // Alone (partitioned): nobody to tell; anti-entropy hands them over on reconnection.
    if (pubsub.getSubscribers(topic).length === 0) return;
    for (const message of packLogGossip(list)) {
      this.bytesPublished += message.length;
      // A publish that finds no peer in the mesh yet: anti-entropy hands the entries over.
      pubsub.publish(topic, message).catch((err) => this.log('gossip publish failed: %s', (err as Error).message));
    }
  }

  /** Pulls what `peer` has and we lack; one sync per peer at a time. */
  syncWith(peer: string): Promise<PullResult> {
    let running = this.syncing.get(peer);
    if (!running) {
      running = pullFrom(this.ledger, this.remote(peer), BATCH)
        .then((result) => {
          if (result.added > 0) this.tellNews(peer);
          return result;
        })
        .finally(() => this.syncing.delete(peer));
      this.syncing.set(peer, running);
    }
    return running;
  }

  /** Tells every connected member (but `source`) that we hold entries it may lack: each pulls them. */
  tellNews(source?: string): void {
    const peers = new Set(this.node.getPeers().map((p) => p.toString()));
    for (const peer of peers) {
      if (peer === source || !this.isMember(peer)) continue;
      this.ask(peer, { t: 'news' }).catch((err) => this.log('news to %s failed: %s', peer, (err as Error).message));
    }
  }

  private async pullNews(): Promise<void> {
    if (this.newsPulling) return;
    this.newsPulling = true;
    try {
      while (this.newsFrom.size > 0) {
        const [peer] = this.newsFrom;
        this.newsFrom.delete(peer);
        await this.syncWith(peer).catch((err) =>
          this.log('news pull from %s failed: %s', peer, (err as Error).message),
        );
      }
    } finally {
      this.newsPulling = false;
    }
  }

  /** One request on a stream of its own (`news`: the answer says only that it arrived). */
  private async ask(peer: string, req: SyncRequest): Promise<void> {
    const session = this.session(peer);
    try {
      await session.exchange(req, 1);
    } finally {
      session.close();
    }
  }

  /**
   * Requests to `peer` over one stream, opened at the first: each is answered before the next
   * goes out (a sync's `start` and `ranges`; a new stream per request cost a protocol
   * negotiation, a peer-store update and a round trip each, ~4 ms of CPU a side). A reply comes
   * as its messages, each in the pieces the stream delivered it in (a megabyte is not copied whole).
   */
  private session(peer: string): {
    exchange(req: SyncRequest, messages: number): Promise<Uint8Array[][]>;
    close(): void;
  } {
    let opened: Promise<{ stream: Stream; lp: ReturnType<typeof lpStream> }> | undefined;
    /** The exchange before this one: one request at a time on the stream, each reply read whole. */
    let previous: Promise<unknown> = Promise.resolve();
    let done = false;
    const run = async (req: SyncRequest, messages: number): Promise<Uint8Array[][]> => {
      opened ??= this.node
        .dialProtocol(peerIdFromString(peer), LOG_PROTOCOL, { signal: AbortSignal.timeout(10_000) })
        .then((stream) => ({
          stream,
          lp: lpStream(stream, { maxDataLength: MAX_REPLY_MESSAGE, maxBufferSize: 2 * MAX_REPLY_MESSAGE }),
        }));
      const { stream, lp } = await opened;
      try {
        await lp.write(encodeSyncRequest(req));
        const replies: Uint8Array[][] = [];
        const signal = AbortSignal.timeout(LIMITS.log.readTimeoutMs);
        while (replies.length < messages) replies.push([...(await lp.read({ signal }))]);
        return replies;
      } catch (err) {
        done = true;
        stream.abort(err as Error);
        throw err;
      }
    };
    return {
      exchange: (req, messages) => {
        const result = previous.then(
          () => run(req, messages),
          () => run(req, messages),
        );
        // Only the order matters here: the caller of `result` hears its failure.
        previous = result.catch(() => undefined);
        return result;
      },
      close: () => {
        if (done) return;
        done = true;
        opened
          ?.then(({ stream }) => stream.close())
          .catch((err) => this.log('closing the sync stream to %s: %s', peer, (err as Error).message));
      },
    };
  }

  /** A sync with `peer`, on one session stream. */
  private remote(peer: string): SyncPeer {
    const { exchange, close } = this.session(peer);
    return {
      start: async (ours, limit) => {
        const [summary, first] = await this.oversized(
          peer,
          exchange({ t: 'start', have: ours, limit: Math.min(limit, BATCH) }, 2),
        );
        return this.checked(peer, () => ({
          theirs: decodeSummary(summary.length === 1 ? summary[0] : Buffer.concat(summary)),
          first: decodeRangesReply(first),
        }));
      },
      ranges: async (want, limit) => {
        const [reply] = await this.oversized(peer, exchange({ t: 'ranges', want, limit: Math.min(limit, BATCH) }, 1));
        return this.checked(peer, () => decodeRangesReply(reply));
      },
      close,
    };
  }

  /** A reply longer than the protocol allows is as malformed as one that does not decode. */
  private async oversized<T>(peer: string, reply: Promise<T>): Promise<T> {
    try {
      return await reply;
    } catch (err) {
      if ((err as Error).name === 'InvalidDataLengthError')
        this.reputation?.penalise(peer, `log sync: ${(err as Error).message}`, 5, 'malformed');
      throw err;
    }
  }

  private checked<T>(peer: string, decode: () => T): T {
    try {
      return decode();
    } catch (err) {
      if (err instanceof WireError) this.reputation?.penalise(peer, `log sync: ${err.message}`, 5, 'malformed');
      throw err;
    }
  }

  private readonly rate = new RateLimit(LIMITS.log.requestsPerSecond, LIMITS.log.burst);
  /** What a peer makes us read and encode, paced: a catch-up only slows, a flood gets its rate and no more. */
  private readonly replyBytes = new BytePacer(LIMITS.log.replyBytesPerSecond, LIMITS.log.replyBurstBytes);

  private get reputation(): PeerReputation | undefined {
    return this.components.reputation;
  }

  /**
   * Answers a peer's requests on one stream, one after another, until it closes its side: a
   * sync sends `start` and then its `ranges` requests here; `news` comes alone.
   */
  private async serve(stream: Stream, peer: string): Promise<void> {
    const lp = lpStream(stream, { maxDataLength: MAX_REQUEST_BYTES });
    try {
      if (!this.isMember(peer)) throw new Error('not a fleet member');
      // Bounded like the asker's own rounds (pullFrom's maxRounds).
      for (let served = 0; served < LIMITS.log.sessionRequests; served++) {
        let bytes: Uint8Array;
        try {
          // The first request comes at once; later ones after the asker ingested the last reply.
          const wait = served === 0 ? 10_000 : LIMITS.log.readTimeoutMs;
          bytes = (await lp.read({ signal: AbortSignal.timeout(wait) })).subarray();
        } catch (err) {
          // The asker closed its side between two requests: the session is over.
          if (served > 0 && stream.remoteWriteStatus !== 'writable' && (err as Error).name === 'UnexpectedEOFError')
            break;
          throw err;
        }
        if (!this.rate.take(peer)) {
          this.reputation?.penalise(
            peer,
            `log sync: more than ${LIMITS.log.requestsPerSecond} requests a second`,
            5,
            'flood',
          );
          throw new Error('log requests past the rate limit');
        }
        let req: SyncRequest;
        try {
          req = decodeSyncRequest(bytes);
          // A session is one sync (`start`, then `ranges`) or one `news`: a second `start` on a
          // stream is a flood of full replies, not a sync.
          if (served > 0 && req.t !== 'ranges')
            throw new WireError('log', 'MALFORMED', `'${req.t}' after another request on one stream`);
        } catch (err) {
          if (err instanceof WireError) this.reputation?.penalise(peer, `log sync: ${err.message}`, 5, 'malformed');
          throw err;
        }
        // Each message length-prefixed, in order, in one write. One request can cost a megabyte of
        // reply: the next is read only once the peer's byte rate allows what this one cost.
        const reply = this.answer(req, peer);
        await lp.writeV(reply);
        if (req.t === 'news') break;
        await this.replyBytes.take(
          peer,
          reply.reduce((n, m) => n + m.length, 0),
          AbortSignal.timeout(LIMITS.log.readTimeoutMs),
        );
      }
      await stream.close();
    } catch (err) {
      this.log('log sync from %s reset: %s', peer, (err as Error).message);
      stream.abort(err as Error);
    }
  }

  /** The reply to one request, as its messages (`start`: our summary, then the batch). */
  private answer(req: SyncRequest, peer: string): Uint8Array[] {
    switch (req.t) {
      case 'start': {
        const { theirs, first } = servedStart(this.ledger, req.have, req.limit);
        // Our summary first, by itself: the asker can plan while the batch is still arriving.
        return [encodeSummary(theirs), encodeRangesReply(first)];
      }
      case 'news':
        this.newsFrom.add(peer);
        void this.pullNews();
        return [cbor.encode(true)];
      case 'ranges':
        return [encodeRangesReply(servedRanges(this.ledger, req.want, req.limit))];
    }
  }
}
