import { readdir, mkdir, writeFile } from 'node:fs/promises';
import { existsSync, readdirSync } from 'node:fs';
import { basename, extname, join } from 'node:path';
import sharp, { type Metadata } from 'sharp';
import { RobomeshError } from '../../protocol/errors.js';
import { prng } from '../util/index.js';
import ort from './ort-float16.js';
import type { Feeds } from './slicer.js';

export type CalibrationErrorCode = 'NO_IMAGES' | 'BAD_IMAGE' | 'NO_FONTS' | 'BAD_SHAPE';

export class CalibrationError extends RobomeshError<CalibrationErrorCode> {
  constructor(code: CalibrationErrorCode, message: string, options?: ErrorOptions) {
    super(code, message, options);
  }
}

export interface ImageNormalisation {
  mean: number;
  std: number;
}

/** PaddleOCR's classifier and recognizer: (x / 255 − 0.5) / 0.5. */
export const PADDLE_NORMALISATION: ImageNormalisation = { mean: 0.5, std: 0.5 };

const IMAGE_EXTENSIONS = new Set(['.png', '.jpg', '.jpeg', '.webp', '.bmp', '.tif', '.tiff']);

/**
 * An image as an NCHW float32 input of `shape` ([1, 3, H, W]) the way PaddleOCR feeds text
 * lines: scaled to height H keeping its aspect (squeezed to W when wider), normalised, and
 * padded on the right with zeros.
 */
export async function imageToInput(
  image: Buffer | string,
  shape: number[],
  norm: ImageNormalisation = PADDLE_NORMALISATION,
): Promise<Float32Array> {
  const [n, c, h, w] = shape;
  if (shape.length !== 4 || n !== 1 || c !== 3 || !(h > 0) || !(w > 0))
    throw new CalibrationError('BAD_SHAPE', `image inputs must be [1, 3, H, W], not [${shape.join(', ')}]`);
  let meta: Metadata;
  try {
    meta = await sharp(image).metadata();
  } catch (err) {
    const name = typeof image === 'string' ? image : 'image';
    throw new CalibrationError('BAD_IMAGE', `${name}: not an image sharp can read (${(err as Error).message})`);
  }
  const ratio = (meta.width ?? 1) / (meta.height ?? 1);
  const width = Math.min(w, Math.max(1, Math.ceil(h * ratio)));
  const { data } = await sharp(image)
    .removeAlpha()
    .toColourspace('srgb')
    .resize(width, h, { fit: 'fill' })
    .raw()
    .toBuffer({ resolveWithObject: true });
  const out = new Float32Array(3 * h * w);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < width; x++)
      for (let k = 0; k < 3; k++)
        out[k * h * w + y * w + x] = (data[(y * width + x) * 3 + k] / 255 - norm.mean) / norm.std;
  return out;
}

/** Every image in `dir` (sorted by name) as feeds for a model with one [1, 3, H, W] input. */
export async function loadCalibration(
  dir: string,
  input: { name: string; shape: number[] },
  norm?: ImageNormalisation,
  onProgress?: (done: number, total: number) => void,
): Promise<Feeds[]> {
  let names: string[];
  try {
    names = (await readdir(dir)).filter((f) => IMAGE_EXTENSIONS.has(extname(f).toLowerCase())).sort();
  } catch (err) {
    throw new CalibrationError('NO_IMAGES', `cannot read calibration directory ${dir}: ${(err as Error).message}`);
  }
  if (names.length === 0) throw new CalibrationError('NO_IMAGES', `no images (png, jpg, webp, bmp, tif) in ${dir}`);
  const feeds: Feeds[] = [];
  for (const [i, name] of names.entries()) {
    const data = await imageToInput(join(dir, name), input.shape, norm);
    feeds.push({ [input.name]: new ort.Tensor('float32', data, input.shape) });
    onProgress?.(i + 1, names.length);
  }
  return feeds;
}

const FONT_DIRS = ['/usr/share/fonts/truetype', '/usr/share/fonts/TTF', '/usr/local/share/fonts'];

/** TrueType fonts installed here (Debian: fonts-dejavu-core), sorted by path. */
export function systemFonts(): string[] {
  const found: string[] = [];
  const walk = (dir: string, depth: number): void => {
    if (depth > 3 || !existsSync(dir)) return;
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, e.name);
      if (e.isDirectory()) walk(path, depth + 1);
      else if (/\.ttf$/i.test(e.name) && !/math/i.test(e.name)) found.push(path);
    }
  };
  for (const d of FONT_DIRS) walk(d, 0);
  return found.sort();
}

/** Pango's name for a font file: DejaVuSansCondensed-BoldOblique.ttf → "DejaVu Sans Condensed Bold Oblique". */
function fontName(path: string): string {
  const [family, style = ''] = basename(path, extname(path)).split('-');
  const spaced = (s: string): string => s.replace(/^DejaVu/, 'DejaVu ').replace(/([a-z])([A-Z])/g, '$1 $2');
  return `${spaced(family)} ${spaced(style)}`.replace(/\s+/g, ' ').trim();
}

const WORDS = (
  'robot fleet map grid tile sensor camera lidar battery dock charge route aisle shelf pallet ' +
  'warehouse loading bay north south east west zone exit entry floor level door gate lift ' +
  'speed limit caution stop slow yield area crossing forklift storage section row rack bin ' +
  'inspection maintenance station emergency fire alarm office lab cold dry hazard order ' +
  'parcel returns shipping receiving inbound outbound zone level mezzanine ramp corridor'
).split(' ');

export interface TextLineOptions {
  count: number;
  seed: number;
  fonts?: string[];
  onProgress?: (done: number, total: number) => void;
}

/**
 * Renders `count` text lines with real fonts (every TrueType font found, in turn), half of
 * them upside down, as PNG files `line-00000-0.png` / `…-180.png` (the suffix is the rotation):
 * calibration inputs for a text-direction classifier. Words, sizes, ink and paper are seeded.
 */
export async function renderTextLines(dir: string, options: TextLineOptions): Promise<string[]> {
  const fonts = options.fonts ?? systemFonts();
  if (fonts.length === 0)
    throw new CalibrationError(
      'NO_FONTS',
      `no TrueType fonts in ${FONT_DIRS.join(', ')} (apt install fonts-dejavu-core)`,
    );
  await mkdir(dir, { recursive: true });
  const random = prng(options.seed);
  const pick = <T>(xs: T[]): T => xs[Math.floor(random() * xs.length)];
  const files: string[] = [];
  for (let i = 0; i < options.count; i++) {
    const font = fonts[i % fonts.length];
    const words = Array.from({ length: 1 + Math.floor(random() * 5) }, () =>
      random() < 0.15 ? String(Math.floor(random() * 1000)) : pick(WORDS),
    );
    const text = words.map((w) => (random() < 0.3 ? w[0].toUpperCase() + w.slice(1) : w)).join(' ');
    const mask = await sharp({
      text: { text: escapeMarkup(text), font: fontName(font), fontfile: font, dpi: Math.round(70 + random() * 80) },
    })
      .greyscale()
      .raw()
      .toBuffer({ resolveWithObject: true });
    const { width, height } = mask.info;
    const margin = Math.round(height * (0.1 + 0.3 * random()));
    const [W, H] = [width + 2 * margin, height + 2 * margin];
    const paper = 170 + random() * 85;
    const ink = random() * 90;
    const upsideDown = i % 2 === 1;
    const pixels = Buffer.alloc(W * H);
    for (let y = 0; y < H; y++)
      for (let x = 0; x < W; x++) {
        const my = y - margin;
        const mx = x - margin;
        const m = my >= 0 && my < height && mx >= 0 && mx < width ? mask.data[my * width + mx] / 255 : 0;
        const v = paper - (paper - ink) * m + (random() - 0.5) * 12;
        const at = upsideDown ? W * H - 1 - (y * W + x) : y * W + x;
        pixels[at] = Math.max(0, Math.min(255, Math.round(v)));
      }
    const file = join(dir, `line-${String(i).padStart(5, '0')}-${upsideDown ? 180 : 0}.png`);
    await writeFile(
      file,
      await sharp(pixels, { raw: { width: W, height: H, channels: 1 } })
        .png()
        .toBuffer(),
    );
    files.push(file);
    options.onProgress?.(i + 1, options.count);
  }
  return files;
}

function escapeMarkup(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}
