import { peerIdFromString } from '@libp2p/peer-id';
import { lpStream } from '@libp2p/utils';
import {
  CHUNK_BYTES,
  CHUNK_KIND,
  INFER_PROTOCOL,
  chunkMessages,
  encodeHeader,
} from '../../../protocol/infer-messages.js';
import { encodeFrame } from '../../../protocol/tensor-frame.js';
import {
  LOG_PROTOCOL,
  encodeRangesReply,
  encodeSummary,
  encodeSyncRequest,
  logTopic,
} from '../../../protocol/log-sync.js';
import type { Robot } from '../../robot/index.js';

/**
 * What a hostile member does to its peers, for bench:hostile and scenarios: each attack runs
 * against every connected peer until `until`, then stops. Never used by an honest robot.
 */
export const ATTACKS = [
  'frame-stall',
  'frame-flood',
  'sync-garbage',
  'sync-flood',
  'hijack',
  'gossip-garbage',
] as const;
export type AttackKind = (typeof ATTACKS)[number];

const MiB = 1024 * 1024;
const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Runs `kind` from `robot` against its connected peers for `seconds`; resolves when it is over. */
export async function attack(robot: Robot, kind: AttackKind, seconds: number, fleet: string): Promise<number> {
  const until = Date.now() + seconds * 1000;
  const node = robot.host.node;
  const model = robot.models.hashes()[0] ?? 'a'.repeat(64);
  let sent = 0;
  const peers = (): string[] => robot.host.connectedPeers();
  const dial = (peer: string, protocol: string) =>
    node.dialProtocol(peerIdFromString(peer), protocol, { signal: AbortSignal.timeout(3000) });
  const header = (bytes: number, task?: string) =>
    encodeHeader({
      t: 'req',
      id: `x${(sent++).toString(36)}`,
      model,
      cut: 'input',
      precision: 'fp32',
      granularity: 'channel',
      budgetMs: 600_000,
      chunks: Math.ceil(bytes / CHUNK_BYTES),
      bytes,
      ...(task ? { task } : {}),
    });
  /** One loop per peer, each step bounded, until the attack is over. */
  const perPeer = async (step: (peer: string) => Promise<void>): Promise<void> => {
    const running = new Map<string, Promise<void>>();
    while (Date.now() < until) {
      for (const peer of peers()) {
        if (running.has(peer)) continue;
        const loop = (async () => {
          while (Date.now() < until) await step(peer).catch(() => pause(200));
        })().finally(() => running.delete(peer));
        running.set(peer, loop);
      }
      await pause(250);
    }
    await Promise.allSettled(running.values());
  };

  switch (kind) {
    case 'frame-stall':
      // Headers announcing 250 MiB and no data, on as many streams as a peer accepts.
      await perPeer(async (peer) => {
        const streams = await Promise.all(
          [0, 1, 2, 3].map(async () => {
            const s = await dial(peer, INFER_PROTOCOL);
            await lpStream(s).write(header(250 * MiB));
            return s;
          }),
        );
        while (Date.now() < until && streams.some((s) => s.status === 'open')) await pause(100);
        for (const s of streams) s.abort(new Error('attack over'));
      });
      break;
    case 'frame-flood': {
      // 64 MiB frames, as fast as the link takes them: well-formed, of a tensor the model does not
      // take (refused at their first chunk), each on a new stream when the last was reset.
      const frame = encodeFrame([
        { name: 'x', dtype: 'float32', dims: [16, 1024, 1024], data: new Float32Array(16 * MiB) },
      ]);
      const chunks = chunkMessages(frame);
      await perPeer(async (peer) => {
        const s = await dial(peer, INFER_PROTOCOL);
        const lp = lpStream(s, { maxDataLength: 2 * MiB });
        await lp.write(header(frame.length));
        for (const chunk of chunks) {
          if (Date.now() >= until) break;
          await lp.write(chunk, { signal: AbortSignal.timeout(5000) });
        }
        s.abort(new Error('attack over'));
      });
      break;
    }
    case 'sync-garbage': {
      // Every sync with us gets a megabyte of empty entries; we keep telling peers we have news.
      await node.unhandle(LOG_PROTOCOL);
      const empty = encodeRangesReply({
        entries: Array.from({ length: 900_000 }, () => new Uint8Array(0)),
        full: true,
      });
      const summary = encodeSummary(new Map([[robot.ledger!.self!, { maxSeq: 1e9, count: 1e9 }]]));
      await node.handle(
        LOG_PROTOCOL,
        async (stream) => {
          const lp = lpStream(stream, { maxDataLength: 1 * MiB });
          try {
            await lp.read({ signal: AbortSignal.timeout(5000) });
            await lp.writeV([summary, empty]);
          } catch {
            stream.abort(new Error('attack'));
          }
        },
        { maxInboundStreams: 64 },
      );
      await perPeer(async (peer) => {
        const s = await dial(peer, LOG_PROTOCOL);
        await lpStream(s).write(encodeSyncRequest({ t: 'news' }));
        s.abort(new Error('attack'));
        await pause(500);
      });
      break;
    }
    case 'sync-flood':
      // Requests for everything, as fast as a stream takes them.
      await perPeer(async (peer) => {
        const s = await dial(peer, LOG_PROTOCOL);
        const lp = lpStream(s, { maxDataLength: 8 * MiB });
        const ask = encodeSyncRequest({ t: 'start', have: new Map(), limit: 4096 });
        while (Date.now() < until) {
          await lp.write(ask, { signal: AbortSignal.timeout(3000) });
          sent++;
        }
      });
      break;
    case 'hijack':
      // Inputs for tasks that are not ours: every one must be refused before any work.
      await perPeer(async (peer) => {
        const s = await dial(peer, INFER_PROTOCOL);
        const lp = lpStream(s, { maxDataLength: 2 * MiB });
        const tasks = [...robot.ledger!.state.tasks.keys()];
        const task = tasks[Math.floor(Math.random() * tasks.length)] ?? 'nope';
        await lp.write(header(1024, task));
        const chunk = new Uint8Array(1 + 1024);
        chunk[0] = CHUNK_KIND;
        await lp.write(chunk);
        await lp.read({ signal: AbortSignal.timeout(3000) });
        s.abort(new Error('attack'));
      });
      break;
    case 'gossip-garbage': {
      // Malformed log gossip at 50 messages a second.
      const pubsub = node.services.pubsub;
      while (Date.now() < until) {
        await pubsub.publish(logTopic(fleet), Uint8Array.from([0x81, 0x40, ...new Uint8Array(8)])).catch(() => 0);
        sent++;
        await pause(20);
      }
      break;
    }
  }
  return sent;
}
