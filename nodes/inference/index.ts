export { type Int8Granularity, type Precision, PRECISIONS } from './boundary.js';
export { BUILTIN_MODELS, builtinInputShape, type BuiltinModel, loadModelArg } from './bundled-models.js';
export { analyzeInChildProcess, profileInChildProcess } from './child-work.js';
export { ComputeLoad } from './compute-load.js';
export {
  CalibrationError,
  imageToInput,
  loadCalibration,
  PADDLE_NORMALISATION,
  renderTextLines,
  systemFonts,
} from './calibration.js';
export { type Cut } from './cuts.js';
export { type DeclaredExit, declareExit } from './declared-exits.js';
export {
  chooseThreshold,
  ExitError,
  type ExitHead,
  type ExitInfo,
  fitExits,
  judgeExit,
  loadExit,
  parseExit,
} from './exits.js';
export { syntheticFeeds } from './feeds.js';
export { INPUT_CUT, ModelRegistry, outputsToTensors, tensorsToFeeds } from './model-registry.js';
export {
  attr,
  type LoadedModel,
  node,
  opset13Model,
  parseModel,
  serializeModel,
  tensorValueInfo,
} from './onnx-model.js';
export { defaultCacheDir, median, type ModelProfile, profileKey, profileModel, ProfileStore } from './profiler.js';
export { INFERENCE_MALLOC_TUNABLES } from './runtime-env.js';
export { textLikeImage } from './sample-images.js';
export { SessionCache } from './sessions.js';
export { ModelSlicer } from './slicer.js';
export { ChainFilesError, type ChainFiles, type ChainFilesOptions, writeChainFiles } from './chain-files.js';
export { analyzeModel, buildSplit } from './split.js';
export { BoundaryError } from './wire.js';
export {
  analyzeStage,
  buildChain,
  buildStage,
  CHAIN_INPUT,
  CHAIN_OUTPUT,
  planChainCuts,
  StageError,
  type StageInfo,
  stageInfoOf,
  weightBytes,
} from './stages.js';
