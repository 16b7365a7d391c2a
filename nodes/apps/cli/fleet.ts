import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { InvalidArgumentError } from 'commander';
import { startDashboard } from '../dashboard/index.js';
import { FleetRun, type Placement, reportMarkdown, DEFAULT_SCENARIO, parseScenario } from '../fleet/index.js';
import { UsageError } from './options.js';

export interface FleetArgs {
  scenario?: string;
  robots?: number;
  duration?: number;
  processes?: Placement;
  inProcess?: boolean;
  dashboard?: boolean;
  port?: number;
  dataDir?: string;
}

/** `--processes K | separate | in-process`: where the fleet's robots run. */
export function parsePlacement(value: string): Placement {
  if (value === 'separate' || value === 'in-process') return value;
  const k = Number(value);
  if (/^\d+$/.test(value) && k >= 1) return k;
  throw new InvalidArgumentError(`expected a number of processes (≥ 1), separate or in-process; got '${value}'`);
}

/**
 * The placement when none is asked for: one process per robot for small fleets (≤ 12 robots);
 * above, the robots spread over one process per CPU core (in this process on a single core).
 */
export function defaultPlacement(robots: number, cores = availableParallelism()): Placement {
  if (robots <= 12) return 'separate';
  return cores > 1 ? cores : 'in-process';
}

/** `robomesh fleet`: the whole system on this machine, with a report at the end. */
export async function fleetCommand(args: FleetArgs): Promise<void> {
  let text = DEFAULT_SCENARIO;
  if (args.scenario) {
    try {
      text = await readFile(args.scenario, 'utf8');
    } catch (err) {
      throw new UsageError(`cannot read scenario ${args.scenario}: ${(err as Error).message}`);
    }
  }
  const scenario = parseScenario(text, args.scenario ?? 'the default scenario');
  if (args.robots) {
    if (
      scenario.events.some((e) =>
        JSON.stringify(e)
          .match(new RegExp(`"r(\\d+)"`, 'g'))
          ?.some((m) => Number(m.slice(2, -1)) >= args.robots!),
      )
    ) {
      throw new UsageError(`the scenario's events name robots beyond --robots ${args.robots}`);
    }
    scenario.robots = args.robots;
    const chain = scenario.chain;
    if (chain && Number(chain.from.slice(1)) >= args.robots)
      throw new UsageError(`the scenario's chain streams from ${chain.from}, beyond --robots ${args.robots}`);
    if (chain) chain.replicas = Math.min(chain.replicas, args.robots - 1);
  }
  if (args.duration) scenario.duration = args.duration;
  const dir = args.dataDir ?? (await mkdtemp(join(tmpdir(), 'robomesh-fleet-')));
  const log = (s: string): void => void process.stdout.write(`${s}\n`);
  if (args.inProcess && args.processes !== undefined && args.processes !== 'in-process') {
    throw new UsageError(`--in-process and --processes ${args.processes} disagree`);
  }
  const placement = args.processes ?? (args.inProcess ? 'in-process' : defaultPlacement(scenario.robots));
  const run = new FleetRun(scenario, { placement, dataDir: dir, log });
  let dashboard: { url: string; close: () => Promise<void> } | undefined;
  if (args.dashboard !== false) {
    // The usual port if free, else any free one: a busy 8080 must not stop the fleet.
    dashboard = await startDashboard(run, { port: args.port ?? 8080 }).catch(() => startDashboard(run, { port: 0 }));
    log(`dashboard: ${dashboard.url}`);
  }
  try {
    const report = await run.run();
    const md = reportMarkdown(report);
    await writeFile(join(dir, 'report.md'), md);
    await writeFile(join(dir, 'report.json'), `${JSON.stringify(report, null, 2)}\n`);
    log(`\n${md}`);
    log(`report: ${join(dir, 'report.md')} and report.json`);
  } finally {
    await dashboard?.close();
  }
}
