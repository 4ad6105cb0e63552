import { mulberry32 } from '../../dev/onnx-builder';
import type { InferenceObservation, ObservedTensor } from '../../shared/inference/observer';

/** Standard-normal samples (Box–Muller on a seeded generator: reproducible). */
export function gaussian(seed: number): () => number {
  const rand = mulberry32(seed);
  return () => {
    const u = Math.max(rand(), 1e-12);
    const v = rand();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  };
}

/** An FP32 tensor of `rows` × `row.length` values. */
export function fp32(name: string, rows: number[][]): ObservedTensor {
  const width = rows[0]?.length ?? 0;
  return { name, datatype: 'FP32', shape: [rows.length, width], data: Float32Array.from(rows.flat()) };
}

/** A synthetic observation as predict would report it. */
export function observation(
  o: Partial<InferenceObservation> & { model: string; version: number },
): InferenceObservation {
  return { latencyMs: 5, inferenceMs: 2, batchSize: 1, status: 200, inputs: [], outputs: [], ...o };
}
