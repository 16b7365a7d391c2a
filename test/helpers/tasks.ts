import type { Payload } from '../../protocol/log-entry.js';
import { resultFingerprint } from '../../protocol/result-fingerprint.js';
import type { Tensor } from '../../protocol/tensor-frame.js';

type TaskPayload = Extract<Payload, { type: 'task' }>;

/** A task entry's payload with plausible defaults (f = 1). */
export const taskPayload = (task: string, o: Partial<Omit<TaskPayload, 'type' | 'task'>> = {}): TaskPayload => ({
  type: 'task',
  task,
  model: 'a'.repeat(64),
  cut: 'input',
  precision: 'fp32',
  input: 'b'.repeat(64),
  bytes: 1024,
  f: 1,
  timeout: 1000,
  ...o,
});

/** Outputs that differ between answers and, with `noise`, by rounding-sized amounts. */
export function answerTensor(answer: number, noise = 0): Tensor[] {
  const data = new Float32Array(256).map((_, i) => Math.sin(i * 0.37 + answer) + noise * Math.cos(i * 1.7));
  return [{ name: 'y', dtype: 'float32', dims: [1, 256], data }];
}

/** A result entry's payload for `answer` (results of one answer agree; `noise` ≈ 1e-6 is honest rounding). */
export const resultPayload = (task: string, answer: number, noise = 0): Payload => ({
  type: 'result',
  task,
  ...resultFingerprint(task, answerTensor(answer, noise)),
});
