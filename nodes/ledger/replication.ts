import { TopicValidatorResult } from '@libp2p/gossipsub';
import type { PeerId, Stream } from '@libp2p/interface';
import { peerIdFromString } from '@libp2p/peer-id';
import { lpStream } from '@libp2p/utils';
import * as cbor from '@ipld/dag-cbor';
import { type DecodedEntry, EntryError, type Hex, MAX_ENTRY_BYTES, isHexKey } from '../../protocol/log-entry.js';
import type { MeshNode } from '../mesh/host.js';
import type { Logger } from '../util/logger.js';
import type { Startable } from '../util/service.js';
import { type Ledger, MissingParentsError } from './ledger.js';
import {
  MAX_REPLY_BYTES,
  MAX_WANT,
  type PullResult,
  type Summary,
  type SyncPeer,
  decodeRangesReply,
  encodeRangesReply,
  pullFrom,
  servedRanges,
  servedStart,
} from './sync.js';

/**
 * 3: `ranges` replies carry entries as a list of their stored bytes, nothing beside them.
 * 4: a sync opens with `start` (our summary → theirs and the first batch) instead of `summary`,
 *    and its `ranges` requests follow on the same stream (one stream per sync, not per request).
 */
export const LOG_PROTOCOL = '/robomesh/log/4.0.0';
export const logTopic = (fleet: string): string => `robomesh/${fleet}/log/2`;
const BATCH = 4096;
const MAX_MESSAGE = MAX_REPLY_BYTES + MAX_ENTRY_BYTES + BATCH * 64 + 1024;

/** Entries per gossip message at most, and about this many bytes (a message may exceed it by one entry). */
const GOSSIP_ENTRIES = 256;
const GOSSIP_BYTES = 256 * 1024;

/** A log gossip message: the DAG-CBOR list of one author's entries published together, parents first. */
export function packLogGossip(entries: Uint8Array[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  let group: Uint8Array[] = [];
  let bytes = 0;
  for (const e of entries) {
    if (group.length && (group.length >= GOSSIP_ENTRIES || bytes + e.length > GOSSIP_BYTES)) {
      out.push(cbor.encode(group));
      group = [];
      bytes = 0;
    }
    group.push(e);
    bytes += e.length;
  }
  if (group.length) out.push(cbor.encode(group));
  return out;
}

export function decodeLogGossip(data: Uint8Array): Uint8Array[] {
  let list: unknown;
  try {
    list = cbor.decode(data);
  } catch (err) {
    throw new EntryError('MALFORMED', `log gossip is not DAG-CBOR: ${(err as Error).message}`);
  }
  if (
    !Array.isArray(list) ||
    list.length < 1 ||
    list.length > GOSSIP_ENTRIES ||
    !list.every((e) => e instanceof Uint8Array && e.length <= MAX_ENTRY_BYTES)
  ) {
    throw new EntryError('MALFORMED', 'log gossip is not a list of 1..256 entries');
  }
  return list as Uint8Array[];
}

/** Requests one sync session may make (pullFrom's maxRounds): a member cannot hold one open forever. */
const MAX_SESSION_REQUESTS = 10_000;

/** At most this many authors in a summary (a fleet's members, and some revoked). */
const MAX_AUTHORS = 2048;

/** A summary as sent: [author, {maxSeq, count}] pairs. */
function decodeSummary(data: unknown): Summary {
  const bad = (): never => {
    throw new EntryError('MALFORMED', 'log summary is not a list of [author, {maxSeq, count}]');
  };
  if (!Array.isArray(data) || data.length > MAX_AUTHORS) return bad();
  const out: Summary = new Map();
  for (const pair of data as unknown[]) {
    if (!Array.isArray(pair) || pair.length !== 2 || !isHexKey(pair[0])) return bad();
    const v = pair[1] as { maxSeq?: unknown; count?: unknown } | null;
    if (typeof v !== 'object' || v === null || !Number.isSafeInteger(v.maxSeq) || !Number.isSafeInteger(v.count))
      return bad();
    const maxSeq = v.maxSeq as number;
    const count = v.count as number;
    if (maxSeq < 0 || count < 0) return bad();
    out.set(pair[0], { maxSeq, count });
  }
  return out;
}

const encodeSummary = (summary: Summary): Uint8Array =>
  cbor.encode([...summary].map(([author, { maxSeq, count }]) => [author, { maxSeq, count }]));

type Request =
  /** Our summary: answered with theirs, then the first batch of what we lack (two messages). */
  | { t: 'start'; have: unknown; limit: number }
  | { t: 'ranges'; want: { author: Hex; lo: number; hi: number }[]; limit: number }
  /** "I just learnt entries by sync: pull from me." */
  | { t: 'news' };

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

  constructor(components: LogReplicatorComponents, init: LogReplicatorInit) {
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

  /** A sync nobody waits for: its failure (a peer gone mid-way) is logged, the next one retries. */
  private syncInBackground(peer: string): void {
    this.syncWith(peer).catch((err) => this.log('sync with %s failed: %s', peer, (err as Error).message));
  }

  async start(): Promise<void> {
    const topic = logTopic(this.fleet);
    const pubsub = this.node.services.pubsub;
    pubsub.topicValidators.set(topic, (relayer, msg) => {
      let list: Uint8Array[];
      try {
        list = decodeLogGossip(msg.data);
      } catch {
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
      { maxInboundStreams: 8 },
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

  private tellNews(source: string): void {
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
  private async ask(peer: string, req: Request): Promise<void> {
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
  private session(peer: string): { exchange(req: Request, messages: number): Promise<Uint8Array[][]>; close(): void } {
    let opened: Promise<{ stream: Stream; lp: ReturnType<typeof lpStream> }> | undefined;
    /** The exchange before this one: one request at a time on the stream, each reply read whole. */
    let previous: Promise<unknown> = Promise.resolve();
    let done = false;
    const run = async (req: Request, messages: number): Promise<Uint8Array[][]> => {
      opened ??= this.node
        .dialProtocol(peerIdFromString(peer), LOG_PROTOCOL, { signal: AbortSignal.timeout(10_000) })
        .then((stream) => ({
          stream,
          lp: lpStream(stream, { maxDataLength: MAX_MESSAGE, maxBufferSize: 2 * MAX_MESSAGE }),
        }));
      const { stream, lp } = await opened;
      try {
        await lp.write(cbor.encode(req));
        const replies: Uint8Array[][] = [];
        const signal = AbortSignal.timeout(30_000);
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
        const [summary, first] = await exchange({ t: 'start', have: [...ours], limit: Math.min(limit, BATCH) }, 2);
        return {
          theirs: decodeSummary(cbor.decode(summary.length === 1 ? summary[0] : Buffer.concat(summary))),
          first: decodeRangesReply(first),
        };
      },
      ranges: async (want, limit) =>
        decodeRangesReply((await exchange({ t: 'ranges', want, limit: Math.min(limit, BATCH) }, 1))[0]),
      close,
    };
  }

  /**
   * Answers a peer's requests on one stream, one after another, until it closes its side: a
   * sync sends `start` and then its `ranges` requests here; `news` comes alone.
   */
  private async serve(stream: Stream, peer: string): Promise<void> {
    const lp = lpStream(stream, { maxDataLength: 256 * 1024 });
    try {
      if (!this.isMember(peer)) throw new Error('not a fleet member');
      // Bounded like the asker's own rounds (pullFrom's maxRounds).
      for (let served = 0; served < MAX_SESSION_REQUESTS; served++) {
        let bytes: Uint8Array;
        try {
          // The first request comes at once; later ones after the asker ingested the last reply.
          bytes = (await lp.read({ signal: AbortSignal.timeout(served === 0 ? 10_000 : 30_000) })).subarray();
        } catch (err) {
          // The asker closed its side between two requests: the session is over.
          if (served > 0 && stream.remoteWriteStatus !== 'writable' && (err as Error).name === 'UnexpectedEOFError')
            break;
          throw err;
        }
        // Each message length-prefixed, in order, in one write.
        await lp.writeV(this.answer(cbor.decode(bytes) as Request, peer));
      }
      await stream.close();
    } catch (err) {
      stream.abort(err as Error);
    }
  }

  /** The reply to one request, as its messages (`start`: our summary, then the batch); throws on a malformed one. */
  private answer(req: Request, peer: string): Uint8Array[] {
    if (req?.t === 'start' && Number.isSafeInteger(req.limit)) {
      const { theirs, first } = servedStart(this.ledger, decodeSummary(req.have), Math.min(req.limit, BATCH));
      // Our summary first, by itself: the asker can plan while the batch is still arriving.
      return [encodeSummary(theirs), encodeRangesReply(first)];
    }
    if (req?.t === 'news') {
      this.newsFrom.add(peer);
      void this.pullNews();
      return [cbor.encode(true)];
    }
    if (
      req?.t === 'ranges' &&
      Array.isArray(req.want) &&
      req.want.length <= MAX_WANT &&
      Number.isSafeInteger(req.limit)
    ) {
      const valid = req.want.every(
        (w) => typeof w?.author === 'string' && Number.isSafeInteger(w.lo) && Number.isSafeInteger(w.hi),
      );
      if (!valid) throw new Error('malformed log request');
      return [encodeRangesReply(servedRanges(this.ledger, req.want, Math.min(req.limit, BATCH)))];
    }
    throw new Error('malformed log request');
  }
}
