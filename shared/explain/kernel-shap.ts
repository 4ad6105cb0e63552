/**
 * Kernel SHAP (Lundberg & Lee 2017): Shapley values of a model's scalar output as the solution
 * of a weighted linear regression over feature coalitions, constrained so that the attributions
 * add up to f(x) − f(baseline). Model-agnostic: only forward passes are needed (onnxruntime-node
 * has no gradients).
 *
 * - With few features (2^M − 2 coalitions within the sample budget) every coalition is
 *   evaluated with its exact Shapley kernel weight: the result is the exact Shapley value.
 * - Otherwise coalitions are sampled from the kernel's size distribution (uniform within a size,
 *   each paired with its complement), which makes every sampled coalition weigh the same.
 *
 * The regression is solved with ml-matrix (SVD, so an under-determined sample still yields the
 * minimum-norm solution instead of failing).
 */
import { Matrix, solve } from 'ml-matrix';
import { mulberry32 } from '../util/random';
import { fullMask, type MaskedModel } from './masked-model';

/** Options of {@link kernelShap}. */
export interface KernelShapOptions {
  /** Coalitions to evaluate (beyond the instance and the baseline). */
  samples: number;
  /** Seed of the coalition sampler (default 1): the same request gives the same answer. */
  seed?: number;
}

/** Result of {@link kernelShap}. */
export interface KernelShapResult {
  /** One attribution per feature. */
  attributions: Float64Array;
  /** f(baseline): what the attributions are measured from. */
  expectedValue: number;
  /** f(instance). */
  prediction: number;
  /** Coalitions evaluated. */
  samples: number;
  /** True when every coalition was enumerated (exact Shapley values). */
  exact: boolean;
}

/**
 * Coalitions the exact (enumerating) variant needs for `features` features, or Infinity when
 * that is beyond any budget.
 * @example
 * exactCoalitions(4) // 14
 */
export function exactCoalitions(features: number): number {
  return features > 30 ? Infinity : 2 ** features - 2;
}

/**
 * Explains `model`'s scalar output with Kernel SHAP.
 * @example
 * ```ts
 * const { attributions, expectedValue } = await kernelShap(maskedModel, { samples: 2048 });
 * ```
 */
export async function kernelShap(model: MaskedModel, options: KernelShapOptions): Promise<KernelShapResult> {
  const M = model.features;
  const exact = exactCoalitions(M) <= options.samples;
  const { masks, weights } = exact
    ? enumerateCoalitions(M)
    : sampleCoalitions(M, options.samples, options.seed ?? 1);
  const values = await model.evaluate([fullMask(M, true), fullMask(M, false), ...masks]);
  const prediction = values[0]!;
  const expectedValue = values[1]!;
  const delta = prediction - expectedValue;
  const attributions = new Float64Array(M);
  if (M === 1) {
    attributions[0] = delta;
  } else if (M > 1) {
    // Eliminate the last feature with the constraint Σφ = Δ: φ_M = Δ − Σ_{j<M} φ_j, so each
    // coalition z gives  y − z_M·Δ = Σ_{j<M} (z_j − z_M)·φ_j.
    const k = M - 1;
    const A = new Float64Array(k * k);
    const b = new Float64Array(k);
    const row = new Float64Array(k);
    const nonZero = new Int32Array(k);
    for (let s = 0; s < masks.length; s++) {
      const z = masks[s]!;
      const w = weights[s]!;
      const zm = z[k]!;
      const y = values[s + 2]! - expectedValue - zm * delta;
      for (let j = 0; j < k; j++) row[j] = z[j]! - zm;
      // Rows are sparse in {−1, 0, 1}: only non-zero entries, and only the upper triangle (XᵀWX is symmetric).
      let nz = 0;
      for (let j = 0; j < k; j++) if (row[j] !== 0) nonZero[nz++] = j;
      for (let p = 0; p < nz; p++) {
        const i = nonZero[p]!;
        const wi = w * row[i]!;
        b[i]! += wi * y;
        for (let q = p; q < nz; q++) {
          const j = nonZero[q]!;
          A[i * k + j]! += wi * row[j]!;
        }
      }
    }
    const lhs = new Matrix(k, k);
    for (let i = 0; i < k; i++)
      for (let j = i; j < k; j++) {
        lhs.set(i, j, A[i * k + j]!);
        lhs.set(j, i, A[i * k + j]!);
      }
    const phi = solve(lhs, Matrix.columnVector(Array.from(b)), true);
    let sum = 0;
    for (let j = 0; j < k; j++) {
      attributions[j] = phi.get(j, 0);
      sum += attributions[j]!;
    }
    attributions[k] = delta - sum;
  }
  return { attributions, expectedValue, prediction, samples: masks.length, exact };
}

/** The Shapley kernel weight of a coalition of size s among M features. */
function kernelWeight(M: number, s: number): number {
  return (M - 1) / (binomial(M, s) * s * (M - s));
}

function binomial(n: number, k: number): number {
  let r = 1;
  for (let i = 1; i <= k; i++) r = (r * (n - k + i)) / i;
  return r;
}

/** Every coalition but the empty and the full one, with its kernel weight. */
function enumerateCoalitions(M: number): { masks: Uint8Array[]; weights: Float64Array } {
  const n = exactCoalitions(M);
  const masks: Uint8Array[] = [];
  const weights = new Float64Array(n);
  for (let bits = 1; bits <= n; bits++) {
    const z = new Uint8Array(M);
    let size = 0;
    for (let j = 0; j < M; j++) {
      if ((bits >>> j) & 1) {
        z[j] = 1;
        size++;
      }
    }
    weights[masks.length] = kernelWeight(M, size);
    masks.push(z);
  }
  return { masks, weights };
}

/**
 * `samples` coalitions (rounded down to pairs): sizes drawn with probability ∝ (M−1)/(s(M−s)),
 * members uniformly, each followed by its complement. Drawn this way every coalition carries
 * the same regression weight.
 */
function sampleCoalitions(
  M: number,
  samples: number,
  seed: number,
): { masks: Uint8Array[]; weights: Float64Array } {
  const rand = mulberry32(seed);
  const cumulative = new Float64Array(M - 1);
  let total = 0;
  for (let s = 1; s < M; s++) {
    total += (M - 1) / (s * (M - s));
    cumulative[s - 1] = total;
  }
  const pairs = Math.max(1, Math.floor(samples / 2));
  const masks: Uint8Array[] = [];
  const order = new Int32Array(M);
  for (let p = 0; p < pairs; p++) {
    const u = rand() * total;
    let size = 1;
    while (size < M - 1 && cumulative[size - 1]! < u) size++;
    for (let j = 0; j < M; j++) order[j] = j;
    const z = new Uint8Array(M);
    // Partial Fisher–Yates: the first `size` positions are a uniform random subset.
    for (let j = 0; j < size; j++) {
      const pick = j + Math.floor(rand() * (M - j));
      const t = order[j]!;
      order[j] = order[pick]!;
      order[pick] = t;
      z[order[j]!] = 1;
    }
    const complement = new Uint8Array(M);
    for (let j = 0; j < M; j++) complement[j] = z[j] ? 0 : 1;
    masks.push(z, complement);
  }
  return { masks, weights: new Float64Array(masks.length).fill(1) };
}
