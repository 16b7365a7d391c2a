import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { attr, node, opset13Model, serializeModel, tensorValueInfo } from '../nodes/inference/index.js';

/**
 * A model that sums its input to one number: shipping a tensor to it measures the protocol's
 * throughput with negligible compute on the far side (its compute time is subtracted anyway).
 */
export function sinkModel(): Uint8Array {
  return serializeModel(
    opset13Model('robomesh bench', {
      name: 'sink',
      node: [node('ReduceSum', ['x'], ['y'], [attr('keepdims', 0)])],
      input: [tensorValueInfo('x', 1, ['n'])],
      output: [tensorValueInfo('y', 1, [])],
    }),
  );
}

export const RAW_PORT_OFFSET = 1;

export function arg(name: string, fallback?: string): string {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? process.argv[i + 1] : fallback;
  if (v === undefined) throw new Error(`missing --${name}`);
  return v;
}

/** A cgroup-v1 CPU quota of `percent` % of one core in 10 ms periods at `path`, if this machine allows it. */
export async function cpuCgroup(path: string, percent: number): Promise<string | undefined> {
  if (!existsSync('/sys/fs/cgroup/cpu/cgroup.procs')) return undefined;
  try {
    await mkdir(path, { recursive: true });
    await writeFile(join(path, 'cpu.cfs_period_us'), '10000');
    await writeFile(join(path, 'cpu.cfs_quota_us'), String(Math.round(100 * percent)));
    return path;
  } catch {
    return undefined;
  }
}
