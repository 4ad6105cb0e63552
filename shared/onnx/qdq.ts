/**
 * Static int8 quantization in the QDQ format, with the semantics of onnxruntime's Python
 * `quantize_static(quant_format=QDQ)`:
 *
 *   x ─Q─DQ─┐
 *   W_q ─DQ─┼─ Conv / MatMul / Gemm ─(Relu|Clip)─ y ─Q─DQ─► every reader of y
 *   b_q ─DQ─┘ (int32, scale x_scale·w_scale)
 *
 * Activation ranges come from calibration (calibrate.ts) on real or reference inputs; weights are
 * int8 symmetric, per output channel by default; biases int32. onnxruntime's graph optimizer fuses
 * each DQ→op→Q group into QLinearConv / QLinearMatMul / QGemm at load time (and drops a Relu or
 * Clip the following Q makes redundant), so the file stays standard ONNX while inference runs
 * integer kernels (VNNI on CPUs that have it).
 *
 * Before quantizing, `Constant` weights become initializers, BatchNormalization after a Conv is
 * folded into the Conv (a Q/DQ pair between them would stop onnxruntime from fusing them), and the
 * default-domain opset is raised to 13 (per-channel DequantizeLinear) with opset.ts.
 *
 * Only the main graph's nodes are quantized: tensors inside If/Loop/Scan bodies are not outputs
 * the calibration run can observe; those nodes are reported as skipped (the dynamic `int8`
 * technique, which needs no calibration, rewrites bodies).
 */

import {
  type GraphProto,
  type ModelProto,
  type NodeProto,
  type TensorProto,
  TensorProto_DataType,
} from 'onnx-buf';
import * as ort from 'onnxruntime-node';
import { InvalidArgumentError, UnprocessableError } from '../errors';
import { activationParams, type CalibrationOptions, calibrateRanges, type TensorRange } from './calibrate';
import { decodeModel, encodeModel } from './codec';
import { type AttributeValue, makeCast, makeNode, makeTensor, readTensor } from './construct';
import {
  constantsToInitializers,
  defaultOpset,
  floatAttribute,
  initializerMap,
  intAttribute,
  isDefaultDomain,
  removeUnusedInitializers,
  subgraphsOf,
  uniqueNamer,
} from './graph';
import { exactInt8SessionOptions } from './int8-precision';
import { upgradeOpset } from './opset';

/** Operators {@link quantizeStatic} can rewrite. */
export type StaticQuantizableOp = 'Conv' | 'MatMul' | 'Gemm';
export const STATIC_QUANTIZABLE_OPS: readonly StaticQuantizableOp[] = ['Conv', 'MatMul', 'Gemm'];

/** Options of {@link quantizeStatic}. */
export interface QuantizeStaticOptions extends CalibrationOptions {
  /** One weight scale per output channel (default true). */
  perChannel?: boolean;
  /** Activation element type (default 'uint8', asymmetric: the u8·s8 kernels x86 CPUs run fastest). */
  activationType?: 'uint8' | 'int8';
  /** Which operators to quantize (default all three). */
  opTypes?: readonly StaticQuantizableOp[];
  /** Node names to leave in float. */
  nodesToExclude?: readonly string[];
  /**
   * Leave a node in float when its input or output activation keeps less than this
   * signal-to-quantization-noise ratio at 8 bits over the calibration data (dB, default
   * {@link DEFAULT_MIN_SQNR_DB}; 0 quantizes everything). Outlier-heavy activations (depthwise
   * blocks of MobileNet-style nets) otherwise dominate the end-to-end error.
   */
  minSqnrDb?: number;
  /**
   * Accuracy-aware quantization: when the quantized model's outputs on the calibration inputs
   * fall below this cosine to the float model's, the fewest nodes that meet it are kept out of int8
   * (see `sensitiveWeights`), taken in the order of the output damage each does when quantized
   * alone (measured once, end to end) per weight element it holds; the count is found by doubling,
   * then bisection. Unset: quantize every planned node.
   */
  targetCosine?: number;
  /**
   * Bias correction (default true): adds (W − Ŵ)·E[x] to each Conv/Gemm output channel's bias, with
   * E[x] the input's per-channel mean over the calibration data, so weight rounding does not shift
   * the mean of every output (a shift the following layers carry and amplify). MatMul, which has no
   * bias, is left as is. (Measured on the PaddleOCR detector: weights alone in int8 keep output
   * cosine 0.968 without it, 0.998 with it; correcting again with means measured in the quantized
   * model did not help, the activations' error there is noise, not shift.)
   */
  biasCorrection?: boolean;
  /**
   * What the nodes `targetCosine` keeps out of int8 hold their weights in, their activations
   * staying float: 'int8' (default), stored as int8 times per-channel scales (Cast→Mul), which
   * onnxruntime folds into float weights when it loads the model (graph optimization `basic` or
   * above), so the file keeps the size of a fully quantized model and those nodes run as fast as
   * float ones; or 'float', the weights as they were.
   */
  sensitiveWeights?: 'float' | 'int8';
  /**
   * onnxruntime options of the sessions the `targetCosine` search runs candidates in (default
   * {@link exactInt8SessionOptions}: the int8 kernels predict serves with on this CPU).
   */
  sessionOptions?: ort.InferenceSession.SessionOptions;
}

/** What {@link quantizeStatic} did. */
export interface QuantizeStaticReport {
  method: string;
  /** `weightsOnly`: int8 weights, float activations (see {@link QuantizeStaticOptions.sensitiveWeights}). */
  quantized: { node: string; opType: string; perChannel: boolean; weightsOnly?: boolean }[];
  skipped: { node: string; opType: string; reason: string }[];
  /** BatchNormalization nodes folded into the Conv before them. */
  foldedBatchNorms: number;
  /** Default-domain opset before and after (raised to 13 when lower). */
  opset: { from: number; to: number };
  /** Activation tensors given a Q/DQ pair, with their calibrated range. */
  activations: number;
  weightBytesBefore: number;
  weightBytesAfter: number;
  /** Worst output cosine on the calibration inputs of the chosen model (with targetCosine). */
  calibrationCosine?: number;
}

/** Opset needed for per-channel DequantizeLinear (`axis`). */
export const STATIC_QUANTIZATION_OPSET = 13;

function rint(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Default {@link QuantizeStaticOptions.minSqnrDb}. */
export const DEFAULT_MIN_SQNR_DB = 0;

/**
 * Folds `BatchNormalization(Conv(x, W, b))` into one Conv where the Conv's output is read only by
 * the BatchNormalization and all parameters are initializers. Returns the folded count.
 * @example
 * foldBatchNormalization(model.graph!);
 */
export function foldBatchNormalization(graph: GraphProto): number {
  const inits = initializerMap(graph);
  const readers = new Map<string, number>();
  graph.node.forEach((n) => n.input.forEach((i) => readers.set(i, (readers.get(i) ?? 0) + 1)));
  graph.output.forEach((o) => readers.set(o.name, (readers.get(o.name) ?? 0) + 1));
  const producer = new Map<string, NodeProto>();
  graph.node.forEach((n) => n.output.forEach((o) => producer.set(o, n)));
  const fresh = uniqueNamer(graph);
  const removed = new Set<NodeProto>();
  const floats = (name: string | undefined): Float32Array | undefined => {
    const t = inits.get(name ?? '');
    return t && t.dataType === TensorProto_DataType.FLOAT ? (readTensor(t).data as Float32Array) : undefined;
  };
  for (const bn of graph.node) {
    if (
      bn.opType !== 'BatchNormalization' ||
      !isDefaultDomain(bn.domain) ||
      bn.output.filter(Boolean).length !== 1
    )
      continue;
    const conv = producer.get(bn.input[0] ?? '');
    if (conv?.opType !== 'Conv' || !isDefaultDomain(conv.domain) || readers.get(conv.output[0] ?? '') !== 1)
      continue;
    const W = inits.get(conv.input[1] ?? '');
    const w = floats(conv.input[1]);
    const [scale, bias, mean, variance] = [1, 2, 3, 4].map((i) => floats(bn.input[i]));
    if (!W || !w || !scale || !bias || !mean || !variance) continue;
    const channels = Number(W.dims[0] ?? 0n);
    if (scale.length !== channels) continue;
    const b = conv.input[2] ? floats(conv.input[2]) : new Float32Array(channels);
    if (!b) continue;
    const eps = floatAttribute(bn, 'epsilon', 1e-5);
    const per = w.length / channels;
    const w2 = new Float32Array(w.length);
    const b2 = new Float32Array(channels);
    for (let c = 0; c < channels; c++) {
      const k = (scale[c] ?? 0) / Math.sqrt((variance[c] ?? 0) + eps);
      for (let i = 0; i < per; i++) w2[c * per + i] = (w[c * per + i] ?? 0) * k;
      b2[c] = ((b[c] ?? 0) - (mean[c] ?? 0)) * k + (bias[c] ?? 0);
    }
    const wt = makeTensor(fresh(`${conv.input[1]}_bn_folded`), 'FP32', W.dims.map(Number), w2);
    const bt = makeTensor(fresh(`${conv.output[0]}_bn_bias`), 'FP32', [channels], b2);
    graph.initializer.push(wt, bt);
    inits.set(wt.name, wt);
    inits.set(bt.name, bt);
    conv.input = [conv.input[0] ?? '', wt.name, bt.name];
    conv.output = [bn.output[0] ?? ''];
    removed.add(bn);
  }
  graph.node = graph.node.filter((n) => !removed.has(n));
  removeUnusedInitializers(graph);
  return removed.size;
}

/**
 * Statically quantizes `model` in place, calibrating activation ranges on `calibration` feeds
 * (onnxruntime tensors keyed by input name). Returns what was done and skipped.
 *
 * @example
 * const report = await quantizeStatic(model, feeds, { method: 'percentile' });
 * const int8Bytes = encodeModel(model); // ~0.27× a conv net, QLinearConv at load time
 */
export async function quantizeStatic(
  model: ModelProto,
  calibration: readonly Record<string, ort.Tensor>[],
  opts: QuantizeStaticOptions = {},
): Promise<QuantizeStaticReport> {
  const options = {
    perChannel: true,
    activationType: 'uint8' as const,
    opTypes: STATIC_QUANTIZABLE_OPS,
    nodesToExclude: [] as readonly string[],
    biasCorrection: true,
    ...opts,
  };
  for (const op of options.opTypes)
    if (!STATIC_QUANTIZABLE_OPS.includes(op))
      throw new InvalidArgumentError(
        `cannot quantize ${String(op)} statically; supported: ${STATIC_QUANTIZABLE_OPS.join(', ')}`,
      );
  const graph = model.graph;
  if (!graph) throw new UnprocessableError('model has no graph');
  const from = defaultOpset(model);
  constantsToInitializers(graph);
  upgradeOpset(model, STATIC_QUANTIZATION_OPSET);
  const report: QuantizeStaticReport = {
    method: options.method ?? 'minmax',
    quantized: [],
    skipped: [],
    foldedBatchNorms: foldBatchNormalization(graph),
    opset: { from, to: defaultOpset(model) },
    activations: 0,
    weightBytesBefore: 0,
    weightBytesAfter: 0,
  };

  const inits = initializerMap(graph);
  const graphInputs = new Set(graph.input.map((v) => v.name));
  const graphOutputs = new Set(graph.output.map((v) => v.name));
  const readers = new Map<string, NodeProto[]>();
  graph.node.forEach((n) => n.input.forEach((i) => readers.set(i, [...(readers.get(i) ?? []), n])));
  const isConstFloat = (name: string): boolean => {
    const t = inits.get(name);
    return t !== undefined && t.dataType === TensorProto_DataType.FLOAT && !graphInputs.has(name);
  };

  // 1. Plan: which nodes, which activation tensors (inputs, and outputs after a Relu/Clip the Q absorbs).
  interface Plan {
    node: NodeProto;
    input: string;
    output: string;
  }
  const plans: Plan[] = [];
  const label = (n: NodeProto): string => n.name || `${n.opType}->${n.output[0] ?? ''}`;
  for (const sub of graph.node.flatMap(subgraphsOf)) {
    const visit = (g: GraphProto): void =>
      g.node.forEach((n) => {
        if ((options.opTypes as readonly string[]).includes(n.opType))
          report.skipped.push({
            node: label(n),
            opType: n.opType,
            reason:
              'inside a control-flow body, whose tensors calibration cannot observe (the dynamic int8 technique rewrites bodies)',
          });
        subgraphsOf(n).forEach(visit);
      });
    visit(sub);
  }
  for (const node of graph.node) {
    if (!isDefaultDomain(node.domain) || !(options.opTypes as readonly string[]).includes(node.opType))
      continue;
    const skip = (reason: string): void => {
      report.skipped.push({ node: label(node), opType: node.opType, reason });
    };
    if (options.nodesToExclude.includes(node.name)) {
      skip('excluded by nodesToExclude');
      continue;
    }
    const x = node.input[0] ?? '';
    const w = inits.get(node.input[1] ?? '');
    if (!w || !isConstFloat(node.input[1] ?? '')) {
      skip('weight is not a float32 initializer (computed at run time)');
      continue;
    }
    if (inits.has(x)) {
      skip('data input is an initializer');
      continue;
    }
    if (node.opType === 'MatMul' && w.dims.length !== 2) {
      skip(`MatMul weight has rank ${w.dims.length}; only 2-D weights are quantized`);
      continue;
    }
    if (node.opType === 'Gemm' && intAttribute(node, 'transA', 0) !== 0) {
      skip('Gemm with transA=1 is not quantized');
      continue;
    }
    const bias = node.opType === 'MatMul' ? '' : (node.input[2] ?? '');
    if (bias && !isConstFloat(bias)) {
      skip('bias is not a float32 initializer');
      continue;
    }
    if (node.opType === 'Gemm' && bias && (inits.get(bias)?.dims.length ?? 0) !== 1) {
      skip('Gemm bias is not 1-D');
      continue;
    }
    let output = node.output[0] ?? '';
    // A Relu/Clip that is the only reader: quantize after it (onnxruntime then removes it).
    const next = readers.get(output);
    const only = next?.length === 1 ? next[0] : undefined;
    if (
      only &&
      !graphOutputs.has(output) &&
      (only.opType === 'Relu' ||
        (only.opType === 'Clip' && only.input.slice(1).every((i) => i === '' || inits.has(i))))
    )
      output = only.output[0] ?? output;
    // A graph output keeps its float producer: a Q beside it could not be fused (two readers) and
    // its DQ would be read by nothing.
    plans.push({ node, input: x, output: graphOutputs.has(output) ? '' : output });
  }

  // 2. Calibrate every activation tensor that gets a Q/DQ pair.
  const tensors = [...new Set(plans.flatMap((p) => [p.input, p.output]).filter(Boolean))];
  // Channel axis of each quantized node's data input: NCHW for Conv, the last for MatMul/Gemm.
  const channelAxes = new Map(
    plans.filter((p) => p.node.opType !== 'MatMul').map((p) => [p.input, p.node.opType === 'Conv' ? 1 : -1]),
  );
  const ranges =
    plans.length > 0
      ? await calibrateRanges(model, tensors, calibration, {
          ...options,
          channelAxes: options.biasCorrection ? channelAxes : undefined,
        })
      : new Map();
  const minSqnr = options.minSqnrDb ?? DEFAULT_MIN_SQNR_DB;
  const sqnr = (t: string): number => ranges.get(t)?.sqnrDb ?? Infinity;
  const kept = plans.filter((p) => {
    const worst = Math.min(sqnr(p.input), sqnr(p.output));
    if (worst >= minSqnr) return true;
    report.skipped.push({
      node: label(p.node),
      opType: p.node.opType,
      reason: `activation ${sqnr(p.input) < sqnr(p.output) ? p.input : p.output} keeps only ${worst.toFixed(1)} dB at 8 bits (minSqnrDb ${minSqnr})`,
    });
    return false;
  });
  plans.splice(0, plans.length, ...kept);

  const indexed = plans.map((p) => ({ index: graph.node.indexOf(p.node), input: p.input, output: p.output }));
  if (options.targetCosine === undefined || indexed.length === 0) {
    rewrite(graph, indexed, ranges, options, report);
    return report;
  }
  // 3. Accuracy-aware: keep in float the nodes whose quantization hurts most until the outputs on
  //    the calibration inputs keep `targetCosine`.
  const prepared = encodeModel(model);
  const sessionOptions = options.sessionOptions ?? exactInt8SessionOptions();
  const reference = await ort.InferenceSession.create(prepared, sessionOptions);
  const probeFeeds = calibration.slice(0, 2);
  const outputs = reference.outputNames;
  const expected: Record<string, ort.Tensor>[] = [];
  for (const f of probeFeeds) expected.push(await reference.run(f));
  await reference.release();
  /** Worst cosine over the float outputs of `m` against the float model's on `feeds`. */
  const outputCosine = async (
    m: ModelProto,
    feeds: readonly Record<string, ort.Tensor>[],
  ): Promise<number> => {
    const session = await ort.InferenceSession.create(encodeModel(m), sessionOptions);
    try {
      let worst = 1;
      for (const [k, f] of feeds.entries()) {
        const got = await session.run(f);
        for (const name of outputs) {
          const a = expected[k]?.[name];
          const b = got[name];
          if (!a || !b || a.type !== 'float32' || b.type !== 'float32') continue;
          const [x, y] = [a.data as Float32Array, b.data as Float32Array];
          let [dot, nx, ny] = [0, 0, 0];
          for (let i = 0; i < x.length; i++) {
            dot += (x[i] ?? 0) * (y[i] ?? 0);
            nx += (x[i] ?? 0) ** 2;
            ny += (y[i] ?? 0) ** 2;
          }
          worst = Math.min(worst, nx === 0 && ny === 0 ? 1 : dot / Math.sqrt(nx * ny || 1));
        }
      }
      return worst;
    } finally {
      await session.release();
    }
  };
  const weightsOnly = (options.sensitiveWeights ?? 'int8') === 'int8';
  type Trial = { model: ModelProto; report: QuantizeStaticReport; cosine: number };
  /** The model with the nodes of `excluded` kept out of int8 (float, or int8 weights only). */
  const trialWith = async (excluded: ReadonlySet<number>): Promise<Trial> => {
    const trial = decodeModel(prepared);
    const trialReport: QuantizeStaticReport = {
      ...report,
      quantized: [],
      skipped: [...report.skipped],
      activations: 0,
      weightBytesBefore: 0,
      weightBytesAfter: 0,
    };
    const kept = indexed.flatMap((p) =>
      !excluded.has(p.index) ? [p] : weightsOnly ? [{ ...p, weightsOnly }] : [],
    );
    for (const p of indexed)
      if (excluded.has(p.index) && !weightsOnly) {
        const n = graph.node[p.index] as NodeProto;
        trialReport.skipped.push({
          node: label(n),
          opType: n.opType,
          reason: `kept in float: among the most sensitive nodes for targetCosine ${options.targetCosine}`,
        });
      }
    rewrite(trial.graph as GraphProto, kept, ranges, options, trialReport);
    return { model: trial, report: trialReport, cosine: await outputCosine(trial, probeFeeds) };
  };
  const target = options.targetCosine;
  let best = await trialWith(new Set());
  if (best.cosine < target) {
    // Sensitivity of each node alone (only it quantized), measured end to end once: errors a node
    // injects are amplified or damped by everything after it, which no local measure sees.
    const alone: { index: number; cosine: number }[] = [];
    for (const p of indexed) {
      const single = decodeModel(prepared);
      const scratch: QuantizeStaticReport = {
        ...report,
        quantized: [],
        skipped: [],
        activations: 0,
        weightBytesBefore: 0,
        weightBytesAfter: 0,
      };
      rewrite(single.graph as GraphProto, [p], ranges, options, scratch);
      alone.push({ index: p.index, cosine: await outputCosine(single, probeFeeds.slice(0, 1)) });
    }
    // Kept in float, a node costs its weights' size: rank by damage per weight element, so small
    // sensitive layers (a network's first ones, usually) go first. With int8 weights kept, size
    // does not change and damage alone ranks.
    const weights = (index: number): number => {
      const w = initializerMap(graph).get(graph.node[index]?.input[1] ?? '');
      return weightsOnly ? 1 : Math.max(1, w ? w.dims.reduce((a, b) => a * Number(b), 1) : 1);
    };
    const score = (a: { index: number; cosine: number }): number => (1 - a.cosine) / weights(a.index);
    const ranking = alone.sort((a, b) => score(b) - score(a)).map((a) => a.index);
    const keepFirst = async (n: number): Promise<Trial> => trialWith(new Set(ranking.slice(0, n)));
    // The fewest most-sensitive nodes to keep out: doubling (1, 3, 7, 15, …) until the target is
    // met, then bisection between the last miss and the first hit.
    let [miss, hit] = [0, -1];
    for (let n = 1; hit < 0; n = Math.min(indexed.length, 2 * n + 1)) {
      const t = await keepFirst(n);
      if (t.cosine >= target) [hit, best] = [n, t];
      else {
        miss = n;
        if (t.cosine > best.cosine) best = t;
        if (n === indexed.length) break;
      }
    }
    while (hit > 0 && hit - miss > 1) {
      const mid = Math.floor((miss + hit) / 2);
      const t = await keepFirst(mid);
      if (t.cosine >= target) [hit, best] = [mid, t];
      else miss = mid;
    }
  }
  const chosen = best;
  Object.assign(model, chosen.model);
  Object.assign(report, chosen.report, { calibrationCosine: chosen.cosine });
  return report;
}

/**
 * (W − Ŵ)·E[x] for each output channel of a Conv or Gemm whose weight `w` was rounded to `q`
 * (dequantized as q·scaleOf(i)), given the per-channel mean of its data input; undefined when the
 * mean does not match the weight's input channels. Conv padding is ignored (border outputs see
 * zeros): the correction is for the mean over the interior, which dominates.
 */
function roundingShift(
  node: NodeProto,
  dims: readonly number[],
  w: Float32Array,
  q: Int8Array,
  scaleOf: (i: number) => number,
  mean: Float64Array,
): Float64Array | undefined {
  const term = (i: number, c: number): number => ((w[i] ?? 0) - (q[i] ?? 0) * scaleOf(i)) * (mean[c] ?? 0);
  if (node.opType === 'Conv') {
    const [m = 1, perGroup = 1] = dims;
    const group = intAttribute(node, 'group', 1);
    if (mean.length !== perGroup * group || m % group !== 0) return undefined;
    const per = w.length / m;
    const spatial = per / perGroup;
    const shift = new Float64Array(m);
    for (let i = 0; i < w.length; i++) {
      const o = Math.floor(i / per);
      const cin = Math.floor(o / (m / group)) * perGroup + Math.floor((i % per) / spatial);
      shift[o] = (shift[o] ?? 0) + term(i, cin);
    }
    return shift;
  }
  if (node.opType !== 'Gemm' || dims.length !== 2) return undefined;
  const transB = intAttribute(node, 'transB', 0) !== 0;
  const [rows = 1, cols = 1] = dims;
  const [k, n] = transB ? [cols, rows] : [rows, cols];
  if (mean.length !== k) return undefined;
  const shift = new Float64Array(n);
  for (let i = 0; i < w.length; i++) {
    const [ki, ni] = transB ? [i % cols, Math.floor(i / cols)] : [Math.floor(i / cols), i % cols];
    shift[ni] = (shift[ni] ?? 0) + term(i, ki);
  }
  return shift;
}

/** Inserts the Q/DQ nodes of `plans` (nodes by index in `graph.node`) with their calibrated ranges. */
function rewrite(
  graph: GraphProto,
  plans: readonly { index: number; input: string; output: string; weightsOnly?: boolean }[],
  ranges: Map<string, TensorRange>,
  options: Required<Pick<QuantizeStaticOptions, 'perChannel' | 'activationType'>>,
  report: QuantizeStaticReport,
): void {
  const inits = initializerMap(graph);
  const label = (n: NodeProto): string => n.name || `${n.opType}->${n.output[0] ?? ''}`;
  const fresh = uniqueNamer(graph);
  const actType = options.activationType === 'uint8' ? 'UINT8' : 'INT8';
  const qdq = new Map<string, { dq: string; scale: number }>();
  const before = new Map<string, NodeProto[]>(); // nodes to emit after a tensor's producer
  const atStart: NodeProto[] = [];
  const addInit = (t: TensorProto): string => {
    graph.initializer.push(t);
    inits.set(t.name, t);
    return t.name;
  };
  const quantizeActivation = (
    name: string,
    producer: NodeProto | undefined,
  ): { dq: string; scale: number } => {
    const found = qdq.get(name);
    if (found) return found;
    const range = ranges.get(name) ?? { min: 0, max: 0 };
    const { scale, zeroPoint } = activationParams(range, options.activationType);
    const s = addInit(makeTensor(fresh(`${name}_scale`), 'FP32', [], new Float32Array([scale])));
    const zp = addInit(
      makeTensor(
        fresh(`${name}_zero_point`),
        actType,
        [],
        actType === 'UINT8' ? new Uint8Array([zeroPoint]) : new Int8Array([zeroPoint]),
      ),
    );
    const q = fresh(`${name}_QuantizeLinear_Output`);
    const dq = fresh(`${name}_DequantizeLinear_Output`);
    const pair = [
      makeNode('QuantizeLinear', [name, s, zp], [q], {}, { name: fresh(`${name}_QuantizeLinear`) }),
      makeNode('DequantizeLinear', [q, s, zp], [dq], {}, { name: fresh(`${name}_DequantizeLinear`) }),
    ];
    if (producer) before.set(name, [...(before.get(name) ?? []), ...pair]);
    else atStart.push(...pair);
    const entry = { dq, scale };
    qdq.set(name, entry);
    report.activations += 1;
    return entry;
  };
  const producerOf = new Map<string, NodeProto>();
  graph.node.forEach((n) => n.output.forEach((o) => producerOf.set(o, n)));

  for (const plan of plans) {
    const node = graph.node[plan.index] as NodeProto;
    const x = plan.weightsOnly ? undefined : quantizeActivation(plan.input, producerOf.get(plan.input));
    if (plan.output && x) quantizeActivation(plan.output, producerOf.get(plan.output));
    const wName = node.input[1] ?? '';
    const W = inits.get(wName) as TensorProto;
    const w = readTensor(W).data as Float32Array;
    const dims = W.dims.map(Number);
    // Output-channel axis of the weight as stored: Conv [M, C/g, k…] → 0; MatMul [K, N] → 1;
    // Gemm [K, N] → 1 or, with transB, [N, K] → 0.
    const axis =
      node.opType === 'Conv' ? 0 : node.opType === 'Gemm' && intAttribute(node, 'transB', 0) ? 0 : 1;
    const channels = options.perChannel ? (dims[axis] ?? 1) : 1;
    const inner = options.perChannel ? dims.slice(axis + 1).reduce((a, b) => a * b, 1) : 1;
    const channelOf = (i: number): number => (options.perChannel ? Math.floor(i / inner) % channels : 0);
    const absMax = new Float64Array(channels);
    for (let i = 0; i < w.length; i++) {
      const c = channelOf(i);
      absMax[c] = Math.max(absMax[c] ?? 0, Math.abs(w[i] ?? 0));
    }
    const scales = Float32Array.from(absMax, (m) => (m === 0 ? 1 : m / 127));
    let biasName = node.opType === 'MatMul' ? '' : (node.input[2] ?? '');
    let b = biasName ? (readTensor(inits.get(biasName) as TensorProto).data as Float32Array) : undefined;
    if (b && x) {
      // The int32 bias is b / (x_scale·w_scale): a channel with near-zero weights (a BatchNorm that
      // silenced it) but a real bias would overflow int32. Widen that channel's weight scale so the
      // bias fits in 2^30 steps, as onnxruntime's quantizer does.
      for (let c = 0; c < b.length; c++) {
        const ch = options.perChannel ? c : 0;
        const needed = Math.abs(b[c] ?? 0) / (x.scale * 2 ** 30);
        if ((scales[ch] ?? 1) < needed) scales[ch] = needed;
      }
    }
    const q = new Int8Array(w.length);
    for (let i = 0; i < w.length; i++)
      q[i] = Math.max(-127, Math.min(127, rint((w[i] ?? 0) / (scales[channelOf(i)] ?? 1))));
    const mean = ranges.get(plan.input)?.channelMean;
    const shift = mean ? roundingShift(node, dims, w, q, (i) => scales[channelOf(i)] ?? 1, mean) : undefined;
    if (shift) {
      biasName ||= fresh(`${node.output[0] ?? wName}_bias`);
      b = Float32Array.from(shift, (d, c) => (b?.[c] ?? 0) + d);
    }
    const scaleDims = options.perChannel ? [channels] : [];
    const wq = addInit(makeTensor(fresh(`${wName}_quantized`), 'INT8', dims, q));
    const wdq = fresh(`${wName}_DequantizeLinear_Output`);
    const pre: NodeProto[] = [];
    if (x) {
      const ws = addInit(makeTensor(fresh(`${wName}_scale`), 'FP32', scaleDims, scales));
      const wz = addInit(
        makeTensor(fresh(`${wName}_zero_point`), 'INT8', scaleDims, new Int8Array(channels)),
      );
      const axisAttr: Record<string, AttributeValue> = options.perChannel ? { axis: { int: axis } } : {};
      pre.push(
        makeNode('DequantizeLinear', [wq, ws, wz], [wdq], axisAttr, {
          name: fresh(`${wName}_DequantizeLinear`),
        }),
      );
    } else {
      // Weights only: Cast→Mul rather than DequantizeLinear, because onnxruntime folds constant
      // Cast/Mul into a float initializer at load but keeps a DequantizeLinear (for QDQ fusion) and
      // runs it on every call (measured on the PaddleOCR detector: 1.0–1.07× fp32 with DQ,
      // 0.66×/0.84× at batch 1/32 with Cast→Mul, as fast as keeping those weights in float).
      const bcast = options.perChannel ? dims.map((d, i) => (i === axis ? d : 1)) : [];
      const ws = addInit(makeTensor(fresh(`${wName}_scale`), 'FP32', bcast, scales));
      const cast = fresh(`${wName}_Cast_Output`);
      pre.push(
        makeCast(wq, cast, TensorProto_DataType.FLOAT, fresh(`${wName}_Cast`)),
        makeNode('Mul', [cast, ws], [wdq], {}, { name: fresh(`${wName}_Mul`) }),
      );
    }
    report.weightBytesBefore += w.length * 4;
    report.weightBytesAfter += q.length + scales.length * 8;
    const inputs = [x?.dq ?? plan.input, wdq];
    if (biasName && b && !x) {
      inputs.push(addInit(makeTensor(fresh(`${biasName}_corrected`), 'FP32', [b.length], b)));
      report.weightBytesBefore += b.length * 4;
      report.weightBytesAfter += b.length * 4;
    } else if (biasName && b && x) {
      // Bias in int32 at scale x_scale·w_scale (per output channel), as QLinearConv expects.
      const bScales = Float32Array.from(
        { length: b.length },
        (_, c) => x.scale * (scales[options.perChannel ? c : 0] ?? 1),
      );
      const bq = Int32Array.from(b, (v, c) =>
        Math.max(-(2 ** 31), Math.min(2 ** 31 - 1, rint(v / (bScales[c] ?? 1)))),
      );
      const bqs = addInit(makeTensor(fresh(`${biasName}_quantized`), 'INT32', [b.length], bq));
      const bss = addInit(
        makeTensor(
          fresh(`${biasName}_quantized_scale`),
          'FP32',
          options.perChannel ? [b.length] : [],
          options.perChannel ? bScales : new Float32Array([bScales[0] ?? 1]),
        ),
      );
      const bzs = addInit(
        makeTensor(
          fresh(`${biasName}_quantized_zero_point`),
          'INT32',
          options.perChannel ? [b.length] : [],
          new Int32Array(options.perChannel ? b.length : 1),
        ),
      );
      const bdq = fresh(`${biasName}_DequantizeLinear_Output`);
      pre.push(
        makeNode('DequantizeLinear', [bqs, bss, bzs], [bdq], options.perChannel ? { axis: { int: 0 } } : {}, {
          name: fresh(`${biasName}_DequantizeLinear`),
        }),
      );
      inputs.push(bdq);
      report.weightBytesBefore += b.length * 4;
      report.weightBytesAfter += b.length * 4;
    }
    node.input = inputs;
    // Weight/bias DequantizeLinear nodes go right before the node they feed.
    const key = `\u0000before:${node.name}|${node.output[0]}`;
    before.set(key, pre);
    report.quantized.push({
      node: label(node),
      opType: node.opType,
      perChannel: options.perChannel,
      ...(x ? {} : { weightsOnly: true }),
    });
  }

  // Every reader of a quantized tensor reads its dequantized value (a Q must be the tensor's only
  // reader for onnxruntime to fuse the producer), except the Q itself and graph outputs.
  const dqOf = new Map([...qdq].map(([k, v]) => [k, v.dq]));
  const emitted: NodeProto[] = [...atStart];
  for (const node of graph.node) {
    const pre = before.get(`\u0000before:${node.name}|${node.output[0]}`);
    if (pre) emitted.push(...pre);
    node.input = node.input.map((i) => dqOf.get(i) ?? i);
    emitted.push(node);
    for (const o of node.output) emitted.push(...(before.get(o) ?? []));
  }
  graph.node = emitted;
  removeUnusedInitializers(graph);
}
