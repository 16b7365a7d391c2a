import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { McapIndexedReader, McapWriter } from '@mcap/core';
import { FileHandleReadable, FileHandleWritable } from '@mcap/nodejs';
import { McapTransport } from '../../ros/mcap-transport.js';
import { codec } from '../../ros/messages.js';
import { RclnodejsTransport } from '../../ros/rclnodejs-transport.js';
import { type RawMessage, rosTransportCompliance } from '../compliance/ros-transport.js';
import { rclnodejsStandIn } from '../helpers/rclnodejs-stand-in.js';

/** An indexed ros2 MCAP bag holding `messages` (raw CDR, so malformed ones too), 1 ms apart. */
async function writeBag(path: string, messages: RawMessage[]): Promise<void> {
  const handle = await open(path, 'w');
  const writer = new McapWriter({ writable: new FileHandleWritable(handle), useChunkIndex: true, useStatistics: true });
  await writer.start({ profile: 'ros2', library: 'robomesh tests' });
  const channels = new Map<string, number>();
  let t = 1_000_000_000n;
  for (const [i, m] of messages.entries()) {
    let channelId = channels.get(m.topic);
    if (channelId === undefined) {
      const schemaId = await writer.registerSchema({
        name: m.type,
        encoding: 'ros2msg',
        data: new TextEncoder().encode(codec.schemaText(m.type)),
      });
      channelId = await writer.registerChannel({
        topic: m.topic,
        schemaId,
        messageEncoding: 'cdr',
        metadata: new Map(),
      });
      channels.set(m.topic, channelId);
    }
    t += 1_000_000n;
    await writer.addMessage({ channelId, sequence: i, logTime: t, publishTime: t, data: m.data });
  }
  await writer.end();
  await handle.close();
}

async function readBag(path: string): Promise<RawMessage[]> {
  const handle = await open(path, 'r');
  try {
    const reader = await McapIndexedReader.Initialize({ readable: new FileHandleReadable(handle) });
    const out: RawMessage[] = [];
    for await (const m of reader.readMessages()) {
      const channel = reader.channelsById.get(m.channelId)!;
      out.push({ topic: channel.topic, type: reader.schemasById.get(channel.schemaId)!.name, data: m.data });
    }
    return out;
  } finally {
    await handle.close();
  }
}

rosTransportCompliance('MCAP (bag replay in, recording out)', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'rm-ros-transport-'));
  const record = join(dir, 'out.mcap');
  const transport = await McapTransport.create(codec, record);
  let closed = false;
  let bags = 0;
  const close = async (): Promise<void> => {
    if (!closed) await transport.close();
    closed = true;
  };
  return {
    transport,
    deliver: async (messages) => {
      const bag = join(dir, `in-${bags++}.mcap`);
      await writeBag(bag, messages);
      await transport.replay(bag);
    },
    published: async () => {
      await close();
      return readBag(record);
    },
    cleanup: async () => {
      await close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});

rosTransportCompliance('rclnodejs (against a stand-in module)', async () => {
  const s = rclnodejsStandIn();
  const transport = await RclnodejsTransport.create(codec, 'r1', '/fleet', s.rcl, ['node', 'robot-node.js']);
  return {
    transport,
    deliver: async (messages) => {
      for (const m of messages)
        for (const sub of s.subscriptions.filter((x) => x.topic === m.topic)) sub.cb(Buffer.from(m.data));
    },
    published: async () =>
      s.published.map((p) => ({ topic: p.topic, type: p.type, data: new Uint8Array(p.data as Buffer) })),
    cleanup: () => transport.close(),
  };
});
