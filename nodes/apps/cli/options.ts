import { InvalidArgumentError } from 'commander';
import { PRECISIONS, type Precision } from '../../inference/index.js';

/** `--input-shape name=1x3x224x224`, repeatable. */
export function parseInputShape(value: string, previous: Record<string, number[]> = {}): Record<string, number[]> {
  const match = /^([^=]+)=(\d+(?:x\d+)*)$/.exec(value);
  if (!match) throw new InvalidArgumentError(`expected NAME=DxDx..., e.g. x=1x3x224x224; got '${value}'`);
  const dims = match[2].split('x').map(Number);
  if (dims.some((d) => d <= 0)) throw new InvalidArgumentError(`dimensions must be positive in '${value}'`);
  return { ...previous, [match[1]]: dims };
}

export function parsePrecision(value: string): Precision {
  if (!(PRECISIONS as readonly string[]).includes(value)) {
    throw new InvalidArgumentError(`expected one of ${PRECISIONS.join(', ')}`);
  }
  return value as Precision;
}

export function parsePositiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError(`expected a positive integer, got '${value}'`);
  return n;
}

export function parseGranularity(value: string): 'tensor' | 'channel' {
  if (value !== 'tensor' && value !== 'channel') throw new InvalidArgumentError(`expected tensor or channel`);
  return value;
}

/** Wrong command-line use: printed without a stack, exit code 2. */
export class UsageError extends Error {}
