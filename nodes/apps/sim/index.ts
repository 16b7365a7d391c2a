export {
  type FloorPlan,
  type FloorPlanName,
  FLOOR_PLAN_NAMES,
  defaultRobots,
  floorPlan,
  isFloorPlanName,
} from './floor-plans.js';
export { type LidarConfig, LDS_01, angleIncrement, lidarConfig, scan } from './lidar.js';
export { loadWorld } from './load-world.js';
export {
  type MapServerMetadata,
  decodeMapImage,
  loadMapServerMap,
  parseMapYaml,
  worldFromImage,
} from './map-server.js';
export { DEFAULT_ODOMETRY_NOISE, Odometry, type OdometryNoise } from './odometry.js';
export { type GrayImage, decodePnm } from './pnm.js';
export { advancePose, normalizeAngle } from './pose.js';
export { gaussian } from './random.js';
export { type RayHit, castRay } from './ray-cast.js';
export { PLANNING_MARGIN, ROBOT_RADIUS, blockedCells, planRoute } from './routes.js';
export { type RobotStep, type SimRobotSpec, type SimulatorOptions, WorldSimulator } from './simulator.js';
export { BURGER, type MotionLimits } from './waypoint-follower.js';
export {
  type Cell,
  type GridWorld,
  cellCenter,
  cellIndex,
  countFree,
  createWorld,
  discIsFree,
  inBounds,
  isOccupied,
  isOccupiedCell,
  worldToCell,
} from './world.js';
export { mapQuality, type MapQuality } from './map-quality.js';
export { MappingFleet } from './mapping-fleet.js';
