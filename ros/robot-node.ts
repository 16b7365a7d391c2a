#!/usr/bin/env node
import { constants } from 'node:fs';
import { access } from 'node:fs/promises';
import { RobomeshError } from '../protocol/errors.js';
import { RosError } from './errors.js';
import { codec } from './messages.js';
import { McapTransport } from './mcap-transport.js';
import { PARAMETERS, flattenParams, loadRobotParams, resolveParams } from './params.js';
import { RclnodejsTransport, rosIsSourced } from './rclnodejs-transport.js';
import { type RobotDashboard, startRobotDashboard } from './robot-dashboard.js';
import { RobotRosNode } from './robot-ros-node.js';
import { startRobot } from './robot-setup.js';
import type { RosTransport } from './transport.js';

/**
 * The robot's ROS 2 entry point (what `ros2 launch robomesh robot.launch.xml` runs). With ROS 2
 * sourced it joins the ROS graph through rclnodejs; without, `--replay BAG [--record OUT.mcap]`
 * plays a rosbag2 recording (its folder, an .mcap or a .db3 file) through the same node.
 * `--print-params` prints the resolved settings.
 * With `dashboard.port` set the robot serves its live dashboard (its own view: map, peers and
 * links, log, latencies) on `dashboard.host` (127.0.0.1 by default), and prints its URL; after a
 * replay it keeps serving until SIGINT / SIGTERM.
 */
const USAGE =
  'usage: robot-node [--print-params] [--replay BAG (rosbag2 folder, .mcap or .db3) [--record ' +
  'OUT.mcap]] [--ros-args -p name:=value … --params-file FILE]';

function option(argv: string[], name: string): string | undefined {
  const i = argv.indexOf(name);
  if (i < 0) return undefined;
  const v = argv[i + 1];
  if (!v || v.startsWith('--')) throw new RosError('USAGE', `${name} needs a value\n${USAGE}`);
  return v;
}

async function main(argv: string[]): Promise<void> {
  let params = loadRobotParams(argv);
  if (argv.includes('--print-params')) {
    process.stdout.write(`${JSON.stringify(params, null, 2)}\n`);
    return;
  }
  const replay = option(argv, '--replay');
  const record = option(argv, '--record');
  if (replay) {
    try {
      await access(replay, constants.R_OK);
    } catch {
      throw new RosError('BAG_UNREADABLE', `cannot open bag ${replay}: no such readable file`);
    }
  }
  if (!replay && !rosIsSourced())
    throw new RosError(
      'ROS_NOT_SOURCED',
      `ROS 2 is not sourced: source /opt/ros/<distro>/setup.bash, or replay a bag without ROS\n${USAGE}`,
    );
  const transport: RosTransport = replay
    ? await McapTransport.create(codec, record)
    : await RclnodejsTransport.create(codec, params.robot_name, params.namespace || '/');
  // On a robot, rcl holds the final say (launch-generated params files, remaps): read it back.
  params = resolveParams([flattenParams(params), transport.parameters(PARAMETERS)]);
  const robot = await startRobot(params);
  const node = new RobotRosNode(robot, transport, params);
  const log = (s: string): void => void process.stderr.write(`[${params.robot_name}] ${s}\n`);
  log(`up as ${robot.peerId} on ${transport.kind}`);
  let dashboard: RobotDashboard | undefined;
  try {
    dashboard = await startRobotDashboard(robot, params, { pose: () => node.pose });
  } catch (err) {
    node.close();
    await transport.close();
    await robot.stop();
    throw err;
  }
  if (dashboard) log(`dashboard at ${dashboard.url}`);
  let nodeClosed = false;
  const closeNode = async (): Promise<void> => {
    if (nodeClosed) return;
    nodeClosed = true;
    node.close();
    await transport.close();
  };
  const stop = async (): Promise<void> => {
    await closeNode();
    await dashboard?.close();
    await robot.stop();
    log(`stopped: ${JSON.stringify(node.counts)}`);
  };
  const signalled = (): Promise<void> =>
    new Promise<void>((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
    });
  if (transport instanceof McapTransport && replay) {
    let shown = 0;
    try {
      const played = await transport.replay(replay, (done, total) => {
        if (done - shown >= 500) {
          shown = done;
          log(`replayed ${done}${total ? `/${total}` : ''} messages`);
        }
      });
      log(`replayed ${played} messages from ${replay}`);
      node.publishMap();
      await closeNode();
      if (record) log(`recorded ${record}`);
      // A dashboard asked for outlives the replay (which takes seconds): the robot stays in its
      // fleet, its map and log keep updating from peers, until stopped.
      if (dashboard) {
        log(`replay done; dashboard still at ${dashboard.url} (Ctrl-C to stop)`);
        await signalled();
      }
    } finally {
      await stop();
    }
    return;
  }
  await signalled();
  await stop();
}

try {
  await main(process.argv.slice(2));
} catch (err) {
  if (err instanceof RobomeshError) {
    process.stderr.write(`robomesh robot node: ${err.message}\n`);
    process.exitCode = 2;
  } else throw err;
}
