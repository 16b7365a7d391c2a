export { type RobotViewOptions, RobotViewSource } from './robot-view.js';
export { type Dashboard, startDashboard } from './server.js';
export { type FleetView, type FleetViewSource } from './view.js';
