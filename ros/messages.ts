import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse } from '@foxglove/rosmsg';
import { ros2jazzy } from '@foxglove/rosmsg-msgs-common';
import { MessageReader } from '@foxglove/rosmsg2-serialization';
import { RobomeshError } from '../protocol/errors.js';

/**
 * ROS 2 messages robomesh publishes and subscribes to, as plain CDR (XCDR1, the encoding of
 * rmw_fastrtps and rmw_cyclonedds, of rosbag2 and of MCAP), without ROS installed.
 *
 * encode() is our own writer: @foxglove/rosmsg2-serialization's MessageWriter silently writes
 * defaults for missing or mistyped fields and truncates strings that are not ASCII. Here every
 * field must be present (declared defaults included), have the right type and fit its range.
 * decode() checks the bytes against the definition first, then lets @foxglove's MessageReader
 * build the object. Decoded uint8[]/int8[] (and aligned numeric arrays) are views into the
 * input bytes, not copies.
 */

type MessageDefinition = ReturnType<typeof parse>[number];
type Field = MessageDefinition['definitions'][number];

export const ROS_TYPES = [
  'sensor_msgs/msg/Image',
  'sensor_msgs/msg/CompressedImage',
  'sensor_msgs/msg/LaserScan',
  'nav_msgs/msg/Odometry',
  'nav_msgs/msg/OccupancyGrid',
  'diagnostic_msgs/msg/DiagnosticArray',
  'robomesh_msgs/msg/InferenceResult',
  'robomesh_msgs/msg/SplitDecision',
  'robomesh_msgs/msg/PeerStatus',
  'robomesh_msgs/msg/LedgerEvent',
] as const;
export type RosType = (typeof ROS_TYPES)[number];

export type RosMessageErrorCode =
  'UNKNOWN_TYPE' | 'BAD_DEFINITION' | 'BAD_CDR' | 'MISSING_FIELD' | 'UNKNOWN_FIELD' | 'BAD_FIELD';

export class RosMessageError extends RobomeshError {
  constructor(
    override readonly code: RosMessageErrorCode,
    message: string,
  ) {
    super(code, message);
  }
}

const OWN_MSG_DIR = new URL('../../ros/robomesh_msgs/msg/', import.meta.url);
const TIME_TYPES: Record<string, string> = { time: 'builtin_interfaces/Time', duration: 'builtin_interfaces/Duration' };

/** `pkg/msg/Name` or `pkg/Name` → `pkg/Name`, the key of the definition tables. */
const shortName = (type: string): string => type.replace(/^([^/]+)\/msg\//, '$1/');

export function rosType(name: string): RosType {
  const short = shortName(name);
  const found = ROS_TYPES.find((t) => shortName(t) === short);
  if (!found)
    throw new RosMessageError('UNKNOWN_TYPE', `unknown ROS message type '${name}' (known: ${ROS_TYPES.join(', ')})`);
  return found;
}

interface Primitive {
  size: number;
  fits(value: unknown): boolean;
  write(view: DataView, at: number, value: unknown): void;
}

const integer = (min: number, max: number) => (v: unknown) =>
  typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;
const integer64 = (min: bigint, max: bigint) => (v: unknown) =>
  (typeof v === 'bigint' && v >= min && v <= max) ||
  (typeof v === 'number' && Number.isSafeInteger(v) && BigInt(v) >= min && BigInt(v) <= max);
const isNumber = (v: unknown) => typeof v === 'number';

const PRIMITIVES: Record<string, Primitive> = {
  bool: { size: 1, fits: (v) => typeof v === 'boolean', write: (d, at, v) => d.setUint8(at, v ? 1 : 0) },
  int8: { size: 1, fits: integer(-0x80, 0x7f), write: (d, at, v) => d.setInt8(at, v as number) },
  uint8: { size: 1, fits: integer(0, 0xff), write: (d, at, v) => d.setUint8(at, v as number) },
  int16: { size: 2, fits: integer(-0x8000, 0x7fff), write: (d, at, v) => d.setInt16(at, v as number, true) },
  uint16: { size: 2, fits: integer(0, 0xffff), write: (d, at, v) => d.setUint16(at, v as number, true) },
  int32: { size: 4, fits: integer(-0x80000000, 0x7fffffff), write: (d, at, v) => d.setInt32(at, v as number, true) },
  uint32: { size: 4, fits: integer(0, 0xffffffff), write: (d, at, v) => d.setUint32(at, v as number, true) },
  int64: {
    size: 8,
    fits: integer64(-(2n ** 63n), 2n ** 63n - 1n),
    write: (d, at, v) => d.setBigInt64(at, BigInt(v as number), true),
  },
  uint64: {
    size: 8,
    fits: integer64(0n, 2n ** 64n - 1n),
    write: (d, at, v) => d.setBigUint64(at, BigInt(v as number), true),
  },
  float32: { size: 4, fits: isNumber, write: (d, at, v) => d.setFloat32(at, v as number, true) },
  float64: { size: 8, fits: isNumber, write: (d, at, v) => d.setFloat64(at, v as number, true) },
};

/** The definition a field's value is a struct of: a message type, or builtin_interfaces for time/duration. */
const structType = (field: Field): string | undefined =>
  field.isComplex === true ? field.type : TIME_TYPES[field.type];
const dataFields = (def: MessageDefinition): Field[] => def.definitions.filter((f) => f.isConstant !== true);

let table: Map<string, MessageDefinition> | undefined;

function definitions(): Map<string, MessageDefinition> {
  if (table) return table;
  const defs = new Map<string, MessageDefinition>(Object.entries(ros2jazzy));
  for (const type of ROS_TYPES.filter((t) => t.startsWith('robomesh_msgs/'))) {
    const name = shortName(type);
    const file = new URL(`${name.split('/')[1]}.msg`, OWN_MSG_DIR);
    let own: MessageDefinition;
    try {
      [own] = parse(readFileSync(file, 'utf8'), { ros2: true, skipTypeFixup: true });
    } catch (err) {
      throw new RosMessageError('BAD_DEFINITION', `${fileURLToPath(file)}: ${(err as Error).message}`);
    }
    const fields = own.definitions.map((f) => (f.isComplex === true ? { ...f, type: shortName(f.type) } : f));
    defs.set(name, { name, definitions: fields });
  }
  for (const type of ROS_TYPES) {
    for (const dep of [shortName(type), ...dependencies(defs, shortName(type))]) {
      for (const f of defs.get(dep)!.definitions) {
        if (
          f.isConstant !== true &&
          structType(f) === undefined &&
          f.type !== 'string' &&
          !Object.hasOwn(PRIMITIVES, f.type)
        ) {
          throw new RosMessageError('BAD_DEFINITION', `${dep}.${f.name}: type ${f.type} is not supported`);
        }
      }
    }
  }
  table = defs;
  return defs;
}

/** Every struct type `name` uses, depth first, each once. */
function dependencies(defs: Map<string, MessageDefinition>, name: string, seen = new Set<string>()): string[] {
  const def = defs.get(name);
  if (!def) throw new RosMessageError('BAD_DEFINITION', `no definition for ${name}`);
  const out: string[] = [];
  for (const f of def.definitions) {
    const dep = f.isConstant === true ? undefined : structType(f);
    if (dep === undefined || seen.has(dep)) continue;
    seen.add(dep);
    out.push(dep, ...dependencies(defs, dep, seen));
  }
  return out;
}

function definitionOf(name: string): MessageDefinition {
  return definitions().get(name)!;
}

// ---- encode ----

class CdrWriter {
  #bytes = new Uint8Array(256);
  #view = new DataView(this.#bytes.buffer);
  #pos = 4;

  constructor() {
    this.#bytes[1] = 1; // encapsulation CDR_LE, options 0
  }

  #reserve(n: number): void {
    if (this.#pos + n <= this.#bytes.length) return;
    const grown = new Uint8Array(Math.max(this.#bytes.length * 2, this.#pos + n));
    grown.set(this.#bytes);
    this.#bytes = grown;
    this.#view = new DataView(grown.buffer);
  }

  #align(size: number): void {
    const pad = (size - ((this.#pos - 4) % size)) % size;
    this.#reserve(pad);
    this.#pos += pad;
  }

  primitive(p: Primitive, value: unknown): void {
    this.#align(p.size);
    this.#reserve(p.size);
    p.write(this.#view, this.#pos, value);
    this.#pos += p.size;
  }

  raw(bytes: Uint8Array): void {
    this.#reserve(bytes.length);
    this.#bytes.set(bytes, this.#pos);
    this.#pos += bytes.length;
  }

  string(utf8: Uint8Array): void {
    this.primitive(PRIMITIVES.uint32, utf8.length + 1);
    this.raw(utf8);
    this.raw(new Uint8Array(1));
  }

  result(): Uint8Array {
    return this.#bytes.slice(0, this.#pos);
  }
}

const utf8 = new TextEncoder();
const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && !ArrayBuffer.isView(v);
const isList = (v: unknown): v is ArrayLike<unknown> =>
  Array.isArray(v) || (ArrayBuffer.isView(v) && !(v instanceof DataView));

/** CDR bytes (with the 4-byte encapsulation header) of `message`, which must match the definition exactly. */
export function encode(type: string, message: unknown): Uint8Array {
  const full = rosType(type);
  const writer = new CdrWriter();
  writeStruct(writer, full, definitionOf(shortName(full)), message, '');
  return writer.result();
}

function writeStruct(w: CdrWriter, type: string, def: MessageDefinition, value: unknown, path: string): void {
  const bad = (code: RosMessageErrorCode, what: string) => new RosMessageError(code, `${type}: ${what}`);
  if (!isRecord(value)) throw bad('BAD_FIELD', `${path || 'message'} must be an object, got ${describe(value)}`);
  const fields = dataFields(def);
  const extra = Object.keys(value).find((key) => !fields.some((f) => f.name === key));
  if (extra !== undefined)
    throw bad('UNKNOWN_FIELD', `field ${join(path, extra)} is not in ${def.name ?? 'the definition'}`);
  if (fields.length === 0) w.primitive(PRIMITIVES.uint8, 0); // ROS 2 gives empty structs one uint8 member
  for (const f of fields) {
    const at = join(path, f.name);
    const v = value[f.name];
    if (v === undefined) throw bad('MISSING_FIELD', `field ${at} is missing`);
    if (f.isArray !== true) {
      writeValue(w, type, f, v, at);
      continue;
    }
    if (!isList(v)) throw bad('BAD_FIELD', `field ${at} must be an array, got ${describe(v)}`);
    if (f.arrayLength !== undefined && v.length !== f.arrayLength)
      throw bad('BAD_FIELD', `field ${at} must have ${f.arrayLength} items, got ${v.length}`);
    if (f.arrayUpperBound !== undefined && v.length > f.arrayUpperBound)
      throw bad('BAD_FIELD', `field ${at} allows at most ${f.arrayUpperBound} items, got ${v.length}`);
    if (f.arrayLength === undefined) w.primitive(PRIMITIVES.uint32, v.length);
    if ((f.type === 'uint8' && v instanceof Uint8Array) || (f.type === 'int8' && v instanceof Int8Array)) {
      w.raw(new Uint8Array(v.buffer, v.byteOffset, v.length));
      continue;
    }
    const p = structType(f) === undefined && f.type !== 'string' ? PRIMITIVES[f.type] : undefined;
    for (let i = 0; i < v.length; i++) {
      if (p === undefined) writeValue(w, type, f, v[i], `${at}[${i}]`);
      else if (p.fits(v[i])) w.primitive(p, v[i]);
      else throw bad('BAD_FIELD', `field ${at}[${i}] must be a ${f.type}, got ${describe(v[i])}`);
    }
  }
}

function writeValue(w: CdrWriter, type: string, f: Field, v: unknown, at: string): void {
  const struct = structType(f);
  if (struct !== undefined) return writeStruct(w, type, definitionOf(struct), v, at);
  if (f.type === 'string') {
    if (typeof v !== 'string' || v.includes('\0'))
      throw new RosMessageError('BAD_FIELD', `${type}: field ${at} must be a string without NUL, got ${describe(v)}`);
    const bytes = utf8.encode(v);
    if (f.upperBound !== undefined && bytes.length > f.upperBound) {
      throw new RosMessageError(
        'BAD_FIELD',
        `${type}: field ${at} allows at most ${f.upperBound} bytes, got ${bytes.length}`,
      );
    }
    return w.string(bytes);
  }
  const p = PRIMITIVES[f.type];
  if (!p.fits(v))
    throw new RosMessageError('BAD_FIELD', `${type}: field ${at} must be a ${f.type}, got ${describe(v)}`);
  w.primitive(p, v);
}

const join = (path: string, name: string) => (path ? `${path}.${name}` : name);

function describe(v: unknown): string {
  if (typeof v === 'string') return `string ${JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v)}`;
  if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean') return `${typeof v} ${String(v)}`;
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return ArrayBuffer.isView(v) ? v.constructor.name : typeof v;
}

// ---- decode ----

/** Walks CDR bytes the way MessageReader will, proving every read stays inside the buffer and is well formed. */
class CdrChecker {
  pos = 4;
  readonly #view: DataView;

  constructor(
    readonly type: string,
    readonly bytes: Uint8Array,
    readonly little: boolean,
  ) {
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  fail(what: string): never {
    throw new RosMessageError('BAD_CDR', `${this.type}: ${what} (${this.bytes.length} bytes)`);
  }

  take(size: number, align: number, at: string): number {
    this.pos += (align - ((this.pos - 4) % align)) % align;
    if (this.pos + size > this.bytes.length) this.fail(`${at} runs past the end`);
    const start = this.pos;
    this.pos += size;
    return start;
  }

  uint32(at: string): number {
    return this.#view.getUint32(this.take(4, 4, at), this.little);
  }
}

function checkStruct(c: CdrChecker, def: MessageDefinition, path: string): void {
  const fields = dataFields(def);
  if (fields.length === 0) c.take(1, 1, path);
  for (const f of fields) {
    const at = join(path, f.name);
    if (f.isArray !== true) {
      checkValue(c, f, at);
      continue;
    }
    const count = f.arrayLength ?? c.uint32(`${at} length`);
    if (f.arrayUpperBound !== undefined && count > f.arrayUpperBound)
      c.fail(`${at} has ${count} items, at most ${f.arrayUpperBound} allowed`);
    const p = PRIMITIVES[f.type];
    if (p !== undefined && f.type !== 'bool') {
      if (count > 0) c.take(count * p.size, p.size, at);
      continue;
    }
    for (let i = 0; i < count; i++) checkValue(c, f, `${at}[${i}]`);
  }
}

function checkValue(c: CdrChecker, f: Field, at: string): void {
  const struct = structType(f);
  if (struct !== undefined) return checkStruct(c, definitionOf(struct), at);
  if (f.type === 'string') {
    const length = c.uint32(`${at} length`);
    if (length === 0) c.fail(`${at} has length 0, without its NUL`);
    const start = c.take(length, 1, at);
    if (c.bytes[start + length - 1] !== 0) c.fail(`${at} is not NUL-terminated`);
    if (f.upperBound !== undefined && length - 1 > f.upperBound) c.fail(`${at} is longer than ${f.upperBound} bytes`);
    return;
  }
  const p = PRIMITIVES[f.type];
  const start = c.take(p.size, p.size, at);
  if (f.type === 'bool' && c.bytes[start] > 1) c.fail(`${at} is a bool of value ${c.bytes[start]}`);
}

const readers = new Map<string, MessageReader>();

function readerOf(name: string): MessageReader {
  let reader = readers.get(name);
  if (!reader) {
    const defs = definitions();
    reader = new MessageReader([defs.get(name)!, ...dependencies(defs, name).map((d) => defs.get(d)!)]);
    readers.set(name, reader);
  }
  return reader;
}

/** rmw pads serialized messages to a multiple of 4 bytes; more than that after the last field is an error. */
const MAX_TRAILING = 3;

/**
 * The message in `bytes` (CDR with its encapsulation header): plain objects, typed arrays, bigint for
 * 64-bit integers.
 */
export function decode(type: string, bytes: Uint8Array): unknown {
  const full = rosType(type);
  const name = shortName(full);
  if (bytes.length < 4)
    throw new RosMessageError('BAD_CDR', `${full}: ${bytes.length} bytes, shorter than the encapsulation header`);
  if (bytes[0] !== 0 || bytes[1] > 1) {
    throw new RosMessageError(
      'BAD_CDR',
      `${full}: encapsulation 0x${bytes[0].toString(16)}${bytes[1].toString(16).padStart(2, '0')} is not plain CDR`,
    );
  }
  const checker = new CdrChecker(full, bytes, bytes[1] === 1);
  checkStruct(checker, definitionOf(name), '');
  if (bytes.length - checker.pos > MAX_TRAILING) checker.fail(`${bytes.length - checker.pos} bytes after the message`);
  const reader = readerOf(name);
  try {
    const message = reader.readMessage(bytes);
    if (reader.lastReadByteLength() !== checker.pos)
      checker.fail(`reader stopped at ${reader.lastReadByteLength()}, expected ${checker.pos}`);
    return message;
  } catch (err) {
    if (err instanceof RosMessageError) throw err;
    return checker.fail((err as Error).message);
  }
}

// ---- schema text ----

/** The `ros2msg` schema MCAP and rosbag2 store: the type's text, then each dependency after a separator line. */
export function schemaText(type: string): string {
  const name = shortName(rosType(type));
  const defs = definitions();
  const sections = dependencies(defs, name).map(
    (dep) => `${'='.repeat(80)}\nMSG: ${dep}\n${definitionText(defs.get(dep)!)}`,
  );
  return [definitionText(defs.get(name)!), ...sections].join('');
}

function definitionText(def: MessageDefinition): string {
  return def.definitions.map((f) => `${fieldText(f)}\n`).join('');
}

function fieldText(f: Field): string {
  if (f.isConstant === true) return `${f.type} ${f.name}=${f.valueText ?? String(f.value)}`;
  let type = structType(f) ?? f.type;
  if (f.upperBound !== undefined) type += `<=${f.upperBound}`;
  if (f.isArray === true)
    type +=
      f.arrayLength !== undefined
        ? `[${f.arrayLength}]`
        : f.arrayUpperBound !== undefined
          ? `[<=${f.arrayUpperBound}]`
          : '[]';
  const initial = f.defaultValue === undefined ? '' : ` ${literal(f.defaultValue)}`;
  return `${type} ${f.name}${initial}`;
}

function literal(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(literal).join(', ')}]`;
  return typeof value === 'string' ? JSON.stringify(value) : String(value);
}

/** encode, decode and schemaText as one value, for transports that take a codec. */
export const codec = { encode, decode, schemaText };
