import { prng } from '../util/index.js';

/**
 * A synthetic document-like RGB image, NCHW float32 normalised as PaddleOCR expects
 * ((x/255 − mean)/std with ImageNet statistics): light paper with dark rows of glyph-like
 * strokes. Gives the OCR models real work without shipping image files.
 */
export function textLikeImage(height: number, width: number, seed: number, batch = 1): Float32Array {
  const random = prng(seed);
  const plane = height * width;
  const out = new Float32Array(batch * 3 * plane);
  const mean = [0.485, 0.456, 0.406];
  const std = [0.229, 0.224, 0.225];
  for (let b = 0; b < batch; b++) {
    const gray = new Float32Array(plane).fill(0.92);
    const rowHeight = Math.max(6, Math.round(height / (4 + random() * 4)));
    for (let top = Math.round(rowHeight * 0.4); top + rowHeight * 0.6 < height; top += rowHeight) {
      const glyphH = Math.max(3, Math.round(rowHeight * (0.45 + 0.2 * random())));
      let x = Math.round(width * 0.05 + random() * width * 0.1);
      const end = Math.round(width * (0.6 + 0.35 * random()));
      while (x < end) {
        const glyphW = Math.max(2, Math.round(glyphH * (0.4 + 0.6 * random())));
        const stroke = Math.max(1, Math.round(glyphH / 5));
        for (let y = top; y < Math.min(height, top + glyphH); y++) {
          for (let xx = x; xx < Math.min(width, x + glyphW); xx++) {
            const edge = y - top < stroke || top + glyphH - y <= stroke || xx - x < stroke || x + glyphW - xx <= stroke;
            if (edge && random() < 0.85) gray[y * width + xx] = 0.08 + 0.1 * random();
          }
        }
        x += glyphW + Math.max(1, Math.round(glyphH * (random() < 0.15 ? 1.2 : 0.25)));
      }
    }
    for (let c = 0; c < 3; c++) {
      const base = (b * 3 + c) * plane;
      for (let i = 0; i < plane; i++) out[base + i] = (gray[i] - mean[c]) / std[c];
    }
  }
  return out;
}
