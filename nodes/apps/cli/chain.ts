import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { encodeChainManifest } from '../../../protocol/chain-manifest.js';
import {
  type Precision,
  ProfileStore,
  analyzeModel,
  buildChain,
  builtinInputShape,
  defaultCacheDir,
  loadModelArg,
  profileKey,
} from '../../inference/index.js';
import { ModelSlicer } from '../../inference/slicer.js';
import { SessionCache } from '../../inference/sessions.js';
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
  const model = await loadModelArg(modelArg);
  const inputShapes = args.inputShape ?? builtinInputShape(modelArg);
  const analysis = await analyzeModel(model, { inputShapes });
  const slicer = await ModelSlicer.open(model, new SessionCache({ threads: 1 }), { inputShapes }, async () => analysis);
  // Profiled at the chain's precision (what the stages ship), else at fp32.
  const store = new ProfileStore(join(defaultCacheDir(), 'profiles'));
  const profile =
    (await store.load(model.hash, profileKey(slicer, args.precision, 1))) ??
    (await store.load(model.hash, profileKey(slicer, 'fp32', 1)));
  const { manifest, stages } = buildChain(analysis, {
    stages: args.stages,
    precision: args.precision,
    cuts: args.cuts?.split(',').map((c) => c.trim()),
    wholeMs: profile?.wholeMs,
    headMs: profile ? Object.fromEntries(profile.cuts.map((c) => [c.id, c.headMs])) : undefined,
    bytesPerSecond: args.mbps ? (args.mbps * 1e6) / 8 : undefined,
    replicas: replicasArg(args.replicas, args.stages),
    outputsShipped: !args.lastHere,
  });
  const rows: string[] = [];
  try {
    await mkdir(args.out, { recursive: true });
    for (const [k, stage] of stages.entries()) {
      const entry = manifest.stages[k];
      const file = `stage-${k + 1}-${entry.hash.slice(0, 12)}.onnx`;
      await writeFile(join(args.out, file), stage.bytes);
      rows.push(
        `${String(k + 1).padStart(5)}  ${`${entry.from} → ${entry.to}`.padEnd(18)}  ` +
          `${(100 * entry.share).toFixed(1).padStart(5)} %` +
          `  ${mb(entry.weightBytes).padStart(7)} MB  ${(entry.outBytes / 1024).toFixed(0).padStart(7)} KiB  ${file}`,
      );
    }
    await writeFile(join(args.out, 'chain.json'), encodeChainManifest(manifest));
  } catch (err) {
    throw new UsageError(`cannot write to ${args.out}: ${(err as Error).message}`);
  }
  process.stdout.write(
    `${modelArg}: ${stages.length} stages at ${args.precision}, balanced by ${profile ? 'measured times' : 'FLOPs'}\n` +
      `stage  span                share  weights        sends  file\n${rows.join('\n')}\n` +
      `wrote ${join(args.out, 'chain.json')}; a robot holds stages with \`stages: [FILE…]\` in its config\n`,
  );
}
