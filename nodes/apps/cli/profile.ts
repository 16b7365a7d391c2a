import { SingleBar, Presets } from 'cli-progress';
import {
  type Precision,
  builtinInputShape,
  loadModelArg,
  ProfileStore,
  profileKey,
  profileModel,
  type ModelProfile,
  SessionCache,
  ModelSlicer,
} from '../../inference/index.js';

export interface ProfileArgs {
  runs: number;
  threads: number;
  precision: Precision;
  inputShape?: Record<string, number[]>;
  json?: boolean;
  force?: boolean;
  cacheDir?: string;
}

export function profileTable(p: ModelProfile): string {
  const rows = p.cuts.map((c) => [
    c.id,
    c.headMs.toFixed(2),
    c.tailMs.toFixed(2),
    ((c.headMs + c.tailMs) / p.wholeMs).toFixed(3),
  ]);
  const header = ['cut', 'head ms', 'tail ms', '(head+tail)/whole'];
  const widths = header.map((h, k) => Math.max(h.length, ...rows.map((r) => r[k].length)));
  const line = (r: string[]): string => r.map((v, k) => v.padStart(widths[k])).join('  ');
  return [
    `whole model ${p.wholeMs.toFixed(2)} ms (median of ${p.runs}, ${p.threads || 'default'} threads, ${p.precision})`,
    line(header),
    ...rows.map(line),
  ].join('\n');
}

export async function profileCommand(modelPath: string, args: ProfileArgs): Promise<void> {
  const model = await loadModelArg(modelPath);
  const sessions = new SessionCache({ threads: args.threads });
  const slicer = await ModelSlicer.open(model, sessions, {
    inputShapes: args.inputShape ?? builtinInputShape(modelPath),
  });
  const store = new ProfileStore(args.cacheDir);
  const key = profileKey(slicer, args.precision, args.threads);
  let profile = args.force ? undefined : await store.load(model.hash, key);
  if (profile) {
    process.stderr.write(`using the profile measured ${profile.measuredAt} (--force to measure again)\n`);
  } else {
    const bar = new SingleBar(
      { format: 'profiling [{bar}] {value}/{total} {label}', stream: process.stderr },
      Presets.shades_classic,
    );
    bar.start(1 + 2 * slicer.analysis.cuts.length, 0, { label: '' });
    try {
      profile = await profileModel(slicer, {
        runs: args.runs,
        warmup: Math.min(3, args.runs),
        precision: args.precision,
        threads: args.threads,
        onProgress: (done, _total, label) => bar.update(done, { label }),
      });
    } finally {
      bar.stop();
    }
    await store.save(profile);
  }
  await sessions.close();
  process.stdout.write(args.json ? `${JSON.stringify(profile, null, 2)}\n` : `${profileTable(profile)}\n`);
}
