/**
 * Choosing the next token from a logits row: penalties (repetition as in transformers,
 * presence/frequency as in OpenAI's API), temperature, top-k, top-p, and a seeded PRNG so a
 * request with a `seed` samples the same tokens every time. Works in place on the row, without
 * sorting the whole vocabulary unless top-p needs more than the first candidates.
 */
import { mulberry32 } from '../util/random';

/** Sampling settings; temperature 0 means greedy (argmax). */
export interface SamplingOptions {
  temperature: number;
  /** Keep the k most likely tokens (0 = all). */
  topK: number;
  /** Keep the smallest set of tokens whose probability reaches p (1 = all). */
  topP: number;
  /** transformers' repetition_penalty over prompt and output tokens (1 = off). */
  repetitionPenalty: number;
  /** OpenAI presence_penalty over output tokens (0 = off). */
  presencePenalty: number;
  /** OpenAI frequency_penalty over output tokens (0 = off). */
  frequencyPenalty: number;
}

/** Default settings: greedy, no penalties. */
export const GREEDY: SamplingOptions = {
  temperature: 0,
  topK: 0,
  topP: 1,
  repetitionPenalty: 1,
  presencePenalty: 0,
  frequencyPenalty: 0,
};

/** Index of the largest value (first on ties), NaN-safe. */
export function argmax(row: ArrayLike<number>): number {
  let best = 0;
  let max = -Infinity;
  for (let i = 0; i < row.length; i++) {
    const v = row[i] ?? -Infinity;
    if (v > max) {
      max = v;
      best = i;
    }
  }
  return best;
}

/** Indices of the k largest values, largest first (a bounded min-heap: O(V log k)). */
function topIndices(row: Float32Array, k: number): number[] {
  const heap: number[] = []; // min-heap of indices by row value
  const less = (a: number, b: number) => (row[a] ?? 0) < (row[b] ?? 0);
  const siftDown = (i: number) => {
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < heap.length && less(heap[l] ?? 0, heap[m] ?? 0)) m = l;
      if (r < heap.length && less(heap[r] ?? 0, heap[m] ?? 0)) m = r;
      if (m === i) return;
      [heap[i], heap[m]] = [heap[m] ?? 0, heap[i] ?? 0];
      i = m;
    }
  };
  for (let i = 0; i < row.length; i++) {
    if (heap.length < k) {
      heap.push(i);
      for (let c = heap.length - 1; c > 0; ) {
        const p = (c - 1) >> 1;
        if (!less(heap[c] ?? 0, heap[p] ?? 0)) break;
        [heap[c], heap[p]] = [heap[p] ?? 0, heap[c] ?? 0];
        c = p;
      }
    } else if ((row[i] ?? 0) > (row[heap[0] ?? 0] ?? 0)) {
      heap[0] = i;
      siftDown(0);
    }
  }
  return heap.sort((a, b) => (row[b] ?? 0) - (row[a] ?? 0) || a - b);
}

/**
 * A token chooser for one request: keeps the token counts the penalties need and the PRNG.
 * @example
 * const sampler = new Sampler({ ...GREEDY, temperature: 0.8, topP: 0.9 }, 42, promptIds);
 * const next = sampler.next(logitsRow);
 */
export class Sampler {
  private readonly counts = new Map<number, number>();
  private readonly seen = new Set<number>();
  private readonly rand: () => number;

  constructor(
    private readonly options: SamplingOptions,
    seed: number,
    promptIds: readonly number[] = [],
  ) {
    this.rand = mulberry32(seed);
    for (const id of promptIds) this.seen.add(id);
  }

  /** Records a generated token (for the penalties). */
  accept(id: number): void {
    this.counts.set(id, (this.counts.get(id) ?? 0) + 1);
    this.seen.add(id);
  }

  /** Chooses the next token; modifies `row` in place. */
  next(row: Float32Array): number {
    const o = this.options;
    if (o.repetitionPenalty !== 1) {
      for (const id of this.seen) {
        const v = row[id] ?? 0;
        row[id] = v > 0 ? v / o.repetitionPenalty : v * o.repetitionPenalty;
      }
    }
    if (o.presencePenalty !== 0 || o.frequencyPenalty !== 0) {
      for (const [id, count] of this.counts)
        row[id] = (row[id] ?? 0) - o.presencePenalty - o.frequencyPenalty * count;
    }
    if (o.temperature <= 0 || o.topK === 1) return argmax(row);
    if (o.topK > 0) {
      // As transformers orders them: temperature, top-k, then top-p over the renormalized top-k.
      const candidates = topIndices(row, Math.min(o.topK, row.length));
      const t = o.temperature;
      const max = (row[candidates[0] ?? 0] ?? 0) / t;
      const probs = candidates.map((id) => Math.exp((row[id] ?? 0) / t - max));
      const total = probs.reduce((a, b) => a + b, 0);
      let cut = probs.length;
      if (o.topP < 1) {
        let cumulative = 0;
        for (let i = 0; i < probs.length; i++) {
          cumulative += (probs[i] ?? 0) / total;
          if (cumulative >= o.topP) {
            cut = i + 1;
            break;
          }
        }
      }
      return this.pick(candidates.slice(0, cut), probs.slice(0, cut));
    }
    return o.topP < 1 ? this.nucleus(row) : this.sampleAll(row);
  }

  /**
   * Top-p over the whole vocabulary without sorting it: bisect the probability threshold τ for
   * which the tokens with p ≥ τ are the smallest set reaching top_p (the sorted definition, up to
   * ties), then sample among them. 24 passes (τ to 2⁻²⁴ of the top probability) over the row instead of an O(V log V) sort.
   */
  private nucleus(row: Float32Array): number {
    const t = this.options.temperature;
    let max = -Infinity;
    for (let i = 0; i < row.length; i++) max = Math.max(max, (row[i] ?? 0) / t);
    const probs = new Float64Array(row.length);
    let total = 0;
    for (let i = 0; i < row.length; i++) {
      const e = Math.exp((row[i] ?? 0) / t - max);
      probs[i] = e;
      total += e;
    }
    const target = this.options.topP * total;
    let lo = 0; // mass of {p >= lo} >= target always holds
    let hi = 1; // the largest p is exp(0) = 1
    for (let iter = 0; iter < 24; iter++) {
      const mid = (lo + hi) / 2;
      let mass = 0;
      for (let i = 0; i < probs.length; i++) if ((probs[i] ?? 0) >= mid) mass += probs[i] ?? 0;
      if (mass >= target) lo = mid;
      else hi = mid;
    }
    let kept = 0;
    for (let i = 0; i < probs.length; i++) if ((probs[i] ?? 0) >= lo) kept += probs[i] ?? 0;
    let r = this.rand() * kept;
    let last = 0;
    for (let i = 0; i < probs.length; i++) {
      const p = probs[i] ?? 0;
      if (p < lo) continue;
      last = i;
      r -= p;
      if (r < 0) return i;
    }
    return last;
  }

  private pick(candidates: number[], probs: ArrayLike<number>): number {
    let total = 0;
    for (let i = 0; i < probs.length; i++) total += probs[i] ?? 0;
    let r = this.rand() * total;
    for (let i = 0; i < candidates.length; i++) {
      r -= probs[i] ?? 0;
      if (r < 0) return candidates[i] ?? 0;
    }
    return candidates[candidates.length - 1] ?? 0;
  }

  private sampleAll(row: Float32Array): number {
    const t = this.options.temperature;
    let max = -Infinity;
    for (let i = 0; i < row.length; i++) max = Math.max(max, (row[i] ?? 0) / t);
    let total = 0;
    for (let i = 0; i < row.length; i++) {
      const e = Math.exp((row[i] ?? 0) / t - max);
      row[i] = e;
      total += e;
    }
    let r = this.rand() * total;
    for (let i = 0; i < row.length; i++) {
      r -= row[i] ?? 0;
      if (r < 0) return i;
    }
    return row.length - 1;
  }
}
