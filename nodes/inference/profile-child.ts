import { parseModel } from './onnx-model.js';
import { type ProfileOptions, profileModel } from './profiler.js';
import { SessionCache } from './sessions.js';
import { ModelSlicer } from './slicer.js';

// Profiles one model and exits (forked by profileInChildProcess): a profile builds a head and a
// tail session for every cut, and the memory they held stays in the process after they are
// released (the PaddleOCR detector: 43 sessions, RSS 150 → 890 MB, still 890 MB after release).

export interface ProfileRequest {
  bytes: Uint8Array;
  inputShapes?: Record<string, number[]>;
  options: Omit<ProfileOptions, 'onProgress'>;
}

// The robot that asked went away: nothing to report to.
process.once('disconnect', () => process.exit(1));

process.once('message', (req: ProfileRequest) => {
  void (async () => {
    const sessions = new SessionCache({ threads: req.options.threads }, 4);
    const slicer = await ModelSlicer.open(parseModel(new Uint8Array(req.bytes)), sessions, { inputShapes: req.inputShapes });
    const profile = await profileModel(slicer, {
      ...req.options,
      onProgress: (done, total, label) => process.send?.({ progress: { done, total, label } }),
    });
    await sessions.close();
    return profile;
  })().then(
    (profile) => process.send?.({ profile }, undefined, {}, () => process.exit(0)),
    (err: Error) => process.send?.({ error: err.message }, undefined, {}, () => process.exit(1)),
  );
});
