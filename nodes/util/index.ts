export { componentLogger, type Logger } from './logger.js';
export {
  hasMallocTunables,
  type MallocTunables,
  reexecWithMallocTunables,
  ROBOT_MALLOC_TUNABLES,
  robotProcessEnv,
  withMallocTunables,
} from './malloc-tunables.js';
export { prng } from './prng.js';
export { type Startable, Timers } from './service.js';
export { settleBy } from './abort.js';
