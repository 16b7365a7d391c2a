import { open } from 'node:fs/promises';
import { McapIndexedReader, McapWriter } from '@mcap/core';
import { FileHandleReadable, FileHandleWritable } from '@mcap/nodejs';
import { RosError } from './errors.js';
import { type CdrCodec, type RosPublisher, type RosTransport, fullType } from './transport.js';

/**
 * ROS without ROS: messages come from a recorded MCAP bag (replayed in log-time order, the
 * clock following the bag) and everything published — plus the inputs — is recorded into an
 * output bag (profile ros2, schema encoding ros2msg, message encoding cdr) that Foxglove and
 * `ros2 bag` open.
 */
export class McapTransport implements RosTransport {
  readonly kind = 'mcap';
  private clock = 0n;
  private readonly handlers = new Map<
    string,
    { type: string; fn: (m: unknown, t: bigint) => void | Promise<void> }[]
  >();
  private readonly channels = new Map<string, Promise<number>>();
  private readonly schemas = new Map<string, Promise<number>>();
  private pending: Promise<void> = Promise.resolve();
  private sequence = 0;
  published = 0;
  malformed = 0;

  private constructor(
    private readonly codec: CdrCodec,
    private readonly writer: McapWriter | undefined,
    private readonly closeOutput: () => Promise<void>,
  ) {}

  /** `record`: path of the output bag (optional: without it nothing is written). */
  static async create(codec: CdrCodec, record?: string): Promise<McapTransport> {
    if (!record) return new McapTransport(codec, undefined, async () => undefined);
    const handle = await open(record, 'w');
    const writer = new McapWriter({
      writable: new FileHandleWritable(handle),
      useStatistics: true,
      useChunks: true,
      useChunkIndex: true,
      useMessageIndex: true,
      useSummaryOffsets: true,
    });
    await writer.start({ profile: 'ros2', library: 'robomesh' });
    return new McapTransport(codec, writer, () => handle.close());
  }

  now(): bigint {
    return this.clock;
  }

  /** No ROS layer: settings come from the command line and config files alone (ros/params.ts). */
  parameters(): Record<string, unknown> {
    return {};
  }

  /** For recording without replay (making bags): the log time of what is published next. */
  setClock(ns: bigint): void {
    this.clock = ns;
  }

  publisher(topic: string, type: string): RosPublisher {
    const t = fullType(type);
    return { publish: (message) => this.record(topic, t, this.codec.encode(t, message)) };
  }

  subscribe(topic: string, type: string, fn: (m: unknown, t: bigint) => void | Promise<void>): () => void {
    const list = this.handlers.get(topic) ?? [];
    const entry = { type: fullType(type), fn };
    list.push(entry);
    this.handlers.set(topic, list);
    return () => list.splice(list.indexOf(entry), 1);
  }

  /**
   * Plays a bag through the subscribers, one message at a time (each handler awaited), the clock
   * at each message's log time. Inputs are recorded too. Returns the number of messages played.
   */
  async replay(path: string, onProgress?: (done: number, total: number) => void): Promise<number> {
    let handle;
    try {
      handle = await open(path, 'r');
    } catch (err) {
      throw new RosError('BAG_UNREADABLE', `cannot open bag ${path}: ${(err as Error).message}`);
    }
    try {
      let reader: McapIndexedReader;
      try {
        reader = await McapIndexedReader.Initialize({ readable: new FileHandleReadable(handle) });
      } catch (err) {
        throw new RosError('BAG_UNREADABLE', `${path} is not an indexed MCAP file: ${(err as Error).message}`);
      }
      const total = Number(reader.statistics?.messageCount ?? 0n);
      let played = 0;
      for await (const m of reader.readMessages()) {
        const channel = reader.channelsById.get(m.channelId)!;
        const schema = reader.schemasById.get(channel.schemaId);
        if (channel.messageEncoding !== 'cdr' || !schema) continue;
        this.clock = m.logTime;
        this.record(channel.topic, schema.name, m.data);
        const handlers = this.handlers.get(channel.topic) ?? [];
        for (const h of handlers)
          if (fullType(schema.name) !== h.type)
            throw new RosError(
              'BAG_TYPE_MISMATCH',
              `${channel.topic} carries ${schema.name}, the node expects ${h.type}`,
            );
        const message = handlers.length ? this.decodeOrDrop(handlers[0].type, channel.topic, m.data) : undefined;
        if (message !== undefined) for (const h of [...handlers]) await h.fn(message, m.logTime);
        played++;
        onProgress?.(played, total);
      }
      await this.pending;
      return played;
    } finally {
      await handle.close();
    }
  }

  /** A message that does not decode is dropped, as rcl would drop it: the replay goes on. */
  private decodeOrDrop(type: string, topic: string, data: Uint8Array): unknown {
    try {
      return this.codec.decode(type, data);
    } catch (err) {
      this.malformed++;
      process.stderr.write(`robomesh: dropped a malformed ${type} on ${topic}: ${(err as Error).message}\n`);
      return undefined;
    }
  }

  private record(topic: string, type: string, data: Uint8Array): void {
    this.published++;
    const writer = this.writer;
    if (!writer) return;
    const logTime = this.clock;
    const sequence = this.sequence++;
    // Writes are queued in call order: the bag's order is the node's publish order.
    this.pending = this.pending.then(async () => {
      const channelId = await this.channel(writer, topic, type);
      await writer.addMessage({ channelId, sequence, logTime, publishTime: logTime, data });
    });
  }

  private channel(writer: McapWriter, topic: string, type: string): Promise<number> {
    let id = this.channels.get(topic);
    if (!id) {
      let schemaId = this.schemas.get(type);
      if (!schemaId) {
        schemaId = writer.registerSchema({
          name: type,
          encoding: 'ros2msg',
          data: new TextEncoder().encode(this.codec.schemaText(type)),
        });
        this.schemas.set(type, schemaId);
      }
      id = schemaId.then((s) =>
        writer.registerChannel({ topic, schemaId: s, messageEncoding: 'cdr', metadata: new Map() }),
      );
      this.channels.set(topic, id);
    }
    return id;
  }

  async close(): Promise<void> {
    await this.pending;
    if (this.writer) await this.writer.end();
    await this.closeOutput();
  }
}
