import { basename } from 'node:path';
import { ChainFilesError, type ChainFiles, type Precision, writeChainFiles } from '../../inference/index.js';
import { UsageError } from './options.js';

export interface ChainBuildArgs {
  stages: number;
  precision: Precision;
  out: string;
  cuts?: string;
  /** Link rate the boundaries are weighed against, Mbit/s. */
  mbps?: number;
  /** Robots that will share each stage, e.g. "1,2,1". */
  replicas?: string;
  /** The requester holds the last stage: the model's outputs do not travel. */
  lastHere?: boolean;
  inputShape?: Record<string, number[]>;
}

const mb = (n: number): string => (n / 1e6).toFixed(2);

function replicasArg(text: string | undefined, stages: number): number[] | undefined {
  if (text === undefined) return undefined;
  const list = text.split(',').map((x) => Number(x.trim()));
  if (list.length !== stages || !list.every((n) => Number.isInteger(n) && n >= 1 && n <= 64))
    throw new UsageError(`--replicas needs ${stages} whole numbers ≥ 1 (one per stage), got '${text}'`);
  return list;
}

/**
 * Writes a model's chain: one ONNX file per stage (stage-K-HASH.onnx) and chain.json. Stages are
 * balanced by the times `robomesh profile` stored for the model when there are some, else by FLOPs.
 */
export async function chainBuildCommand(modelArg: string, args: ChainBuildArgs): Promise<void> {
  const options = {
    stages: args.stages,
    precision: args.precision,
    cuts: args.cuts?.split(',').map((c) => c.trim()),
    bytesPerSecond: args.mbps ? (args.mbps * 1e6) / 8 : undefined,
    replicas: replicasArg(args.replicas, args.stages),
    lastHere: args.lastHere,
    inputShape: args.inputShape,
  };
  let files: ChainFiles;
  try {
    files = await writeChainFiles(modelArg, options, args.out);
  } catch (err) {
    throw err instanceof ChainFilesError ? new UsageError(err.message) : err;
  }
  const rows = files.manifest.stages.map(
    (entry, k) =>
      `${String(k + 1).padStart(5)}  ${`${entry.from} → ${entry.to}`.padEnd(18)}  ` +
      `${(100 * entry.share).toFixed(1).padStart(5)} %` +
      `  ${mb(entry.weightBytes).padStart(7)} MB  ${(entry.outBytes / 1024).toFixed(0).padStart(7)} KiB  ` +
      basename(files.stageFiles[k]),
  );
  process.stdout.write(
    `${modelArg}: ${rows.length} stages at ${args.precision}, balanced by ${files.balancedBy}\n` +
      `stage  span                share  weights        sends  file\n${rows.join('\n')}\n` +
      `wrote ${files.manifestPath}; a robot holds stages with \`stages: [FILE…]\` in its config\n`,
  );
}
