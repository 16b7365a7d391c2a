export { LinkEstimator } from './links.js';
export { type Plan } from './planner.js';
export { type Decision, type InferOptions, Scheduler } from './scheduler.js';
