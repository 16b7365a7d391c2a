import assert from 'node:assert/strict';
import { ProfileError, analyzeInChildProcess, profileInChildProcess } from '../../nodes/inference/child-work.js';
import { ModelError } from '../../nodes/inference/onnx-model.js';
import { profileKey } from '../../nodes/inference/profiler.js';
import { ModelSlicer } from '../../nodes/inference/slicer.js';
import { analyzeModel } from '../../nodes/inference/split.js';
import { inputsFor, sessions, slicerFor } from '../helpers/models.js';

describe('model work in a child process (what a robot does at start)', function () {
  this.timeout(120_000);

  it('the analysis probed in a child equals the one probed here, and its slicer runs the same splits', async () => {
    const here = await slicerFor('cnn');
    const model = here.analysis.model;
    const there = await analyzeInChildProcess(model, { inputShapes: here.analysis.inputShapes });
    const local = await analyzeModel(model, { inputShapes: here.analysis.inputShapes });
    for (const key of ['inputShapes', 'shapes', 'dynamic', 'cuts', 'nchwcBlock'] as const)
      assert.deepEqual(there[key], local[key], key);
    assert.equal(there.model, model);
    assert.deepEqual(
      there.index.nodes.map((n) => n.name),
      local.index.nodes.map((n) => n.name),
    );

    const slicer = await ModelSlicer.open(
      model,
      sessions,
      { inputShapes: here.analysis.inputShapes },
      analyzeInChildProcess,
    );
    const feeds = inputsFor(slicer, 'cnn', 5);
    const whole = Object.values(await slicer.runWhole(feeds))[0].data as Float32Array;
    for (const cut of slicer.analysis.cuts) {
      const tail = Object.values(await slicer.runTail(cut.id, 'fp32', await slicer.runHead(cut.id, 'fp32', feeds)))[0]
        .data as Float32Array;
      assert.ok(
        tail.every((v, i) => Math.abs(v - whole[i]) <= 1e-4 * Math.max(1, Math.abs(whole[i]))),
        `cut ${cut.id}`,
      );
    }
  });

  it('a bad input shape fails in the child with the same typed error as here', async () => {
    const model = (await slicerFor('cnn')).analysis.model;
    const input = model.graph.input[0].name;
    await assert.rejects(
      analyzeInChildProcess(model, { inputShapes: { [input]: [1, 3, 32] } }),
      (e: Error) => e instanceof ModelError && e.code === 'BAD_INPUT_SHAPE' && /rank/.test(e.message),
    );
  });

  it(
    'profiles every cut of the generated CNN in a child ' + 'and hands back the same profile a robot would store',
    async () => {
      const slicer = await slicerFor('cnn');
      const steps: number[] = [];
      const profile = await profileInChildProcess(slicer, {
        runs: 3,
        warmup: 1,
        precision: 'fp32',
        threads: 1,
        onProgress: (done) => steps.push(done),
      });
      assert.equal(profile.modelHash, slicer.hash);
      assert.equal(profile.key, profileKey(slicer, 'fp32', 1));
      assert.deepEqual(
        profile.cuts.map((c) => c.id),
        slicer.analysis.cuts.map((c) => c.id),
      );
      for (const c of profile.cuts) assert.ok(c.headMs > 0 && c.tailMs > 0, JSON.stringify(c));
      assert.ok(profile.wholeMs > 0);
      assert.deepEqual(
        steps,
        Array.from({ length: 1 + 2 * slicer.analysis.cuts.length }, (_, i) => i + 1),
        'progress reported for every part, in order',
      );
    },
  );

  it('a profile that does not finish in time fails with PROFILE_FAILED, naming the time limit', async () => {
    const slicer = await slicerFor('cnn');
    await assert.rejects(
      profileInChildProcess(slicer, { runs: 3, warmup: 1, precision: 'fp32', threads: 1 }, 1),
      (e: Error) => e instanceof ProfileError && e.code === 'PROFILE_FAILED' && /took over/.test(e.message),
    );
  });
});
