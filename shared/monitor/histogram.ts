/**
 * Fixed-edge, sparse histograms: the unit every monitoring summary is made of.
 *
 * Every histogram in maas uses the same bin edges, whatever the model, version or feature, so
 * two histograms always merge exactly by adding counts (no re-binning, no approximation) and a
 * container never needs to know a baseline before it can record. The scheme is signed and
 * log-spaced, which suits values spanning many orders of magnitude (latencies, logits, raw
 * features):
 *
 * - bin `0` holds values with |v| < 1e-4 (zero included);
 * - bin `k` (1 ≤ k ≤ 200) holds positive values in [10^((k-1)/20 - 4), 10^(k/20 - 4)), that is
 *   20 bins per decade from 1e-4 up to 1e6 (each bin about 12 % wide);
 * - bin `201` holds values ≥ 1e6 (and +Infinity);
 * - bin `-k` mirrors bin `k` for negative values.
 *
 * NaN is counted apart (`nonFinite`). Bin indices increase with the value, so sorting indices
 * numerically sorts bins by value (what quantiles, KS and drift coarsening rely on).
 */

/** Bins per decade of the fixed scheme. */
export const BINS_PER_DECADE = 20;
/** log10 of the smallest magnitude with its own bin (smaller magnitudes land in bin 0). */
export const MIN_EXPONENT = -4;
/** log10 of the magnitude from which values overflow into the last bin. */
export const MAX_EXPONENT = 6;
/** Index of the overflow bin (its mirror, `-OVERFLOW_BIN`, is the negative overflow). */
export const OVERFLOW_BIN = (MAX_EXPONENT - MIN_EXPONENT) * BINS_PER_DECADE + 1;

const MIN_MAGNITUDE = 10 ** MIN_EXPONENT;

/**
 * A histogram on the fixed scheme. `bins` maps the bin index (as a string, so it serializes
 * as JSON as is) to its count; empty bins are absent, which keeps narrow distributions small.
 */
export interface Histogram {
  count: number;
  /** NaN values seen (not in any bin). */
  nonFinite: number;
  sum: number;
  min: number;
  max: number;
  bins: Record<string, number>;
}

/**
 * An empty histogram.
 *
 * @example
 * ```ts
 * const h = emptyHistogram(); addValue(h, 3);
 * ```
 */
export function emptyHistogram(): Histogram {
  return { count: 0, nonFinite: 0, sum: 0, min: Infinity, max: -Infinity, bins: {} };
}

/**
 * The bin a value falls into (see the module comment for the scheme).
 *
 * @example
 * ```ts
 * binOf(0); // 0
 * binOf(1); // 81: [1, 1.122)
 * binOf(-1); // -81
 * ```
 */
export function binOf(value: number): number {
  const magnitude = Math.abs(value);
  if (magnitude < MIN_MAGNITUDE) return 0;
  const k = Math.min(OVERFLOW_BIN, 1 + Math.floor((Math.log10(magnitude) - MIN_EXPONENT) * BINS_PER_DECADE));
  // log10 rounding can put an exact edge one bin low; clamp into the valid range either way.
  const bin = Math.max(1, k);
  return value < 0 ? -bin : bin;
}

/**
 * Lower and upper edge of a bin (the overflow bins are open-ended; bin 0 spans ±1e-4).
 *
 * @example
 * ```ts
 * binEdges(81); // [1, 1.122]
 * ```
 */
export function binEdges(bin: number): [number, number] {
  if (bin === 0) return [-MIN_MAGNITUDE, MIN_MAGNITUDE];
  const k = Math.abs(bin);
  const lo = 10 ** ((k - 1) / BINS_PER_DECADE + MIN_EXPONENT);
  const hi = k >= OVERFLOW_BIN ? Infinity : 10 ** (k / BINS_PER_DECADE + MIN_EXPONENT);
  return bin > 0 ? [lo, hi] : [-hi, -lo];
}

/**
 * A representative value of a bin: the geometric middle (0 for bin 0, the lower edge for overflow).
 *
 * @example
 * ```ts
 * binMidpoint(81); // ≈ 1.059
 * ```
 */
export function binMidpoint(bin: number): number {
  if (bin === 0) return 0;
  const [lo, hi] = binEdges(Math.abs(bin));
  const mid = Number.isFinite(hi) ? Math.sqrt(lo * hi) : lo;
  return bin > 0 ? mid : -mid;
}

/**
 * Records one value (mutates `h`; hot path, so no allocation when the bin exists).
 *
 * @example
 * ```ts
 * const h = emptyHistogram(); addValue(h, 0.5);
 * ```
 */
export function addValue(h: Histogram, value: number): void {
  if (Number.isNaN(value)) {
    h.nonFinite++;
    return;
  }
  h.count++;
  if (Number.isFinite(value)) h.sum += value;
  if (value < h.min) h.min = value;
  if (value > h.max) h.max = value;
  const key = binOf(value);
  h.bins[key] = (h.bins[key] ?? 0) + 1;
}

/**
 * Adds `from` into `into` (exact: same edges everywhere). Returns `into`.
 *
 * @example
 * ```ts
 * const total = mergeHistogram(emptyHistogram(), windowHistogram);
 * ```
 */
export function mergeHistogram(into: Histogram, from: Histogram): Histogram {
  into.count += from.count;
  into.nonFinite += from.nonFinite;
  into.sum += from.sum;
  // JSON turns ±Infinity into null; treat a missing bound as "no value seen".
  if (typeof from.min === 'number' && from.min < into.min) into.min = from.min;
  if (typeof from.max === 'number' && from.max > into.max) into.max = from.max;
  for (const [k, c] of Object.entries(from.bins)) into.bins[k] = (into.bins[k] ?? 0) + c;
  return into;
}

/**
 * Re-hydrates a histogram read from JSON (where ±Infinity became null).
 *
 * @example
 * ```ts
 * const h = histogramFromJson(JSON.parse(text).latencyMs);
 * ```
 */
export function histogramFromJson(raw: unknown): Histogram {
  const r = (raw ?? {}) as Partial<Histogram> & { min?: number | null; max?: number | null };
  const bins: Record<string, number> = {};
  for (const [k, c] of Object.entries(r.bins ?? {}))
    if (typeof c === 'number' && c > 0 && /^-?[0-9]+$/.test(k)) bins[k] = c;
  return {
    count: typeof r.count === 'number' ? r.count : 0,
    nonFinite: typeof r.nonFinite === 'number' ? r.nonFinite : 0,
    sum: typeof r.sum === 'number' ? r.sum : 0,
    min: typeof r.min === 'number' ? r.min : Infinity,
    max: typeof r.max === 'number' ? r.max : -Infinity,
    bins,
  };
}

/**
 * Bin indices present, in increasing value order.
 *
 * @example
 * ```ts
 * sortedBins(h); // e.g. [-81, 0, 81, 101]
 * ```
 */
export function sortedBins(h: Histogram): number[] {
  return Object.keys(h.bins)
    .map(Number)
    .sort((a, b) => a - b);
}

/**
 * The q-quantile (0..1), interpolated log-linearly inside the bin that holds it and clamped
 * to the observed min/max, so the error is at most one bin width (~12 %). NaN when empty.
 *
 * @example
 * ```ts
 * const h = emptyHistogram(); [1, 2, 3].forEach((v) => addValue(h, v));
 * quantile(h, 0.5); // ≈ 2
 * ```
 */
export function quantile(h: Histogram, q: number): number {
  if (h.count === 0) return NaN;
  const rank = Math.min(Math.max(q, 0), 1) * h.count;
  let seen = 0;
  for (const bin of sortedBins(h)) {
    const c = h.bins[bin] ?? 0;
    if (seen + c >= rank) {
      const [lo0, hi0] = binEdges(bin);
      const lo = Math.max(lo0, h.min);
      const hi = Math.min(hi0, h.max);
      const f = c === 0 ? 0 : (rank - seen) / c;
      const v = lo > 0 && hi > 0 ? lo * (hi / lo) ** f : lo + (hi - lo) * f;
      return Math.min(Math.max(v, h.min), h.max);
    }
    seen += c;
  }
  return h.max;
}

/**
 * The in-memory form used on predict's request path: counts in a dense array indexed by bin
 * (no string keys, no allocation per value), turned into a sparse {@link Histogram} only when
 * flushed. ~3 KiB each; the capture keeps a bounded number of them per version.
 */
export class DenseHistogram {
  readonly counts = new Float64Array(2 * OVERFLOW_BIN + 1);
  count = 0;
  nonFinite = 0;
  sum = 0;
  min = Infinity;
  max = -Infinity;

  add(value: number): void {
    if (Number.isNaN(value)) {
      this.nonFinite++;
      return;
    }
    this.count++;
    if (value - value === 0) this.sum += value; // finite
    if (value < this.min) this.min = value;
    if (value > this.max) this.max = value;
    const i = binOf(value) + OVERFLOW_BIN;
    this.counts[i] = this.counts[i]! + 1;
  }

  /** The sparse, serializable form. */
  toHistogram(): Histogram {
    const bins: Record<string, number> = {};
    const counts = this.counts;
    for (let i = 0; i < counts.length; i++) if (counts[i]! > 0) bins[i - OVERFLOW_BIN] = counts[i]!;
    return {
      count: this.count,
      nonFinite: this.nonFinite,
      sum: this.sum,
      min: this.min,
      max: this.max,
      bins,
    };
  }
}
