import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { RobomeshError } from '../../protocol/errors.js';
import { indexGraph } from './graph.js';
import { type LoadedModel, ModelError, type ModelErrorCode } from './onnx-model.js';
import { type ModelProfile, type ProfileOptions, profileKey } from './profiler.js';
import type { ModelSlicer } from './slicer.js';
import type { AnalyzeOptions, ModelAnalysis } from './split.js';

/**
 * Model work a robot hands to a child process (child-worker.ts), because of what it leaves
 * behind: probing shapes runs the model with every tensor exposed (twice for models with
 * symbolic dims, the second time at double size), and profiling builds two sessions per cut;
 * the memory stays in the process after they are released. A robot starting with the PaddleOCR
 * detector held 1,015 MB doing both itself.
 */
export type ChildTask =
  | { task: 'analyze'; bytes: Uint8Array; inputShapes?: Record<string, number[]> }
  /** With the analysis the robot holds already: the child does not probe the model again. */
  | { task: 'profile'; bytes: Uint8Array; analysis: ProbedAnalysis; options: Omit<ProfileOptions, 'onProgress'> };

/** What the analysis holds besides the model itself (the graph index is rebuilt from it). */
export type ProbedAnalysis = Omit<ModelAnalysis, 'model' | 'index'>;

export function probedPart(analysis: ModelAnalysis): ProbedAnalysis {
  const { inputShapes, shapes, dynamic, cuts, nchwcBlock } = analysis;
  return { inputShapes, shapes, dynamic, cuts, nchwcBlock };
}

export function withModel(model: LoadedModel, probed: ProbedAnalysis): ModelAnalysis {
  return { model, index: indexGraph(model.graph), ...probed };
}

type ChildMessage =
  | { progress: { done: number; total: number; label: string } }
  | { analysis: ProbedAnalysis }
  | { profile: ModelProfile }
  | { error: string; code?: string };

export type ProfileErrorCode = 'PROFILE_FAILED';

export class ProfileError extends RobomeshError<ProfileErrorCode> {
  constructor(code: ProfileErrorCode, message: string, options?: ErrorOptions) {
    super(code, message, options);
  }
}

/** The child's failure: its error's code and message, or why there was no answer. */
class ChildFailure {
  constructor(
    readonly message: string,
    readonly code?: string,
  ) {}
}

function runInChild(
  task: ChildTask,
  what: string,
  timeoutMs: number,
  onProgress?: ProfileOptions['onProgress'],
): Promise<Exclude<ChildMessage, { progress: unknown }>> {
  return new Promise((resolve, reject) => {
    const child = fork(fileURLToPath(new URL('./child-worker.js', import.meta.url)), [], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      serialization: 'advanced',
    });
    let settled = false;
    const finish = (outcome: Exclude<ChildMessage, { progress: unknown }> | ChildFailure): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (outcome instanceof ChildFailure) {
        child.kill('SIGKILL');
        reject(outcome);
      } else resolve(outcome);
    };
    const timer = setTimeout(() => finish(new ChildFailure(`${what} took over ${timeoutMs / 1000} s`)), timeoutMs);
    child.on('message', (m: ChildMessage) => {
      if ('progress' in m) onProgress?.(m.progress.done, m.progress.total, m.progress.label);
      else if ('error' in m) finish(new ChildFailure(m.error, m.code));
      else finish(m);
    });
    child.on('error', (err) => finish(new ChildFailure(`cannot start a process for ${what}: ${err.message}`)));
    child.on('exit', (code, signal) =>
      finish(new ChildFailure(`the process for ${what} exited (${signal ?? `code ${code}`}) without an answer`)),
    );
    child.send(task);
  });
}

/** analyzeModel, probing in a child process; errors about the model keep their ModelError code. */
export async function analyzeInChildProcess(
  model: LoadedModel,
  options: AnalyzeOptions = {},
  timeoutMs = 10 * 60_000,
): Promise<ModelAnalysis> {
  if (options.cuts) throw new ModelError('BAD_OPTIONS', 'cut options are not passed to a child process');
  let reply: Awaited<ReturnType<typeof runInChild>>;
  try {
    reply = await runInChild(
      { task: 'analyze', bytes: model.bytes, inputShapes: options.inputShapes },
      `analysing ${model.hash.slice(0, 12)}…`,
      timeoutMs,
    );
  } catch (err) {
    if (!(err instanceof ChildFailure)) throw err;
    throw new ModelError((err.code as ModelErrorCode | undefined) ?? 'ANALYSIS_FAILED', err.message);
  }
  if (!('analysis' in reply)) throw new ModelError('ANALYSIS_FAILED', 'the analysing process answered something else');
  return withModel(model, reply.analysis);
}

/** profileModel in a child process; the profile must name this model and settings. */
export async function profileInChildProcess(
  slicer: ModelSlicer,
  options: ProfileOptions,
  timeoutMs = 30 * 60_000,
): Promise<ModelProfile> {
  const { onProgress, ...rest } = options;
  const what = `profiling ${slicer.hash.slice(0, 12)}…`;
  let reply: Awaited<ReturnType<typeof runInChild>>;
  try {
    reply = await runInChild(
      { task: 'profile', bytes: slicer.analysis.model.bytes, analysis: probedPart(slicer.analysis), options: rest },
      what,
      timeoutMs,
      onProgress,
    );
  } catch (err) {
    if (!(err instanceof ChildFailure)) throw err;
    throw new ProfileError(
      'PROFILE_FAILED',
      err.message.startsWith(what) ? err.message : `${what} failed: ${err.message}`,
    );
  }
  if (
    !('profile' in reply) ||
    reply.profile.modelHash !== slicer.hash ||
    reply.profile.key !== profileKey(slicer, options.precision, options.threads)
  ) {
    throw new ProfileError('PROFILE_FAILED', `the profiling process measured another model or setting`);
  }
  return reply.profile;
}
