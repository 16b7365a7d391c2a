import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Presets, SingleBar } from 'cli-progress';
import {
  type ExitHead,
  ModelSlicer,
  SessionCache,
  builtinInputShape,
  declareExit,
  fitExits,
  loadCalibration,
  loadModelArg,
  renderTextLines,
} from '../../inference/index.js';
import { UsageError } from './options.js';

export interface ExitsFitArgs {
  calib: string;
  out: string;
  target: number;
  seed: number;
  cut?: string[];
  inputShape?: Record<string, number[]>;
}

function bar(label: string): SingleBar {
  return new SingleBar(
    { format: `${label} [{bar}] {value}/{total} {stage}`, stream: process.stderr },
    Presets.shades_classic,
  );
}

export function exitsTable(exits: ExitHead[], shares: Map<string, number>): string {
  const header = ['cut', 'head share', 'exit rate', 'agreement', 'threshold', 'file'];
  const rows = exits.map((e) => [
    e.info.cut,
    `${(100 * (shares.get(e.info.cut) ?? 0)).toFixed(1)} %`,
    `${(100 * e.info.exitRate).toFixed(1)} %`,
    `${(100 * e.info.agreement).toFixed(2)} %`,
    e.info.threshold > 1 ? 'never' : e.info.threshold.toFixed(4),
    exitFileName(e),
  ]);
  const widths = header.map((h, k) => Math.max(h.length, ...rows.map((r) => r[k].length)));
  const line = (r: string[]): string => r.map((v, k) => v.padEnd(widths[k])).join('  ');
  return [line(header), ...rows.map(line)].join('\n');
}

const exitFileName = (e: ExitHead): string => `exit-${e.info.cut}-${e.hash.slice(0, 12)}.onnx`;

/** `robomesh exits fit MODEL --calib DIR --out DIR`: one exit per cut that can carry one. */
export async function exitsFitCommand(modelArg: string, args: ExitsFitArgs): Promise<void> {
  if (!(args.target > 0 && args.target <= 1)) throw new UsageError(`--target must be in (0, 1], not ${args.target}`);
  const model = await loadModelArg(modelArg);
  const sessions = new SessionCache({ threads: 1 });
  try {
    const slicer = await ModelSlicer.open(model, sessions, {
      inputShapes: args.inputShape ?? builtinInputShape(modelArg),
    });
    const inputs = slicer.analysis.index.inputs;
    const shape = slicer.analysis.inputShapes[inputs[0]];
    if (inputs.length !== 1 || !shape) throw new UsageError('exits are fitted on models with one image input');
    const loading = bar('reading');
    loading.start(1, 0, { stage: args.calib });
    let feeds;
    try {
      feeds = await loadCalibration(args.calib, { name: inputs[0], shape }, undefined, (done, total) => {
        loading.setTotal(total);
        loading.update(done, { stage: '' });
      });
    } finally {
      loading.stop();
    }
    const fitting = bar('fitting');
    fitting.start(1, 0, { stage: '' });
    let exits: ExitHead[];
    try {
      exits = await fitExits(slicer, feeds, {
        seed: args.seed,
        target: args.target,
        cuts: args.cut,
        onProgress: (done, total, stage) => {
          fitting.setTotal(total);
          fitting.update(done, { stage });
        },
      });
    } finally {
      fitting.stop();
    }
    try {
      await mkdir(args.out, { recursive: true });
      for (const e of exits) await writeFile(join(args.out, exitFileName(e)), e.bytes);
    } catch (err) {
      throw new UsageError(`cannot write to ${args.out}: ${(err as Error).message}`);
    }
    const shares = new Map(slicer.analysis.cuts.map((c) => [c.id, c.headShare]));
    process.stdout.write(
      `${modelArg}  sha256 ${model.hash.slice(0, 16)}…  ${feeds.length} calibration inputs ` +
        '(fit 40 %, threshold 40 %, measured on the last 20 %), ' +
        `agreement target ${(100 * args.target).toFixed(1)} %\n` +
        `${exitsTable(exits, shares)}\nwritten to ${args.out}\n`,
    );
    // With no miss seen, 3 are assumed (a 95 % bound): the threshold share must hold 3 / (1 − target).
    const needed = Math.ceil(3 / (1 - args.target) / 0.4);
    if (args.target < 1 && exits.every((e) => e.info.threshold > 1) && feeds.length < needed)
      process.stderr.write(
        `no exit can answer at ${(100 * args.target).toFixed(1)} % agreement from ${feeds.length} images: ` +
          `give at least ${needed}\n`,
      );
  } finally {
    await sessions.close();
  }
}

/** `robomesh exits lines DIR`: text lines in real fonts, half upside down, to fit a direction classifier's exits. */
export async function exitsLinesCommand(dir: string, args: { count: number; seed: number }): Promise<void> {
  const rendering = bar('rendering');
  rendering.start(args.count, 0, { stage: '' });
  let files: string[];
  try {
    files = await renderTextLines(dir, { ...args, onProgress: (done) => rendering.update(done) });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EACCES' || (err as NodeJS.ErrnoException).code === 'ENOENT')
      throw new UsageError(`cannot write to ${dir}: ${(err as Error).message}`);
    throw err;
  } finally {
    rendering.stop();
  }
  process.stdout.write(`${files.length} text lines (half upside down) in ${dir}\n`);
}

/** `robomesh exits declare MODEL --output NAME --calib DIR --out DIR`: an early output as an exit. */
export async function exitsDeclareCommand(
  modelArg: string,
  args: {
    output: string;
    calib: string;
    out: string;
    target: number;
    seed: number;
    inputShape?: Record<string, number[]>;
  },
): Promise<void> {
  if (!(args.target > 0 && args.target <= 1)) throw new UsageError(`--target must be in (0, 1], not ${args.target}`);
  const model = await loadModelArg(modelArg);
  const sessions = new SessionCache({ threads: 1 });
  try {
    const probe = await ModelSlicer.open(model, sessions, {
      inputShapes: args.inputShape ?? builtinInputShape(modelArg),
    });
    const inputs = probe.analysis.index.inputs;
    const shape = probe.analysis.inputShapes[inputs[0]];
    if (inputs.length !== 1 || !shape) throw new UsageError('exits are declared on models with one image input');
    const feeds = await loadCalibration(args.calib, { name: inputs[0], shape });
    const declared = await declareExit(model, args.output, feeds, sessions, {
      target: args.target,
      seed: args.seed,
      inputShapes: probe.analysis.inputShapes,
    });
    try {
      await mkdir(args.out, { recursive: true });
      await writeFile(join(args.out, 'model.onnx'), declared.model.bytes);
      await writeFile(join(args.out, exitFileName(declared.exit)), declared.exit.bytes);
    } catch (err) {
      throw new UsageError(`cannot write to ${args.out}: ${(err as Error).message}`);
    }
    const shares = new Map(declared.slicer.analysis.cuts.map((c) => [c.id, c.headShare]));
    process.stdout.write(
      `${modelArg}: '${args.output}' is now an exit at ${declared.exit.info.cut}; the model without it ` +
        `(sha256 ${declared.model.hash.slice(0, 16)}…) is ${join(args.out, 'model.onnx')}\n` +
        `${exitsTable([declared.exit], shares)}\n`,
    );
  } finally {
    await sessions.close();
  }
}
