import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { RobomeshError } from '../protocol/errors.js';
import { parseQos } from './transport.js';

/**
 * One schema for a robot's settings, whether they come from ROS parameters (`--ros-args -p
 * key:=value`, `--params-file`), or from a YAML config without ROS. Dotted names are the ROS
 * parameter names (ROS 2 flattens nested parameters with dots).
 */
export interface RobotParams {
  robot_name: string;
  namespace: string;
  config_file: string;
  topics: {
    camera: string;
    camera_compressed: string;
    scan: string;
    odom: string;
    results: string;
    decisions: string;
    peers: string;
    map: string;
    ledger: string;
    diagnostics: string;
  };
  /** Per topic: a QoS preset, `sensor_data`, `reliable`, `transient_local`, `best_effort`, optionally `:depth`. */
  qos: Record<keyof RobotParams['topics'], string>;
  /** How camera frames are fitted to the model's input size. */
  camera: { resize: string };
  models: string[];
  inference: { memory_mb: number; stages: string[]; chain: string };
  fleet: {
    name: string;
    members: string[];
    bootstrap: string[];
    listen: string[];
    genesis_file: string;
    mdns: boolean;
    dev_members: string[];
  };
  data_dir: string;
  map: { resolution: number; origin_x: number; origin_y: number; publish_period: number };
  iota: { rpc_url: string; package_id: string; registry_id: string; registry_version: number };
  dashboard: { port: number; host: string };
}

type Kind = 'string' | 'string[]' | 'number' | 'integer' | 'boolean';

/** Every parameter: dotted name, type, default, what it is. Launch files and docs are checked against this. */
export const PARAMETERS: { name: string; kind: Kind; default: string | number | string[] | boolean; doc: string }[] = [
  { name: 'robot_name', kind: 'string', default: 'robot', doc: "this robot's name (also its ROS node name)" },
  { name: 'namespace', kind: 'string', default: '', doc: 'ROS namespace for every topic' },
  { name: 'config_file', kind: 'string', default: '', doc: 'YAML config read first; parameters override it' },
  {
    name: 'topics.camera',
    kind: 'string',
    default: 'camera/image_raw',
    doc: 'sensor_msgs/Image input (rgb8, bgr8, rgba8, bgra8, mono8; any size)',
  },
  {
    name: 'topics.camera_compressed',
    kind: 'string',
    default: 'camera/image_raw/compressed',
    doc: 'sensor_msgs/CompressedImage input (JPEG or PNG, as image_transport publishes it)',
  },
  {
    name: 'camera.resize',
    kind: 'string',
    default: 'letterbox',
    doc:
      "how frames are fitted to the model's input size: letterbox (aspect kept, top left, the rest zero " +
      'after normalisation, as PaddleOCR pads) or stretch',
  },
  { name: 'topics.scan', kind: 'string', default: 'scan', doc: 'sensor_msgs/LaserScan input' },
  { name: 'topics.odom', kind: 'string', default: 'odom', doc: 'nav_msgs/Odometry input' },
  {
    name: 'topics.results',
    kind: 'string',
    default: 'robomesh/inference',
    doc: 'robomesh_msgs/InferenceResult output',
  },
  {
    name: 'topics.decisions',
    kind: 'string',
    default: 'robomesh/split_decisions',
    doc: 'robomesh_msgs/SplitDecision output',
  },
  { name: 'topics.peers', kind: 'string', default: 'robomesh/peers', doc: 'robomesh_msgs/PeerStatus output' },
  { name: 'topics.map', kind: 'string', default: 'map', doc: 'nav_msgs/OccupancyGrid output (merged map)' },
  { name: 'topics.ledger', kind: 'string', default: 'robomesh/ledger', doc: 'robomesh_msgs/LedgerEvent output' },
  {
    name: 'topics.diagnostics',
    kind: 'string',
    default: '/diagnostics',
    doc: 'diagnostic_msgs/DiagnosticArray output',
  },
  ...(
    [
      ['camera', 'sensor_data', 'best effort, as camera drivers publish'],
      ['camera_compressed', 'sensor_data', 'best effort, as camera drivers publish'],
      ['scan', 'sensor_data', 'best effort, as lidar drivers publish'],
      ['odom', 'sensor_data', 'best effort'],
      ['results', 'reliable', ''],
      ['decisions', 'reliable', ''],
      ['peers', 'reliable', ''],
      ['map', 'transient_local', 'latched, as RViz and Nav2 ask of /map'],
      ['ledger', 'reliable', ''],
      ['diagnostics', 'reliable', ''],
    ] as const
  ).map(([topic, preset, why]) => ({
    name: `qos.${topic}`,
    kind: 'string' as const,
    default: preset,
    doc:
      `QoS of topics.${topic}: sensor_data, reliable, transient_local or best_effort[:depth]` +
      (why ? ` (${why})` : ''),
  })),
  {
    name: 'models',
    kind: 'string[]',
    default: ['builtin:ocr-det'],
    doc: 'ONNX models (paths or builtin:NAME) run on camera images',
  },
  {
    name: 'inference.memory_mb',
    kind: 'number',
    default: 0,
    doc: 'weights this robot may hold, MB (0: no limit); models and stages past it are refused at start',
  },
  {
    name: 'inference.stages',
    kind: 'string[]',
    default: [],
    doc: 'chain stage files (robomesh chain build) this robot holds and serves, without their whole model',
  },
  {
    name: 'inference.chain',
    kind: 'string',
    default: '',
    doc: 'a chain manifest (chain.json): camera frames run pipelined through its stages instead of the scheduler',
  },
  { name: 'fleet.name', kind: 'string', default: 'local', doc: 'fleet name (gossip topics are per fleet)' },
  { name: 'fleet.members', kind: 'string[]', default: [], doc: 'PeerIds admitted to the fleet' },
  { name: 'fleet.bootstrap', kind: 'string[]', default: [], doc: 'multiaddrs dialled at start' },
  { name: 'fleet.listen', kind: 'string[]', default: ['/ip4/0.0.0.0/tcp/0'], doc: 'multiaddrs to listen on' },
  {
    name: 'fleet.genesis_file',
    kind: 'string',
    default: '',
    doc: "the fleet's signed genesis entry (binary, from `robomesh genesis`); empty with no members: a fleet of one",
  },
  {
    name: 'fleet.mdns',
    kind: 'boolean',
    default: true,
    doc: 'find fleet members on the local network by mDNS (false: only fleet.bootstrap and addresses peers tell)',
  },
  {
    name: 'fleet.dev_members',
    kind: 'string[]',
    default: [],
    doc:
      'DEVELOPMENT ONLY: robot names of a fleet whose keys and genesis are derived from public names ' +
      '(anyone can join as one of them); takes the place of fleet.genesis_file',
  },
  { name: 'data_dir', kind: 'string', default: 'robomesh-data', doc: 'identity key, log store, anchor queue' },
  { name: 'map.resolution', kind: 'number', default: 0.05, doc: 'metres per map cell' },
  { name: 'map.origin_x', kind: 'number', default: 0, doc: "x of the shared map frame's cell (0, 0) corner" },
  { name: 'map.origin_y', kind: 'number', default: 0, doc: "y of the shared map frame's cell (0, 0) corner" },
  { name: 'map.publish_period', kind: 'number', default: 5, doc: 'seconds between map tile publishes' },
  { name: 'iota.rpc_url', kind: 'string', default: '', doc: 'IOTA JSON-RPC endpoint; empty: anchors queue and relay' },
  { name: 'iota.package_id', kind: 'string', default: '', doc: 'published robot_ledger package id' },
  { name: 'iota.registry_id', kind: 'string', default: '', doc: 'shared Registry object id' },
  { name: 'iota.registry_version', kind: 'integer', default: 0, doc: "the Registry's initial shared version" },
  {
    name: 'dashboard.port',
    kind: 'integer',
    default: 0,
    doc: "TCP port of this robot's live web dashboard (its map, peers, links, log, latencies); 0: no dashboard",
  },
  {
    name: 'dashboard.host',
    kind: 'string',
    default: '127.0.0.1',
    doc: 'address the dashboard listens on (0.0.0.0: every interface; it has no authentication)',
  },
];

export type ParamErrorCode = 'BAD_CONFIG' | 'BAD_PARAMETER' | 'UNKNOWN_PARAMETER';

export class ParamError extends RobomeshError<ParamErrorCode> {
  constructor(code: ParamErrorCode, message: string, options?: ErrorOptions) {
    super(code, message, options);
  }
}

function check(name: string, kind: Kind, value: unknown): string | number | string[] | boolean {
  const bad = (want: string): never => {
    throw new ParamError('BAD_PARAMETER', `parameter ${name}: expected ${want}, got ${JSON.stringify(value)}`);
  };
  switch (kind) {
    case 'string':
      return typeof value === 'string' ? value : typeof value === 'number' ? String(value) : bad('a string');
    case 'string[]':
      return Array.isArray(value) && value.every((v) => typeof v === 'string')
        ? (value as string[])
        : bad('a list of strings');
    case 'number':
      return typeof value === 'number' && Number.isFinite(value) ? value : bad('a number');
    case 'integer':
      return Number.isSafeInteger(value) ? (value as number) : bad('an integer');
    case 'boolean':
      if (typeof value === 'boolean') return value;
      return value === 'true' ? true : value === 'false' ? false : bad('true or false');
  }
}

/** Flattens nested YAML maps to dotted names, as ROS 2 does with nested parameters. */
function flatten(
  obj: Record<string, unknown>,
  prefix = '',
  out: Record<string, unknown> = {},
): Record<string, unknown> {
  for (const [k, v] of Object.entries(obj)) {
    if (v !== null && typeof v === 'object' && !Array.isArray(v))
      flatten(v as Record<string, unknown>, `${prefix}${k}.`, out);
    else out[`${prefix}${k}`] = v;
  }
  return out;
}

/**
 * Reads a YAML config: either plain (`robot_name: r1`, nested `topics: {scan: …}`) or a ROS
 * params file (`/**:` or `NODE:` → `ros__parameters:`).
 */
export function readConfigYaml(text: string, source: string, node?: string): Record<string, unknown> {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new ParamError('BAD_CONFIG', `${source}: not YAML: ${(err as Error).message}`);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc))
    throw new ParamError('BAD_CONFIG', `${source}: expected a map of settings`);
  const top = doc as Record<string, unknown>;
  const sections = Object.entries(top).filter(
    ([, v]) => v !== null && typeof v === 'object' && 'ros__parameters' in (v as object),
  );
  if (sections.length === 0) return flatten(top);
  const merged: Record<string, unknown> = {};
  for (const [key, v] of sections) {
    const name = key.replace(/^\//, '');
    if (key === '/**' || name === node || name.endsWith(`/${node}`))
      Object.assign(merged, flatten((v as { ros__parameters: Record<string, unknown> }).ros__parameters));
  }
  return merged;
}

/** `--ros-args -p name:=value --params-file f.yaml -r __node:=x -r __ns:=/y` (the part launch_ros appends). */
export function parseRosArgs(argv: string[]): {
  params: Record<string, unknown>;
  paramsFiles: string[];
  node?: string;
  namespace?: string;
  rest: string[];
} {
  const params: Record<string, unknown> = {};
  const paramsFiles: string[] = [];
  const rest: string[] = [];
  let node: string | undefined;
  let namespace: string | undefined;
  let inRos = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--ros-args') inRos = true;
    else if (a === '--') inRos = false;
    else if (!inRos) rest.push(a);
    else if (a === '-p' || a === '--param') {
      const m = /^([^:]+):=(.*)$/s.exec(argv[++i] ?? '');
      if (!m)
        throw new ParamError('BAD_PARAMETER', `--ros-args -p expects name:=value, got ${JSON.stringify(argv[i])}`);
      params[m[1]] = parseYaml(m[2]) ?? '';
    } else if (a === '--params-file') paramsFiles.push(argv[++i] ?? '');
    else if (a === '-r' || a === '--remap') {
      const m = /^(__node|__ns):=(.*)$/.exec(argv[++i] ?? '');
      if (m?.[1] === '__node') node = m[2];
      else if (m?.[1] === '__ns') namespace = m[2];
    }
  }
  return { params, paramsFiles, node, namespace, rest };
}

/** Validates and fills defaults; unknown keys are an error naming the key. */
export function resolveParams(sources: Record<string, unknown>[]): RobotParams {
  const known = new Map(PARAMETERS.map((p) => [p.name, p]));
  const values = new Map<string, unknown>(PARAMETERS.map((p) => [p.name, p.default]));
  for (const src of sources) {
    for (const [name, value] of Object.entries(src)) {
      const p = known.get(name);
      if (!p)
        throw new ParamError('UNKNOWN_PARAMETER', `unknown parameter ${name} (known: ${[...known.keys()].join(', ')})`);
      values.set(name, check(name, p.kind, value));
    }
  }
  const out: Record<string, unknown> = {};
  for (const [name, value] of values) {
    const parts = name.split('.');
    let at = out;
    for (const part of parts.slice(0, -1)) at = (at[part] ??= {}) as Record<string, unknown>;
    at[parts[parts.length - 1]] = value;
  }
  const params = out as unknown as RobotParams;
  if (!/^[A-Za-z][A-Za-z0-9_]*$/.test(params.robot_name))
    throw new ParamError(
      'BAD_PARAMETER',
      `parameter robot_name: ${JSON.stringify(params.robot_name)} is not a valid ROS node name`,
    );
  if (!(params.map.resolution > 0)) throw new ParamError('BAD_PARAMETER', 'parameter map.resolution: must be positive');
  if (!(params.inference.memory_mb >= 0))
    throw new ParamError('BAD_PARAMETER', 'parameter inference.memory_mb: must be 0 (no limit) or positive');
  if (params.camera.resize !== 'letterbox' && params.camera.resize !== 'stretch')
    throw new ParamError(
      'BAD_PARAMETER',
      `parameter camera.resize: ${JSON.stringify(params.camera.resize)} is not letterbox or stretch`,
    );
  for (const [topic, text] of Object.entries(params.qos))
    if (!parseQos(text))
      throw new ParamError(
        'BAD_PARAMETER',
        `parameter qos.${topic}: ${JSON.stringify(text)} is not sensor_data, reliable, transient_local or ` +
          'best_effort, optionally :depth',
      );
  if (params.dashboard.port < 0 || params.dashboard.port > 65535)
    throw new ParamError(
      'BAD_PARAMETER',
      `parameter dashboard.port: ${params.dashboard.port} is not a TCP port (0: no dashboard)`,
    );
  if (params.dashboard.port > 0 && !params.dashboard.host)
    throw new ParamError('BAD_PARAMETER', 'parameter dashboard.host: empty (127.0.0.1: this machine only)');
  return params;
}

/** Settings back to dotted ROS parameter names (the inverse of resolveParams' nesting). */
export function flattenParams(params: RobotParams): Record<string, unknown> {
  return flatten(params as unknown as Record<string, unknown>);
}

/** Settings for one robot process: config file, then params files, then `-p` overrides. */
export function loadRobotParams(argv: string[]): RobotParams {
  const ros = parseRosArgs(argv);
  const read = (path: string): string => {
    try {
      return readFileSync(path, 'utf8');
    } catch (err) {
      throw new ParamError('BAD_CONFIG', `cannot read ${path}: ${(err as Error).message}`);
    }
  };
  const fromFiles = ros.paramsFiles.map((f) => readConfigYaml(read(f), f, ros.node));
  const configFile = (ros.params.config_file ?? fromFiles.map((f) => f.config_file).find((v) => v)) as
    string | undefined;
  const base = configFile ? readConfigYaml(read(configFile), configFile, ros.node) : {};
  const extra: Record<string, unknown> = {};
  if (ros.node) extra.robot_name = ros.node;
  if (ros.namespace) extra.namespace = ros.namespace;
  return resolveParams([base, ...fromFiles, extra, ros.params]);
}
