import { describe, expect, it } from 'vitest';
import {
  compareHistograms,
  groupBoundaries,
  jensenShannon,
  ksStatistic,
  psi,
} from '../../shared/monitor/drift';
import {
  addValue,
  binEdges,
  binOf,
  emptyHistogram,
  histogramFromJson,
  mergeHistogram,
  OVERFLOW_BIN,
  quantile,
} from '../../shared/monitor/histogram';

const hist = (values: number[]) => {
  const h = emptyHistogram();
  for (const v of values) addValue(h, v);
  return h;
};
const repeat = (v: number, n: number) => new Array<number>(n).fill(v);

describe('drift statistics against hand-computed cases', () => {
  it('PSI', () => {
    // (0.25-0.5)·ln(0.25/0.5) + (0.75-0.5)·ln(0.75/0.5) = 0.173287 + 0.101366
    expect(psi([50, 50], [25, 75])).toBeCloseTo(0.274653, 5);
    // 0.3·ln4 + 0.1·ln1.5 + (-0.1)·ln(2/3) + (-0.3)·ln(0.25)
    expect(psi([10, 20, 30, 40], [40, 30, 20, 10])).toBeCloseTo(0.912871, 5);
    // An empty bin is floored at 1e-4: (0.5-1)·ln(0.5) + (0.5-1e-4)·ln(0.5/1e-4)
    expect(psi([100, 0], [50, 50])).toBeCloseTo(4.604319, 5);
    expect(psi([3, 7], [30, 70])).toBe(0); // proportions, not counts
    expect(psi([0, 0], [1, 1])).toBeNaN();
    expect(() => psi([1], [1, 2])).toThrow(RangeError);
  });

  it('KS: the largest gap between the cumulative distributions', () => {
    expect(ksStatistic([50, 50], [25, 75])).toBeCloseTo(0.25, 12);
    // CDFs .1 .3 .6 1 and .4 .7 .9 1
    expect(ksStatistic([10, 20, 30, 40], [40, 30, 20, 10])).toBeCloseTo(0.4, 12);
    expect(ksStatistic([1, 1], [2, 2])).toBe(0);
  });

  it('Jensen–Shannon divergence in bits', () => {
    expect(jensenShannon([1, 0], [0, 1])).toBeCloseTo(1, 12);
    // ½[½log2(.5/.375)+½log2(.5/.625)] + ½[¼log2(.25/.375)+¾log2(.75/.625)]
    expect(jensenShannon([50, 50], [25, 75])).toBeCloseTo(0.048795, 5);
    expect(jensenShannon([5, 5], [1, 1])).toBe(0);
  });

  it('on histograms: groups follow the baseline mass, KS at fine-bin edges', () => {
    const baseline = hist([...repeat(1, 100), ...repeat(10, 100)]);
    const current = hist([...repeat(1, 50), ...repeat(10, 150)]);
    expect(groupBoundaries(baseline, 10)).toEqual([binOf(1), binOf(10), Infinity]);
    const d = compareHistograms(baseline, current);
    expect(d.psi).toBeCloseTo(0.274653, 5); // the same two-bin case as above
    expect(d.ks).toBeCloseTo(0.25, 12);
    expect(d.js).toBeCloseTo(0.048795, 5);
    expect(compareHistograms(baseline, hist([...repeat(1, 7), ...repeat(10, 7)])).psi).toBe(0);
  });
});

describe('fixed-edge histograms', () => {
  it('bins are 20 per decade, signed, monotonic in value, with zero and overflow bins', () => {
    expect(binOf(0)).toBe(0);
    expect(binOf(5e-5)).toBe(0);
    expect(binOf(1)).toBe(81);
    expect(binOf(-1)).toBe(-81);
    expect(binOf(1e7)).toBe(OVERFLOW_BIN);
    expect(binOf(Infinity)).toBe(OVERFLOW_BIN);
    expect(binOf(-Infinity)).toBe(-OVERFLOW_BIN);
    const [lo, hi] = binEdges(81);
    expect(lo).toBeCloseTo(1, 12);
    expect(hi / lo).toBeCloseTo(10 ** (1 / 20), 12);
    const values = [-1e5, -3, -0.5, -1e-3, 0, 2e-4, 0.7, 1, 1.2, 42, 9e5, 2e6];
    const bins = values.map(binOf);
    expect([...bins].sort((a, b) => a - b)).toEqual(bins);
    for (const v of values.slice(1, -1)) {
      const [l, h] = binEdges(binOf(v));
      expect(v >= l - 1e-12 && v < h + 1e-12).toBe(true);
    }
  });

  it('merges exactly and survives JSON (NaN counted apart)', () => {
    const a = hist([1, 2, 3, NaN]);
    const b = hist([3, 4, 1000]);
    const both = hist([1, 2, 3, NaN, 3, 4, 1000]);
    const merged = mergeHistogram(
      histogramFromJson(JSON.parse(JSON.stringify(a))),
      histogramFromJson(JSON.parse(JSON.stringify(b))),
    );
    expect(merged).toEqual(both);
    expect(merged.nonFinite).toBe(1);
    expect(merged.count).toBe(6);
    expect(histogramFromJson(JSON.parse(JSON.stringify(emptyHistogram())))).toEqual(emptyHistogram());
  });

  it('quantiles are within one bin (~12 %) and clamped to the observed range', () => {
    const values = Array.from({ length: 1000 }, (_, i) => i + 1); // 1..1000
    const h = hist(values);
    for (const [q, exact] of [
      [0.5, 500],
      [0.9, 900],
      [0.99, 990],
    ] as const) {
      expect(Math.abs(quantile(h, q) - exact) / exact).toBeLessThan(0.122);
    }
    expect(quantile(h, 1)).toBe(1000);
    expect(quantile(hist([7, 7, 7]), 0.5)).toBe(7);
    expect(quantile(emptyHistogram(), 0.5)).toBeNaN();
  });
});
