export { ATTACKS } from './attacks.js';
export { FleetRun, type Placement, resolvePlacement } from './fleet-run.js';
export { reportMarkdown } from './report-md.js';
export { DEFAULT_SCENARIO, parseScenario } from './scenario.js';
