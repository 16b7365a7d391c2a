import type * as Rcl from 'rclnodejs';
import { RosError } from './errors.js';
import {
  type CdrCodec,
  type ParamSpec,
  QOS_PRESETS,
  type QosProfile,
  type RosPublisher,
  type RosTransport,
  fullType,
} from './transport.js';

/**
 * The part of an rclnodejs node the transport calls, in the shapes rclnodejs's own type
 * definitions declare (types/*.d.ts of the installed package, present without ROS). Functions are
 * properties, so their parameters are checked strictly: `RclnodejsConforms` below fails
 * `npm run build` when the real module does not fit, and test stand-ins implement these types.
 * `spin` and `declareParameter` pass rclnodejs's own objects through and are methods.
 */
export interface RclNode {
  createPublisher: (type: string, topic: string, options: Rcl.Options) => Pick<Rcl.Publisher<string>, 'publish'>;
  createSubscription: (
    type: string,
    topic: string,
    options: Rcl.Options,
    callback: Rcl.SubscriptionWithRawMessageCallback,
  ) => unknown;
  now: () => Pick<Rcl.Time, 'nanoseconds'>;
  declareParameter(parameter: RclParameter): unknown;
  getParameter: (name: string) => Pick<Rcl.Parameter, 'value'>;
  destroy: () => void;
}

export type RclParameter = Pick<Rcl.Parameter, 'name' | 'type' | 'value'>;

export interface RclModule {
  init: (context: undefined, argv: string[]) => Promise<void>;
  Parameter: new (name: string, type: Rcl.ParameterType, value: unknown) => RclParameter;
  ParameterType: Pick<
    typeof Rcl.ParameterType,
    'PARAMETER_STRING' | 'PARAMETER_STRING_ARRAY' | 'PARAMETER_DOUBLE' | 'PARAMETER_INTEGER' | 'PARAMETER_BOOL'
  >;
  QoS: new (
    history: Rcl.QoS.HistoryPolicy,
    depth: number,
    reliability: Rcl.QoS.ReliabilityPolicy,
    durability: Rcl.QoS.DurabilityPolicy,
  ) => Rcl.QoS;
  createNode: (name: string, namespace: string) => RclNode;
  spin(node: RclNode): void;
  shutdown: () => void;
}

/** Compiles only while rclnodejs's declared module fits RclModule. */
type Conforms<T extends RclModule> = T;
export type RclnodejsConforms = Conforms<typeof Rcl>;

export const rosIsSourced = (env: NodeJS.ProcessEnv = process.env): boolean =>
  Boolean(env.ROS_DISTRO && env.AMENT_PREFIX_PATH);

/**
 * Loads rclnodejs only when ROS 2 is sourced: importing it elsewhere tries to build it and
 * throws (notes/ros2.md). `load` is replaceable so the logic is tested with a stand-in.
 */
export async function loadRclnodejs(
  env: NodeJS.ProcessEnv = process.env,
  load: () => Promise<unknown> = () => import('rclnodejs' as string),
): Promise<RclModule> {
  if (!rosIsSourced(env))
    throw new RosError(
      'ROS_NOT_SOURCED',
      'ROS 2 is not sourced (ROS_DISTRO and AMENT_PREFIX_PATH unset): ' +
        'source /opt/ros/<distro>/setup.bash, or replay a bag with --replay',
    );
  try {
    const mod = (await load()) as { default?: typeof Rcl } & typeof Rcl;
    return mod.default ?? mod;
  } catch (err) {
    throw new RosError(
      'RCLNODEJS_UNAVAILABLE',
      `rclnodejs failed to load with ROS ${env.ROS_DISTRO}: ` +
        `${(err as Error).message} (npm rebuild rclnodejs with ROS sourced)`,
    );
  }
}

/**
 * ROS 2 through rclnodejs: publishes our own CDR bytes (rclnodejs accepts a pre-serialized
 * Buffer) and subscribes raw, decoding with the same codec the tests check against Fast-CDR,
 * so the wire format does not depend on generated message classes.
 */
export class RclnodejsTransport implements RosTransport {
  readonly kind = 'rclnodejs';
  malformed = 0;

  private constructor(
    private readonly rcl: RclModule,
    private readonly node: RclNode,
    private readonly codec: CdrCodec,
  ) {}

  static async create(
    codec: CdrCodec,
    name: string,
    namespace: string,
    rcl?: RclModule,
    argv: string[] = process.argv,
  ): Promise<RclnodejsTransport> {
    const mod = rcl ?? (await loadRclnodejs());
    await mod.init(undefined, argv);
    const node = mod.createNode(name, namespace);
    mod.spin(node);
    return new RclnodejsTransport(mod, node, codec);
  }

  /**
   * rmw's numbers for a profile, as the enums rclnodejs declares them: keep last 1, reliable 1,
   * best effort 2, transient local 1, volatile 2.
   */
  private qos(q: QosProfile): Rcl.QoS {
    return new this.rcl.QoS(
      1 as Rcl.QoS.HistoryPolicy,
      q.depth,
      (q.reliability === 'reliable' ? 1 : 2) as Rcl.QoS.ReliabilityPolicy,
      (q.durability === 'transient_local' ? 1 : 2) as Rcl.QoS.DurabilityPolicy,
    );
  }

  publisher(topic: string, type: string, qos: QosProfile = QOS_PRESETS.reliable): RosPublisher {
    const t = fullType(type);
    const pub = this.node.createPublisher(t, topic, { qos: this.qos(qos) });
    return { publish: (message) => pub.publish(Buffer.from(this.codec.encode(t, message))) };
  }

  subscribe(
    topic: string,
    type: string,
    handler: (message: unknown, stamp: bigint) => void | Promise<void>,
    qos: QosProfile = QOS_PRESETS.reliable,
  ): () => void {
    const t = fullType(type);
    let active = true;
    this.node.createSubscription(t, topic, { isRaw: true, qos: this.qos(qos) }, (raw) => {
      if (!active) return;
      let message: unknown;
      try {
        message = this.codec.decode(t, new Uint8Array(raw));
      } catch (err) {
        this.malformed++;
        process.stderr.write(`robomesh: dropped a malformed ${t} on ${topic}: ${(err as Error).message}\n`);
        return;
      }
      void Promise.resolve(handler(message, this.now())).catch((err: Error) =>
        process.stderr.write(`robomesh: handler for ${topic} failed: ${err.message}\n`),
      );
    });
    return () => {
      active = false;
    };
  }

  now(): bigint {
    return BigInt(this.node.now().nanoseconds);
  }

  /** Declares every parameter (so `ros2 param list/get` shows them) and reads back rcl's values. */
  parameters(schema: readonly ParamSpec[]): Record<string, unknown> {
    const T = this.rcl.ParameterType;
    const type = {
      string: T.PARAMETER_STRING,
      'string[]': T.PARAMETER_STRING_ARRAY,
      number: T.PARAMETER_DOUBLE,
      integer: T.PARAMETER_INTEGER,
      boolean: T.PARAMETER_BOOL,
    };
    const out: Record<string, unknown> = {};
    for (const p of schema) {
      const value = p.kind === 'integer' ? BigInt(p.default as number) : p.default;
      this.node.declareParameter(new this.rcl.Parameter(p.name, type[p.kind], value));
      const got = this.node.getParameter(p.name).value;
      out[p.name] = typeof got === 'bigint' ? Number(got) : got;
    }
    return out;
  }

  async close(): Promise<void> {
    this.node.destroy();
    await this.rcl.shutdown();
  }
}
