import { type Histogram, sortedBins } from './histogram';

/**
 * Drift statistics between a baseline and a current distribution.
 *
 * PSI and Jensen–Shannon are computed on a few coarse groups (deciles of the baseline by
 * default) rather than on the fine fixed bins: with hundreds of fine bins most are empty in a
 * window of a few hundred requests and the statistics would measure sampling noise. The
 * groups are unions of adjacent fine bins, so the computation stays exact on the recorded
 * data. KS needs no grouping: its maximum CDF gap is taken at every fine-bin edge.
 */

/** Proportions below this are replaced by it in PSI (log of 0 is undefined); a common convention. */
export const PSI_EPSILON = 1e-4;

/**
 * Population Stability Index between two count vectors over the same bins:
 * Σ (aᵢ − eᵢ) · ln(aᵢ / eᵢ) with aᵢ, eᵢ the proportions (floored at {@link PSI_EPSILON}).
 * Rules of thumb: < 0.1 stable, 0.1–0.25 moderate shift, > 0.25 significant shift.
 *
 * @example
 * ```ts
 * psi([50, 50], [25, 75]); // 0.2747 = (0.25-0.5)·ln(0.5) + (0.75-0.5)·ln(1.5)
 * ```
 */
export function psi(expected: readonly number[], actual: readonly number[]): number {
  assertSameLength(expected, actual);
  const te = total(expected);
  const ta = total(actual);
  if (te === 0 || ta === 0) return NaN;
  let sum = 0;
  for (let i = 0; i < expected.length; i++) {
    const e = Math.max((expected[i] ?? 0) / te, PSI_EPSILON);
    const a = Math.max((actual[i] ?? 0) / ta, PSI_EPSILON);
    sum += (a - e) * Math.log(a / e);
  }
  return sum;
}

/**
 * Two-sample Kolmogorov–Smirnov statistic on binned data: the largest gap between the two
 * cumulative distributions, taken at the bin edges (0..1).
 *
 * @example
 * ```ts
 * ksStatistic([50, 50], [25, 75]); // 0.25
 * ```
 */
export function ksStatistic(a: readonly number[], b: readonly number[]): number {
  assertSameLength(a, b);
  const ta = total(a);
  const tb = total(b);
  if (ta === 0 || tb === 0) return NaN;
  let ca = 0;
  let cb = 0;
  let max = 0;
  for (let i = 0; i < a.length; i++) {
    ca += a[i] ?? 0;
    cb += b[i] ?? 0;
    max = Math.max(max, Math.abs(ca / ta - cb / tb));
  }
  return max;
}

/**
 * Jensen–Shannon divergence in bits (0 identical … 1 disjoint); symmetric and finite even
 * when one side has empty bins.
 *
 * @example
 * ```ts
 * jensenShannon([1, 0], [0, 1]); // 1
 * ```
 */
export function jensenShannon(a: readonly number[], b: readonly number[]): number {
  assertSameLength(a, b);
  const ta = total(a);
  const tb = total(b);
  if (ta === 0 || tb === 0) return NaN;
  let sum = 0;
  for (let i = 0; i < a.length; i++) {
    const p = (a[i] ?? 0) / ta;
    const q = (b[i] ?? 0) / tb;
    const m = (p + q) / 2;
    if (p > 0) sum += 0.5 * p * Math.log2(p / m);
    if (q > 0) sum += 0.5 * q * Math.log2(q / m);
  }
  return Math.max(0, sum);
}

/**
 * Upper bin index of each coarse group: adjacent fine bins of the baseline are merged until
 * each group holds about 1/`groups` of its mass (a bin is never split, so heavy bins make
 * fewer, larger groups). The last group is open-ended.
 *
 * @example
 * ```ts
 * const bounds = groupBoundaries(baseline); // e.g. [75, 79, …, Infinity]
 * ```
 */
export function groupBoundaries(baseline: Histogram, groups = 10): number[] {
  const bins = sortedBins(baseline);
  const totalMass = bins.reduce((s, b) => s + (baseline.bins[b] ?? 0), 0);
  if (totalMass === 0) return [];
  const bounds: number[] = [];
  let cum = 0;
  for (const bin of bins) {
    cum += baseline.bins[bin] ?? 0;
    if (cum >= ((bounds.length + 1) * totalMass) / groups - 1e-9 && bounds.length < groups - 1)
      bounds.push(bin);
  }
  // The last group catches everything above the last boundary.
  if (bounds.at(-1) !== Infinity) bounds.push(Infinity);
  return bounds;
}

/**
 * Counts of a histogram per coarse group (bins above boundary i-1 and up to boundary i).
 *
 * @example
 * ```ts
 * const expected = groupCounts(baseline, groupBoundaries(baseline));
 * ```
 */
export function groupCounts(h: Histogram, bounds: readonly number[]): number[] {
  const counts = new Array<number>(bounds.length).fill(0);
  for (const bin of sortedBins(h)) {
    let g = 0;
    while (g < bounds.length - 1 && bin > (bounds[g] ?? Infinity)) g++;
    counts[g] = (counts[g] ?? 0) + (h.bins[bin] ?? 0);
  }
  return counts;
}

/**
 * KS between two histograms at every fine-bin edge (exact for the recorded data).
 *
 * @example
 * ```ts
 * ksOfHistograms(baseline, current); // 0..1
 * ```
 */
export function ksOfHistograms(a: Histogram, b: Histogram): number {
  const all = [...new Set([...sortedBins(a), ...sortedBins(b)])].sort((x, y) => x - y);
  return ksStatistic(
    all.map((k) => a.bins[k] ?? 0),
    all.map((k) => b.bins[k] ?? 0),
  );
}

/** Drift of one feature against its baseline. */
export interface DriftStats {
  psi: number;
  ks: number;
  js: number;
  /** Number of coarse groups PSI and JS were computed on. */
  groups: number;
}

/**
 * PSI (on baseline-decile groups), KS (fine bins) and Jensen–Shannon (groups) of `current`
 * against `baseline`.
 *
 * @example
 * ```ts
 * const d = compareHistograms(baselineHist, windowHist);
 * if (d.psi > 0.25) console.log('drifted');
 * ```
 */
export function compareHistograms(baseline: Histogram, current: Histogram, groups = 10): DriftStats {
  const bounds = groupBoundaries(baseline, groups);
  const expected = groupCounts(baseline, bounds);
  const actual = groupCounts(current, bounds);
  return {
    psi: psi(expected, actual),
    ks: ksOfHistograms(baseline, current),
    js: jensenShannon(expected, actual),
    groups: bounds.length,
  };
}

function total(v: readonly number[]): number {
  let t = 0;
  for (const x of v) t += x;
  return t;
}

function assertSameLength(a: readonly number[], b: readonly number[]): void {
  if (a.length !== b.length)
    throw new RangeError(`count vectors differ in length (${a.length} vs ${b.length})`);
}
