import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type ChainManifest, encodeChainManifest } from '../../protocol/chain-manifest.js';
import { RobomeshError } from '../../protocol/errors.js';
import type { Precision } from './boundary.js';
import { builtinInputShape, loadModelArg } from './bundled-models.js';
import { defaultCacheDir, ProfileStore, profileKey } from './profiler.js';
import { SessionCache } from './sessions.js';
import { ModelSlicer } from './slicer.js';
import { buildChain } from './stages.js';
import { analyzeModel } from './split.js';

export class ChainFilesError extends RobomeshError<'WRITE_FAILED'> {
  constructor(code: 'WRITE_FAILED', message: string, options?: ErrorOptions) {
    super(code, message, options);
  }
}

export interface ChainFilesOptions {
  stages: number;
  precision: Precision;
  cuts?: string[];
  /** Link rate the boundaries are weighed against, bytes per second. */
  bytesPerSecond?: number;
  /** Robots that will share each stage. */
  replicas?: number[];
  /** The requester holds the last stage: the model's outputs do not travel. */
  lastHere?: boolean;
  inputShape?: Record<string, number[]>;
}

export interface ChainFiles {
  manifest: ChainManifest;
  /** chain.json's path. */
  manifestPath: string;
  /** Per stage, its ONNX file's path. */
  stageFiles: string[];
  balancedBy: 'measured times' | 'FLOPs';
}

/**
 * Writes a model's chain to `outDir`: one ONNX file per stage (stage-K-HASH.onnx) and chain.json.
 * Stages are balanced by the times `robomesh profile` stored for the model when there are some
 * (at the chain's precision, else fp32), else by FLOPs.
 */
export async function writeChainFiles(
  modelArg: string,
  options: ChainFilesOptions,
  outDir: string,
): Promise<ChainFiles> {
  const model = await loadModelArg(modelArg);
  const inputShapes = options.inputShape ?? builtinInputShape(modelArg);
  const analysis = await analyzeModel(model, { inputShapes });
  const slicer = await ModelSlicer.open(model, new SessionCache({ threads: 1 }), { inputShapes }, async () => analysis);
  const store = new ProfileStore(join(defaultCacheDir(), 'profiles'));
  const profile =
    (await store.load(model.hash, profileKey(slicer, options.precision, 1))) ??
    (await store.load(model.hash, profileKey(slicer, 'fp32', 1)));
  const { manifest, stages } = buildChain(analysis, {
    stages: options.stages,
    precision: options.precision,
    cuts: options.cuts,
    wholeMs: profile?.wholeMs,
    headMs: profile ? Object.fromEntries(profile.cuts.map((c) => [c.id, c.headMs])) : undefined,
    bytesPerSecond: options.bytesPerSecond,
    replicas: options.replicas,
    outputsShipped: !options.lastHere,
  });
  const stageFiles = stages.map((_, k) => join(outDir, `stage-${k + 1}-${manifest.stages[k].hash.slice(0, 12)}.onnx`));
  const manifestPath = join(outDir, 'chain.json');
  try {
    await mkdir(outDir, { recursive: true });
    for (const [k, stage] of stages.entries()) await writeFile(stageFiles[k], stage.bytes);
    await writeFile(manifestPath, encodeChainManifest(manifest));
  } catch (err) {
    throw new ChainFilesError('WRITE_FAILED', `cannot write to ${outDir}: ${(err as Error).message}`, { cause: err });
  }
  return { manifest, manifestPath, stageFiles, balancedBy: profile ? 'measured times' : 'FLOPs' };
}
