import ort from './ort-float16.js';
import { dtypeFromCode, isDType } from '../../protocol/dtypes.js';
import { RobomeshError } from '../../protocol/errors.js';
import type { Tensor } from '../../protocol/tensor-frame.js';
import type { Int8Granularity, Precision } from './boundary.js';
import { ExitError, type ExitHead } from './exits.js';
import { syntheticFeeds } from './feeds.js';
import { type LoadedModel, declaredType } from './onnx-model.js';
import type { ModelProfile } from './profiler.js';
import type { SessionCache } from './sessions.js';
import { type Analyze, type Feeds, type Outputs, ModelSlicer } from './slicer.js';
import { type StageInfo, analyzeStage, stageInfoOf, weightBytes } from './stages.js';
import { BoundaryError, type TensorShape, tensorData } from './wire.js';

/** The cut id meaning "no head": the model input itself is shipped (full offload). */
export const INPUT_CUT = 'input';

export type RegistryErrorCode = 'NOT_A_STAGE' | 'OVER_BUDGET' | 'UNKNOWN_CUT' | 'UNKNOWN_MODEL' | 'UNSUPPORTED_OUTPUT';

export class RegistryError extends RobomeshError<RegistryErrorCode> {
  constructor(code: RegistryErrorCode, message: string, options?: ErrorOptions) {
    super(code, message, options);
  }
}

export function outputsToTensors(outputs: Outputs): Tensor[] {
  return Object.entries(outputs).map(([name, value]) => {
    const t = value as ort.Tensor;
    if (!isDType(t.type)) throw new RegistryError('UNSUPPORTED_OUTPUT', `output '${name}' has type ${t.type}`);
    return { name, dtype: t.type, dims: [...t.dims], data: tensorData(t.type, t.data) };
  });
}

export function tensorsToFeeds(tensors: Tensor[]): Feeds {
  return Object.fromEntries(
    tensors.map((t) => [t.name, new ort.Tensor(t.dtype as 'float32', t.data as Float32Array, t.dims)]),
  );
}

/**
 * A calibration keeps the CPU busy this long: the kernel lets a thread that slept run first, so
 * a few milliseconds on a core two busy loops held were not slowed at all.
 */
const CALIBRATION_MS = 20;

/** The models a robot holds, by hash, with their slicers and (once measured) profiles. */
export class ModelRegistry {
  private readonly slicers = new Map<string, ModelSlicer>();
  private readonly profiles = new Map<string, ModelProfile>();
  private readonly exitHeads = new Map<string, { exit: ExitHead; exitMs: number }[]>();
  private readonly stageInfos = new Map<string, StageInfo>();
  private readonly weights = new Map<string, number>();

  /**
   * `memoryBudgetBytes`: the weights this robot may hold in all (inference.memory_mb); a model or
   * stage past it is refused. ORT's activation arenas come on top (a few MB per session here).
   */
  constructor(
    readonly sessions: SessionCache,
    readonly memoryBudgetBytes = Infinity,
  ) {}

  /** Weight bytes of everything held. */
  get heldBytes(): number {
    let sum = 0;
    for (const w of this.weights.values()) sum += w;
    return sum;
  }

  private reserve(model: LoadedModel, what: string): void {
    const need = weightBytes(model.proto);
    if (this.heldBytes + need > this.memoryBudgetBytes) {
      const mb = (b: number) => (b / 1e6).toFixed(2);
      throw new RegistryError(
        'OVER_BUDGET',
        `${what} ${model.hash.slice(0, 12)}… needs ${mb(need)} MB of weights; the memory budget of ` +
          `${mb(this.memoryBudgetBytes)} MB has ${mb(this.memoryBudgetBytes - this.heldBytes)} MB left`,
      );
    }
    this.weights.set(model.hash, need);
  }

  async add(model: LoadedModel, inputShapes?: Record<string, number[]>, analyze?: Analyze): Promise<ModelSlicer> {
    const existing = this.slicers.get(model.hash);
    if (existing) return existing;
    this.reserve(model, 'model');
    try {
      const slicer = await ModelSlicer.open(model, this.sessions, { inputShapes }, analyze);
      this.slicers.set(model.hash, slicer);
      return slicer;
    } catch (err) {
      this.weights.delete(model.hash);
      throw err;
    }
  }

  /**
   * Holds one stage of a chain (a file from `robomesh chain build`): served whole to whoever asks
   * for its hash, never split again. Its time is measured here (median of 3 runs after one).
   */
  async addStage(model: LoadedModel, source = 'stage'): Promise<StageInfo> {
    const info = stageInfoOf(model, source);
    if (!info) throw new RegistryError('NOT_A_STAGE', `${source} is an ONNX model but not a chain stage`);
    if (this.slicers.has(model.hash)) return info;
    this.reserve(model, 'stage');
    try {
      const slicer = await ModelSlicer.open(model, this.sessions, {}, analyzeStage);
      const feeds = syntheticFeeds(model, slicer.analysis.index, slicer.analysis.inputShapes, 1);
      const times: number[] = [];
      for (let i = 0; i < 4; i++) {
        const t0 = performance.now();
        await slicer.runWhole(feeds);
        if (i > 0) times.push(performance.now() - t0);
      }
      this.slicers.set(model.hash, slicer);
      this.stageInfos.set(model.hash, info);
      times.sort((a, b) => a - b);
      this.setProfile({
        modelHash: model.hash,
        key: 'stage',
        inputShapes: slicer.analysis.inputShapes,
        precision: info.inPrecision,
        threads: 0,
        runs: times.length,
        wholeMs: times[1],
        cuts: [],
        measuredAt: new Date().toISOString(),
      });
      return info;
    } catch (err) {
      this.weights.delete(model.hash);
      throw err;
    }
  }

  /** Stops holding a model or stage: its sessions are released and its weights leave the budget. */
  async remove(hash: string): Promise<void> {
    if (!this.slicers.delete(hash)) return;
    this.weights.delete(hash);
    this.stageInfos.delete(hash);
    this.profiles.delete(hash);
    this.exitHeads.delete(hash);
    await this.sessions.release((key) => key.startsWith(`${hash}:`));
  }

  /** The stage info of a held stage; undefined for whole models. */
  stage(hash: string): StageInfo | undefined {
    return this.stageInfos.get(hash);
  }

  /**
   * Attaches an exit to a model held here, after checking it reads that model's cut tensor
   * with its shape, and measures what the exit adds to the head (median of 5 runs).
   */
  async addExit(exit: ExitHead, source = 'exit'): Promise<void> {
    const { info } = exit;
    if (!this.slicers.has(info.model))
      throw new ExitError('BAD_EXIT', `${source} belongs to model ${info.model.slice(0, 12)}…, which is not held here`);
    const slicer = this.get(info.model);
    const cut = slicer.analysis.cuts.find((c) => c.id === info.cut);
    if (!cut || cut.tensors.length !== 1 || cut.tensors[0].name !== info.tensor)
      throw new ExitError(
        'BAD_EXIT',
        `${source} reads '${info.tensor}' at cut ${info.cut}, which this model does not cut`,
      );
    // The exit answers in place of the model: same output name and number of class scores.
    const outputs = slicer.analysis.index.outputs;
    const scores = slicer.analysis.shapes.get(outputs[0])?.dims.reduce((a, b) => a * b, 1);
    if (outputs.length !== 1 || info.output.name !== outputs[0] || info.classes !== scores)
      throw new ExitError(
        'BAD_EXIT',
        `${source} answers ${info.classes} scores as '${info.output.name}', unlike the model`,
      );
    const { model, index, inputShapes } = slicer.analysis;
    const feeds = syntheticFeeds(model, index, inputShapes, 1);
    const times: number[] = [];
    for (let i = 0; i < 6; i++) {
      const t0 = performance.now();
      await slicer.runHeadWithExit(exit, 'fp32', feeds);
      const t1 = performance.now();
      await slicer.runHead(info.cut, 'fp32', feeds);
      if (i > 0) times.push(t1 - t0 - (performance.now() - t1));
    }
    times.sort((a, b) => a - b);
    const list = (this.exitHeads.get(info.model) ?? []).filter((e) => e.exit.info.cut !== info.cut);
    list.push({ exit, exitMs: Math.max(0, times[times.length >> 1]) });
    this.exitHeads.set(info.model, list);
  }

  /** The exits attached to a model, with what each adds to its head in ms. */
  exits(hash: string): readonly { exit: ExitHead; exitMs: number }[] {
    return this.exitHeads.get(hash) ?? [];
  }

  setProfile(profile: ModelProfile): void {
    this.profiles.set(profile.modelHash, profile);
  }

  profile(hash: string): ModelProfile | undefined {
    return this.profiles.get(hash);
  }

  has(hash: string): boolean {
    return this.slicers.has(hash);
  }

  hashes(): string[] {
    return [...this.slicers.keys()];
  }

  get(hash: string): ModelSlicer {
    const s = this.slicers.get(hash);
    if (!s) throw new RegistryError('UNKNOWN_MODEL', `model ${hash.slice(0, 12)}… is not held here`);
    return s;
  }

  /** The part after `cut`: the tail, or the whole model for INPUT_CUT. Returns the model outputs. */
  async runFrom(
    hash: string,
    cut: string,
    precision: Precision,
    granularity: Int8Granularity,
    tensors: Tensor[],
  ): Promise<Tensor[]> {
    const slicer = this.get(hash);
    if (cut === INPUT_CUT) {
      this.checkFrom(hash, cut, precision, granularity, tensors);
      return outputsToTensors(await slicer.runWhole(tensorsToFeeds(tensors)));
    }
    if (!slicer.analysis.cuts.some((c) => c.id === cut))
      throw new RegistryError('UNKNOWN_CUT', `no cut '${cut}' in model ${hash.slice(0, 12)}…`);
    return outputsToTensors(await slicer.runTail(cut, precision, tensors, granularity));
  }

  /**
   * Keeps the CPU busy for at least CALIBRATION_MS with real inference (the cheapest profiled
   * part of ≥ 5 ms, else the longest, on synthetic inputs), so an idle robot's ComputeLoad has
   * something to read: how a robot no request reaches learns that its CPU got taken. At most 10
   * runs. Run it on the work queue.
   */
  async calibrate(): Promise<void> {
    let best: { hash: string; cut?: string; ms: number } | undefined;
    const better = (ms: number, than: number): boolean => (ms >= 5 ? than < 5 || ms < than : than < 5 && ms > than);
    for (const [hash, p] of this.profiles) {
      if (!this.slicers.has(hash)) continue;
      const parts = [{ cut: undefined, ms: p.wholeMs }, ...p.cuts.map((c) => ({ cut: c.id, ms: c.headMs }))];
      for (const part of parts) if (!best || better(part.ms, best.ms)) best = { hash, ...part };
    }
    if (!best) return;
    const { hash, cut } = best;
    const slicer = this.get(hash);
    const { model, index, inputShapes } = slicer.analysis;
    const feeds = syntheticFeeds(model, index, inputShapes, 1);
    const precision = this.profile(hash)!.precision;
    const until = performance.now() + CALIBRATION_MS;
    for (let i = 0; i < 10 && performance.now() < until; i++)
      await (cut === undefined ? slicer.runWhole(feeds) : slicer.runHead(cut, precision, feeds));
  }

  /**
   * Checks tensors (as a frame's headers describe them, before their data arrives) against what
   * the part after `cut` takes; a BoundaryError otherwise.
   */
  checkFrom(
    hash: string,
    cut: string,
    precision: Precision,
    granularity: Int8Granularity,
    tensors: readonly TensorShape[],
  ): void {
    const slicer = this.get(hash);
    if (cut !== INPUT_CUT) return slicer.checkTail(cut, precision, tensors, granularity);
    const expected = slicer.analysis.index.inputs;
    const names = tensors.map((t) => t.name).sort();
    if (names.join('\0') !== [...expected].sort().join('\0')) {
      throw new BoundaryError('WRONG_TENSORS', `model input needs ${expected.join(', ')}; got ${names.join(', ')}`);
    }
    for (const t of tensors) checkModelInput(slicer, t);
  }
}

/** A shipped model input must match the declared type, rank and fixed dims before ORT sees it. */
function checkModelInput(slicer: ModelSlicer, t: TensorShape): void {
  const info = slicer.analysis.model.graph.input.find((i) => i.name === t.name);
  const declared = info ? declaredType(info) : undefined;
  const dtype = declared ? dtypeFromCode(declared.elemType) : undefined;
  if (!declared || t.dtype !== dtype)
    throw new BoundaryError('WRONG_DTYPE', `input '${t.name}' must be ${dtype ?? '?'}, got ${t.dtype}`);
  const dims = declared.dims;
  if (
    dims &&
    (dims.length !== t.dims.length || dims.some((d, k) => typeof d === 'number' && d > 0 && d !== t.dims[k]))
  ) {
    throw new BoundaryError(
      'WRONG_SHAPE',
      `input '${t.name}' must be [${dims.join(', ')}], got [${t.dims.join(', ')}]`,
    );
  }
  if (t.dims.some((d) => d === 0)) throw new BoundaryError('WRONG_SHAPE', `input '${t.name}' is empty`);
}
