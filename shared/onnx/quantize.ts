/**
 * Dynamic int8 quantization of ONNX models, with the semantics of onnxruntime's Python
 * `quantize_dynamic` (QOperator format):
 *
 *   x ──DynamicQuantizeLinear──► x_q (uint8), x_scale, x_zero_point      (per call, at run time)
 *   MatMulInteger(x_q, W_q, x_zero_point, W_zero_point) ──Cast(float)──► Mul(x_scale · W_scale) ──► y
 *
 * Weights are quantized once, here: int8 symmetric (zero point 0, range ±127) or uint8 asymmetric,
 * per tensor or per output channel. The emitted pattern is exactly the one `quantize_dynamic`
 * writes, so onnxruntime's graph optimizer fuses it at load time into its com.microsoft kernels
 * (DynamicQuantizeMatMul / MatMulIntegerToFloat) while the file itself stays in the standard ONNX
 * domain and portable. Gemm is rewritten as MatMulInteger on the transposed weight (transB) with
 * alpha folded into the weight scale and beta·C added after; Conv becomes ConvInteger.
 *
 * Two onnxruntime facts shape the choices (measured on onnxruntime-node 1.30):
 * - ConvInteger accepts only a scalar weight zero point ("Non per-tensor quantization is not
 *   supported"), so per-channel Conv is only possible with int8 symmetric weights (zero point 0 for
 *   every channel: a scalar 0 is exact, and the per-channel scales are applied by the Mul);
 * - weight-only quantization (DequantizeLinear → MatMul) is 3–12× slower than fp32 on CPU, which
 *   is why activations are quantized too.
 */
import {
  type GraphProto,
  type ModelProto,
  type NodeProto,
  type TensorProto,
  TensorProto_DataType,
} from 'onnx-buf';
import { InvalidArgumentError, UnprocessableError } from '../errors';
import { makeCast, makeNode, makeTensor, readTensor } from './construct';
import {
  constantsToInitializers,
  defaultOpset,
  floatAttribute,
  forEachGraph,
  initializerMap,
  intAttribute,
  isDefaultDomain,
  removeUnusedInitializers,
  subgraphsOf,
  uniqueNamer,
} from './graph';
import { upgradeOpset } from './opset';

/**
 * Operators {@link quantizeDynamic} can rewrite. `Gather` is weight-only: an embedding table
 * (a float initializer looked up along axis 0) is stored as int8 with one scale per row, and only
 * the rows looked up are dequantized (Gather → Cast → Mul by the gathered scales), which costs a
 * few microseconds per token instead of the 3–12× of weight-only MatMul. Dynamic quantization
 * tools skip Gather, yet it is most of a small language model's bytes.
 */
export type QuantizableOp = 'MatMul' | 'Gemm' | 'Conv' | 'Gather';
export const QUANTIZABLE_OPS: readonly QuantizableOp[] = ['MatMul', 'Gemm', 'Conv', 'Gather'];

/** Smallest table (elements) whose Gather is quantized: below, the rewrite saves nothing worth its nodes. */
export const MIN_GATHER_ELEMENTS = 4096;

/** Options of {@link quantizeDynamic}; names follow onnxruntime's `quantize_dynamic`. */
export interface QuantizeDynamicOptions {
  /** One scale (and zero point) per output channel instead of per tensor. Default false. */
  perChannel?: boolean;
  /** Weight element type: 'int8' (symmetric, onnxruntime's default QInt8) or 'uint8' (asymmetric). Default 'int8'. */
  weightType?: 'int8' | 'uint8';
  /** Which operators to quantize. Default MatMul, Gemm and Gather (see the optimize docs for why Conv is opt-in). */
  opTypes?: readonly QuantizableOp[];
  /** Node names to leave in float. */
  nodesToExclude?: readonly string[];
  /**
   * Quantize weights to 7 bits, so that the saturating u8·s8 kernels of x86 CPUs without VNNI stay
   * exact when onnxruntime runs them (sessions without {@link exactInt8SessionOptions}), at some
   * accuracy cost. Default false, onnxruntime's default: maas serves on such CPUs with exact int8
   * kernels instead (`MAAS_ORT_EXACT_INT8`), so the file does not depend on the CPU it was made on.
   * (Measured without either: MLP cosine 0.986 instead of > 0.999 on an AMD EPYC with AVX2 only.)
   */
  reduceRange?: boolean;
}

/** What {@link quantizeDynamic} did to each candidate node. */
export interface QuantizeReport {
  quantized: { node: string; opType: QuantizableOp; weight: string; elements: number; perChannel: boolean }[];
  skipped: { node: string; opType: string; reason: string }[];
  /** Float weight bytes replaced by integer ones. */
  weightBytesBefore: number;
  weightBytesAfter: number;
}

const defaults: Required<QuantizeDynamicOptions> = {
  perChannel: false,
  weightType: 'int8',
  opTypes: ['MatMul', 'Gemm', 'Gather'],
  nodesToExclude: [],
  reduceRange: false,
};

/** Round half to even, like numpy.rint, which onnxruntime's quantizer uses. */
function rint(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** A quantized weight: values laid out like the float weight (after any transpose). */
interface QuantizedWeight {
  q: Int8Array | Uint8Array;
  scales: Float32Array;
  zeroPoints: Int8Array | Uint8Array;
}

/**
 * Quantizes `w` (row-major, `dims`) with one scale per slice along `axis` (or one for all when
 * `axis` is undefined).
 */
function quantizeWeight(
  w: Float32Array,
  dims: readonly number[],
  axis: number | undefined,
  type: 'int8' | 'uint8',
  reduceRange: boolean,
): QuantizedWeight {
  const channels = axis === undefined ? 1 : (dims[axis] ?? 1);
  const inner = axis === undefined ? 1 : dims.slice(axis + 1).reduce((a, b) => a * b, 1);
  const channelOf = (i: number): number => (axis === undefined ? 0 : Math.floor(i / inner) % channels);
  const min = new Float64Array(channels).fill(0);
  const max = new Float64Array(channels).fill(0);
  for (let i = 0; i < w.length; i++) {
    const c = channelOf(i);
    const v = w[i] ?? 0;
    if (v < (min[c] ?? 0)) min[c] = v;
    if (v > (max[c] ?? 0)) max[c] = v;
  }
  const scales = new Float32Array(channels);
  if (type === 'int8') {
    const qmax = reduceRange ? 63 : 127;
    const q = new Int8Array(w.length);
    for (let c = 0; c < channels; c++) {
      const absMax = Math.max(Math.abs(min[c] ?? 0), Math.abs(max[c] ?? 0));
      scales[c] = absMax === 0 ? 1 : absMax / qmax;
    }
    for (let i = 0; i < w.length; i++) {
      const v = rint((w[i] ?? 0) / (scales[channelOf(i)] ?? 1));
      q[i] = Math.max(-qmax, Math.min(qmax, v));
    }
    return { q, scales, zeroPoints: new Int8Array(channels) };
  }
  const qmax = reduceRange ? 127 : 255;
  const q = new Uint8Array(w.length);
  const zeroPoints = new Uint8Array(channels);
  for (let c = 0; c < channels; c++) {
    const range = (max[c] ?? 0) - (min[c] ?? 0);
    const scale = range === 0 ? 1 : range / qmax;
    scales[c] = scale;
    zeroPoints[c] = Math.max(0, Math.min(qmax, rint(-(min[c] ?? 0) / scale)));
  }
  for (let i = 0; i < w.length; i++) {
    const c = channelOf(i);
    const v = rint((w[i] ?? 0) / (scales[c] ?? 1)) + (zeroPoints[c] ?? 0);
    q[i] = Math.max(0, Math.min(qmax, v));
  }
  return { q, scales, zeroPoints };
}

function transpose2d(w: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(w.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = w[r * cols + c] ?? 0;
  return out;
}

/** Why a node cannot be quantized, or undefined when it can. */
function skipReason(
  node: NodeProto,
  inits: Map<string, TensorProto>,
  graphInputs: Set<string>,
  options: Required<QuantizeDynamicOptions>,
): string | undefined {
  if (options.nodesToExclude.includes(node.name)) return 'excluded by nodesToExclude';
  if (node.opType === 'Gather') return gatherSkipReason(node, inits, graphInputs);
  const weightName = node.input[1] ?? '';
  const weight = inits.get(weightName);
  if (!weight) return 'weight is not an initializer (computed at run time)';
  if (graphInputs.has(weightName)) return 'weight is also a graph input (callers may override it)';
  if (weight.dataType !== TensorProto_DataType.FLOAT) return 'weight is not float32';
  if (inits.has(node.input[0] ?? ''))
    return 'data input is an initializer (constant folding, not quantization, applies)';
  const rank = weight.dims.length;
  if (node.opType === 'MatMul' && rank !== 2)
    return `MatMul weight has rank ${rank}; only 2-D weights are quantized`;
  if (node.opType === 'Gemm') {
    if (intAttribute(node, 'transA', 0) !== 0) return 'Gemm with transA=1 is not quantized';
  }
  if (node.opType === 'Conv') {
    if (rank < 3) return `Conv weight has rank ${rank}`;
    const bias = node.input[2];
    if (bias && !inits.has(bias)) return 'Conv bias is not an initializer';
    if (options.perChannel && options.weightType === 'uint8') {
      return 'onnxruntime ConvInteger supports only a per-tensor weight zero point; use weightType int8 for per-channel Conv';
    }
  }
  return undefined;
}

function gatherSkipReason(
  node: NodeProto,
  inits: Map<string, TensorProto>,
  graphInputs: Set<string>,
): string | undefined {
  const tableName = node.input[0] ?? '';
  const table = inits.get(tableName);
  if (!table) return 'table is not an initializer (computed at run time)';
  if (graphInputs.has(tableName)) return 'table is also a graph input (callers may override it)';
  if (table.dataType !== TensorProto_DataType.FLOAT) return 'table is not float32';
  if (table.dims.length !== 2) return `table has rank ${table.dims.length}; only 2-D embedding tables`;
  if (intAttribute(node, 'axis', 0) !== 0) return 'Gather along an axis other than 0';
  const elements = table.dims.reduce((a, b) => a * Number(b), 1);
  if (elements < MIN_GATHER_ELEMENTS) return `table has ${elements} elements (< ${MIN_GATHER_ELEMENTS})`;
  return undefined;
}

/**
 * Rewrites MatMul/Gemm (and optionally Conv) nodes with constant float weights into dynamically
 * quantized integer operators, in place, in the main graph and in every If/Loop/Scan body.
 * DynamicQuantizeLinear needs default-domain opset 11: older models are upgraded first (opset.ts,
 * which refuses naming the operator when it cannot keep the meaning). Unused float weights are
 * removed. Returns what was done and skipped.
 *
 * @example
 * const model = decodeModel(bytes);
 * const report = quantizeDynamic(model, { perChannel: true });
 * const int8Bytes = encodeModel(model); // ~0.25× the size of an fp32 MLP
 */
export function quantizeDynamic(model: ModelProto, opts: QuantizeDynamicOptions = {}): QuantizeReport {
  const options: Required<QuantizeDynamicOptions> = { ...defaults, ...opts };
  for (const op of options.opTypes) {
    if (!QUANTIZABLE_OPS.includes(op))
      throw new InvalidArgumentError(
        `cannot quantize ${String(op)}; supported: ${QUANTIZABLE_OPS.join(', ')}`,
      );
  }
  const graph = model.graph;
  if (!graph) throw new UnprocessableError('model has no graph');
  // DynamicQuantizeLinear is opset 11; older models are upgraded where their operators allow it.
  if (defaultOpset(model) < 11) upgradeOpset(model, 11);
  constantsToInitializers(graph);
  const graphInputs = new Set(graph.input.map((v) => v.name));
  const fresh = uniqueNamer(graph);
  const report: QuantizeReport = { quantized: [], skipped: [], weightBytesBefore: 0, weightBytesAfter: 0 };
  // Bodies of If/Loop/Scan are quantized like the main graph: a body sees its own initializers and
  // those of every enclosing graph (outer-scope names), and its new nodes and weights stay inside it.
  const visit = (g: GraphProto, outer: Map<string, TensorProto>): void => {
    const inits = new Map([...outer, ...initializerMap(g)]);
    quantizeGraph(g, inits, graphInputs, fresh, options, report);
    for (const n of g.node) for (const body of subgraphsOf(n)) visit(body, inits);
  };
  visit(graph, new Map());
  forEachGraph(graph, (g) => removeUnusedInitializers(g));
  return report;
}

function quantizeGraph(
  graph: GraphProto,
  inits: Map<string, TensorProto>,
  graphInputs: Set<string>,
  fresh: (base: string) => string,
  options: Required<QuantizeDynamicOptions>,
  report: QuantizeReport,
): void {
  /** Activation name → outputs of its DynamicQuantizeLinear, shared by all consumers (as onnxruntime does). */
  const quantizedActivations = new Map<string, { q: string; scale: string; zeroPoint: string }>();
  /** Weight name (+ layout) → quantized initializer names, shared by nodes reusing a weight. */
  const quantizedWeights = new Map<string, { q: string; scale: string; zeroPoint: string }>();
  const nodes: NodeProto[] = [];

  const addInit = (t: TensorProto): string => {
    graph.initializer.push(t);
    inits.set(t.name, t);
    return t.name;
  };

  for (const node of graph.node) {
    const op = node.opType as QuantizableOp;
    if (!isDefaultDomain(node.domain) || !options.opTypes.includes(op)) {
      nodes.push(node);
      continue;
    }
    const label = node.name || `${node.opType}->${node.output[0] ?? ''}`;
    const reason = skipReason(node, inits, graphInputs, options);
    if (reason) {
      report.skipped.push({ node: label, opType: node.opType, reason });
      nodes.push(node);
      continue;
    }
    if (op === 'Gather') {
      nodes.push(...quantizeGather(node, inits, fresh, addInit, quantizedWeights, report));
      continue;
    }
    const x = node.input[0] ?? '';
    const weightName = node.input[1] ?? '';
    const weight = inits.get(weightName) as TensorProto;
    const content = readTensor(weight);
    const w = content.data as Float32Array;
    const dims = content.dims;
    const y = node.output[0] ?? '';
    const base = node.name || y;

    // Lay the weight out as the integer op reads it and pick the output-channel axis.
    let layout = w;
    let qDims = dims;
    let axis: number;
    if (op === 'Gemm' && intAttribute(node, 'transB', 0) !== 0) {
      layout = transpose2d(w, dims[0] ?? 0, dims[1] ?? 0);
      qDims = [dims[1] ?? 0, dims[0] ?? 0];
      axis = 1;
    } else if (op === 'Conv') {
      axis = 0;
    } else {
      axis = 1;
    }
    const weightType = options.weightType;
    const alpha = op === 'Gemm' ? floatAttribute(node, 'alpha', 1) : 1;
    const key = `${weightName}|${op === 'Gemm' && intAttribute(node, 'transB', 0) !== 0 ? 'T' : 'N'}|${alpha}`;
    let wq = quantizedWeights.get(key);
    if (!wq) {
      const qw = quantizeWeight(
        layout,
        qDims,
        options.perChannel ? axis : undefined,
        weightType,
        options.reduceRange,
      );
      const channels = qw.scales.length;
      // Scales broadcast against the integer output: [N] for MatMul/Gemm (last axis), [M,1,1] for Conv (NCHW).
      const scaleDims = !options.perChannel
        ? []
        : op === 'Conv'
          ? [channels, ...new Array<number>(dims.length - 2).fill(1)]
          : [channels];
      const scales = alpha === 1 ? qw.scales : qw.scales.map((s) => s * alpha);
      const dt = weightType === 'int8' ? 'INT8' : 'UINT8';
      // int8 symmetric zero points are all 0: one scalar is exact and ConvInteger requires it.
      const zpScalar = weightType === 'int8' || !options.perChannel;
      wq = {
        q: addInit(makeTensor(fresh(`${weightName}_quantized`), dt, qDims, qw.q)),
        scale: addInit(makeTensor(fresh(`${weightName}_scale`), 'FP32', scaleDims, scales)),
        zeroPoint: addInit(
          zpScalar
            ? makeTensor(
                fresh(`${weightName}_zero_point`),
                dt,
                [],
                dt === 'INT8'
                  ? new Int8Array([qw.zeroPoints[0] ?? 0])
                  : new Uint8Array([qw.zeroPoints[0] ?? 0]),
              )
            : makeTensor(fresh(`${weightName}_zero_point`), dt, [channels], qw.zeroPoints),
        ),
      };
      quantizedWeights.set(key, wq);
      report.weightBytesBefore += w.length * 4;
      report.weightBytesAfter += qw.q.length + scales.length * 4;
    }

    let xq = quantizedActivations.get(x);
    if (!xq) {
      xq = { q: fresh(`${x}_quantized`), scale: fresh(`${x}_scale`), zeroPoint: fresh(`${x}_zero_point`) };
      nodes.push(
        makeNode(
          'DynamicQuantizeLinear',
          [x],
          [xq.q, xq.scale, xq.zeroPoint],
          {},
          { name: fresh(`${x}_QuantizeLinear`) },
        ),
      );
      quantizedActivations.set(x, xq);
    }

    const integerOut = fresh(`${y}_output_quantized`);
    const castOut = fresh(`${y}_output_quantized_cast_output`);
    const scaleOut = fresh(`${y}_scales_mul_output`);
    if (op === 'Conv') {
      const keep = node.attribute.filter((a) =>
        ['auto_pad', 'dilations', 'group', 'kernel_shape', 'pads', 'strides'].includes(a.name),
      );
      const conv = makeNode(
        'ConvInteger',
        [xq.q, wq.q, xq.zeroPoint, wq.zeroPoint],
        [integerOut],
        {},
        { name: fresh(`${base}_quant`) },
      );
      conv.attribute = keep;
      nodes.push(conv);
    } else {
      nodes.push(
        makeNode(
          'MatMulInteger',
          [xq.q, wq.q, xq.zeroPoint, wq.zeroPoint],
          [integerOut],
          {},
          { name: fresh(`${base}_quant`) },
        ),
      );
    }
    nodes.push(
      makeCast(integerOut, castOut, TensorProto_DataType.FLOAT, fresh(`${base}_output_quantized_cast`)),
    );
    nodes.push(makeNode('Mul', [xq.scale, wq.scale], [scaleOut], {}, { name: fresh(`${base}_scales_mul`) }));

    const bias = op === 'MatMul' ? undefined : node.input[2] || undefined;
    const mulOut = bias ? fresh(`${y}_scaled`) : y;
    nodes.push(
      makeNode('Mul', [castOut, scaleOut], [mulOut], {}, { name: fresh(`${base}_output_scale_mul`) }),
    );
    if (bias) {
      let addend = bias;
      if (op === 'Conv') {
        // Conv bias is [M]; the integer output is [N, M, spatial...]: reshape the constant for broadcasting.
        const b = readTensor(inits.get(bias) as TensorProto).data as Float32Array;
        addend = addInit(
          makeTensor(
            fresh(`${bias}_reshaped`),
            'FP32',
            [b.length, ...new Array<number>(dims.length - 2).fill(1)],
            b,
          ),
        );
      } else {
        const beta = floatAttribute(node, 'beta', 1);
        const c = inits.get(bias);
        if (beta !== 1 && c) {
          const content = readTensor(c);
          addend = addInit(
            makeTensor(
              fresh(`${bias}_beta`),
              'FP32',
              content.dims,
              (content.data as Float32Array).map((v) => v * beta),
            ),
          );
        } else if (beta !== 1) {
          const betaName = addInit(makeTensor(fresh(`${base}_beta`), 'FP32', [], new Float32Array([beta])));
          addend = fresh(`${bias}_times_beta`);
          nodes.push(makeNode('Mul', [bias, betaName], [addend], {}, { name: fresh(`${base}_beta_mul`) }));
        }
      }
      nodes.push(makeNode('Add', [mulOut, addend], [y], {}, { name: fresh(`${base}_bias_add`) }));
    }
    report.quantized.push({
      node: label,
      opType: op,
      weight: weightName,
      elements: w.length,
      perChannel: options.perChannel,
    });
  }
  graph.node = nodes;
}

/**
 * Weight-only int8 of one embedding Gather: `Gather(W, ids)` becomes
 * `Mul(Cast(Gather(W_q, ids), float), Gather(W_scale, ids))` with int8 symmetric rows (±127)
 * and one float scale per row ([V, 1], so the gathered scales broadcast over the hidden axis).
 */
function quantizeGather(
  node: NodeProto,
  inits: Map<string, TensorProto>,
  fresh: (base: string) => string,
  addInit: (t: TensorProto) => string,
  quantizedWeights: Map<string, { q: string; scale: string; zeroPoint: string }>,
  report: QuantizeReport,
): NodeProto[] {
  const tableName = node.input[0] ?? '';
  const ids = node.input[1] ?? '';
  const y = node.output[0] ?? '';
  const base = node.name || y;
  const key = `${tableName}|rows`;
  let wq = quantizedWeights.get(key);
  const content = readTensor(inits.get(tableName) as TensorProto);
  const rows = content.dims[0] ?? 0;
  if (!wq) {
    // Embedding rows differ in scale (frequent tokens, outliers): one scale per row keeps them apart.
    const qw = quantizeWeight(content.data as Float32Array, content.dims, 0, 'int8', false);
    wq = {
      q: addInit(makeTensor(fresh(`${tableName}_quantized`), 'INT8', content.dims, qw.q)),
      scale: addInit(makeTensor(fresh(`${tableName}_row_scale`), 'FP32', [rows, 1], qw.scales)),
      zeroPoint: '',
    };
    quantizedWeights.set(key, wq);
    report.weightBytesBefore += content.data.length * 4;
    report.weightBytesAfter += qw.q.length + qw.scales.length * 4;
  }
  const gathered = fresh(`${y}_quantized`);
  const cast = fresh(`${y}_quantized_cast_output`);
  const scales = fresh(`${y}_row_scales`);
  report.quantized.push({
    node: node.name || `Gather->${y}`,
    opType: 'Gather',
    weight: tableName,
    elements: content.data.length,
    perChannel: true,
  });
  return [
    makeNode('Gather', [wq.q, ids], [gathered], { axis: { int: 0 } }, { name: fresh(`${base}_quant`) }),
    makeCast(gathered, cast, TensorProto_DataType.FLOAT, fresh(`${base}_quantized_cast`)),
    makeNode('Gather', [wq.scale, ids], [scales], { axis: { int: 0 } }, { name: fresh(`${base}_scales`) }),
    makeNode('Mul', [cast, scales], [y], {}, { name: fresh(`${base}_dequantize`) }),
  ];
}
