import { type FileHandle, open, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { McapIndexedReader, McapStreamReader, type McapTypes } from '@mcap/core';
import { FileHandleReadable } from '@mcap/nodejs';
import { loadDecompressHandlers } from '@mcap/support';
import { SqliteDatabase } from '../nodes/ledger/index.js';
import { RosError } from './errors.js';

/** One message of a bag, whatever its storage. */
export interface BagMessage {
  topic: string;
  /** The type as the bag names it (`pkg/msg/Name`). */
  type: string;
  /** The bag's own definition of the type, when it carries one (MCAP does, a .db3 bag names types only). */
  schema?: { encoding: string; data: Uint8Array };
  /** The channel's metadata: rosbag2 keeps `offered_qos_profiles` there. */
  metadata: ReadonlyMap<string, string>;
  messageEncoding: string;
  logTime: bigint;
  data: Uint8Array;
}

export type BagStorage = 'mcap (indexed)' | 'mcap (read through)' | 'sqlite3';

export interface BagFile {
  path: string;
  storage: BagStorage;
  /** Messages in the file, when its summary says. */
  messages?: number;
}

/** Pieces a bag without an index is read in. */
const PIECE_BYTES = 1 << 20;

/**
 * Reads a rosbag2 recording as `ros2 bag record` leaves it: a folder (its .mcap or .db3 files in
 * order) or one file. MCAP bags are read through their index, with zstd / lz4 / bz2 chunks
 * (rosbag2's compression presets); a bag without an index or without chunks (the fastwrite
 * preset, a recording cut short) is read through from the start, a cut-short one as far as it is
 * whole. `.db3` is rosbag2's sqlite3
 * storage. Messages come in each file's time order (the write order for a bag read through).
 */
export async function* readBag(
  path: string,
  onFile?: (f: BagFile) => void,
  limits: { maxRecordBytes?: number } = {},
): AsyncGenerator<BagMessage> {
  for (const file of await bagFiles(path)) {
    if (file.endsWith('.db3')) yield* readDb3(file, onFile);
    else yield* readMcap(file, onFile, limits.maxRecordBytes ?? MAX_RECORD_BYTES);
  }
}

/**
 * The most a bag read through may hold of one record before it is whole: rosbag2 writes chunks of
 * a few MiB, and the largest sensor messages (dense point clouds, raw 8K frames) are tens of MiB.
 * A damaged length field would otherwise make the reader buffer the rest of the file.
 */
const MAX_RECORD_BYTES = 512 * (1 << 20);

async function bagFiles(path: string): Promise<string[]> {
  let info;
  try {
    info = await stat(path);
  } catch (err) {
    throw new RosError('BAG_UNREADABLE', `cannot open bag ${path}: ${(err as Error).message}`);
  }
  if (!info.isDirectory()) return [path];
  const files = (await readdir(path))
    .filter((f) => f.endsWith('.mcap') || f.endsWith('.db3'))
    .sort((a, b) => a.localeCompare(b, undefined, { numeric: true }))
    .map((f) => join(path, f));
  if (!files.length) throw new RosError('BAG_UNREADABLE', `${path} holds no .mcap or .db3 file`);
  return files;
}

async function* readMcap(
  path: string,
  onFile: ((f: BagFile) => void) | undefined,
  maxRecordBytes: number,
): AsyncGenerator<BagMessage> {
  let handle: FileHandle;
  try {
    handle = await open(path, 'r');
  } catch (err) {
    throw new RosError('BAG_UNREADABLE', `cannot open bag ${path}: ${(err as Error).message}`);
  }
  const decompressHandlers = await loadDecompressHandlers();
  const failed = (err: unknown): RosError =>
    err instanceof RosError ? err : new RosError('BAG_UNREADABLE', `${path}: ${(err as Error).message}`);
  try {
    let indexed: McapIndexedReader | undefined;
    try {
      indexed = await McapIndexedReader.Initialize({ readable: new FileHandleReadable(handle), decompressHandlers });
    } catch {
      indexed = undefined; // no summary or footer index: read it through
    }
    if (indexed && indexed.chunkIndexes.length > 0) {
      const messages = indexed.statistics ? Number(indexed.statistics.messageCount) : undefined;
      onFile?.({ path, storage: 'mcap (indexed)', messages });
      const reader = indexed;
      const iterator = reader.readMessages()[Symbol.asyncIterator]();
      for (;;) {
        let next: IteratorResult<McapTypes.Message>;
        try {
          next = await iterator.next();
        } catch (err) {
          throw failed(err);
        }
        if (next.done) return;
        const m = next.value;
        const channel = reader.channelsById.get(m.channelId)!;
        yield message(channel, reader.schemasById.get(channel.schemaId), m);
      }
    }
    onFile?.({ path, storage: 'mcap (read through)' });
    const stream = new McapStreamReader({ decompressHandlers });
    const schemas = new Map<number, McapTypes.Schema>();
    const channels = new Map<number, McapTypes.Channel>();
    const piece = new Uint8Array(PIECE_BYTES);
    /** Bytes appended since the reader last gave a record: what it holds of an unfinished one, at most. */
    let unfinished = 0;
    for (let position = 0; ;) {
      const { bytesRead } = await handle.read(piece, 0, PIECE_BYTES, position);
      if (bytesRead === 0) break;
      position += bytesRead;
      unfinished += bytesRead;
      if (unfinished > maxRecordBytes + PIECE_BYTES)
        throw failed(
          new Error(
            `no whole record in the ${unfinished} bytes before byte ${position}: a record longer than ` +
              `${maxRecordBytes} bytes, or a damaged length field`,
          ),
        );
      stream.append(piece.slice(0, bytesRead));
      for (;;) {
        let record: McapTypes.TypedMcapRecord | undefined;
        try {
          record = stream.nextRecord();
        } catch (err) {
          throw failed(err);
        }
        if (!record) break;
        unfinished = 0;
        if (record.type === 'Schema') schemas.set(record.id, record);
        else if (record.type === 'Channel') channels.set(record.id, record);
        else if (record.type === 'Message') {
          const channel = channels.get(record.channelId);
          if (!channel) throw failed(new Error(`a message on channel ${record.channelId}, which was never defined`));
          yield message(channel, schemas.get(channel.schemaId), record);
        }
      }
    }
    // A recording cut short (power lost, disk full): what was whole has played.
    if (!stream.done())
      process.stderr.write(
        `robomesh: ${path} ends before its footer (a recording cut short?); played what was whole\n`,
      );
  } finally {
    await handle.close();
  }
}

function message(channel: McapTypes.Channel, schema: McapTypes.Schema | undefined, m: McapTypes.Message): BagMessage {
  return {
    topic: channel.topic,
    type: schema?.name ?? '',
    ...(schema && schema.data.length ? { schema: { encoding: schema.encoding, data: schema.data } } : {}),
    metadata: channel.metadata,
    messageEncoding: channel.messageEncoding,
    logTime: m.logTime,
    data: m.data,
  };
}

interface Db3Topic {
  id: number;
  name: string;
  type: string;
  serialization_format: string;
  offered_qos_profiles?: string;
}

async function* readDb3(path: string, onFile?: (f: BagFile) => void): AsyncGenerator<BagMessage> {
  let db: SqliteDatabase.Database;
  try {
    db = new SqliteDatabase(path, { readonly: true, fileMustExist: true });
  } catch (err) {
    throw new RosError('BAG_UNREADABLE', `cannot open bag ${path}: ${(err as Error).message}`);
  }
  try {
    let topics: Map<number, Db3Topic>;
    let rows: IterableIterator<unknown>;
    let count: number;
    try {
      // Older rosbag2 (Foxy) has no offered_qos_profiles column: select what is there.
      topics = new Map((db.prepare('SELECT * FROM topics').all() as Db3Topic[]).map((t) => [t.id, t]));
      count = (db.prepare('SELECT COUNT(*) AS n FROM messages').get() as { n: number }).n;
      // Nanosecond timestamps need all 64 bits: read integers as bigint.
      rows = db
        .prepare('SELECT topic_id, timestamp, data FROM messages ORDER BY timestamp, id')
        .safeIntegers(true)
        .iterate();
    } catch (err) {
      throw new RosError('BAG_UNREADABLE', `${path} is not a rosbag2 sqlite3 bag: ${(err as Error).message}`);
    }
    onFile?.({ path, storage: 'sqlite3', messages: count });
    for (const row of rows as IterableIterator<{ topic_id: bigint; timestamp: bigint; data: Buffer }>) {
      const topic = topics.get(Number(row.topic_id));
      if (!topic) throw new RosError('BAG_UNREADABLE', `${path}: a message on topic id ${row.topic_id}, not in topics`);
      yield {
        topic: topic.name,
        type: topic.type,
        metadata: new Map(topic.offered_qos_profiles ? [['offered_qos_profiles', topic.offered_qos_profiles]] : []),
        messageEncoding: topic.serialization_format,
        logTime: row.timestamp,
        data: new Uint8Array(row.data.buffer, row.data.byteOffset, row.data.byteLength),
      };
    }
  } finally {
    db.close();
  }
}
