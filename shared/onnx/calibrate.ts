/**
 * Activation ranges for static quantization: the model is run (by onnxruntime, graph optimizations
 * off so every tensor exists) on calibration inputs with the tensors of interest added as extra
 * outputs, one feed at a time, feeds cut into runs of at most 4 rows where the batch dimension is
 * dynamic (memory bounded by 4 rows' activations).
 *
 * Methods, as in onnxruntime's `quantize_static` calibrators:
 * - `minmax`: the observed minimum and maximum;
 * - `percentile`: a 2048-bin histogram over the observed range, both tails cut so that
 *   `percentile` % of the values stay inside (default 99.999), robust to a few outliers;
 * - `entropy`: the clipping threshold of the |x| histogram that minimizes the KL divergence between
 *   the float distribution and its 128-level quantized version (TensorRT's method).
 */

import type { ModelProto } from 'onnx-buf';
import * as ort from 'onnxruntime-node';
import { InvalidArgumentError } from '../errors';
import { decodeModel, encodeModel } from './codec';
import { makeValueInfo } from './construct';

/** How {@link calibrateRanges} turns observed values into a range. */
export type CalibrationMethod = 'minmax' | 'percentile' | 'entropy';
export const CALIBRATION_METHODS: readonly CalibrationMethod[] = ['minmax', 'percentile', 'entropy'];

/** A float range [min, max] a tensor is quantized over. */
export interface TensorRange {
  min: number;
  max: number;
  /**
   * Signal-to-quantization-noise ratio of the tensor quantized over this range to 8 bits
   * (`activationType`), in dB over the calibration data: below ~20 dB the tensor has outliers
   * (often a few channels much larger than the rest) that 256 levels cannot carry.
   */
  sqnrDb?: number;
  /**
   * Mean of each channel over the calibration data, for tensors named in
   * {@link CalibrationOptions.channelAxes} (the channel is that axis): what bias correction needs.
   */
  channelMean?: Float64Array;
}

function rint(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * Scale and zero point of an 8-bit asymmetric quantization of a range (widened to include 0, as
 * onnxruntime does, so that 0 — padding, ReLU — is exact).
 * @example
 * activationParams({ min: 0, max: 6 }, 'uint8') // { scale: 6 / 255, zeroPoint: 0 }
 */
export function activationParams(
  r: TensorRange,
  type: 'uint8' | 'int8',
): { scale: number; zeroPoint: number } {
  const min = Math.min(0, r.min);
  const max = Math.max(0, r.max);
  const [qmin, qmax] = type === 'uint8' ? [0, 255] : [-128, 127];
  const scale = max > min ? (max - min) / (qmax - qmin) : 1;
  const zeroPoint = Math.max(qmin, Math.min(qmax, rint(qmin - min / scale)));
  return { scale, zeroPoint };
}

/** Options of {@link calibrateRanges}. */
export interface CalibrationOptions {
  /** Default 'minmax'. */
  method?: CalibrationMethod;
  /** Share of values kept inside the range for 'percentile', in percent (default 99.999). */
  percentile?: number;
  /** Activation element type the SQNR is measured for (default 'uint8'). */
  activationType?: 'uint8' | 'int8';
  /** Tensors whose per-channel mean to record, with their channel axis (negative counts from the end). */
  channelAxes?: ReadonlyMap<string, number>;
}

const BINS = 2048;
/** Rows per calibration run when the batch dimension is dynamic. */
export const CALIBRATION_RUN_ROWS = 4;

/** A feed cut along dimension 0 into feeds of at most {@link CALIBRATION_RUN_ROWS} rows (scalars repeated). */
function splitRows(feed: Record<string, ort.Tensor>): Record<string, ort.Tensor>[] {
  const tensors = Object.entries(feed);
  const rows = tensors.find(([, t]) => t.dims.length > 0)?.[1].dims[0] ?? 1;
  if (rows <= CALIBRATION_RUN_ROWS || tensors.some(([, t]) => t.dims.length > 0 && t.dims[0] !== rows))
    return [feed];
  const out: Record<string, ort.Tensor>[] = [];
  for (let from = 0; from < rows; from += CALIBRATION_RUN_ROWS) {
    const count = Math.min(CALIBRATION_RUN_ROWS, rows - from);
    const part: Record<string, ort.Tensor> = {};
    for (const [name, t] of tensors) {
      if (t.dims.length === 0) {
        part[name] = t;
        continue;
      }
      const per = t.size / rows;
      const data = (t.data as Float32Array).slice(from * per, (from + count) * per);
      part[name] = new ort.Tensor(t.type as 'float32', data, [count, ...t.dims.slice(1)]);
    }
    out.push(part);
  }
  return out;
}

/** Histogram of values over [lo, hi]. */
class Histogram {
  readonly counts = new Float64Array(BINS);
  constructor(
    readonly lo: number,
    readonly hi: number,
  ) {}
  add(values: ArrayLike<number>, abs: boolean): void {
    const width = (this.hi - this.lo) / BINS || 1;
    for (let i = 0; i < values.length; i++) {
      const v = abs ? Math.abs(values[i] ?? 0) : (values[i] ?? 0);
      if (!Number.isFinite(v)) continue;
      const b = Math.min(BINS - 1, Math.max(0, Math.floor((v - this.lo) / width)));
      this.counts[b] = (this.counts[b] ?? 0) + 1;
    }
  }
}

function percentileRange(h: Histogram, range: TensorRange, percentile: number): TensorRange {
  const total = h.counts.reduce((a, b) => a + b, 0);
  const tail = (total * (100 - percentile)) / 100 / 2;
  const width = (h.hi - h.lo) / BINS;
  let acc = 0;
  let lowBin = 0;
  while (lowBin < BINS - 1 && acc + (h.counts[lowBin] ?? 0) <= tail) acc += h.counts[lowBin++] ?? 0;
  acc = 0;
  let highBin = BINS - 1;
  while (highBin > 0 && acc + (h.counts[highBin] ?? 0) <= tail) acc += h.counts[highBin--] ?? 0;
  return {
    min: Math.max(range.min, h.lo + lowBin * width),
    max: Math.min(range.max, h.lo + (highBin + 1) * width),
  };
}

/** KL-divergence threshold over an |x| histogram (128 quantized levels), TensorRT style. */
function entropyThreshold(h: Histogram): number {
  const levels = 128;
  const p = h.counts;
  let best = BINS;
  let bestKl = Infinity;
  for (let i = levels; i <= BINS; i += 16) {
    // Reference distribution: the first i bins, with the clipped tail folded into the last one.
    const ref = Array.from(p.subarray(0, i));
    let outliers = 0;
    for (let k = i; k < BINS; k++) outliers += p[k] ?? 0;
    ref[i - 1] = (ref[i - 1] ?? 0) + outliers;
    // Candidate: the same i bins merged into `levels` groups, spread back over their non-empty bins.
    const q = new Float64Array(i);
    const per = i / levels;
    for (let j = 0; j < levels; j++) {
      const start = Math.floor(j * per);
      const stop = Math.floor((j + 1) * per);
      let sum = 0;
      let nonEmpty = 0;
      for (let k = start; k < stop; k++) {
        sum += p[k] ?? 0;
        if ((p[k] ?? 0) > 0) nonEmpty += 1;
      }
      for (let k = start; k < stop; k++) if ((p[k] ?? 0) > 0) q[k] = sum / nonEmpty;
    }
    const sp = ref.reduce((a, b) => a + b, 0);
    const sq = q.reduce((a, b) => a + b, 0);
    let kl = 0;
    for (let k = 0; k < i; k++) {
      const a = (ref[k] ?? 0) / sp;
      const b = (q[k] ?? 0) / sq;
      if (a > 0) kl += b > 0 ? a * Math.log(a / b) : a * 20;
    }
    if (kl < bestKl) [bestKl, best] = [kl, i];
  }
  return h.lo + (best * (h.hi - h.lo)) / BINS;
}

/**
 * Observed ranges of `tensors` (float tensors of `model`'s main graph; graph inputs included) over
 * the calibration `feeds`.
 * @example
 * const ranges = await calibrateRanges(model, ['conv1_out'], feeds, { method: 'percentile' });
 */
export async function calibrateRanges(
  model: ModelProto,
  tensors: readonly string[],
  feeds: readonly Record<string, ort.Tensor>[],
  options: CalibrationOptions = {},
): Promise<Map<string, TensorRange>> {
  const method = options.method ?? 'minmax';
  const percentile = options.percentile ?? 99.999;
  if (!(percentile > 50 && percentile <= 100))
    throw new InvalidArgumentError('calibration percentile must be in (50, 100]');
  if (feeds.length === 0) throw new InvalidArgumentError('calibration needs at least one input feed');
  const { observe, release } = await openProbe(model, tensors, feeds);
  const means = options.channelAxes ? new ChannelSums(options.channelAxes) : undefined;
  try {
    const ranges = new Map<string, TensorRange>();
    await observe((name, values, dims) => {
      means?.add(name, values, dims);
      const r = ranges.get(name) ?? { min: Infinity, max: -Infinity };
      for (let i = 0; i < values.length; i++) {
        const v = values[i] ?? 0;
        if (v < r.min) r.min = v;
        if (v > r.max) r.max = v;
      }
      ranges.set(name, r);
    });
    if (method !== 'minmax') await refine(ranges);
    for (const [name, mean] of means?.means() ?? []) {
      const r = ranges.get(name);
      if (r) r.channelMean = mean;
    }
    // Last pass: how much of each tensor survives 8 bits over its final range.
    const type = options.activationType ?? 'uint8';
    const [qmin, qmax] = type === 'uint8' ? [0, 255] : [-128, 127];
    const energy = new Map<string, { signal: number; noise: number }>();
    await observe((name, values) => {
      const r = ranges.get(name) as TensorRange;
      const { scale, zeroPoint } = activationParams(r, type);
      const e = energy.get(name) ?? { signal: 0, noise: 0 };
      for (let i = 0; i < values.length; i++) {
        const v = values[i] ?? 0;
        const q = Math.max(qmin, Math.min(qmax, rint(v / scale) + zeroPoint));
        const d = v - (q - zeroPoint) * scale;
        e.signal += v * v;
        e.noise += d * d;
      }
      energy.set(name, e);
    });
    for (const [name, e] of energy) {
      const r = ranges.get(name) as TensorRange;
      r.sqnrDb = e.noise === 0 ? Infinity : 10 * Math.log10(e.signal / e.noise);
    }
    return ranges;
  } finally {
    await release();
  }

  async function refine(ranges: Map<string, TensorRange>): Promise<void> {
    const histograms = new Map<string, Histogram>();
    for (const [name, r] of ranges) {
      const absMax = Math.max(Math.abs(r.min), Math.abs(r.max));
      histograms.set(name, method === 'entropy' ? new Histogram(0, absMax) : new Histogram(r.min, r.max));
    }
    await observe((name, values) => histograms.get(name)?.add(values, method === 'entropy'));
    for (const [name, h] of histograms) {
      const r = ranges.get(name) as TensorRange;
      if (method === 'percentile') ranges.set(name, percentileRange(h, r, percentile));
      else {
        const t = entropyThreshold(h);
        ranges.set(name, { min: Math.max(r.min, -t), max: Math.min(r.max, t) });
      }
    }
  }
}

/** Runs of a copy of `model` that outputs `tensors` too, over `feeds` (split into small runs). */
async function openProbe(
  model: ModelProto,
  tensors: readonly string[],
  feeds: readonly Record<string, ort.Tensor>[],
): Promise<{
  observe: (each: (name: string, values: Float32Array, dims: readonly number[]) => void) => Promise<void>;
  release: () => Promise<void>;
}> {
  const probe = decodeModel(encodeModel(model));
  const graph = probe.graph;
  if (!graph) throw new InvalidArgumentError('model has no graph');
  const inputs = new Set(graph.input.map((v) => v.name));
  const existing = new Set(graph.output.map((o) => o.name));
  for (const t of tensors)
    if (!inputs.has(t) && !existing.has(t)) graph.output.push(makeValueInfo(t, 'FP32'));
  const session = await ort.InferenceSession.create(encodeModel(probe), {
    graphOptimizationLevel: 'disabled',
    executionMode: 'sequential',
  });
  // One run holds every observed activation of its feed: split feeds along a dynamic leading
  // (batch) dimension into runs of at most CALIBRATION_RUN_ROWS rows.
  const batchDynamic = graph.input.every((v) => {
    const t = v.type?.value;
    const first = t?.case === 'tensorType' ? t.value.shape?.dim[0] : undefined;
    return first?.value.case !== 'dimValue';
  });
  const runs = batchDynamic ? feeds.flatMap(splitRows) : feeds;
  return {
    observe: async (each) => {
      for (const feed of runs) {
        const out = await session.run(feed, session.outputNames);
        for (const t of tensors) {
          const v = out[t] ?? feed[t];
          if (v && v.type === 'float32') each(t, v.data as Float32Array, v.dims);
        }
      }
    },
    release: () => session.release(),
  };
}

/** Per-channel sums of tensors along their channel axis (negative counts from the end). */
class ChannelSums {
  private readonly sums = new Map<string, { sum: Float64Array; count: number }>();
  constructor(private readonly axes: ReadonlyMap<string, number>) {}
  add(name: string, values: Float32Array, dims: readonly number[]): void {
    const axis = this.axes.get(name);
    if (axis === undefined || dims.length === 0) return;
    const a = axis < 0 ? dims.length + axis : axis;
    const channels = dims[a] ?? 1;
    const inner = dims.slice(a + 1).reduce((x, y) => x * y, 1);
    const m = this.sums.get(name) ?? { sum: new Float64Array(channels), count: 0 };
    if (m.sum.length !== channels) return;
    for (let i = 0; i < values.length; i++) {
      const c = Math.floor(i / inner) % channels;
      m.sum[c] = (m.sum[c] ?? 0) + (values[i] ?? 0);
    }
    m.count += values.length / channels;
    this.sums.set(name, m);
  }
  means(): Map<string, Float64Array> {
    return new Map([...this.sums].map(([name, m]) => [name, m.sum.map((v) => v / (m.count || 1))]));
  }
}
