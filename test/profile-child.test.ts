import assert from 'node:assert/strict';
import { ProfileError, profileInChildProcess, profileKey } from '../nodes/inference/profiler.js';
import { slicerFor } from './helpers/models.js';

describe('profiling in a child process (what a robot does at start)', function () {
  this.timeout(120_000);

  it('measures every cut of the generated CNN in a child and hands back the same profile a robot would store', async () => {
    const slicer = await slicerFor('cnn');
    const steps: number[] = [];
    const profile = await profileInChildProcess(slicer, { runs: 3, warmup: 1, precision: 'fp32', threads: 1, onProgress: (done) => steps.push(done) });
    assert.equal(profile.modelHash, slicer.hash);
    assert.equal(profile.key, profileKey(slicer, 'fp32', 1));
    assert.deepEqual(
      profile.cuts.map((c) => c.id),
      slicer.analysis.cuts.map((c) => c.id),
    );
    for (const c of profile.cuts) assert.ok(c.headMs > 0 && c.tailMs > 0, JSON.stringify(c));
    assert.ok(profile.wholeMs > 0);
    assert.deepEqual(steps, Array.from({ length: 1 + 2 * slicer.analysis.cuts.length }, (_, i) => i + 1), 'progress reported for every part, in order');
  });

  it('a profile that does not finish in time fails with PROFILE_FAILED, naming the time limit', async () => {
    const slicer = await slicerFor('cnn');
    await assert.rejects(profileInChildProcess(slicer, { runs: 3, warmup: 1, precision: 'fp32', threads: 1 }, 1), (e: Error) => e instanceof ProfileError && e.code === 'PROFILE_FAILED' && /took over/.test(e.message));
  });
});
