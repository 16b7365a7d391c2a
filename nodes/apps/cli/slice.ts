import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  type Int8Granularity,
  type Precision,
  type Cut,
  builtinInputShape,
  loadModelArg,
  analyzeModel,
  buildSplit,
} from '../../inference/index.js';
import { UsageError } from './options.js';

export interface SliceArgs {
  list?: boolean;
  json?: boolean;
  cut?: string;
  precision: Precision;
  granularity: Int8Granularity;
  out?: string;
  inputShape?: Record<string, number[]>;
}

const kb = (n: number): string => (n / 1024).toFixed(1);

export function cutsTable(cuts: Cut[]): string {
  const rows = cuts.map((c) => [
    c.id,
    c.tensors.map((t) => `${t.name} [${t.shape.join('×')}] ${t.dtype}`).join(', '),
    kb(c.bytes.fp32),
    kb(c.bytes.fp16),
    kb(c.bytes.int8),
    `${(100 * c.headShare).toFixed(1)} %`,
  ]);
  const header = ['cut', 'tensors', 'fp32 KiB', 'fp16 KiB', 'int8 KiB', 'head share'];
  const widths = header.map((h, k) => Math.max(h.length, ...rows.map((r) => r[k].length)));
  const line = (r: string[]): string =>
    r.map((v, k) => (k === 1 ? v.padEnd(widths[k]) : v.padStart(widths[k]))).join('  ');
  return [line(header), ...rows.map(line)].join('\n');
}

export async function sliceCommand(modelPath: string, args: SliceArgs): Promise<void> {
  if (!args.list && !args.cut) throw new UsageError('give --list to see the cuts, or --cut ID --out DIR to write one');
  if (args.cut && !args.out) throw new UsageError('--cut needs --out DIR');
  const model = await loadModelArg(modelPath);
  const analysis = await analyzeModel(model, { inputShapes: args.inputShape ?? builtinInputShape(modelPath) });
  if (args.list) {
    if (args.json) {
      const cuts = analysis.cuts.map((c) => ({
        id: c.id,
        tensors: c.tensors.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape })),
        bytes: c.bytes,
        headShare: c.headShare,
      }));
      process.stdout.write(`${JSON.stringify(cuts, null, 2)}\n`);
    } else {
      process.stdout.write(
        `${modelPath}  sha256 ${model.hash.slice(0, 16)}…  input ${JSON.stringify(analysis.inputShapes)}\n`,
      );
      process.stdout.write(`${cutsTable(analysis.cuts)}\n`);
    }
    return;
  }
  const split = buildSplit(analysis, args.cut!, args.precision, args.granularity);
  try {
    await mkdir(args.out!, { recursive: true });
    await writeFile(join(args.out!, 'head.onnx'), split.head);
    await writeFile(join(args.out!, 'tail.onnx'), split.tail);
  } catch (err) {
    throw new UsageError(`cannot write to ${args.out}: ${(err as Error).message}`);
  }
  const cutJson = {
    model: model.hash,
    cut: split.cut.id,
    precision: split.precision,
    granularity: split.granularity,
    tensors: split.cut.tensors.map((t) => t.name),
    boundary: split.boundary,
    inputs: split.inputs,
    outputs: split.outputs,
  };
  try {
    await writeFile(join(args.out!, 'cut.json'), `${JSON.stringify(cutJson, null, 2)}\n`);
  } catch (err) {
    throw new UsageError(`cannot write to ${args.out}: ${(err as Error).message}`);
  }
  process.stdout.write(
    `wrote ${join(args.out!, 'head.onnx')}, tail.onnx, cut.json (cut ${split.cut.id}, ${split.precision})\n`,
  );
}
