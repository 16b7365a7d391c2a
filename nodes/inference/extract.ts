import { create } from '@bufbuild/protobuf';
import { GraphProtoSchema, ModelProtoSchema, type ModelProto, type NodeProto, type ValueInfoProto } from 'onnx-buf';
import { DTYPES, type DType } from '../../protocol/dtypes.js';
import type { GraphIndex } from './graph.js';
import { ModelError, allInputs, tensorValueInfo } from './onnx-model.js';

export interface BoundaryType {
  dtype: DType;
  /** Numbers for fixed dims, names for symbolic ones; omitted when the shape is not known. */
  dims?: (number | string)[];
}

/**
 * The sub-model computing `outputs` from `inputs`, like Python's onnx.utils.extract_model:
 * walks back from the outputs, stops at the inputs, keeps the nodes, initializers, value infos,
 * opsets and local functions that are reached. Fails if some output needs a graph input that
 * is not among `inputs` (the cut would not separate the model).
 */
export function extractModel(
  model: ModelProto,
  index: GraphIndex,
  inputs: string[],
  outputs: string[],
  types: Map<string, BoundaryType>,
): ModelProto {
  const graph = model.graph!;
  const stop = new Set(inputs);
  const initializers = new Map(graph.initializer.map((t) => [t.name, t]));
  const keep = new Set<number>();
  const usedInitializers = new Set<string>();
  const pending = [...outputs];
  const visited = new Set<string>();
  while (pending.length > 0) {
    const name = pending.pop()!;
    if (visited.has(name)) continue;
    visited.add(name);
    if (stop.has(name)) continue;
    if (initializers.has(name)) {
      usedInitializers.add(name);
      continue;
    }
    const p = index.producer.get(name);
    if (p === undefined) {
      throw new ModelError(
        'BAD_CUT',
        `'${name}' is needed but is neither computed after the cut nor one of its inputs`,
      );
    }
    if (keep.has(p)) continue;
    keep.add(p);
    for (const i of allInputs(index.nodes[p])) pending.push(i);
  }
  // Nodes are shared with the source model, not copied: nothing downstream mutates them.
  const nodes: NodeProto[] = index.nodes.filter((_, i) => keep.has(i));
  const declared = new Map<string, ValueInfoProto>(
    [...graph.input, ...graph.output, ...graph.valueInfo].map((v) => [v.name, v]),
  );
  const info = (name: string): ValueInfoProto => {
    const t = types.get(name);
    if (t) return tensorValueInfo(name, DTYPES[t.dtype].code, t.dims);
    const d = declared.get(name);
    if (d) return d;
    throw new ModelError('BAD_CUT', `no type known for boundary tensor '${name}'`);
  };
  const out = create(ModelProtoSchema, {
    irVersion: model.irVersion,
    opsetImport: model.opsetImport,
    producerName: 'robomesh',
    producerVersion: model.producerVersion,
    domain: model.domain,
    modelVersion: model.modelVersion,
    functions: model.functions,
    metadataProps: model.metadataProps,
    graph: create(GraphProtoSchema, {
      name: graph.name,
      node: nodes,
      initializer: graph.initializer.filter((t) => usedInitializers.has(t.name)),
      input: inputs.map(info),
      output: outputs.map(info),
      valueInfo: graph.valueInfo.filter((v) => visited.has(v.name) && !stop.has(v.name) && !outputs.includes(v.name)),
    }),
  });
  return out;
}
