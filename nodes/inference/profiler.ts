import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import ort from './ort-float16.js';
import type { Precision } from './boundary.js';
import { syntheticFeeds } from './feeds.js';
import type { ModelSlicer } from './slicer.js';

export interface CutProfile {
  id: string;
  headMs: number;
  tailMs: number;
}

export interface ModelProfile {
  modelHash: string;
  /** What the timings depend on besides the model; a profile is reused only when all match. */
  key: string;
  inputShapes: Record<string, number[]>;
  precision: Precision;
  threads: number;
  runs: number;
  wholeMs: number;
  cuts: CutProfile[];
  measuredAt: string;
}

export interface ProfileOptions {
  runs: number;
  warmup: number;
  precision: Precision;
  threads: number;
  /** Called after each measured part: done of total. */
  onProgress?: (done: number, total: number, label: string) => void;
}

export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

async function timeRuns(runs: number, warmup: number, once: () => Promise<unknown>): Promise<number> {
  for (let i = 0; i < warmup; i++) await once();
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await once();
    times.push(performance.now() - t0);
  }
  return median(times);
}

export function profileKey(slicer: ModelSlicer, precision: Precision, threads: number): string {
  return JSON.stringify({ shapes: slicer.analysis.inputShapes, precision, threads, ort: ort.env.versions.common });
}

/** Median head, tail and whole-model times per cut on this machine. */
export async function profileModel(slicer: ModelSlicer, options: ProfileOptions): Promise<ModelProfile> {
  const { runs, warmup, precision, threads } = options;
  const { analysis } = slicer;
  const feeds = syntheticFeeds(analysis.model, analysis.index, analysis.inputShapes, 1);
  const total = 1 + 2 * analysis.cuts.length;
  let done = 0;
  const step = (label: string): void => options.onProgress?.(++done, total, label);
  const wholeMs = await timeRuns(runs, warmup, () => slicer.runWhole(feeds));
  step('whole model');
  const cuts: CutProfile[] = [];
  for (const cut of analysis.cuts) {
    const boundary = await slicer.runHead(cut.id, precision, feeds);
    const headMs = await timeRuns(runs, warmup, () => slicer.runHead(cut.id, precision, feeds));
    step(`${cut.id} head`);
    const tailMs = await timeRuns(runs, warmup, () => slicer.runTail(cut.id, precision, boundary));
    step(`${cut.id} tail`);
    cuts.push({ id: cut.id, headMs, tailMs });
  }
  return {
    modelHash: slicer.hash,
    key: profileKey(slicer, precision, threads),
    inputShapes: analysis.inputShapes,
    precision,
    threads,
    runs,
    wholeMs,
    cuts,
    measuredAt: new Date().toISOString(),
  };
}

export function defaultCacheDir(): string {
  return process.env.ROBOMESH_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'robomesh');
}

/** Profiles on disk, one JSON file per model hash holding every profile key measured. */
export class ProfileStore {
  constructor(readonly dir: string = join(defaultCacheDir(), 'profiles')) {}

  private path(hash: string): string {
    return join(this.dir, `${hash}.json`);
  }

  private async readAll(hash: string): Promise<Record<string, ModelProfile>> {
    try {
      const parsed: unknown = JSON.parse(await readFile(this.path(hash), 'utf8'));
      return parsed && typeof parsed === 'object' ? (parsed as Record<string, ModelProfile>) : {};
    } catch {
      return {}; // missing or unreadable: profile again rather than fail
    }
  }

  async load(hash: string, key: string): Promise<ModelProfile | undefined> {
    return (await this.readAll(hash))[key];
  }

  async save(profile: ModelProfile): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    const all = await this.readAll(profile.modelHash);
    all[profile.key] = profile;
    const tmp = `${this.path(profile.modelHash)}.${process.pid}.tmp`;
    await writeFile(tmp, JSON.stringify(all, null, 2));
    await rename(tmp, this.path(profile.modelHash));
  }
}
