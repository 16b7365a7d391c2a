import ort from 'onnxruntime-node';
import { builtinInputShape, loadModelArg } from '../../nodes/inference/bundled-models.js';
import { textLikeImage } from '../../nodes/inference/sample-images.js';
import { SessionCache } from '../../nodes/inference/sessions.js';
import { ModelSlicer } from '../../nodes/inference/slicer.js';

export const sessions = new SessionCache({ threads: 1 }, 512);
const slicers = new Map<string, Promise<ModelSlicer>>();

/** One slicer per built-in model for the whole test run (analysis probes the model once). */
export function slicerFor(name: 'ocr-det' | 'ocr-cls' | 'cnn'): Promise<ModelSlicer> {
  let s = slicers.get(name);
  if (!s) {
    const arg = `builtin:${name}`;
    s = loadModelArg(arg).then((m) => ModelSlicer.open(m, sessions, { inputShapes: builtinInputShape(arg) }));
    slicers.set(name, s);
  }
  return s;
}

/** Text-like images: real work for the OCR models (a batch for the classifier), varied input for the CNN. */
export function inputsFor(
  slicer: ModelSlicer,
  name: 'ocr-det' | 'ocr-cls' | 'cnn',
  seed: number,
): Record<string, ort.Tensor> {
  const { analysis } = slicer;
  const [input] = analysis.index.inputs;
  const [, c, h, w] = analysis.inputShapes[input];
  const batch = name === 'ocr-cls' ? 8 : 1;
  return { [input]: new ort.Tensor('float32', textLikeImage(h, w, seed, batch), [batch, c, h, w]) };
}
