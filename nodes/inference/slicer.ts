import ort from './ort-float16.js';
import type { Tensor } from '../../protocol/tensor-frame.js';
import { type Int8Granularity, PRECISIONS, type Precision } from './boundary.js';
import { EXIT_LOGITS, type ExitHead, graftExit } from './exits.js';
import { syntheticFeeds } from './feeds.js';
import { type LoadedModel, runnableBytes } from './onnx-model.js';
import { SessionCache } from './sessions.js';
import { type AnalyzeOptions, type ModelAnalysis, type SplitModels, analyzeModel, buildSplit } from './split.js';
import { type TensorShape, checkTailTensors, frameToTailFeeds, headOutputsToFrame } from './wire.js';

export type Feeds = Record<string, ort.Tensor>;
export type Analyze = (model: LoadedModel, options: AnalyzeOptions) => Promise<ModelAnalysis>;
export type Outputs = ort.InferenceSession.OnnxValueMapType;

/**
 * One model held by a robot: its cuts, the head/tail sub-models built on demand, and cached
 * sessions to run the whole model, a head (to frame tensors) or a tail (from frame tensors).
 */
export class ModelSlicer {
  private readonly splits = new Map<string, SplitModels>();

  private constructor(
    readonly analysis: ModelAnalysis,
    readonly sessions: SessionCache,
  ) {}

  /** `analyze`: analyzeModel here, or the same work elsewhere (analyzeInChildProcess). */
  static async open(
    model: LoadedModel,
    sessions: SessionCache,
    options: AnalyzeOptions = {},
    analyze: Analyze = analyzeModel,
  ): Promise<ModelSlicer> {
    return new ModelSlicer(await analyze(model, options), sessions);
  }

  get hash(): string {
    return this.analysis.model.hash;
  }

  split(cutId: string, precision: Precision = 'fp32', granularity: Int8Granularity = 'channel'): SplitModels {
    const key = `${cutId}:${precision}:${granularity}`;
    let split = this.splits.get(key);
    if (!split) {
      split = buildSplit(this.analysis, cutId, precision, granularity);
      this.splits.set(key, split);
    }
    return split;
  }

  /**
   * Creates and runs the sessions of every cut and precision `runs` times (ORT settles its
   * arenas over the first two or three runs, measured here), so no request pays that cost.
   * Tails are fed from a real head run.
   */
  async prewarm(parts: 'head' | 'tail' | 'both', granularity: Int8Granularity = 'channel', runs = 3): Promise<void> {
    const { model, index, inputShapes } = this.analysis;
    const feeds = syntheticFeeds(model, index, inputShapes, 1);
    for (const cut of this.analysis.cuts) {
      for (const precision of PRECISIONS) {
        for (let i = 0; i < runs; i++) {
          const boundary = await this.runHead(cut.id, precision, feeds, granularity);
          if (parts !== 'head') await this.runTail(cut.id, precision, boundary, granularity);
        }
      }
    }
  }

  /**
   * Drops one cut's head and tail models and their sessions (every precision), e.g. once a robot
   * stops serving that cut. Open sessions are not free: besides their memory, with 40 more of
   * them open a detector head returning a 1.2 MB boundary ran 2–3× slower, page-faulting on
   * the buffer it returns (the same head returning a scalar did not slow down).
   */
  async releaseCut(cutId: string): Promise<void> {
    for (const key of [...this.splits.keys()]) if (key.startsWith(`${cutId}:`)) this.splits.delete(key);
    const prefix = `${this.hash}:${cutId}:`;
    await this.sessions.release((key) => key.startsWith(prefix));
  }

  async runWhole(feeds: Feeds): Promise<Outputs> {
    const session = await this.sessions.get(`${this.hash}:whole`, () => runnableBytes(this.analysis.model));
    return session.run(feeds);
  }

  async runHead(
    cutId: string,
    precision: Precision,
    feeds: Feeds,
    granularity: Int8Granularity = 'channel',
  ): Promise<Tensor[]> {
    const split = this.split(cutId, precision, granularity);
    const session = await this.sessions.get(`${this.hash}:${cutId}:${precision}:${granularity}:head`, () => split.head);
    return headOutputsToFrame(split.boundary, await session.run(feeds));
  }

  /**
   * The head with an exit grafted on (one session): the boundary at `precision`, and the exit's
   * logits computed from the fp32 cut tensor inside the head.
   */
  async runHeadWithExit(
    exit: ExitHead,
    precision: Precision,
    feeds: Feeds,
    granularity: Int8Granularity = 'channel',
  ): Promise<{ boundary: Tensor[]; logits: Float32Array }> {
    const split = this.split(exit.info.cut, precision, granularity);
    const session = await this.sessions.get(
      `${this.hash}:${exit.info.cut}:${precision}:${granularity}:head+exit:${exit.hash}`,
      () => graftExit(split.head, exit),
    );
    const outputs = await session.run(feeds);
    return { boundary: headOutputsToFrame(split.boundary, outputs), logits: outputs[EXIT_LOGITS].data as Float32Array };
  }

  /** Checks tensors described by a frame's headers against what the tail after `cutId` takes. */
  checkTail(cutId: string, precision: Precision, tensors: readonly TensorShape[], granularity: Int8Granularity): void {
    checkTailTensors(this.split(cutId, precision, granularity).boundary, tensors, this.analysis.dynamic);
  }

  async runTail(
    cutId: string,
    precision: Precision,
    tensors: Tensor[],
    granularity: Int8Granularity = 'channel',
  ): Promise<Outputs> {
    const split = this.split(cutId, precision, granularity);
    const feeds = frameToTailFeeds(split.boundary, tensors, this.analysis.dynamic);
    const session = await this.sessions.get(`${this.hash}:${cutId}:${precision}:${granularity}:tail`, () => split.tail);
    return session.run(feeds);
  }
}
