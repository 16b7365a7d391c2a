import type { NodeProto, TensorProto } from 'onnx-buf';
import { prng } from '../util/index.js';
import { attr, node, opset13Model, serializeModel, tensorProto, tensorValueInfo } from './onnx-model.js';

export interface CnnOptions {
  seed?: number;
  /** Input height and width. */
  size?: number;
  classes?: number;
}

/**
 * A small ResNet-style CNN (stem, two residual stages, pooling head) with seeded random weights,
 * opset 13. Used by tests and the demo where a fast model with static shapes and residual
 * blocks is wanted; nothing is downloaded.
 */
export function generateCnn(options: CnnOptions = {}): Uint8Array {
  const { seed = 1, size = 64, classes = 10 } = options;
  const random = prng(seed);
  const nodes: NodeProto[] = [];
  const weights: TensorProto[] = [];
  const gaussian = (): number => Math.sqrt(-2 * Math.log(random() + 1e-12)) * Math.cos(2 * Math.PI * random());

  const conv = (x: string, name: string, cin: number, cout: number, stride: number): string => {
    const std = Math.sqrt(2 / (cin * 9));
    weights.push(
      tensorProto(
        `${name}.w`,
        1,
        [cout, cin, 3, 3],
        Float32Array.from({ length: cout * cin * 9 }, () => gaussian() * std),
      ),
      tensorProto(
        `${name}.b`,
        1,
        [cout],
        Float32Array.from({ length: cout }, () => gaussian() * 0.01),
      ),
    );
    nodes.push(
      node(
        'Conv',
        [x, `${name}.w`, `${name}.b`],
        [`${name}.conv`],
        [attr('kernel_shape', [3, 3]), attr('pads', [1, 1, 1, 1]), attr('strides', [stride, stride])],
      ),
    );
    return `${name}.conv`;
  };
  const relu = (x: string, name: string): string => {
    nodes.push(node('Relu', [x], [name]));
    return name;
  };
  const residual = (x: string, name: string, c: number): string => {
    const a = relu(conv(x, `${name}.a`, c, c, 1), `${name}.a.relu`);
    const b = conv(a, `${name}.b`, c, c, 1);
    nodes.push(node('Add', [b, x], [`${name}.sum`]));
    return relu(`${name}.sum`, `${name}.out`);
  };

  let x = relu(conv('image', 'stem', 3, 16, 2), 'stem.out');
  x = residual(x, 'stage1', 16);
  x = relu(conv(x, 'down1', 16, 32, 2), 'down1.out');
  x = residual(x, 'stage2', 32);
  x = relu(conv(x, 'down2', 32, 64, 2), 'down2.out');
  nodes.push(node('GlobalAveragePool', [x], ['pool']), node('Flatten', ['pool'], ['flat'], [attr('axis', 1)]));
  weights.push(
    tensorProto(
      'fc.w',
      1,
      [classes, 64],
      Float32Array.from({ length: classes * 64 }, () => gaussian() * Math.sqrt(1 / 64)),
    ),
    tensorProto('fc.b', 1, [classes], new Float32Array(classes)),
  );
  nodes.push(node('Gemm', ['flat', 'fc.w', 'fc.b'], ['logits'], [attr('transB', 1)]));

  const model = opset13Model('robomesh generate-cnn', {
    name: 'robomesh_cnn',
    node: nodes,
    initializer: weights,
    input: [tensorValueInfo('image', 1, [1, 3, size, size])],
    output: [tensorValueInfo('logits', 1, [1, classes])],
  });
  return serializeModel(model);
}
