import type { GraphProto, NodeProto } from 'onnx-buf';
import { ModelError, allInputs } from './onnx-model.js';

/** What the cut finder and extractor need to know about a graph, computed once. */
export interface GraphIndex {
  /** Nodes in topological order. */
  nodes: NodeProto[];
  /** Tensors computable without any graph input: initializers, Constant nodes, and what they feed alone. */
  constants: Set<string>;
  /** Tensor name → index (in `nodes`) of the node producing it. */
  producer: Map<string, number>;
  /** Tensor name → indices of the non-constant nodes reading it (subgraph reads included). */
  consumers: Map<string, number[]>;
  /** Graph inputs that are real inputs (not initializers listed as inputs, as old exporters do). */
  inputs: string[];
  outputs: string[];
  /** Dims of constant tensors that carry them statically (initializers, Constant values). */
  constantDims: Map<string, number[]>;
}

export function indexGraph(graph: GraphProto): GraphIndex {
  const initializers = new Set(graph.initializer.map((t) => t.name));
  const inputs = graph.input.map((i) => i.name).filter((n) => !initializers.has(n));
  const nodes = topologicalOrder(graph.node, new Set([...initializers, ...inputs]));
  const constants = new Set(initializers);
  const constantDims = new Map<string, number[]>();
  for (const t of graph.initializer) constantDims.set(t.name, t.dims.map(Number));
  const producer = new Map<string, number>();
  const consumers = new Map<string, number[]>();
  nodes.forEach((n, i) => {
    const ins = allInputs(n);
    const isConstant = ins.every((name) => constants.has(name)) && !NONDETERMINISTIC.has(n.opType);
    for (const o of n.output) {
      if (!o) continue;
      producer.set(o, i);
      if (isConstant) constants.add(o);
    }
    if (n.opType === 'Constant') {
      const t = n.attribute.find((a) => a.name === 'value')?.t;
      if (t) constantDims.set(n.output[0], t.dims.map(Number));
    }
    if (!isConstant) {
      for (const name of ins) {
        const list = consumers.get(name);
        if (list) {
          if (list[list.length - 1] !== i) list.push(i);
        } else consumers.set(name, [i]);
      }
    }
  });
  return { nodes, constants, producer, consumers, inputs, outputs: graph.output.map((o) => o.name), constantDims };
}

const NONDETERMINISTIC = new Set([
  'RandomNormal',
  'RandomUniform',
  'RandomNormalLike',
  'RandomUniformLike',
  'Multinomial',
  'Bernoulli',
]);

/** ONNX requires topological order; tolerate files that break the rule rather than mis-cut them. */
function topologicalOrder(nodes: NodeProto[], available: Set<string>): NodeProto[] {
  const ready = new Set(available);
  const done = new Array<boolean>(nodes.length).fill(false);
  const order: NodeProto[] = [];
  let progressed = true;
  while (order.length < nodes.length && progressed) {
    progressed = false;
    for (let i = 0; i < nodes.length; i++) {
      if (done[i]) continue;
      const n = nodes[i];
      if (allInputs(n).every((name) => ready.has(name))) {
        done[i] = true;
        order.push(n);
        for (const o of n.output) if (o) ready.add(o);
        progressed = true;
      }
    }
  }
  if (order.length < nodes.length) {
    const stuck = nodes.find((_, i) => !done[i]);
    const missing = stuck ? allInputs(stuck).filter((n) => !ready.has(n)) : [];
    throw new ModelError(
      'BAD_MODEL',
      `graph has a cycle or reads undefined tensors (node ` +
        `'${stuck?.name || stuck?.opType}' needs ${missing.join(', ')})`,
    );
  }
  return order;
}
