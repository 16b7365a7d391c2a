import { create } from '@bufbuild/protobuf';
import { StringStringEntryProtoSchema } from 'onnx-buf';
import { DTYPES } from '../../protocol/dtypes.js';
import {
  EXIT_LOGITS,
  EXIT_META_KEY,
  ExitError,
  type ExitHead,
  type ExitInfo,
  areProbabilities,
  argmax,
  chooseThreshold,
  shuffled,
  softmax,
} from './exits.js';
import { extractModel } from './extract.js';
import { indexGraph, type GraphIndex } from './graph.js';
import {
  type LoadedModel,
  allInputs,
  modelHash,
  node,
  parseModel,
  serializeModel,
  tensorValueInfo,
} from './onnx-model.js';
import type { SessionCache } from './sessions.js';
import { type Feeds, ModelSlicer } from './slicer.js';

/** A model with an early output turned into an exit: the model without that output, and the exit. */
export interface DeclaredExit {
  model: LoadedModel;
  slicer: ModelSlicer;
  exit: ExitHead;
}

/**
 * Turns an output the model already computes at an earlier depth (BranchyNet-style early heads)
 * into an exit: the model without that output (robots hold this one: with the early output live
 * to the end, no cut could follow it) and an exit holding the branch from the one trunk tensor it
 * reads to the output. That tensor must be a cut of the pruned model. The threshold is chosen on
 * calibration inputs as for fitted exits (60 % choose it, 40 % measure it; nothing is fitted).
 */
export async function declareExit(
  original: LoadedModel,
  output: string,
  calibration: Feeds[],
  sessions: SessionCache,
  options: { target?: number; seed?: number; inputShapes?: Record<string, number[]> } = {},
): Promise<DeclaredExit> {
  const { target = 0.99, seed = 1 } = options;
  const index = indexGraph(original.graph);
  const others = index.outputs.filter((o) => o !== output);
  if (!index.outputs.includes(output))
    throw new ExitError('BAD_EXIT', `the model has no output '${output}' (outputs: ${index.outputs.join(', ')})`);
  if (others.length !== 1)
    throw new ExitError(
      'BAD_EXIT',
      `an early output is declared beside one final output; this model has ${others.length}`,
    );
  const trunk = reached(index, others);
  const branch = reached(index, [output]);
  for (const n of trunk) branch.delete(n);
  const computed = new Set([...branch].flatMap((n) => index.nodes[n].output));
  const reads = new Set<string>();
  for (const n of branch)
    for (const i of allInputs(index.nodes[n])) if (i && !index.constants.has(i) && !computed.has(i)) reads.add(i);
  if (reads.size !== 1)
    throw new ExitError(
      'BAD_EXIT',
      `the branch to '${output}' reads ${[...reads].join(', ') || 'nothing'}: an exit reads one tensor`,
    );
  const [tensor] = reads;

  const pruned = parseModel(
    serializeModel(extractModel(original.proto, index, index.inputs, others, new Map())),
    'pruned',
  );
  const slicer = await ModelSlicer.open(pruned, sessions, { inputShapes: options.inputShapes });
  const cut = slicer.analysis.cuts.find((c) => c.tensors.length === 1 && c.tensors[0].name === tensor);
  if (!cut)
    throw new ExitError(
      'BAD_EXIT',
      `the branch to '${output}' reads '${tensor}', which is not a cut of the model ` +
        `(cuts: ${slicer.analysis.cuts.map((c) => c.tensors.map((t) => t.name).join('+')).join(', ')})`,
    );
  const shape = slicer.analysis.shapes.get(tensor)!;
  const outShape = slicer.analysis.shapes.get(others[0]);
  const early = slicer.analysis.shapes.get(output) ?? (await earlyShape(original, output, calibration[0], sessions));
  const classes = outShape ? outShape.dims.reduce((a, b) => a * b, 1) : 0;
  if (!outShape || early.dims.reduce((a, b) => a * b, 1) !== classes)
    throw new ExitError('NOT_A_CLASSIFIER', `'${output}' and '${others[0]}' must give the same number of class scores`);

  // The branch, reading the cut tensor and giving logits (log of probabilities where it ends in them).
  const branchModel = extractModel(
    original.proto,
    index,
    [tensor],
    [output],
    new Map([[tensor, { dtype: shape.dtype, dims: shape.dims }]]),
  );
  const probe = await runOriginal(original, output, calibration, sessions);
  const gives = areProbabilities(probe);
  branchModel.graph!.node = [...branchModel.graph!.node, node(gives ? 'Log' : 'Identity', [output], [EXIT_LOGITS])];
  branchModel.graph!.output = [tensorValueInfo(EXIT_LOGITS, DTYPES.float32.code, [1, classes])];

  const outputName = others[0];
  const teacher: Float32Array[] = [];
  for (const f of calibration) teacher.push((await slicer.runWhole(f))[outputName].data as Float32Array);
  const info: ExitInfo = {
    model: pruned.hash,
    cut: cut.id,
    tensor,
    inputShape: slicer.analysis.inputShapes[slicer.analysis.index.inputs[0]],
    classes,
    output: { name: outputName, dims: outShape.dims },
    probabilities: areProbabilities(teacher),
    threshold: 1.01,
    target,
    exitRate: 0,
    agreement: 1,
    seed,
    inputs: calibration.length,
  };
  const withInfo = (i: ExitInfo): ExitHead => {
    branchModel.metadataProps = [
      create(StringStringEntryProtoSchema, { key: EXIT_META_KEY, value: JSON.stringify(i) }),
    ];
    const bytes = serializeModel(branchModel);
    return { info: { ...i }, bytes, hash: modelHash(bytes) };
  };
  const draft = withInfo(info);
  const judged: { confidence: number; agrees: boolean }[] = [];
  for (const [i, f] of calibration.entries()) {
    const { logits } = await slicer.runHeadWithExit(draft, 'fp32', f);
    const p = softmax(logits);
    judged.push({ confidence: Math.max(...p), agrees: argmax(p) === argmax(teacher[i]) });
  }
  const order = shuffled(calibration.length, seed);
  const split = Math.floor(calibration.length * 0.6);
  info.threshold = chooseThreshold(
    order.slice(0, split).map((i) => judged[i]),
    target,
  );
  const test = order.slice(split);
  const exited = test.filter((i) => judged[i].confidence >= info.threshold);
  info.exitRate = test.length ? exited.length / test.length : 0;
  info.agreement = test.length ? 1 - exited.filter((i) => !judged[i].agrees).length / test.length : 1;
  return { model: pruned, slicer, exit: withInfo(info) };
}

/** Nodes needed to compute `outputs` from the graph inputs. */
function reached(index: GraphIndex, outputs: string[]): Set<number> {
  const seen = new Set<number>();
  const pending = [...outputs];
  while (pending.length) {
    const p = index.producer.get(pending.pop()!);
    if (p === undefined || seen.has(p)) continue;
    seen.add(p);
    pending.push(...allInputs(index.nodes[p]));
  }
  return seen;
}

async function runOriginal(
  model: LoadedModel,
  output: string,
  feeds: Feeds[],
  sessions: SessionCache,
): Promise<Float32Array[]> {
  const session = await sessions.get(`${model.hash}:whole-original`, () => model.bytes);
  const out: Float32Array[] = [];
  for (const f of feeds.slice(0, 8)) out.push((await session.run(f))[output].data as Float32Array);
  return out;
}

async function earlyShape(model: LoadedModel, output: string, feeds: Feeds, sessions: SessionCache) {
  const session = await sessions.get(`${model.hash}:whole-original`, () => model.bytes);
  const t = (await session.run(feeds))[output];
  return { dtype: 'float32' as const, dims: [...t.dims] };
}
