import { open } from 'node:fs/promises';
import { McapWriter } from '@mcap/core';
import { FileHandleWritable } from '@mcap/nodejs';
import { type BagMessage, readBag } from './bag-reader.js';
import { RosError } from './errors.js';
import {
  type CdrCodec,
  QOS_PRESETS,
  type QosProfile,
  type RosPublisher,
  type RosTransport,
  fullType,
  offeredQosYaml,
} from './transport.js';

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
  /** The QoS each publisher offers, recorded with its channel as rosbag2 does. */
  private readonly offered = new Map<string, QosProfile>();
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

  publisher(topic: string, type: string, qos: QosProfile = QOS_PRESETS.reliable): RosPublisher {
    const t = fullType(type);
    this.offered.set(topic, qos);
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
   * Plays a bag (a rosbag2 folder, an .mcap or a .db3 file) through the subscribers, one message
   * at a time (each handler awaited), the clock at each message's log time. Every input is
   * recorded too, with the bag's own definition and QoS of its type, whatever the type (a
   * recording holds /rosout, /parameter_events, …); a topic that is not CDR is skipped, said once.
   * Progress: messages played, and those the bag's summaries announce (0: not said). Returns the
   * number of messages played.
   */
  async replay(path: string, onProgress?: (done: number, total: number) => void): Promise<number> {
    let played = 0;
    let total = 0;
    const skipped = new Set<string>();
    for await (const m of readBag(path, (f) => (total += f.messages ?? 0))) {
      if (m.messageEncoding !== 'cdr') {
        if (!skipped.has(m.topic))
          process.stderr.write(
            `robomesh: skipping ${m.topic} in ${path}: encoded ${m.messageEncoding || '(none)'}, not cdr\n`,
          );
        skipped.add(m.topic);
        continue;
      }
      const type = fullType(m.type);
      this.clock = m.logTime;
      this.record(m.topic, type, m.data, m);
      const handlers = this.handlers.get(m.topic) ?? [];
      for (const h of handlers)
        if (type !== h.type)
          throw new RosError('BAG_TYPE_MISMATCH', `${m.topic} carries ${m.type}, the node expects ${h.type}`);
      const message = handlers.length ? this.decodeOrDrop(handlers[0].type, m.topic, m.data) : undefined;
      if (message !== undefined) for (const h of [...handlers]) await h.fn(message, m.logTime);
      played++;
      onProgress?.(played, total);
    }
    await this.pending;
    return played;
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

  /** `source`: the replayed message this is, whose definition and QoS the output keeps. */
  private record(topic: string, type: string, data: Uint8Array, source?: BagMessage): void {
    this.published++;
    const writer = this.writer;
    if (!writer) return;
    const logTime = this.clock;
    const sequence = this.sequence++;
    // Writes are queued in call order: the bag's order is the node's publish order.
    this.pending = this.pending.then(async () => {
      const channelId = await this.channel(writer, topic, type, source);
      await writer.addMessage({ channelId, sequence, logTime, publishTime: logTime, data });
    });
  }

  private channel(writer: McapWriter, topic: string, type: string, source?: BagMessage): Promise<number> {
    let id = this.channels.get(topic);
    if (!id) {
      let schemaId = this.schemas.get(type);
      if (!schemaId) {
        const definition = source?.schema ?? this.ownDefinition(type);
        // Schema id 0: no definition known (a .db3 bag names a type robomesh does not know).
        schemaId = definition
          ? writer.registerSchema({ name: type, encoding: definition.encoding, data: definition.data })
          : Promise.resolve(0);
        this.schemas.set(type, schemaId);
      }
      const offered = offeredQosYaml(this.offered.get(topic) ?? QOS_PRESETS.reliable);
      const metadata = new Map(source?.metadata ?? [['offered_qos_profiles', offered]]);
      id = schemaId.then((s) => writer.registerChannel({ topic, schemaId: s, messageEncoding: 'cdr', metadata }));
      this.channels.set(topic, id);
    }
    return id;
  }

  private ownDefinition(type: string): { encoding: string; data: Uint8Array } | undefined {
    try {
      return { encoding: 'ros2msg', data: new TextEncoder().encode(this.codec.schemaText(type)) };
    } catch {
      return undefined;
    }
  }

  async close(): Promise<void> {
    await this.pending;
    if (this.writer) await this.writer.end();
    await this.closeOutput();
  }
}
