import type { Startable } from '../util/index.js';
import { TopicValidatorResult } from '@libp2p/gossipsub';
import { peerIdFromString } from '@libp2p/peer-id';
import { type CapabilityAdvert, decodeAdvert, encodeAdvert } from '../../protocol/adverts.js';
import type { Signer } from '../../protocol/ed25519.js';
import type { MeshNode } from './host.js';

export const advertTopic = (fleet: string): string => `robomesh/${fleet}/adverts/2`;

export interface PeerCapability extends CapabilityAdvert {
  receivedAt: number;
}

const peerKeys = new Map<string, Uint8Array | undefined>();

/** The raw Ed25519 key inside an Ed25519 PeerId (undefined for anything else); remembered, as every advert asks. */
export function peerKey(peer: string): Uint8Array | undefined {
  if (peerKeys.has(peer)) return peerKeys.get(peer);
  let key: Uint8Array | undefined;
  try {
    const id = peerIdFromString(peer);
    key = id.type === 'Ed25519' ? id.publicKey.raw : undefined;
  } catch {
    key = undefined;
  }
  if (peerKeys.size > 4096) peerKeys.clear();
  peerKeys.set(peer, key);
  return key;
}

/**
 * Publishes this robot's capability advert every `periodMs` (and on demand), and keeps the
 * latest valid advert of every peer. Malformed adverts, or adverts signed by someone other than
 * the robot they name, are Rejected: gossipsub lowers the sender's score and stops relaying it.
 */
export interface AdvertBoardComponents {
  node: MeshNode;
  signer: Signer;
  /** What this robot advertises now (queue length, models and their times). */
  current: () => Omit<CapabilityAdvert, 'v' | 'robot' | 'seq'>;
}

export class AdvertBoard implements Startable {
  private readonly peers = new Map<string, PeerCapability>();
  /** Starts from the clock so a restarted robot's adverts are newer than its last ones. */
  private seq = Date.now();
  private timer: NodeJS.Timeout | undefined;
  rejected = 0;

  private readonly node: MeshNode;
  private readonly signer: Signer;
  private readonly current: () => Omit<CapabilityAdvert, 'v' | 'robot' | 'seq'>;
  private readonly fleet: string;
  private readonly periodMs: number;

  constructor(components: AdvertBoardComponents, init: { fleet: string; periodMs?: number }) {
    this.node = components.node;
    this.signer = components.signer;
    this.current = components.current;
    this.fleet = init.fleet;
    this.periodMs = init.periodMs ?? 2000;
  }

  start(): void {
    const topic = advertTopic(this.fleet);
    const pubsub = this.node.services.pubsub;
    // The first argument is the relaying peer; the author is whoever signed the advert.
    pubsub.topicValidators.set(topic, (_relayer, msg) => {
      try {
        const advert = decodeAdvert(msg.data, peerKey);
        const known = this.peers.get(advert.robot);
        if (known && known.seq >= advert.seq) return TopicValidatorResult.Ignore;
        this.peers.set(advert.robot, { ...advert, receivedAt: Date.now() });
        return TopicValidatorResult.Accept;
      } catch {
        this.rejected++;
        return TopicValidatorResult.Reject;
      }
    });
    pubsub.subscribe(topic);
    const tick = (): void => {
      void this.publish();
      this.timer = setTimeout(tick, this.periodMs);
    };
    tick();
  }

  async publish(): Promise<void> {
    const advert: CapabilityAdvert = { v: 2, robot: this.node.peerId.toString(), seq: ++this.seq, ...this.current() };
    try {
      await this.node.services.pubsub.publish(advertTopic(this.fleet), encodeAdvert(advert, this.signer));
    } catch {
      // no peers yet, or stopping: the next tick publishes again
    }
  }

  /**
   * Adverts received within the last `maxAgeMs` (default three periods, at least 30 s: on a
   * 1 Mbit/s link a tensor holds the connection for many seconds and adverts queue behind it;
   * whether a peer is reachable is the connection's business, not the advert's age).
   */
  fresh(maxAgeMs = Math.max(3 * this.periodMs, 30_000)): PeerCapability[] {
    const now = Date.now();
    return [...this.peers.values()].filter((p) => now - p.receivedAt <= maxAgeMs);
  }

  get(peer: string): PeerCapability | undefined {
    return this.peers.get(peer);
  }

  forget(peer: string): void {
    this.peers.delete(peer);
  }

  stop(): void {
    clearTimeout(this.timer);
    this.node.services.pubsub.topicValidators.delete(advertTopic(this.fleet));
    this.node.services.pubsub.unsubscribe(advertTopic(this.fleet));
  }
}
