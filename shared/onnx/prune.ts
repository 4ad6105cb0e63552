/**
 * Unstructured magnitude pruning: zero the smallest-magnitude weights of MatMul/Gemm/Conv nodes
 * until a target sparsity is reached, per layer or globally across layers.
 *
 * Zeros do not make a dense ONNX file smaller or onnxruntime's dense kernels faster, so pruning on
 * its own rarely pays; it is meant to be combined (e.g. `prune+int8`) or used where a sparse-aware
 * runtime follows. The optimize gate judges the result on measured size and speed like any other.
 */
import { type ModelProto, type TensorProto, TensorProto_DataType } from 'onnx-buf';
import { InvalidArgumentError, UnprocessableError } from '../errors';
import { readTensor, tensorFromFloat32 } from './construct';
import { initializerMap, isDefaultDomain } from './graph';

/** Options of {@link pruneByMagnitude}. */
export interface PruneOptions {
  /** Fraction of weights to zero, in [0, 1). */
  sparsity: number;
  /** 'layer' (default): each weight tensor reaches `sparsity`; 'global': one threshold for all, so layers differ. */
  scope?: 'layer' | 'global';
  /** Operators whose weight (input 1) is pruned. Default MatMul, Gemm, Conv. */
  opTypes?: readonly string[];
  /** Node names whose weights are left alone. */
  nodesToExclude?: readonly string[];
}

/** Sparsity reached, overall and per weight. */
export interface PruneReport {
  targetSparsity: number;
  scope: 'layer' | 'global';
  /** Zeros / elements over all pruned weights (already-zero weights count). */
  sparsity: number;
  prunedElements: number;
  totalElements: number;
  layers: { weight: string; elements: number; zeros: number; sparsity: number }[];
}

/** The k-th smallest value (0-based) of |values|, by sorting a copy: O(n log n), fine for ~10^7. */
function kthSmallestAbs(values: Float32Array, k: number): number {
  const abs = new Float32Array(values.length);
  for (let i = 0; i < values.length; i++) abs[i] = Math.abs(values[i] ?? 0);
  abs.sort();
  return abs[k] ?? Infinity;
}

/** Zeros exactly `count` smallest-magnitude entries (ties at the threshold broken by position). */
function zeroSmallest(w: Float32Array, threshold: number, count: number): void {
  let zeroed = 0;
  for (let i = 0; i < w.length && zeroed < count; i++) {
    if (Math.abs(w[i] ?? 0) < threshold) {
      w[i] = 0;
      zeroed += 1;
    }
  }
  for (let i = 0; i < w.length && zeroed < count; i++) {
    if (w[i] !== 0 && Math.abs(w[i] ?? 0) === threshold) {
      w[i] = 0;
      zeroed += 1;
    }
  }
}

/**
 * Prunes weights in place and reports the sparsity reached.
 *
 * @example
 * const model = decodeModel(bytes);
 * const { sparsity } = pruneByMagnitude(model, { sparsity: 0.5 });
 */
export function pruneByMagnitude(model: ModelProto, options: PruneOptions): PruneReport {
  const target = options.sparsity;
  if (typeof target !== 'number' || !Number.isFinite(target) || target < 0 || target >= 1) {
    throw new InvalidArgumentError(`prune sparsity must be a number in [0, 1), got ${String(target)}`);
  }
  const scope = options.scope ?? 'layer';
  if (scope !== 'layer' && scope !== 'global')
    throw new InvalidArgumentError(`prune scope must be "layer" or "global", got ${String(scope)}`);
  const graph = model.graph;
  if (!graph) throw new UnprocessableError('model has no graph');
  const opTypes = new Set(options.opTypes ?? ['MatMul', 'Gemm', 'Conv']);
  const exclude = new Set(options.nodesToExclude ?? []);
  const inits = initializerMap(graph);
  const graphInputs = new Set(graph.input.map((v) => v.name));

  const targets = new Map<string, TensorProto>();
  for (const node of graph.node) {
    if (!isDefaultDomain(node.domain) || !opTypes.has(node.opType) || exclude.has(node.name)) continue;
    const name = node.input[1] ?? '';
    const t = inits.get(name);
    if (t && t.dataType === TensorProto_DataType.FLOAT && !graphInputs.has(name) && t.dims.length >= 2)
      targets.set(name, t);
  }
  const weights = [...targets.values()].map((t) => ({ tensor: t, data: readTensor(t).data as Float32Array }));
  const total = weights.reduce((s, w) => s + w.data.length, 0);

  if (scope === 'global' && total > 0) {
    const all = new Float32Array(total);
    let at = 0;
    for (const w of weights) {
      all.set(w.data, at);
      at += w.data.length;
    }
    const k = Math.floor(target * total);
    if (k > 0) {
      const threshold = kthSmallestAbs(all, k - 1);
      // Strictly-below values go first everywhere; ties at the threshold fill the remainder in order.
      let below = 0;
      for (let i = 0; i < all.length; i++) if (Math.abs(all[i] ?? 0) < threshold) below += 1;
      let tiesLeft = k - below;
      for (const w of weights) {
        let mine = 0;
        for (let i = 0; i < w.data.length; i++) if (Math.abs(w.data[i] ?? 0) < threshold) mine += 1;
        let ties = 0;
        for (let i = 0; i < w.data.length && tiesLeft - ties > 0; i++)
          if (Math.abs(w.data[i] ?? 0) === threshold && w.data[i] !== 0) ties += 1;
        zeroSmallest(w.data, threshold, mine + ties);
        tiesLeft -= ties;
      }
    }
  } else {
    for (const w of weights) {
      const k = Math.floor(target * w.data.length);
      if (k > 0) zeroSmallest(w.data, kthSmallestAbs(w.data, k - 1), k);
    }
  }

  const layers: PruneReport['layers'] = [];
  let zerosTotal = 0;
  for (const w of weights) {
    let zeros = 0;
    for (let i = 0; i < w.data.length; i++) if (w.data[i] === 0) zeros += 1;
    zerosTotal += zeros;
    layers.push({ weight: w.tensor.name, elements: w.data.length, zeros, sparsity: zeros / w.data.length });
    const replacement = tensorFromFloat32(w.tensor.name, w.tensor.dims.map(Number), w.data);
    // Replace the data only: the tensor keeps its other fields (doc string, unknown fields).
    w.tensor.rawData = replacement.rawData;
    w.tensor.floatData = [];
  }
  return {
    targetSparsity: target,
    scope,
    sparsity: total === 0 ? 0 : zerosTotal / total,
    prunedElements: zerosTotal,
    totalElements: total,
    layers,
  };
}
