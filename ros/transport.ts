/**
 * What the robot node needs from ROS: publish, subscribe, parameters and a clock. Implemented by
 * rclnodejs on a robot with ROS 2 sourced, and by MCAP bags (replay in, record out) without ROS.
 * Messages are plain objects shaped like the ROS types; transports encode them to CDR.
 */
export interface RosTransport {
  readonly kind: 'rclnodejs' | 'mcap';
  publisher(topic: string, type: string): RosPublisher;
  subscribe(
    topic: string,
    type: string,
    handler: (message: unknown, stamp: bigint) => void | Promise<void>,
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
  kind: 'string' | 'string[]' | 'number' | 'integer';
  default: string | number | string[];
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
