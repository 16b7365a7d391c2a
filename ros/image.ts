import sharp from 'sharp';
import { RosError } from './errors.js';
import type { Tensor } from '../protocol/tensor-frame.js';

/** ImageNet statistics, what PaddleOCR's and most torchvision models' preprocessing divides by. */
const MEAN = [0.485, 0.456, 0.406];
const STD = [0.229, 0.224, 0.225];

/** sensor_msgs/Image */
export interface RosImage {
  height: number;
  width: number;
  encoding: string;
  step: number;
  data: Uint8Array;
}

/** sensor_msgs/CompressedImage (`format` as image_transport writes it: "jpeg", "png", "rgb8; jpeg compressed bgr8"). */
export interface RosCompressedImage {
  format: string;
  data: Uint8Array;
}

/**
 * How a camera frame becomes a model input: the model's input size (height, width), and how the
 * frame is fitted to it. `letterbox` keeps the aspect ratio, scales the frame to fit and places it
 * at the top left, the rest left at zero after normalisation (as PaddleOCR pads its detector's
 * input); `stretch` scales each side on its own (classifiers trained on squashed crops).
 */
export interface CameraFit {
  height: number;
  width: number;
  resize: 'letterbox' | 'stretch';
}

/** Bytes per pixel and where red, green and blue sit in each raw encoding taken. */
const RAW: Record<string, { channels: number; rgb: [number, number, number] }> = {
  rgb8: { channels: 3, rgb: [0, 1, 2] },
  bgr8: { channels: 3, rgb: [2, 1, 0] },
  rgba8: { channels: 4, rgb: [0, 1, 2] },
  bgra8: { channels: 4, rgb: [2, 1, 0] },
  mono8: { channels: 1, rgb: [0, 0, 0] },
};
export const RAW_ENCODINGS = Object.keys(RAW);

/** The largest frame taken (a 8K camera is 33 M pixels): anything larger is refused before it is decoded. */
const MAX_PIXELS = 40_000_000;

/** A raw frame packed as RGB rows with no padding (any step, any of RAW's encodings). */
export function packRgb(img: RosImage): Uint8Array {
  const enc = RAW[img.encoding];
  if (!enc)
    throw new RosError('BAD_IMAGE', `image encoding ${img.encoding} not supported (${RAW_ENCODINGS.join(', ')})`);
  if (!(img.width > 0 && img.height > 0) || img.width * img.height > MAX_PIXELS)
    throw new RosError('BAD_IMAGE', `image ${img.width}×${img.height}: no pixels or more than ${MAX_PIXELS}`);
  if (img.step < img.width * enc.channels || img.data.length < img.step * (img.height - 1) + img.width * enc.channels)
    throw new RosError(
      'BAD_IMAGE',
      `image ${img.width}×${img.height} ${img.encoding}: ${img.data.length} bytes with step ${img.step} is too short`,
    );
  const out = new Uint8Array(img.width * img.height * 3);
  const [r, g, b] = enc.rgb;
  for (let y = 0; y < img.height; y++) {
    let at = y * img.step;
    let to = y * img.width * 3;
    for (let x = 0; x < img.width; x++, at += enc.channels, to += 3) {
      out[to] = img.data[at + r];
      out[to + 1] = img.data[at + g];
      out[to + 2] = img.data[at + b];
    }
  }
  return out;
}

/** Decodes a CompressedImage (JPEG or PNG, by libvips through sharp) to packed RGB. */
export async function decodeCompressed(
  img: RosCompressedImage,
): Promise<{ width: number; height: number; rgb: Uint8Array }> {
  try {
    const decoder = sharp(img.data, { limitInputPixels: MAX_PIXELS, failOn: 'error' });
    const meta = await decoder.metadata();
    if (meta.format !== 'jpeg' && meta.format !== 'png')
      throw new RosError('BAD_IMAGE', `compressed image is ${meta.format}, not JPEG or PNG (format "${img.format}")`);
    const { data, info } = await decoder
      .removeAlpha()
      .toColourspace('srgb')
      .raw()
      .toBuffer({ resolveWithObject: true });
    return { width: info.width, height: info.height, rgb: channels3(data, info.channels) };
  } catch (err) {
    if (err instanceof RosError) throw err;
    throw new RosError(
      'BAD_IMAGE',
      `compressed image (format "${img.format}") does not decode: ${(err as Error).message}`,
    );
  }
}

/** Grey decodes to one channel: spread to three. */
function channels3(data: Uint8Array, channels: number): Uint8Array {
  if (channels === 3) return data;
  const out = new Uint8Array((data.length / channels) * 3);
  for (let i = 0, j = 0; i < data.length; i += channels, j += 3) out[j] = out[j + 1] = out[j + 2] = data[i];
  return out;
}

/** Where a frame of `w`×`h` lands in the model's input, scaled (bilinear, libvips). */
export function placement(w: number, h: number, fit: CameraFit): { width: number; height: number } {
  if (fit.resize === 'stretch') return { width: fit.width, height: fit.height };
  const scale = Math.min(fit.width / w, fit.height / h);
  return {
    width: Math.max(1, Math.min(fit.width, Math.round(w * scale))),
    height: Math.max(1, Math.min(fit.height, Math.round(h * scale))),
  };
}

/** Packed RGB of any size → the model's NCHW float32 input, fitted and normalised. */
export async function rgbToTensor(
  rgb: Uint8Array,
  width: number,
  height: number,
  fit: CameraFit,
  name = 'x',
): Promise<Tensor> {
  const size = placement(width, height, fit);
  const scaled =
    size.width === width && size.height === height
      ? rgb
      : await sharp(rgb, { raw: { width, height, channels: 3 } })
          .resize(size.width, size.height, { fit: 'fill', kernel: 'linear' })
          .raw()
          .toBuffer();
  const plane = fit.width * fit.height;
  const out = new Float32Array(3 * plane);
  for (let y = 0; y < size.height; y++)
    for (let x = 0; x < size.width; x++) {
      const at = (y * size.width + x) * 3;
      for (let c = 0; c < 3; c++) out[c * plane + y * fit.width + x] = (scaled[at + c] / 255 - MEAN[c]) / STD[c];
    }
  return { name, dtype: 'float32', dims: [1, 3, fit.height, fit.width], data: out };
}

/** sensor_msgs/Image of any size and encoding in RAW → the model's input. */
export async function imageToTensor(img: RosImage, fit: CameraFit, name = 'x'): Promise<Tensor> {
  return rgbToTensor(packRgb(img), img.width, img.height, fit, name);
}

/** sensor_msgs/CompressedImage (JPEG, PNG) → the model's input. */
export async function compressedToTensor(img: RosCompressedImage, fit: CameraFit, name = 'x'): Promise<Tensor> {
  const { width, height, rgb } = await decodeCompressed(img);
  return rgbToTensor(rgb, width, height, fit, name);
}

/** The inverse of the normalisation, for making camera frames from normalised tensors (simulated bags). */
export function tensorToRgb8(data: Float32Array, height: number, width: number): Uint8Array {
  const plane = height * width;
  const out = new Uint8Array(3 * plane);
  for (let i = 0; i < plane; i++)
    for (let c = 0; c < 3; c++)
      out[i * 3 + c] = Math.max(0, Math.min(255, Math.round((data[c * plane + i] * STD[c] + MEAN[c]) * 255)));
  return out;
}
