import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import {
  AttributeProtoSchema,
  AttributeProto_AttributeType,
  type AttributeProto,
  GraphProtoSchema,
  type GraphProto,
  ModelProtoSchema,
  type ModelProto,
  NodeProtoSchema,
  type NodeProto,
  OperatorSetIdProtoSchema,
  TensorProtoSchema,
  type TensorProto,
  TensorShapeProtoSchema,
  TensorShapeProto_DimensionSchema,
  TypeProtoSchema,
  TypeProto_TensorSchema,
  ValueInfoProtoSchema,
  type ValueInfoProto,
} from 'onnx-buf';
import { RobomeshError } from '../../protocol/errors.js';

export type ModelErrorCode =
  | 'ANALYSIS_FAILED'
  | 'BAD_CUT'
  | 'BAD_INPUT_SHAPE'
  | 'BAD_MODEL'
  | 'BAD_OPTIONS'
  | 'MODEL_NOT_FOUND'
  | 'UNKNOWN_CUT'
  | 'UNSUPPORTED_INPUT'
  | 'UNSUPPORTED_OPSET';

export class ModelError extends RobomeshError<ModelErrorCode> {
  constructor(code: ModelErrorCode, message: string, options?: ErrorOptions) {
    super(code, message, options);
  }
}

export interface LoadedModel {
  proto: ModelProto;
  graph: GraphProto;
  /** sha256 of the ONNX bytes, hex: a model's identity across the fleet. */
  hash: string;
  bytes: Uint8Array;
}

export function modelHash(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export function parseModel(bytes: Uint8Array, source = 'model'): LoadedModel {
  let proto: ModelProto;
  try {
    proto = fromBinary(ModelProtoSchema, bytes);
  } catch (err) {
    throw new ModelError('BAD_MODEL', `${source} is not a valid ONNX protobuf: ${(err as Error).message}`);
  }
  if (!proto.graph || proto.graph.node.length === 0) {
    throw new ModelError('BAD_MODEL', `${source} has no graph nodes; is it an ONNX model?`);
  }
  return { proto, graph: proto.graph, hash: modelHash(bytes), bytes };
}

export async function loadModel(path: string): Promise<LoadedModel> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (err) {
    throw new ModelError('MODEL_NOT_FOUND', `cannot read model ${path}: ${(err as NodeJS.ErrnoException).code ?? err}`);
  }
  return parseModel(bytes, path);
}

/** A new single-graph model on the default opset 13 (IR 8): what robomesh generates itself. */
export function opset13Model(
  producer: string,
  graph: {
    name: string;
    node: NodeProto[];
    input: ValueInfoProto[];
    output: ValueInfoProto[];
    initializer?: TensorProto[];
  },
): ModelProto {
  return create(ModelProtoSchema, {
    irVersion: 8n,
    producerName: producer,
    opsetImport: [create(OperatorSetIdProtoSchema, { domain: '', version: 13n })],
    graph: create(GraphProtoSchema, graph),
  });
}

export function serializeModel(model: ModelProto): Uint8Array {
  return toBinary(ModelProtoSchema, model);
}

/**
 * The model as ORT should run it whole: exports made for IR < 4 (PyTorch 1.2 and older) list
 * every initializer as a graph input too, and ORT cannot constant-fold an initializer a caller
 * might override, so such a model ran ~3× slower whole than split (measured on a ResNet-18:
 * 13.7 against 4.4 ms). Nothing feeds those inputs: they are dropped. Other models: their bytes.
 */
export function runnableBytes(model: LoadedModel): Uint8Array {
  const initializers = new Set(model.graph.initializer.map((t) => t.name));
  if (!model.graph.input.some((i) => initializers.has(i.name))) return model.bytes;
  const copy = fromBinary(ModelProtoSchema, model.bytes);
  copy.graph!.input = copy.graph!.input.filter((i) => !initializers.has(i.name));
  if (copy.irVersion < 4n) copy.irVersion = 4n;
  return toBinary(ModelProtoSchema, copy);
}

/** The default-domain opset a model imports (ONNX's "ai.onnx", spelled "" or "ai.onnx"). */
export function defaultOpset(model: ModelProto): number {
  const entry = model.opsetImport.find((o) => o.domain === '' || o.domain === 'ai.onnx');
  if (!entry) throw new ModelError('BAD_MODEL', 'model imports no default-domain opset');
  return Number(entry.version);
}

export type AttrValue = number | bigint | string | number[] | bigint[] | TensorProto;

export function attr(name: string, value: AttrValue): AttributeProto {
  if (typeof value === 'bigint')
    return create(AttributeProtoSchema, { name, type: AttributeProto_AttributeType.INT, i: value });
  if (typeof value === 'number') {
    return Number.isInteger(value)
      ? create(AttributeProtoSchema, { name, type: AttributeProto_AttributeType.INT, i: BigInt(value) })
      : create(AttributeProtoSchema, { name, type: AttributeProto_AttributeType.FLOAT, f: value });
  }
  if (typeof value === 'string') {
    return create(AttributeProtoSchema, {
      name,
      type: AttributeProto_AttributeType.STRING,
      s: new TextEncoder().encode(value),
    });
  }
  if (Array.isArray(value)) {
    return create(AttributeProtoSchema, {
      name,
      type: AttributeProto_AttributeType.INTS,
      ints: (value as (number | bigint)[]).map((v) => BigInt(v)),
    });
  }
  return create(AttributeProtoSchema, { name, type: AttributeProto_AttributeType.TENSOR, t: value });
}

/** A float attribute that happens to hold an integral value (e.g. alpha = 1.0). */
export function floatAttr(name: string, value: number): AttributeProto {
  return create(AttributeProtoSchema, { name, type: AttributeProto_AttributeType.FLOAT, f: value });
}

export function node(
  opType: string,
  input: string[],
  output: string[],
  attributes: AttributeProto[] = [],
  name = '',
): NodeProto {
  return create(NodeProtoSchema, { opType, input, output, attribute: attributes, name: name || output[0] });
}

export function tensorProto(name: string, dataType: number, dims: number[], raw: ArrayBufferView): TensorProto {
  return create(TensorProtoSchema, {
    name,
    dataType,
    dims: dims.map((d) => BigInt(d)),
    rawData: Uint8Array.from(new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength)),
  });
}

/** A tensor value-info; `dims` omitted means "any shape" (used where shapes are dynamic). */
export function tensorValueInfo(name: string, elemType: number, dims?: (number | string)[]): ValueInfoProto {
  const shape =
    dims === undefined
      ? undefined
      : create(TensorShapeProtoSchema, {
          dim: dims.map((d) =>
            create(TensorShapeProto_DimensionSchema, {
              value: typeof d === 'number' ? { case: 'dimValue', value: BigInt(d) } : { case: 'dimParam', value: d },
            }),
          ),
        });
  return create(ValueInfoProtoSchema, {
    name,
    type: create(TypeProtoSchema, {
      value: { case: 'tensorType', value: create(TypeProto_TensorSchema, { elemType, shape }) },
    }),
  });
}

export interface DeclaredTensorType {
  elemType: number;
  /** A number for a fixed dimension, a string for a symbolic one, undefined for unknown rank. */
  dims?: (number | string)[];
}

export function declaredType(info: ValueInfoProto): DeclaredTensorType | undefined {
  const t = info.type?.value;
  if (t?.case !== 'tensorType') return undefined;
  const dims = t.value.shape?.dim.map((d) =>
    d.value.case === 'dimValue' ? Number(d.value.value) : d.value.case === 'dimParam' ? d.value.value : '?',
  );
  return { elemType: t.value.elemType, dims };
}

/**
 * Names a node reads from the enclosing scope through its subgraphs (If/Loop/Scan bodies):
 * these are inputs as real as the listed ones when deciding what a cut must carry.
 */
export function implicitInputs(n: NodeProto): string[] {
  const out = new Set<string>();
  for (const a of n.attribute) {
    const graphs = a.g ? [a.g, ...a.graphs] : a.graphs;
    for (const g of graphs) for (const name of outerReferences(g)) out.add(name);
  }
  return [...out];
}

function outerReferences(g: GraphProto): Set<string> {
  const defined = new Set<string>([...g.input.map((i) => i.name), ...g.initializer.map((t) => t.name)]);
  const refs = new Set<string>();
  for (const n of g.node) {
    for (const i of [...n.input, ...implicitInputs(n)]) if (i && !defined.has(i)) refs.add(i);
    for (const o of n.output) defined.add(o);
  }
  return refs;
}

export function allInputs(n: NodeProto): string[] {
  return [...n.input.filter((i) => i !== ''), ...implicitInputs(n)];
}
