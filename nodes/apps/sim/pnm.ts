import { SimError, type SimErrorCode } from './errors.js';

/** An 8-bit grey image, row 0 at the top as stored in image files. */
export interface GrayImage {
  width: number;
  height: number;
  pixels: Uint8Array;
}

/** Larger than any map a robot fleet needs (100 m at 1 cm) and small enough not to exhaust memory. */
export const MAX_IMAGE_PIXELS = 10_000 * 10_000;

const isSpace = (b: number): boolean =>
  b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d || b === 0x0b || b === 0x0c;

/**
 * Netpbm grey or colour maps: P2 and P5 (grey), P3 and P6 (colour, averaged to grey), any maxval
 * up to 65535, scaled to 0–255 as image loaders do.
 */
export function decodePnm(bytes: Uint8Array, source: string): GrayImage {
  const fail = (code: SimErrorCode, what: string): never => {
    throw new SimError(code, `${source}: ${what}`);
  };
  const kind = bytes.length >= 2 && bytes[0] === 0x50 ? String.fromCharCode(bytes[1]) : '';
  if (!['2', '3', '5', '6'].includes(kind)) {
    fail(
      'BAD_MAP_IMAGE',
      `not a PGM/PPM image (magic ${JSON.stringify(String.fromCharCode(...bytes.subarray(0, 2)))}, ` +
        `expected P5, P2, P6 or P3)`,
    );
  }
  const channels = kind === '3' || kind === '6' ? 3 : 1;
  let pos = 2;
  const skipSpace = (): void => {
    for (;;) {
      while (pos < bytes.length && isSpace(bytes[pos])) pos++;
      if (bytes[pos] !== 0x23) return;
      while (pos < bytes.length && bytes[pos] !== 0x0a && bytes[pos] !== 0x0d) pos++;
    }
  };
  const token = (what: string): string => {
    skipSpace();
    const begin = pos;
    while (pos < bytes.length && !isSpace(bytes[pos]) && bytes[pos] !== 0x23) pos++;
    if (pos === begin) fail('MAP_TRUNCATED', `image ends before its ${what}`);
    return Buffer.from(bytes.subarray(begin, pos)).toString('latin1');
  };
  const integer = (what: string, min: number, max: number): number => {
    const t = token(what);
    const v = /^\d+$/.test(t) ? Number(t) : NaN;
    if (!(v >= min && v <= max))
      fail('BAD_MAP_IMAGE', `bad ${what} ${JSON.stringify(t)} (expected an integer in ${min}..${max})`);
    return v;
  };
  const width = integer('width', 1, MAX_IMAGE_PIXELS);
  const height = integer('height', 1, MAX_IMAGE_PIXELS);
  if (width * height > MAX_IMAGE_PIXELS)
    fail('BAD_MAP_IMAGE', `${width}×${height} is larger than ${MAX_IMAGE_PIXELS} pixels`);
  const maxval = integer('maxval', 1, 65535);
  const samples = width * height * channels;
  const raw = new Uint16Array(samples);
  if (kind === '5' || kind === '6') {
    if (pos >= bytes.length || !isSpace(bytes[pos])) fail('MAP_TRUNCATED', 'no pixel data after the header');
    pos++;
    const wide = maxval > 255;
    const need = samples * (wide ? 2 : 1);
    if (bytes.length - pos < need)
      fail('MAP_TRUNCATED', `pixel data truncated: ${bytes.length - pos} of ${need} bytes for ${width}×${height}`);
    for (let i = 0; i < samples; i++)
      raw[i] = wide ? (bytes[pos + 2 * i] << 8) | bytes[pos + 2 * i + 1] : bytes[pos + i];
  } else {
    for (let i = 0; i < samples; i++) {
      skipSpace();
      if (pos >= bytes.length)
        fail('MAP_TRUNCATED', `pixel data truncated: ${i} of ${samples} values for ${width}×${height}`);
      let v = 0;
      const begin = pos;
      while (pos < bytes.length && bytes[pos] >= 0x30 && bytes[pos] <= 0x39 && v <= maxval)
        v = v * 10 + bytes[pos++] - 0x30;
      if (pos === begin || (pos < bytes.length && !isSpace(bytes[pos]) && bytes[pos] !== 0x23)) {
        fail('BAD_MAP_IMAGE', `pixel value ${i} is not a number ≤ maxval ${maxval}`);
      }
      raw[i] = Math.min(v, 65535);
    }
  }
  for (let i = 0; i < samples; i++) {
    if (raw[i] > maxval) fail('BAD_MAP_IMAGE', `pixel value ${i} is ${raw[i]}, above maxval ${maxval}`);
  }
  const pixels = new Uint8Array(width * height);
  for (let p = 0; p < width * height; p++) {
    const v = channels === 3 ? (raw[p * 3] + raw[p * 3 + 1] + raw[p * 3 + 2]) / 3 : raw[p];
    pixels[p] = Math.round((v * 255) / maxval);
  }
  return { width, height, pixels };
}
