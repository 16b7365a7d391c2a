import assert from 'node:assert/strict';
import { SessionCache, buildStage } from '../../nodes/inference/index.js';
import ort from '../../nodes/inference/ort-float16.js';
import { inputsFor, slicerFor } from '../helpers/models.js';
import { waitFor } from '../helpers/wait.js';

/** Sessions on the inference thread answer as on the main thread, and outlive a thread that dies. */
describe('the inference thread', function () {
  this.timeout(60_000);
  const threaded = new SessionCache({ threads: 1, thread: true });
  const plain = new SessionCache({ threads: 1 });
  after(() => Promise.all([threaded.close(), plain.close()]));

  const same = (a: ort.InferenceSession.OnnxValueMapType, b: ort.InferenceSession.OnnxValueMapType): void => {
    assert.deepEqual(Object.keys(a), Object.keys(b));
    for (const k of Object.keys(a)) {
      assert.deepEqual([...(a[k] as ort.Tensor).dims], [...(b[k] as ort.Tensor).dims]);
      assert.deepEqual(a[k].data, b[k].data, k);
    }
  };

  it('gives the main thread’s outputs, for float32 and float16 feeds, and passes errors on', async () => {
    const slicer = await slicerFor('cnn');
    const feeds = inputsFor(slicer, 'cnn', 4);
    const bytes = () => slicer.analysis.model.bytes;
    same(await (await threaded.get('cnn', bytes)).run(feeds), await (await plain.get('cnn', bytes)).run(feeds));
    // A stage taking an fp16 boundary: float16 data crosses to the thread as Uint16Array.
    const cut = slicer.analysis.cuts[1].id;
    const head = buildStage(slicer.analysis, 'input', cut, { in: 'fp32', out: 'fp16' }, { index: 0, of: 2 });
    const stage = buildStage(slicer.analysis, cut, 'output', { in: 'fp16', out: 'fp32' }, { index: 1, of: 2 });
    const stageFeeds = (await (await plain.get('head', () => head.bytes)).run(feeds)) as Record<string, ort.Tensor>;
    assert.ok(Object.values(stageFeeds).some((t) => t.type === 'float16'));
    same(
      await (await threaded.get('stage', () => stage.bytes)).run(stageFeeds),
      await (await plain.get('stage', () => stage.bytes)).run(stageFeeds),
    );
    const wrong = { [Object.keys(feeds)[0]]: new ort.Tensor('float32', new Float32Array(3), [1, 3]) };
    await assert.rejects((await threaded.get('cnn', bytes)).run(wrong));
  });

  it('is replaced when it dies: the old sessions refuse, new ones are made and answer', async () => {
    const slicer = await slicerFor('cnn');
    const feeds = inputsFor(slicer, 'cnn', 5);
    const bytes = () => slicer.analysis.model.bytes;
    const before = await threaded.get('cnn', bytes);
    const expected = await before.run(feeds);
    const thread = threaded.inferenceThread!;
    const restarts = thread.restarted;
    await thread.crashForTest();
    await waitFor(() => thread.restarted === restarts + 1, 'a new inference thread', 10_000);
    await assert.rejects(before.run(feeds), /restarted/);
    const after = await threaded.get('cnn', bytes);
    assert.notEqual(after, before);
    same(await after.run(feeds), expected);
  });
});
