export { LinkEstimator } from './links.js';
export { type Plan } from './planner.js';
export { type Decision, type InferOptions, Scheduler } from './scheduler.js';
export { BoundedQueue } from './bounded-queue.js';
export {
  type ChainCounters,
  ChainError,
  type ChainResult,
  ChainRunner,
  type FrameOutcome,
  type OpenStream,
  type StageRun,
  type StreamStats,
} from './chain.js';
