import { RosError } from './errors.js';
import type { Tensor } from '../protocol/tensor-frame.js';

const MEAN = [0.485, 0.456, 0.406];
const STD = [0.229, 0.224, 0.225];

export interface RosImage {
  height: number;
  width: number;
  encoding: string;
  step: number;
  data: Uint8Array;
}

/** sensor_msgs/Image (rgb8, bgr8, mono8) → NCHW float32 normalised with ImageNet statistics (PaddleOCR's input). */
export function imageToTensor(img: RosImage, name = 'x'): Tensor {
  const channels = img.encoding === 'mono8' ? 1 : img.encoding === 'rgb8' || img.encoding === 'bgr8' ? 3 : 0;
  if (!channels) throw new RosError('BAD_IMAGE', `image encoding ${img.encoding} not supported (rgb8, bgr8, mono8)`);
  if (img.step < img.width * channels || img.data.length < img.step * img.height)
    throw new RosError(
      'BAD_IMAGE',
      `image ${img.width}×${img.height} ${img.encoding}: ${img.data.length} bytes with step ${img.step} is too short`,
    );
  const plane = img.width * img.height;
  const out = new Float32Array(3 * plane);
  for (let y = 0; y < img.height; y++) {
    for (let x = 0; x < img.width; x++) {
      const at = y * img.step + x * channels;
      for (let c = 0; c < 3; c++) {
        const v = channels === 1 ? img.data[at] : img.data[at + (img.encoding === 'bgr8' ? 2 - c : c)];
        out[c * plane + y * img.width + x] = (v / 255 - MEAN[c]) / STD[c];
      }
    }
  }
  return { name, dtype: 'float32', dims: [1, 3, img.height, img.width], data: out };
}

/** The inverse, for making camera frames from normalised tensors (simulated bags). */
export function tensorToRgb8(data: Float32Array, height: number, width: number): Uint8Array {
  const plane = height * width;
  const out = new Uint8Array(3 * plane);
  for (let i = 0; i < plane; i++)
    for (let c = 0; c < 3; c++)
      out[i * 3 + c] = Math.max(0, Math.min(255, Math.round((data[c * plane + i] * STD[c] + MEAN[c]) * 255)));
  return out;
}
