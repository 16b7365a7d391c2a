import type * as Rcl from 'rclnodejs';
import type { RclModule } from '../../ros/rclnodejs-transport.js';

/**
 * A stand-in for the rclnodejs module (no ROS 2 here), of the type the transport declares from
 * rclnodejs's own definitions: records what the transport publishes, subscribes and declares,
 * and lets a test deliver raw messages to its subscriptions.
 */
export function rclnodejsStandIn() {
  const published: { topic: string; type: string; data: Buffer | object }[] = [];
  const publishers: { topic: string; type: string; options: Rcl.Options }[] = [];
  const subscriptions: { topic: string; type: string; options: Rcl.Options; cb: (m: Buffer) => void }[] = [];
  const calls: string[] = [];
  const declared = new Map<string, unknown>();
  const rcl: RclModule = {
    Parameter: class {
      constructor(
        readonly name: string,
        readonly type: Rcl.ParameterType,
        readonly value: unknown,
      ) {}
    },
    QoS: class {
      liveliness = 1 as Rcl.QoS.LivelinessPolicy;
      avoidRosNameSpaceConventions = false;
      constructor(
        readonly history: Rcl.QoS.HistoryPolicy,
        readonly depth: number,
        private readonly reliabilityPolicy: Rcl.QoS.ReliabilityPolicy,
        readonly durability: Rcl.QoS.DurabilityPolicy,
      ) {}
      reliability(): Rcl.QoS.ReliabilityPolicy {
        return this.reliabilityPolicy;
      }
    },
    ParameterType: {
      PARAMETER_STRING: 4,
      PARAMETER_STRING_ARRAY: 9,
      PARAMETER_DOUBLE: 3,
      PARAMETER_INTEGER: 2,
      PARAMETER_BOOL: 1,
    },
    init: async (_context, argv) => void calls.push(`init ${JSON.stringify(argv)}`),
    createNode: (name, ns) => {
      calls.push(`node ${name} ${ns}`);
      return {
        createPublisher: (type, topic, options) => {
          publishers.push({ topic, type, options });
          return { publish: (data) => void published.push({ topic, type, data }) };
        },
        createSubscription: (type, topic, options, cb) => subscriptions.push({ topic, type, options, cb }),
        now: () => ({ nanoseconds: 1234n }),
        declareParameter: (p) => void declared.set(p.name, p),
        // rcl's view: an override from the launch file for one parameter, defaults for the rest.
        getParameter: (name) => ({
          value: name === 'topics.scan' ? 'front/scan' : (declared.get(name) as { value: unknown }).value,
        }),
        destroy: () => void calls.push('destroy'),
      };
    },
    spin: () => void calls.push('spin'),
    shutdown: () => void calls.push('shutdown'),
  };
  return { rcl, published, publishers, subscriptions, calls, declared };
}
