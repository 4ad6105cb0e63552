/**
 * Default-domain opset upgrade, the part of onnx's version converter maas needs: int8
 * quantization wants opset ≥ 13 (per-channel QuantizeLinear/DequantizeLinear, the `axis`
 * attribute) and many exported models import 9 or 10.
 *
 * An upgrade is done only where the meaning of every operator present (subgraphs included) is
 * known to be kept between the two versions: either the operator's later versions only widen
 * types or add optional attributes/inputs whose defaults keep the old behaviour, or this module
 * rewrites the node into the new form (attributes that became inputs: Clip, Slice, Squeeze,
 * Unsqueeze, ReduceSum, Split, TopK, Pad). Operators whose meaning changed in a way that depends
 * on the data (Softmax before 13 flattens to 2-D unless the axis is the last one; Resize/Upsample
 * before 11 computed coordinates differently) are checked or refused, naming the operator.
 */
import type { GraphProto, ModelProto, NodeProto } from 'onnx-buf';
import { UnprocessableError } from '../errors';
import { makeTensor, readTensor } from './construct';
import { attributeOf, defaultOpset, forEachGraph, isDefaultDomain, uniqueNamer } from './graph';

/** Lowest source opset handled: before 7, broadcasting was an attribute of each arithmetic node. */
export const MIN_UPGRADABLE_OPSET = 7;

/**
 * Operators whose later versions (up to 17) keep the semantics of every earlier one from 7 on:
 * new versions only add types, optional attributes/inputs with backward-compatible defaults, or
 * accept negative axes.
 */
const COMPATIBLE = new Set([
  'Abs',
  'Acos',
  'Acosh',
  'Add',
  'And',
  'ArgMax',
  'ArgMin',
  'Asin',
  'Asinh',
  'Atan',
  'Atanh',
  'AveragePool',
  'BatchNormalization',
  'Cast',
  'Ceil',
  'Concat',
  'Constant',
  'ConstantOfShape',
  'Conv',
  'ConvTranspose',
  'Cos',
  'Cosh',
  'DepthToSpace',
  'Div',
  'Einsum',
  'Elu',
  'Equal',
  'Erf',
  'Exp',
  'Expand',
  'Flatten',
  'Floor',
  'GRU',
  'Gather',
  'Gemm',
  'GlobalAveragePool',
  'GlobalMaxPool',
  'Greater',
  'HardSigmoid',
  'Identity',
  'If',
  'InstanceNormalization',
  'IsNaN',
  'LRN',
  'LSTM',
  'LeakyRelu',
  'Less',
  'Log',
  'Loop',
  'MatMul',
  'Max',
  'MaxPool',
  'Mean',
  'Min',
  'Mul',
  'Neg',
  'NonZero',
  'Not',
  'Or',
  'PRelu',
  'Pow',
  'RNN',
  'Reciprocal',
  'ReduceL1',
  'ReduceL2',
  'ReduceLogSum',
  'ReduceLogSumExp',
  'ReduceMax',
  'ReduceMean',
  'ReduceMin',
  'ReduceProd',
  'ReduceSumSquare',
  'Relu',
  'Reshape',
  'Round',
  'Scan',
  'Selu',
  'Shape',
  'Sigmoid',
  'Sign',
  'Sin',
  'Sinh',
  'Size',
  'Softplus',
  'Softsign',
  'SpaceToDepth',
  'Sqrt',
  'Sub',
  'Sum',
  'Tan',
  'Tanh',
  'Tile',
  'Transpose',
  'Where',
  'Xor',
  'GatherND',
  'Range',
  'Mod',
  'Gelu',
  'HardSwish',
  'Celu',
  'Less',
  'LessOrEqual',
  'GreaterOrEqual',
  'Dropout',
  'MatMulInteger',
  'ConvInteger',
  'QuantizeLinear',
  'DequantizeLinear',
  'DynamicQuantizeLinear',
  'QLinearConv',
  'QLinearMatMul',
  'CumSum',
  'OneHot',
  'ScatterElements',
  'ScatterND',
  'GatherElements',
  'Trilu',
  'Det',
  'NonMaxSuppression',
  'RoiAlign',
  'TfIdfVectorizer',
  'Shrink',
  'ThresholdedRelu',
  'Hardmax',
  'MeanVarianceNormalization',
  'EyeLike',
  'RandomNormal',
  'RandomUniform',
  'RandomNormalLike',
  'RandomUniformLike',
  'Multinomial',
  'BitShift',
  'Compress',
  'ReverseSequence',
  'Unique',
  'Resize',
  'Squeeze',
  'Unsqueeze',
  'Clip',
  'Slice',
  'ReduceSum',
  'Split',
  'TopK',
  'Pad',
  'Softmax',
  'LogSoftmax',
]);

/**
 * Upgrades the default-domain opset of `model` to `target` in place (no-op when it is already
 * there), rewriting nodes whose attributes became inputs. Throws UnprocessableError naming the
 * operator when a node's meaning could change. Returns the rewritten node count.
 * @example
 * upgradeOpset(model, 13); // a paddle2onnx opset-9 export: Clip/Slice/Squeeze attributes become inputs
 */
export function upgradeOpset(model: ModelProto, target: number): number {
  const graph = model.graph;
  if (!graph) throw new UnprocessableError('model has no graph');
  const from = defaultOpset(model);
  if (from >= target) return 0;
  if (from < MIN_UPGRADABLE_OPSET)
    throw new UnprocessableError(
      `cannot upgrade opset ${from} (below ${MIN_UPGRADABLE_OPSET}, broadcasting was per-node); re-export the model with opset >= 13`,
    );
  const fresh = uniqueNamer(graph);
  const ranks = knownRanks(graph);
  let rewritten = 0;
  forEachGraph(graph, (g) => {
    for (const node of g.node) {
      if (!isDefaultDomain(node.domain)) continue;
      if (!COMPATIBLE.has(node.opType))
        throw new UnprocessableError(
          `cannot upgrade opset ${from} to ${target}: maas does not know that ${node.opType} (node ${node.name || node.output[0]}) keeps its meaning between these versions`,
        );
      if (rewriteNode(g, node, from, target, fresh, ranks)) rewritten += 1;
    }
  });
  const opset = model.opsetImport.find((o) => isDefaultDomain(o.domain));
  if (opset) opset.version = BigInt(target);
  // IR 7 is the first that may hold opset 13 (IR 8: opset 15–17; onnx's checker enforces it).
  const ir = target >= 15 ? 8n : 7n;
  if (model.irVersion < ir) model.irVersion = ir;
  return rewritten;
}

const SAME_RANK = new Set([
  'Abs',
  'Cast',
  'Ceil',
  'Clip',
  'Conv',
  'ConvTranspose',
  'Dropout',
  'Elu',
  'Erf',
  'Exp',
  'Floor',
  'HardSigmoid',
  'HardSwish',
  'Identity',
  'LeakyRelu',
  'Log',
  'LogSoftmax',
  'Neg',
  'Reciprocal',
  'Relu',
  'Round',
  'Sigmoid',
  'Softmax',
  'Softplus',
  'Sqrt',
  'Tanh',
  'BatchNormalization',
  'AveragePool',
  'MaxPool',
  'GlobalAveragePool',
  'GlobalMaxPool',
  'InstanceNormalization',
  'Pad',
  'Resize',
  'Slice',
  'Hardmax',
  'Not',
  'IsNaN',
]);
const BROADCAST = new Set([
  'Add',
  'Sub',
  'Mul',
  'Div',
  'Pow',
  'Max',
  'Min',
  'Sum',
  'Mean',
  'Where',
  'Equal',
  'Less',
  'Greater',
  'And',
  'Or',
  'PRelu',
  'MatMul',
  'Mod',
]);

/**
 * Tensor ranks: those recorded in value_info/inputs/outputs, then propagated through the operators
 * whose output rank follows from input ranks and attributes alone (enough for the Softmax check on
 * attention blocks, where the rank comes from a Transpose perm or a constant Reshape).
 */
function knownRanks(graph: GraphProto): Map<string, number> {
  const ranks = new Map<string, number>();
  const consts = new Map<string, bigint[]>();
  forEachGraph(graph, (g) => {
    for (const v of [...g.input, ...g.valueInfo, ...g.output]) {
      const t = v.type?.value;
      if (t?.case === 'tensorType' && t.value.shape) ranks.set(v.name, t.value.shape.dim.length);
    }
    for (const t of g.initializer) {
      ranks.set(t.name, t.dims.length);
      if (t.dataType === 7 && t.dims.length === 1) {
        try {
          consts.set(t.name, [...(readTensor(t).data as BigInt64Array)]);
        } catch {
          // unreadable: rank only
        }
      }
    }
    for (const n of g.node) {
      const out = n.output[0] ?? '';
      if (out === '' || ranks.has(out)) continue;
      const r = (i: number): number | undefined => ranks.get(n.input[i] ?? '');
      let rank: number | undefined;
      if (n.opType === 'Constant') {
        const t = attributeOf(n, 'value')?.t;
        if (t) rank = t.dims.length;
      } else if (n.opType === 'Transpose') rank = attributeOf(n, 'perm')?.ints.length ?? r(0);
      else if (SAME_RANK.has(n.opType)) rank = r(0);
      else if (BROADCAST.has(n.opType)) {
        const all = n.input.filter((i) => i !== '').map((i) => ranks.get(i));
        if (all.every((x) => x !== undefined)) rank = Math.max(...(all as number[]));
      } else if (n.opType === 'Reshape') rank = consts.get(n.input[1] ?? '')?.length;
      else if (n.opType === 'Flatten') rank = 2;
      else if (n.opType === 'Shape') rank = 1;
      else if (n.opType === 'Squeeze' || n.opType === 'Unsqueeze') {
        const axes = attributeOf(n, 'axes')?.ints.length ?? consts.get(n.input[1] ?? '')?.length;
        const x = r(0);
        if (axes !== undefined && x !== undefined) rank = n.opType === 'Squeeze' ? x - axes : x + axes;
      } else if (n.opType.startsWith('Reduce')) {
        const keep = Number(attributeOf(n, 'keepdims')?.i ?? 1n);
        const axes = attributeOf(n, 'axes')?.ints.length;
        const x = r(0);
        if (x !== undefined) rank = keep ? x : axes !== undefined ? x - axes : undefined;
      }
      if (rank !== undefined) ranks.set(out, rank);
    }
  });
  return ranks;
}

function takeInts(node: NodeProto, name: string): bigint[] | undefined {
  const a = attributeOf(node, name);
  if (!a) return undefined;
  node.attribute = node.attribute.filter((x) => x !== a);
  return a.ints.length > 0 || a.type === 7 ? [...a.ints] : [a.i];
}

function rewriteNode(
  g: GraphProto,
  node: NodeProto,
  from: number,
  target: number,
  fresh: (base: string) => string,
  ranks: Map<string, number>,
): boolean {
  const base = node.name || node.output[0] || node.opType;
  const int64Input = (suffix: string, values: readonly bigint[]): string => {
    const t = makeTensor(fresh(`${base}_${suffix}`), 'INT64', [values.length], BigInt64Array.from(values));
    g.initializer.push(t);
    return t.name;
  };
  const crosses = (v: number): boolean => from < v && target >= v;
  const refuse = (why: string): never => {
    throw new UnprocessableError(
      `cannot upgrade opset ${from} to ${target}: ${node.opType} (node ${base}) ${why}`,
    );
  };
  switch (node.opType) {
    case 'Clip': {
      if (!crosses(11)) return false;
      // Clip-6 bounds are float attributes; Clip-11 takes them as inputs of the input's type (float here).
      const min = attributeOf(node, 'min');
      const max = attributeOf(node, 'max');
      node.attribute = node.attribute.filter((a) => a.name !== 'min' && a.name !== 'max');
      const scalar = (suffix: string, v: number): string => {
        const t = makeTensor(fresh(`${base}_${suffix}`), 'FP32', [], new Float32Array([v]));
        g.initializer.push(t);
        return t.name;
      };
      node.input = [node.input[0] ?? '', min ? scalar('min', min.f) : '', max ? scalar('max', max.f) : ''];
      while (node.input.at(-1) === '') node.input.pop();
      return true;
    }
    case 'Slice': {
      if (!crosses(10)) return false;
      const starts = takeInts(node, 'starts') ?? refuse('has no starts');
      const ends = takeInts(node, 'ends') ?? refuse('has no ends');
      const axes = takeInts(node, 'axes');
      node.input = [
        node.input[0] ?? '',
        int64Input('starts', starts),
        int64Input('ends', ends),
        ...(axes ? [int64Input('axes', axes)] : []),
      ];
      return true;
    }
    case 'Squeeze':
    case 'Unsqueeze':
    case 'ReduceSum': {
      if (!crosses(13)) return false;
      const axes = takeInts(node, 'axes');
      if (axes) node.input = [node.input[0] ?? '', int64Input('axes', axes)];
      return axes !== undefined;
    }
    case 'Split': {
      if (!crosses(13)) return false;
      const split = takeInts(node, 'split');
      if (split) node.input = [node.input[0] ?? '', int64Input('split', split)];
      return split !== undefined;
    }
    case 'TopK': {
      if (!crosses(10)) return false;
      const k = attributeOf(node, 'k') ?? refuse('has no k');
      node.attribute = node.attribute.filter((a) => a.name !== 'k');
      node.input = [node.input[0] ?? '', int64Input('k', [k.i])];
      return true;
    }
    case 'Pad': {
      if (!crosses(11)) return false;
      const pads = takeInts(node, 'pads') ?? refuse('has no pads');
      const value = attributeOf(node, 'value');
      node.attribute = node.attribute.filter((a) => a.name !== 'value');
      if (value && value.f !== 0)
        refuse('pads with a non-zero constant, whose input type maas does not track');
      node.input = [node.input[0] ?? '', int64Input('pads', pads)];
      return true;
    }
    case 'Dropout': {
      // Dropout-12 moved ratio to an input; at inference Dropout is the identity either way.
      if (!crosses(12)) return false;
      node.attribute = node.attribute.filter((a) => a.name !== 'ratio');
      return true;
    }
    case 'Softmax':
    case 'LogSoftmax':
    case 'Hardmax': {
      if (!crosses(13)) return false;
      // Before 13 these flatten the input to 2-D at `axis` (default 1); from 13 they work on that
      // one axis. The same only when the axis is the last one.
      const axis = Number(attributeOf(node, 'axis')?.i ?? 1n);
      if (axis === -1) return false;
      const rank = ranks.get(node.input[0] ?? '') ?? ranks.get(node.output[0] ?? '');
      if (rank === undefined)
        refuse(
          `flattens to 2-D at axis ${axis} before opset 13; the input's rank is not recorded, so maas cannot tell it is the last axis`,
        );
      if (axis !== (rank as number) - 1)
        refuse(`with axis ${axis} on a rank-${rank} input changes meaning at opset 13`);
      return false;
    }
    case 'Resize':
      if (from < 11 && target >= 11)
        refuse('computes coordinates differently before opset 11 (no coordinate_transformation_mode)');
      return false;
    case 'BatchNormalization':
      if (from < 9 && attributeOf(node, 'spatial') && Number(attributeOf(node, 'spatial')?.i) !== 1)
        refuse('uses spatial=0, removed in opset 9');
      node.attribute = node.attribute.filter((a) => a.name !== 'spatial' && a.name !== 'is_test');
      return false;
    default:
      return false;
  }
}
