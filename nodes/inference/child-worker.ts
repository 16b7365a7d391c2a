import { parseModel } from './onnx-model.js';
import { profileModel } from './profiler.js';
import { SessionCache } from './sessions.js';
import { ModelSlicer } from './slicer.js';
import { type ChildTask, probedPart, withModel } from './child-work.js';
import { analyzeModel } from './split.js';

// Does one piece of model work for a robot and exits (forked by child-work.ts). Probing a
// model's shapes and profiling its cuts allocate far more than a robot keeps, and the memory
// stays in the process that allocated it: the PaddleOCR detector's probe left 175 MB behind,
// its profile (43 sessions) 740 MB more.

// The robot that asked went away: nothing to report to.
process.once('disconnect', () => process.exit(1));

process.once('message', (task: ChildTask) => {
  void (async () => {
    const model = parseModel(new Uint8Array(task.bytes));
    if (task.task === 'analyze')
      return { analysis: probedPart(await analyzeModel(model, { inputShapes: task.inputShapes })) };
    const sessions = new SessionCache({ threads: task.options.threads }, 4);
    try {
      const slicer = await ModelSlicer.open(model, sessions, {}, async () => withModel(model, task.analysis));
      const profile = await profileModel(slicer, {
        ...task.options,
        onProgress: (done, total, label) => process.send?.({ progress: { done, total, label } }),
      });
      return { profile };
    } finally {
      await sessions.close();
    }
  })().then(
    (result) => process.send?.(result, undefined, {}, () => process.exit(0)),
    (err: Error & { code?: unknown }) =>
      process.send?.(
        { error: err.message, code: typeof err.code === 'string' ? err.code : undefined },
        undefined,
        {},
        () => process.exit(1),
      ),
  );
});
