export { ATTACKS } from './attacks.js';
export { FleetRun } from './fleet-run.js';
export type { FleetReport } from './fleet-report.js';
export { type Placement, describePlacement, resolvePlacement } from './placement.js';
export { reportMarkdown } from './report-md.js';
export { DEFAULT_SCENARIO, parseScenario } from './scenario.js';
