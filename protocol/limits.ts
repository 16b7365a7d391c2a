/**
 * Every bound a robot puts on what peers send it, in one place: bytes, counts, depth, streams,
 * rates and deadlines, per protocol. A peer that exceeds one is refused (typed error), penalised,
 * and reported in the log as evidence (an `offence` entry).
 */
export const KiB = 1024;
export const MiB = 1024 * KiB;

export const LIMITS = {
  /** `/robomesh/infer/2.0.0`: tensors for tails. */
  infer: {
    /** Concurrent request streams one peer may hold open. */
    streamsPerPeer: 4,
    /** A frame announced larger than this is refused before a byte of it is read. */
    maxFrameBytes: 256 * MiB,
    /** Frame bytes received and not yet answered, per peer and over all peers. */
    inFlightBytesPerPeer: 64 * MiB,
    inFlightBytesTotal: 256 * MiB,
    /** Each 1 MiB chunk must arrive within this (a 1 Mbit/s link needs ~8.4 s). */
    chunkTimeoutMs: 15_000,
    /** The wait for the next request on an idle reused stream. */
    idleTimeoutMs: 120_000,
    requestsPerSecond: 50,
    burst: 100,
    /**
     * Frame bytes read from one peer per second, and in a burst: beyond them the robot reads more
     * slowly (the sender is held back by flow control), so no member takes all of its CPU.
     */
    bytesPerSecondPerPeer: 32 * MiB,
    burstBytesPerPeer: 16 * MiB,
  },
  /** `/robomesh/log/4.0.0`: anti-entropy. */
  log: {
    streamsPerPeer: 2,
    /** Authors in a summary (a fleet's members, and some revoked). */
    maxAuthors: 2048,
    /** Authors one `ranges` request may name. */
    maxWant: 1024,
    /** Entries a `ranges` request may ask for, and a reply may hold. */
    maxBatch: 4096,
    /** A reply stops at about this many bytes of entries (plus one entry). */
    maxReplyBytes: 1 * MiB,
    /** No valid entry is smaller (key, signature, ids and field names alone take more). */
    minEntryBytes: 128,
    /** Requests one sync session may make. */
    sessionRequests: 10_000,
    readTimeoutMs: 30_000,
    requestsPerSecond: 100,
    burst: 200,
    /**
     * Reply bytes served to one peer per second, and in a burst (a heal's sync of 10,000 entries is
     * ~5 MiB); past them the next request waits. 2 MiB/s is more than a robot's radio carries.
     */
    replyBytesPerSecond: 2 * MiB,
    replyBurstBytes: 16 * MiB,
    /** After a sync with a peer failed, syncs it would trigger wait this long. */
    retryAfterMs: 1000,
  },
  /** `robomesh/<fleet>/log/2` gossip: entries appended together. */
  gossip: { maxEntries: 256, maxBytes: 256 * KiB },
  /** `/robomesh/tiles/3.0.0`: map cells by digest. */
  tiles: { streamsPerPeer: 4, maxWant: 256, maxWaitMs: 3000, readTimeoutMs: 10_000, requestsPerSecond: 20, burst: 40 },
  /** `/robomesh/blob/1.0.0`: models and task inputs by sha256. */
  blob: { streamsPerPeer: 4, maxBytes: 512 * MiB, requestTimeoutMs: 10_000, requestsPerSecond: 10, burst: 20 },
  /** `/robomesh/probe/1.0.0`: bandwidth probes. */
  probe: { streamsPerPeer: 1, maxBytes: 4 * MiB, readTimeoutMs: 30_000 },
  /** `robomesh/<fleet>/anchor-relay/1` gossip: signed IOTA transactions. */
  relay: { maxBytes: 16 * KiB, maxHeads: 64, maxResults: 256 },
  /** Log entries an offence report of this robot's may cover, per (peer, kind) and minute. */
  evidence: { perPeerKindEveryMs: 60_000 },
} as const;
