import {
  RobotViewSource,
  type RobotViewOptions,
  type Dashboard,
  startDashboard,
} from '../nodes/apps/dashboard/index.js';
import type { Robot } from '../nodes/robot/index.js';
import type { RobotParams } from './params.js';

export interface RobotDashboard {
  url: string;
  source: RobotViewSource;
  dashboard: Dashboard;
  close(): Promise<void>;
}

/**
 * The live dashboard of one robot, from its own point of view (no fleet controller): served on
 * `dashboard.host`:`dashboard.port` when the port is set; undefined when it is 0 (off).
 */
export async function startRobotDashboard(
  robot: Robot,
  params: RobotParams,
  options: RobotViewOptions = {},
): Promise<RobotDashboard | undefined> {
  if (!params.dashboard.port) return undefined;
  const source = new RobotViewSource(robot, { members: params.fleet.members, ...options });
  let dashboard: Dashboard;
  try {
    dashboard = await startDashboard(source, { port: params.dashboard.port, host: params.dashboard.host });
  } catch (err) {
    source.close();
    throw err;
  }
  return {
    url: dashboard.url,
    source,
    dashboard,
    close: async () => {
      await dashboard.close();
      source.close();
    },
  };
}
