import { TopicValidatorResult } from '@libp2p/gossipsub';
import {
  type RelayMessage,
  anchorRelayTopic,
  decodeRelayMessage,
  encodeRelayMessage,
} from '../../protocol/anchor-relay.js';
import { type Hex, fromHex, toHex } from '../../protocol/log-entry.js';
import type { MeshNode } from '../mesh/index.js';
import type { Logger, Startable } from '../util/index.js';
import type { QueuedAnchor } from './anchor-queue.js';
import type { Anchorer } from './anchorer.js';
import { iotaAddressOf, readAnchorTx } from './iota-tx.js';

export { anchorRelayTopic };

/**
 * Carries signed anchor transactions across the mesh so a robot without an IOTA node gets its
 * anchor submitted by one that has one. A relayed transaction is accepted only if its signature
 * is a fleet member's IOTA key and it commits exactly the root it claims (else the gossip
 * validator rejects it and the sender's score falls). Gossip in a partition is lost, so robots
 * re-publish what is still queued every `republishMs`.
 */
export interface AnchorRelayComponents {
  node: MeshNode;
  anchorer: Anchorer;
  /** The fleet's members now (keys): only their signed transactions are relayed. */
  members: () => Iterable<Hex>;
  logger: Logger;
}

export class AnchorRelay implements Startable {
  private timer: NodeJS.Timeout | undefined;
  rejected = 0;
  private readonly onRelay = (item: QueuedAnchor): void => void this.publish(item);

  constructor(
    private readonly components: AnchorRelayComponents,
    private readonly init: { fleet: string; republishMs?: number },
  ) {}

  private get node(): MeshNode {
    return this.components.node;
  }

  private get anchorer(): Anchorer {
    return this.components.anchorer;
  }

  start(): void {
    const topic = anchorRelayTopic(this.init.fleet);
    const pubsub = this.node.services.pubsub;
    pubsub.topicValidators.set(topic, async (_from, msg) => {
      const item = await this.check(msg.data);
      if (!item) {
        this.rejected++;
        return TopicValidatorResult.Reject;
      }
      this.anchorer.acceptRelay(item);
      return TopicValidatorResult.Accept;
    });
    pubsub.subscribe(topic);
    this.anchorer.on('relay', this.onRelay);
    const tick = (): void => {
      for (const item of this.anchorer.queued) if (item.signed && !item.relayed) void this.publish(item);
      this.timer = setTimeout(tick, this.init.republishMs ?? 10_000);
    };
    this.timer = setTimeout(tick, this.init.republishMs ?? 10_000);
  }

  stop(): void {
    clearTimeout(this.timer);
    const topic = anchorRelayTopic(this.init.fleet);
    this.node.services.pubsub.topicValidators.delete(topic);
    this.node.services.pubsub.unsubscribe(topic);
    this.anchorer.off('relay', this.onRelay);
  }

  private async publish(item: QueuedAnchor): Promise<void> {
    if (!item.signed) return;
    const msg: RelayMessage = {
      root: fromHex(item.root),
      count: item.count,
      heads: item.heads,
      first: item.firstLamport,
      last: item.lastLamport,
      results: item.results,
      tx: new Uint8Array(Buffer.from(item.signed.bytes, 'base64')),
      sig: item.signed.signature,
    };
    // Nobody subscribed yet (alone, or partitioned): the republish tick tries again.
    await this.node.services.pubsub
      .publish(anchorRelayTopic(this.init.fleet), encodeRelayMessage(msg))
      .catch((err) => this.components.logger('anchor relay publish failed: %s', (err as Error).message));
  }

  private async check(data: Uint8Array): Promise<QueuedAnchor | undefined> {
    try {
      const m = decodeRelayMessage(data);
      const tx = await readAnchorTx(m.tx, m.sig);
      const addresses = new Set([...this.components.members()].map((k) => iotaAddressOf(fromHex(k))));
      if (!addresses.has(tx.sender) || toHex(tx.root) !== toHex(m.root) || tx.count !== m.count) return undefined;
      return {
        root: toHex(m.root),
        count: m.count,
        heads: m.heads,
        firstLamport: m.first,
        lastLamport: m.last,
        results: m.results,
        signed: { bytes: Buffer.from(m.tx).toString('base64'), signature: m.sig, digest: tx.digest, sender: tx.sender },
        relayed: true,
        attempts: 0,
        notBefore: 0,
      };
    } catch (err) {
      this.components.logger('relayed anchor refused: %s', (err as Error).message);
      return undefined;
    }
  }
}
