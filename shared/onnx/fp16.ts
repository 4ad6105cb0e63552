/**
 * float32 → float16 conversion of ONNX models with an unchanged input/output signature.
 *
 * Two modes:
 * - `compute`: float initializers, constants and intermediate tensors become float16 and the
 *   operators run on float16; Cast nodes at the graph inputs and outputs keep the signature float32,
 *   and operators on the block list stay float32 behind Casts. (onnxruntime's CPU provider runs
 *   operators without a float16 kernel by inserting its own Casts, so such a model always loads; it
 *   is faster only where float16 kernels exist.)
 * - `weights`: only the stored weights become float16, each followed by a Cast back to float32.
 *   onnxruntime constant-folds those Casts at load time, so inference runs exactly the fp32 graph on
 *   weights rounded to float16: half the file size at the same speed.
 *
 * Type inference here is deliberately small (a rule table for the standard operators): it only has
 * to tell float32 tensors from the rest. Control flow (If/Loop/Scan) is converted body by body:
 * each body keeps float32 formal inputs and outputs (so the If/Loop/Scan node's signature does not
 * change) and reads outer-scope tensors through Casts of its own where precisions differ.
 */
import { clone } from '@bufbuild/protobuf';
import {
  type GraphProto,
  type ModelProto,
  type NodeProto,
  type TensorProto,
  TensorProto_DataType,
  TensorProtoSchema,
} from 'onnx-buf';
import { UnprocessableError } from '../errors';
import { makeCast, readTensorAsFloat32 } from './construct';
import { float32ToFloat16Bits } from './datatypes';
import {
  attributeOf,
  constantsToInitializers,
  elemTypeOf,
  forEachGraph,
  isDefaultDomain,
  setElemType,
  subgraphsOf,
  uniqueNamer,
} from './graph';

const FLOAT = TensorProto_DataType.FLOAT;
const FLOAT16 = TensorProto_DataType.FLOAT16;
const INT64 = TensorProto_DataType.INT64;
const BOOL = TensorProto_DataType.BOOL;
const UINT8 = TensorProto_DataType.UINT8;
const INT32 = TensorProto_DataType.INT32;

/**
 * Operators kept in float32 by default, and why:
 * - Softmax, LogSoftmax, Exp, Log, Pow, the reductions and normalizations: float16 overflows at
 *   65504 and loses digits when summing long axes; these usually sit at the end of a network, so
 *   their error lands directly in the outputs, while keeping them float32 costs two Casts on a
 *   small tensor;
 * - Range, Resize, Upsample, TopK, NonMaxSuppression, RoiAlign, CumSum: index and coordinate
 *   arithmetic, which float16's 11-bit mantissa breaks above 2048;
 * - Random*, EyeLike, Multinomial: they carry a dtype attribute this converter does not rewrite;
 * - the quantization operators: their scales must be float32 (opset < 19) and
 *   DynamicQuantizeLinear accepts only float32 input.
 */
export const DEFAULT_FP16_BLOCK_LIST: readonly string[] = [
  'Softmax',
  'LogSoftmax',
  'Exp',
  'Log',
  'Pow',
  'ReduceSum',
  'ReduceMean',
  'ReduceProd',
  'ReduceLogSum',
  'ReduceLogSumExp',
  'ReduceSumSquare',
  'ReduceL1',
  'ReduceL2',
  'LayerNormalization',
  'InstanceNormalization',
  'GroupNormalization',
  'LpNormalization',
  'Range',
  'Resize',
  'Upsample',
  'TopK',
  'NonMaxSuppression',
  'RoiAlign',
  'CumSum',
  'RandomNormal',
  'RandomUniform',
  'RandomNormalLike',
  'RandomUniformLike',
  'EyeLike',
  'Multinomial',
  'DynamicQuantizeLinear',
  'QuantizeLinear',
  'DequantizeLinear',
  'MatMulInteger',
  'ConvInteger',
  'QLinearMatMul',
  'QLinearConv',
];

/** Options of {@link convertToFloat16}. */
export interface Float16Options {
  /** 'compute' (default) or 'weights', see the module comment. */
  mode?: 'compute' | 'weights';
  /** Operator types kept in float32 (compute mode). Default {@link DEFAULT_FP16_BLOCK_LIST}. */
  blockList?: readonly string[];
  /** Node names kept in float32 (compute mode). */
  nodeBlockList?: readonly string[];
}

/** What {@link convertToFloat16} changed. */
export interface Float16Report {
  mode: 'compute' | 'weights';
  /** Float32 initializers stored as float16. */
  convertedInitializers: number;
  /** Float32 weight bytes before and after. */
  weightBytesBefore: number;
  weightBytesAfter: number;
  /** Nodes left in float32 (compute mode), as 'name (OpType)'. */
  float32Nodes: string[];
  castsInserted: number;
  /** Weight values outside float16's range, clamped to ±65504. */
  clampedValues: number;
}

const FP16_MAX = 65504;

function toFloat16Tensor(t: TensorProto, name: string): { tensor: TensorProto; clamped: number } {
  const values = readTensorAsFloat32(t);
  const bits = new Uint16Array(values.length);
  let clamped = 0;
  for (let i = 0; i < values.length; i++) {
    let v = values[i] ?? 0;
    if (v > FP16_MAX) [v, clamped] = [FP16_MAX, clamped + 1];
    else if (v < -FP16_MAX) [v, clamped] = [-FP16_MAX, clamped + 1];
    bits[i] = float32ToFloat16Bits(v);
  }
  // Keep every other field of the original tensor (doc string, unknown fields) and only swap the data.
  // (clone, not spread: a decoded message keeps unset fields' defaults on its prototype)
  const tensor = clone(TensorProtoSchema, t);
  Object.assign(tensor, {
    name,
    dataType: FLOAT16,
    rawData: new Uint8Array(bits.buffer),
    floatData: [],
    int32Data: [],
  });
  return { tensor, clamped };
}

/** Output element types of a node given its input types (undefined: unknown). */
function inferOutputTypes(
  node: NodeProto,
  typeOf: (name: string) => number | undefined,
): (number | undefined)[] {
  const first = node.input.map(typeOf).find((t) => t !== undefined);
  const all = (t: number | undefined): (number | undefined)[] => node.output.map(() => t);
  const attrInt = (name: string): number | undefined => {
    const a = attributeOf(node, name);
    return a ? Number(a.i) : undefined;
  };
  switch (node.opType) {
    case 'Shape':
    case 'Size':
    case 'NonZero':
    case 'ArgMax':
    case 'ArgMin':
      return all(INT64);
    case 'Cast':
      return all(attrInt('to'));
    case 'CastLike':
      return all(typeOf(node.input[1] ?? ''));
    case 'Equal':
    case 'Less':
    case 'Greater':
    case 'LessOrEqual':
    case 'GreaterOrEqual':
    case 'Not':
    case 'And':
    case 'Or':
    case 'Xor':
    case 'IsNaN':
    case 'IsInf':
      return all(BOOL);
    case 'Where':
      return all(typeOf(node.input[1] ?? ''));
    case 'TopK':
    case 'MaxPool':
      return [first, INT64];
    case 'Dropout':
      return [first, BOOL];
    case 'Unique':
      return [first, INT64, INT64, INT64];
    case 'DynamicQuantizeLinear':
      return [UINT8, FLOAT, UINT8];
    case 'QuantizeLinear':
      return all(node.input[2] ? typeOf(node.input[2]) : UINT8);
    case 'DequantizeLinear':
      return all(typeOf(node.input[1] ?? ''));
    case 'MatMulInteger':
    case 'ConvInteger':
      return all(INT32);
    case 'Constant': {
      const value = attributeOf(node, 'value');
      if (value?.t) return all(value.t.dataType);
      if (attributeOf(node, 'value_float') || attributeOf(node, 'value_floats')) return all(FLOAT);
      return all(attributeOf(node, 'value_int') || attributeOf(node, 'value_ints') ? INT64 : undefined);
    }
    case 'ConstantOfShape':
      return all(attributeOf(node, 'value')?.t?.dataType ?? FLOAT);
    case 'OneHot':
      return all(typeOf(node.input[2] ?? ''));
    case 'RandomNormal':
    case 'RandomUniform':
    case 'EyeLike':
    case 'RandomNormalLike':
    case 'RandomUniformLike':
      return all(attrInt('dtype') ?? (node.opType.endsWith('Like') ? first : FLOAT));
    default:
      return all(first);
  }
}

/**
 * Converts a model to float16 in place (see the module comment for the modes). Graph inputs and
 * outputs keep their float32 type. Returns what changed.
 *
 * @example
 * const model = decodeModel(bytes);
 * const report = convertToFloat16(model, { blockList: [...DEFAULT_FP16_BLOCK_LIST, 'Sigmoid'] });
 * const halfBytes = encodeModel(model); // ≈ 0.5× the size
 */
export function convertToFloat16(model: ModelProto, options: Float16Options = {}): Float16Report {
  const graph = model.graph;
  if (!graph) throw new UnprocessableError('model has no graph');
  const mode = options.mode ?? 'compute';
  if (mode !== 'compute' && mode !== 'weights')
    throw new UnprocessableError(`unknown fp16 mode ${String(mode)}`);
  const report: Float16Report = {
    mode,
    convertedInitializers: 0,
    weightBytesBefore: 0,
    weightBytesAfter: 0,
    float32Nodes: [],
    castsInserted: 0,
    clampedValues: 0,
  };
  const fresh = uniqueNamer(graph);
  const graphInputs = new Set(graph.input.map((v) => v.name));
  return mode === 'weights'
    ? convertWeights(graph, graphInputs, fresh, report)
    : convertCompute(graph, graphInputs, fresh, report, options);
}

function convertWeights(
  graph: GraphProto,
  graphInputs: Set<string>,
  fresh: (base: string) => string,
  report: Float16Report,
): Float16Report {
  constantsToInitializers(graph);
  forEachGraph(graph, (g) => convertGraphWeights(g, graphInputs, fresh, report));
  return report;
}

function convertGraphWeights(
  graph: GraphProto,
  graphInputs: Set<string>,
  fresh: (base: string) => string,
  report: Float16Report,
): void {
  const casts: NodeProto[] = [];
  graph.initializer = graph.initializer.map((t) => {
    // An initializer that is also a graph input can be overridden by callers with float32 data.
    if (t.dataType !== FLOAT || graphInputs.has(t.name) || !fitsFloat16(t)) return t;
    const { tensor, clamped } = toFloat16Tensor(t, fresh(`${t.name}_fp16`));
    casts.push(makeCast(tensor.name, t.name, FLOAT, fresh(`${t.name}_cast_fp32`)));
    report.convertedInitializers += 1;
    report.clampedValues += clamped;
    report.weightBytesBefore += tensor.rawData.byteLength * 2;
    report.weightBytesAfter += tensor.rawData.byteLength;
    return tensor;
  });
  graph.valueInfo = graph.valueInfo.filter((v) => !casts.some((c) => c.output[0] === v.name));
  graph.node = [...casts, ...graph.node];
  report.castsInserted += casts.length;
}

/**
 * Inputs that must stay float32 whatever precision their operator runs in (the operator schema
 * types them `tensor(float)` or with a type variable of their own): Resize/Upsample `roi` and
 * `scales`. Shape-carrying inputs of other operators are integers and never touched.
 */
const FLOAT32_ONLY_INPUTS: Readonly<Record<string, readonly number[]>> = {
  Resize: [1, 2],
  Upsample: [1],
};

/** Whether every value survives the trip to float16 (no overflow, not all subnormal). */
function fitsFloat16(t: TensorProto): boolean {
  const values = readTensorAsFloat32(t);
  let maxAbs = 0;
  for (let i = 0; i < values.length; i++) {
    const v = Math.abs(values[i] ?? 0);
    if (!Number.isFinite(v)) return false;
    if (v > maxAbs) maxAbs = v;
  }
  // Above 65504 is infinity; below 2^-14 every value is subnormal and keeps few significant bits.
  return maxAbs <= FP16_MAX && (maxAbs === 0 || maxAbs >= 2 ** -14);
}

/** Element types of every tensor of the model (all graphs: names are unique model-wide). */
function inferTypes(graph: GraphProto, types: Map<string, number>): void {
  for (const v of [...graph.input, ...graph.valueInfo, ...graph.output]) {
    const t = elemTypeOf(v);
    if (t !== undefined && !types.has(v.name)) types.set(v.name, t);
  }
  graph.initializer.forEach((t) => types.set(t.name, t.dataType));
  for (const node of graph.node) {
    const bodies = subgraphsOf(node);
    bodies.forEach((b) => inferTypes(b, types));
    let outs: (number | undefined)[];
    const body = bodies[0];
    if (body && node.opType === 'If') outs = body.output.map((o) => elemTypeOf(o) ?? types.get(o.name));
    else if (body && node.opType === 'Loop')
      outs = body.output.slice(1).map((o) => elemTypeOf(o) ?? types.get(o.name));
    else if (body && node.opType === 'Scan')
      outs = body.output.map((o) => elemTypeOf(o) ?? types.get(o.name));
    else outs = inferOutputTypes(node, (n) => types.get(n));
    node.output.forEach((o, i) => {
      const t = outs[i];
      if (o !== '' && t !== undefined && !types.has(o)) types.set(o, t);
    });
  }
}

function convertCompute(
  graph: GraphProto,
  graphInputs: Set<string>,
  fresh: (base: string) => string,
  report: Float16Report,
  options: Float16Options,
): Float16Report {
  const blockOps = new Set(options.blockList ?? DEFAULT_FP16_BLOCK_LIST);
  const blockNodes = new Set(options.nodeBlockList ?? []);
  // Weights stored as Constant nodes (paddle2onnx and others) become initializers, checked like any.
  constantsToInitializers(graph);

  // 1. Element types of every tensor under the original (float32) model, bodies included.
  const types = new Map<string, number>();
  inferTypes(graph, types);
  const isFloat = (name: string): boolean => name !== '' && types.get(name) === FLOAT;

  // Float initializers of every graph, and whether they fit float16.
  const initializers = new Map<string, TensorProto>();
  forEachGraph(graph, (g) => g.initializer.forEach((t) => initializers.set(t.name, t)));
  const fits = new Map<string, boolean>();
  const fitsHalf = (name: string): boolean => {
    let f = fits.get(name);
    if (f === undefined) {
      const t = initializers.get(name);
      f = t === undefined || t.dataType !== FLOAT || fitsFloat16(t);
      fits.set(name, f);
    }
    return f;
  };

  // Constants whose float32 literal is not a tensor attribute cannot be retyped: they stay float32.
  const untypable = (n: NodeProto): boolean =>
    (n.opType === 'Constant' &&
      n.attribute.some((a) => a.name === 'value_float' || a.name === 'value_floats')) ||
    (n.opType === 'ConstantOfShape' && attributeOf(n, 'value') === undefined);
  const float32Only = (n: NodeProto, i: number): boolean => (FLOAT32_ONLY_INPUTS[n.opType] ?? []).includes(i);
  // A node runs in float32 when blocked, outside the default domain, holding a body (its bodies are
  // converted on their own, with float32 formal inputs and outputs), or reading a weight that
  // float16 cannot hold (e.g. a BatchNormalization variance of 1e8).
  const blocked = (n: NodeProto): boolean =>
    !isDefaultDomain(n.domain) ||
    blockOps.has(n.opType) ||
    blockNodes.has(n.name) ||
    untypable(n) ||
    subgraphsOf(n).length > 0 ||
    n.input.some((i, k) => !float32Only(n, k) && !fitsHalf(i));

  // 2. Home precision of each float tensor: float32 where it enters (graph and body inputs), where a
  //    blocked node produces it, or for initializers no float16 reader wants; float16 elsewhere.
  const home16 = new Set<string>();
  const wanted16 = new Set<string>();
  forEachGraph(graph, (g) => {
    for (const node of g.node) {
      const is32 = blocked(node);
      if (!is32) node.output.filter(isFloat).forEach((o) => home16.add(o));
      if (!is32) node.input.forEach((i, k) => !float32Only(node, k) && wanted16.add(i));
    }
  });
  for (const [name, t] of initializers) {
    if (t.dataType === FLOAT && !graphInputs.has(name) && wanted16.has(name) && fitsHalf(name))
      home16.add(name);
  }

  forEachGraph(graph, (g) => emitGraph(g, { home16, isFloat, blocked, float32Only, fresh, report }));
  return report;
}

/** What {@link emitGraph} needs to know about the whole model. */
interface EmitContext {
  home16: Set<string>;
  isFloat: (name: string) => boolean;
  blocked: (n: NodeProto) => boolean;
  float32Only: (n: NodeProto, i: number) => boolean;
  fresh: (base: string) => string;
  report: Float16Report;
}

/** Rewrites one graph (main or body) for the precisions decided in {@link convertCompute}. */
function emitGraph(graph: GraphProto, ctx: EmitContext): void {
  const { home16, isFloat, fresh, report } = ctx;
  // 3. Initializers with a float16 home are converted in place (same name).
  graph.initializer = graph.initializer.map((t) => {
    if (!home16.has(t.name) || t.dataType !== FLOAT) return t;
    const { tensor, clamped } = toFloat16Tensor(t, t.name);
    report.convertedInitializers += 1;
    report.clampedValues += clamped;
    report.weightBytesBefore += tensor.rawData.byteLength * 2;
    report.weightBytesAfter += tensor.rawData.byteLength;
    return tensor;
  });

  // 4. Graph (and body) outputs keep their names and float32 type: a float16-home producer writes to a new name.
  const produced = new Set(graph.node.flatMap((n) => n.output));
  const outputNames = graph.output.map((o) => o.name).filter((n) => produced.has(n) && home16.has(n));
  const renamed = new Map<string, string>();
  for (const name of outputNames) renamed.set(name, ctx.fresh(`${name}_fp16`));
  const current = (name: string): string => renamed.get(name) ?? name;

  // 5. Emit nodes, fetching each float input in the precision its reader runs in (Cast on demand,
  //    once per graph: a body reads an outer tensor through a Cast of its own).
  const nodes: NodeProto[] = [];
  const castCache = new Map<string, string>();
  const fetch = (name: string, want16: boolean): string => {
    if (!isFloat(name) || home16.has(name) === want16) return current(name);
    const key = `${name}|${want16 ? 16 : 32}`;
    let out = castCache.get(key);
    if (!out) {
      out = fresh(`${name}_${want16 ? 'fp16' : 'fp32'}`);
      nodes.push(
        makeCast(
          current(name),
          out,
          want16 ? FLOAT16 : FLOAT,
          fresh(`${name}_cast_${want16 ? 'fp16' : 'fp32'}`),
        ),
      );
      report.castsInserted += 1;
      castCache.set(key, out);
    }
    return out;
  };
  for (const node of graph.node) {
    const is32 = ctx.blocked(node);
    if (is32) report.float32Nodes.push(`${node.name || node.output[0] || ''} (${node.opType})`);
    node.input = node.input.map((i, k) => (i === '' ? i : fetch(i, !is32 && !ctx.float32Only(node, k))));
    node.output = node.output.map(current);
    if (!is32) retypeAttributes(node, report);
    nodes.push(node);
  }
  for (const name of outputNames) {
    nodes.push(makeCast(renamed.get(name) as string, name, FLOAT, fresh(`${name}_cast_fp32`)));
    report.castsInserted += 1;
  }
  graph.node = nodes;
  for (const v of graph.valueInfo) if (home16.has(v.name) && elemTypeOf(v) === FLOAT) setElemType(v, FLOAT16);
}

/** Float32 literals inside float16-running nodes: Cast targets, Constant values, ConstantOfShape fill. */
function retypeAttributes(node: NodeProto, report: Float16Report): void {
  for (const a of node.attribute) {
    if (node.opType === 'Cast' && a.name === 'to' && Number(a.i) === FLOAT) a.i = BigInt(FLOAT16);
    if (
      (node.opType === 'Constant' || node.opType === 'ConstantOfShape') &&
      a.name === 'value' &&
      a.t?.dataType === FLOAT
    ) {
      const { tensor, clamped } = toFloat16Tensor(a.t, a.t.name);
      a.t = tensor;
      report.clampedValues += clamped;
    }
  }
}
