/**
 * What the robot node needs from ROS: publish, subscribe, parameters and a clock. Implemented by
 * rclnodejs on a robot with ROS 2 sourced, and by MCAP bags (replay in, record out) without ROS.
 * Messages are plain objects shaped like the ROS types; transports encode them to CDR.
 */
export interface RosTransport {
  readonly kind: 'rclnodejs' | 'mcap';
  /** `qos`: what the publisher offers (default QOS_PRESETS.reliable). */
  publisher(topic: string, type: string, qos?: QosProfile): RosPublisher;
  /** `qos`: what the subscription asks for (default QOS_PRESETS.reliable; sensors need sensor_data). */
  subscribe(
    topic: string,
    type: string,
    handler: (message: unknown, stamp: bigint) => void | Promise<void>,
    qos?: QosProfile,
  ): () => void;
  /**
   * ROS parameter values for these names as the ROS layer holds them (rcl resolves `--ros-args`,
   * params files and launch); names it has no value for are left out.
   */
  parameters(schema: readonly ParamSpec[]): Record<string, unknown>;
  /** Nanoseconds: wall time on a robot, the bag's time during replay. */
  now(): bigint;
  /** Messages that did not decode as their topic's type: dropped (one stderr line each), never delivered. */
  readonly malformed: number;
  close(): Promise<void>;
}

export interface ParamSpec {
  name: string;
  kind: 'string' | 'string[]' | 'number' | 'integer' | 'boolean';
  default: string | number | string[] | boolean;
}

export interface RosPublisher {
  publish(message: unknown): void;
}

/** The CDR codec transports use (ros/messages.ts). */
export interface CdrCodec {
  encode(type: string, message: unknown): Uint8Array;
  decode(type: string, bytes: Uint8Array): unknown;
  schemaText(type: string): string;
}

/** `pkg/msg/Name` whatever spelling came in. */
export const fullType = (type: string): string => (type.split('/').length === 2 ? type.replace('/', '/msg/') : type);

/** Resolves a topic against a namespace as ROS does: absolute topics stay, relative ones are prefixed. */
export function resolveTopic(namespace: string, topic: string): string {
  if (topic.startsWith('/')) return topic;
  const ns = namespace.replace(/\/+$/, '');
  return `${ns.startsWith('/') || ns === '' ? ns : `/${ns}`}/${topic}`;
}

/** A topic's QoS as rmw knows it: reliability, durability and a keep-last depth. */
export interface QosProfile {
  reliability: 'reliable' | 'best_effort';
  durability: 'volatile' | 'transient_local';
  depth: number;
}

/**
 * rclcpp's named profiles: `sensor_data` (best effort, what sensor drivers publish: a reliable
 * subscription gets nothing from them), `reliable`, `transient_local` (reliable and latched, what
 * RViz's Map display asks of /map), `best_effort`.
 */
export const QOS_PRESETS: Readonly<Record<string, QosProfile>> = {
  sensor_data: { reliability: 'best_effort', durability: 'volatile', depth: 5 },
  reliable: { reliability: 'reliable', durability: 'volatile', depth: 10 },
  transient_local: { reliability: 'reliable', durability: 'transient_local', depth: 1 },
  best_effort: { reliability: 'best_effort', durability: 'volatile', depth: 10 },
};

/** `preset` or `preset:depth` (e.g. `sensor_data`, `reliable:50`); undefined when it is neither. */
export function parseQos(text: string): QosProfile | undefined {
  const [name, depthText, ...rest] = text.split(':');
  const preset = QOS_PRESETS[name];
  if (!preset || rest.length) return undefined;
  if (depthText === undefined) return preset;
  const depth = Number(depthText);
  return Number.isSafeInteger(depth) && depth >= 1 ? { ...preset, depth } : undefined;
}

/** A profile as rosbag2 records it in a channel's `offered_qos_profiles`. */
export function offeredQosYaml(q: QosProfile): string {
  const infinite = ['    sec: 2147483647', '    nsec: 4294967295'];
  return [
    '- history: 1',
    `  depth: ${q.depth}`,
    `  reliability: ${q.reliability === 'reliable' ? 1 : 2}`,
    `  durability: ${q.durability === 'transient_local' ? 1 : 2}`,
    '  deadline:',
    ...infinite,
    '  lifespan:',
    ...infinite,
    '  liveliness: 1',
    '  liveliness_lease_duration:',
    ...infinite,
    '  avoid_ros_namespace_conventions: false',
  ].join('\n');
}
