export { Robot, robotPaths } from './robot.js';
