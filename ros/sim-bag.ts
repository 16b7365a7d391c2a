import { textLikeImage } from '../nodes/inference/index.js';
import { defaultRobots, floorPlan, WorldSimulator } from '../nodes/apps/sim/index.js';
import type { Pose } from '../protocol/sensors.js';
import { tensorToRgb8 } from './image.js';
import { McapTransport } from './mcap-transport.js';
import type { CdrCodec } from './transport.js';

export interface SimBagOptions {
  plan?: string;
  robot?: number;
  seconds: number;
  seed: number;
  /** Seconds between camera frames. */
  cameraEvery?: number;
  cameraSize?: number;
  topics?: { scan: string; odom: string; camera: string };
}

const stampOf = (seconds: number): { sec: number; nanosec: number } => ({
  sec: Math.floor(seconds),
  nanosec: Math.round((seconds % 1) * 1e9),
});

function quaternion(theta: number): { x: number; y: number; z: number; w: number } {
  return { x: 0, y: 0, z: Math.sin(theta / 2), w: Math.cos(theta / 2) };
}

/**
 * Records one simulated robot as a ROS 2 bag: sensor_msgs/LaserScan on `scan` (5 Hz),
 * nav_msgs/Odometry on `odom` (its drifting odometry, in the map frame), sensor_msgs/Image rgb8
 * document-like frames on `camera`. Returns message counts per topic.
 */
export async function writeSimBag(path: string, codec: CdrCodec, o: SimBagOptions): Promise<Record<string, number>> {
  const plan = floorPlan(o.plan ?? 'builtin:small');
  const robot = defaultRobots(plan, (o.robot ?? 0) + 1)[o.robot ?? 0];
  const sim = new WorldSimulator({
    world: plan.world,
    robots: [robot],
    seed: o.seed,
    scanEvery: 2,
    maxTime: o.seconds,
  });
  const topics = o.topics ?? { scan: '/scan', odom: '/odom', camera: '/camera/image_raw' };
  const bag = await McapTransport.create(codec, path);
  const scanPub = bag.publisher(topics.scan, 'sensor_msgs/msg/LaserScan');
  const odomPub = bag.publisher(topics.odom, 'nav_msgs/msg/Odometry');
  const cameraPub = bag.publisher(topics.camera, 'sensor_msgs/msg/Image');
  const counts = { [topics.scan]: 0, [topics.odom]: 0, [topics.camera]: 0 };
  const size = o.cameraSize ?? 320;
  let nextCamera = 0;
  let frame = 0;
  while (!sim.done) {
    const [s] = sim.step();
    if (!s.scan) continue;
    bag.setClock(BigInt(Math.round(s.time * 1e9)));
    const header = (frame_id: string) => ({ stamp: stampOf(s.time), frame_id });
    odomPub.publish(odometry(s.odomPose, header));
    counts[topics.odom]++;
    const sc = s.scan;
    scanPub.publish({
      header: header('base_scan'),
      angle_min: sc.angleMin,
      angle_max: sc.angleMax,
      angle_increment: sc.angleIncrement,
      time_increment: 0,
      scan_time: 0.2,
      range_min: sc.rangeMin,
      range_max: sc.rangeMax,
      ranges: Float32Array.from(sc.ranges),
      intensities: new Float32Array(0),
    });
    counts[topics.scan]++;
    if (s.time >= nextCamera) {
      nextCamera += o.cameraEvery ?? 5;
      cameraPub.publish({
        header: header('camera'),
        height: size,
        width: size,
        encoding: 'rgb8',
        is_bigendian: 0,
        step: size * 3,
        data: tensorToRgb8(textLikeImage(size, size, o.seed * 1000 + frame++), size, size),
      });
      counts[topics.camera]++;
    }
  }
  await bag.close();
  return counts;
}

function odometry(
  p: Pose,
  header: (frame: string) => { stamp: { sec: number; nanosec: number }; frame_id: string },
): unknown {
  const zero36 = new Float64Array(36);
  return {
    header: header('map'),
    child_frame_id: 'base_footprint',
    pose: { pose: { position: { x: p.x, y: p.y, z: 0 }, orientation: quaternion(p.theta) }, covariance: zero36 },
    twist: { twist: { linear: { x: 0, y: 0, z: 0 }, angular: { x: 0, y: 0, z: 0 } }, covariance: zero36 },
  };
}
