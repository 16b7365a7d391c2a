import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDashboard } from '../dashboard/server.js';
import { FleetRun } from '../fleet/fleet-run.js';
import { reportMarkdown } from '../fleet/report-md.js';
import { DEFAULT_SCENARIO, parseScenario } from '../fleet/scenario.js';
import { UsageError } from './options.js';

export interface FleetArgs {
  scenario?: string;
  robots?: number;
  duration?: number;
  inProcess?: boolean;
  dashboard?: boolean;
  port?: number;
  dataDir?: string;
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
    if (scenario.events.some((e) => JSON.stringify(e).match(new RegExp(`"r(\\d+)"`, 'g'))?.some((m) => Number(m.slice(2, -1)) >= args.robots!))) {
      throw new UsageError(`the scenario's events name robots beyond --robots ${args.robots}`);
    }
    scenario.robots = args.robots;
  }
  if (args.duration) scenario.duration = args.duration;
  const dir = args.dataDir ?? (await mkdtemp(join(tmpdir(), 'robomesh-fleet-')));
  const log = (s: string): void => void process.stdout.write(`${s}\n`);
  const run = new FleetRun(scenario, { inProcess: args.inProcess ?? scenario.robots > 12, dataDir: dir, log });
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
