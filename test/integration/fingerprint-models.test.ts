import assert from 'node:assert/strict';
import ort from 'onnxruntime-node';
import { builtinInputShape, loadModelArg } from '../../nodes/inference/bundled-models.js';
import { outputsToTensors } from '../../nodes/inference/model-registry.js';
import { textLikeImage } from '../../nodes/inference/sample-images.js';
import { SessionCache, type SessionSettings } from '../../nodes/inference/sessions.js';
import { ModelSlicer } from '../../nodes/inference/slicer.js';
import { type LieKind, lie } from '../../nodes/tasks/faults.js';
import { fingerprintsAgree, resultFingerprint } from '../../protocol/result-fingerprint.js';
import type { Tensor } from '../../protocol/tensor-frame.js';

/**
 * Honest executors differ in ORT's thread count and kernels (graph optimisation levels stand in
 * for another CPU's kernels here: they fuse and order the arithmetic differently); their results
 * must agree, while every kind of lie on the same outputs must not.
 */
const SETTINGS: SessionSettings[] = [
  { threads: 1 },
  { threads: 2 },
  { threads: 1, optimization: 'basic' },
  { threads: 2, optimization: 'disabled' },
];

async function outputs(name: 'ocr-det' | 'ocr-cls', settings: SessionSettings, seed: number): Promise<Tensor[]> {
  const arg = `builtin:${name}`;
  const sessions = new SessionCache(settings, 4);
  try {
    const slicer = await ModelSlicer.open(await loadModelArg(arg), sessions, { inputShapes: builtinInputShape(arg) });
    const [input] = slicer.analysis.index.inputs;
    const [, c, h, w] = slicer.analysis.inputShapes[input];
    const batch = name === 'ocr-cls' ? 8 : 1;
    const feeds = { [input]: new ort.Tensor('float32', textLikeImage(h, w, seed, batch), [batch, c, h, w]) };
    return outputsToTensors(await slicer.runWhole(feeds));
  } finally {
    await sessions.close();
  }
}

describe('result fingerprints on real models: thread counts and kernels agree, lies do not', function () {
  this.timeout(120_000);
  for (const name of ['ocr-det', 'ocr-cls'] as const) {
    it(`PaddleOCR ${name === 'ocr-det' ? 'detector' : 'classifier'}`, async () => {
      const runs = [];
      for (const s of SETTINGS) runs.push(await outputs(name, s, 11));
      const fps = runs.map((o) => resultFingerprint('t', o));
      assert.ok(
        fps.some((f) => f.digest !== fps[0].digest),
        'the settings really produce different bits (otherwise this test proves nothing)',
      );
      for (let i = 1; i < fps.length; i++)
        assert.ok(fingerprintsAgree(fps[0], fps[i]), `${JSON.stringify(SETTINGS[i])} agrees with 1 thread`);
      for (const kind of ['wrong', 'permuted', 'scaled', 'shifted', 'garbage', 'truncated'] as LieKind[]) {
        const lied = lie(kind).outputs!(runs[0], { task: 't' } as never);
        assert.ok(!fingerprintsAgree(fps[1], resultFingerprint('t', lied)), `${kind} disagrees`);
      }
      const other = resultFingerprint('t', await outputs(name, SETTINGS[0], 12));
      assert.ok(!fingerprintsAgree(fps[0], other), 'another input disagrees');
    });
  }
});
