import assert from 'node:assert/strict';
import type { RosTransport } from '../../ros/transport.js';
import { codec } from '../../ros/messages.js';
import { PARAMETERS } from '../../ros/params.js';

/** One message as the ROS side carries it: CDR bytes on a topic. */
export interface RawMessage {
  topic: string;
  type: string;
  data: Uint8Array;
}

/** What the compliance suite needs of each RosTransport implementation. */
export interface RosTransportHarness {
  transport: RosTransport;
  /** Delivers messages as the ROS side would (rcl's raw subscription callbacks, or a replayed bag), in order. */
  deliver(messages: RawMessage[]): Promise<void>;
  /** What reached the ROS side from the transport's publishers (closes the transport where output is a file). */
  published(): Promise<RawMessage[]>;
  cleanup(): Promise<void>;
}

const ODOM = 'nav_msgs/msg/Odometry';
const odom = (i: number): Record<string, unknown> => ({
  header: { stamp: { sec: i, nanosec: 5 }, frame_id: 'map' },
  child_frame_id: 'base',
  pose: {
    pose: { position: { x: i, y: 2, z: 0 }, orientation: { x: 0, y: 0, z: 0, w: 1 } },
    covariance: new Float64Array(36),
  },
  twist: { twist: { linear: { x: 0, y: 0, z: 0 }, angular: { x: 0, y: 0, z: 0 } }, covariance: new Float64Array(36) },
});
const raw = (topic: string, i: number): RawMessage => ({ topic, type: ODOM, data: codec.encode(ODOM, odom(i)) });
const xOf = (m: unknown): number => (m as { pose: { pose: { position: { x: number } } } }).pose.pose.position.x;

/** The contract every RosTransport keeps, run against one implementation. */
export function rosTransportCompliance(name: string, make: () => Promise<RosTransportHarness>): void {
  describe(`RosTransport compliance: ${name}`, () => {
    let h: RosTransportHarness;
    beforeEach(async () => {
      h = await make();
    });
    afterEach(() => h.cleanup());

    it('publishes the codec’s CDR bytes under the full type name', async () => {
      h.transport.publisher('out', 'nav_msgs/Odometry').publish(odom(7));
      const out = (await h.published()).filter((m) => m.topic === 'out');
      assert.equal(out.length, 1);
      assert.equal(out[0].type, ODOM);
      assert.deepEqual(out[0].data, codec.encode(ODOM, odom(7)));
    });

    it('delivers subscribed messages decoded and in order; only to the topic subscribed', async () => {
      const got: number[] = [];
      h.transport.subscribe('odom', ODOM, (m) => void got.push(xOf(m)));
      await h.deliver([raw('odom', 1), raw('other', 99), raw('odom', 2), raw('odom', 3)]);
      assert.deepEqual(got, [1, 2, 3]);
    });

    it('drops a malformed message, counts it and delivers the ones after it', async () => {
      const got: number[] = [];
      h.transport.subscribe('odom', ODOM, (m) => void got.push(xOf(m)));
      const before = h.transport.malformed;
      await h.deliver([
        raw('odom', 1),
        { topic: 'odom', type: ODOM, data: Uint8Array.of(0, 1, 0, 0, 7) },
        raw('odom', 2),
      ]);
      assert.deepEqual(got, [1, 2]);
      assert.equal(h.transport.malformed, before + 1);
    });

    it('stops delivering once unsubscribed', async () => {
      const got: number[] = [];
      const unsubscribe = h.transport.subscribe('odom', ODOM, (m) => void got.push(xOf(m)));
      await h.deliver([raw('odom', 1)]);
      unsubscribe();
      await h.deliver([raw('odom', 2)]);
      assert.deepEqual(got, [1]);
    });

    it('answers parameters with a subset of the schema, values of the declared kinds', () => {
      const values = h.transport.parameters(PARAMETERS);
      const known = new Map(PARAMETERS.map((p) => [p.name, p]));
      for (const [k, v] of Object.entries(values)) {
        const spec = known.get(k);
        assert.ok(spec, `${k} is not in the schema`);
        if (spec.kind === 'string[]') assert.ok(Array.isArray(v), k);
        else assert.equal(typeof v, spec.kind === 'integer' ? 'number' : spec.kind, k);
      }
    });

    it('keeps a clock in nanoseconds that never runs backwards', async () => {
      const a = h.transport.now();
      await h.deliver([raw('odom', 1)]);
      assert.equal(typeof a, 'bigint');
      assert.ok(h.transport.now() >= a);
    });
  });
}
