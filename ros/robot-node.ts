#!/usr/bin/env node
import { RobomeshError } from '../protocol/errors.js';
import { loadRobotParams } from './params.js';

/**
 * The robot's ROS 2 entry point (what `ros2 launch robomesh robot.launch.xml` runs): settings
 * from the config file and ROS parameters. `--print-params` prints them resolved and exits.
 */
async function main(argv: string[]): Promise<void> {
  const params = loadRobotParams(argv);
  if (argv.includes('--print-params')) {
    process.stdout.write(`${JSON.stringify(params, null, 2)}\n`);
    return;
  }
  throw new RobomeshError('NOT_READY', 'the robot node runs only with --print-params so far');
}

try {
  await main(process.argv.slice(2));
} catch (err) {
  if (err instanceof RobomeshError) {
    process.stderr.write(`robomesh robot node: ${err.message}\n`);
    process.exitCode = 2;
  } else throw err;
}
