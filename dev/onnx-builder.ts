/**
 * A small ONNX graph builder.
 *
 * Two audiences:
 * - tests, demos and benchmarks generate their models here in TypeScript, so the repository holds no
 *   binary model blobs and every model's weights are reproducible from a seed;
 * - graph-editing code (quantization, fp16 conversion) reuses the low-level helpers
 *   ({@link makeTensor}, {@link readTensor}, {@link makeNode}, {@link makeValueInfo}, ...) to read and
 *   rewrite initializers and nodes of decoded models.
 *
 * Layout conventions of the generated models: one input named 'input' and one output named 'output',
 * with a symbolic leading batch dimension 'batch' unless a fixed batch size is requested.
 */
import { create } from '@bufbuild/protobuf';
import {
  AttributeProtoSchema,
  AttributeProto_AttributeType,
  GraphProtoSchema,
  ModelProtoSchema,
  NodeProtoSchema,
  OperatorSetIdProtoSchema,
  StringStringEntryProtoSchema,
  TensorProtoSchema,
  TensorProto_DataLocation,
  TensorProto_DataType,
  TensorShapeProtoSchema,
  TensorShapeProto_DimensionSchema,
  TypeProtoSchema,
  TypeProto_TensorSchema,
  ValueInfoProtoSchema,
  type AttributeProto,
  type GraphProto,
  type ModelProto,
  type NodeProto,
  type TensorProto,
  type ValueInfoProto,
} from 'onnx-buf';
import { InvalidArgumentError, UnprocessableError } from '../errors';
import { encodeModel } from './codec';
import {
  elementByteSize,
  float16BitsToFloat32,
  float32ToFloat16Bits,
  onnxFromOip,
  oipFromOnnx,
  typedArrayConstructorOf,
  type NumericOipDatatype,
  type OipDatatype,
  type OipTypedArray,
  type OipTypedArrayMap,
} from './datatypes';

/** Default opset of generated models: old enough for any onnxruntime we ship, new enough for Softmax(axis=-1) semantics. */
export const DEFAULT_OPSET = 17;
/** IR version matching {@link DEFAULT_OPSET} (IR 8 introduced opset 17 support). */
export const DEFAULT_IR_VERSION = 8;

// ONNX raw_data is little-endian; copying typed-array bytes straight into it is only correct on
// little-endian hosts (every platform Lambda and Node run on). Fail loudly rather than corrupt weights.
if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
  throw new Error('maas ONNX builder requires a little-endian host');
}

// ---------------------------------------------------------------------------------------------
// PRNG
// ---------------------------------------------------------------------------------------------

/**
 * Seeded 32-bit PRNG (mulberry32): fast, tiny, and identical on every platform, so generated
 * weights, test inputs and benchmark payloads are reproducible. Not for cryptography.
 * @example
 * const rand = mulberry32(42);
 * const x = rand(); // in [0, 1)
 */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Float32Array of `length` values drawn uniformly from [min, max) with a seeded PRNG.
 * @example
 * const input = randomFloat32(mulberry32(1), 4 * 16, -1, 1);
 */
export function randomFloat32(rand: () => number, length: number, min = -1, max = 1): Float32Array {
  const out = new Float32Array(length);
  for (let i = 0; i < length; i++) out[i] = min + (max - min) * rand();
  return out;
}

// ---------------------------------------------------------------------------------------------
// Tensors
// ---------------------------------------------------------------------------------------------

/** Element data for {@link makeTensor}: a typed array for numeric datatypes, strings or byte strings for BYTES. */
export type TensorData = OipTypedArray | readonly string[] | readonly Uint8Array[];

/** Decoded content of a TensorProto, see {@link readTensor}. */
export type TensorContent =
  | {
      [D in NumericOipDatatype]: { datatype: D; dims: number[]; data: OipTypedArrayMap[D] };
    }[NumericOipDatatype]
  | { datatype: 'BYTES'; dims: number[]; data: Uint8Array[] };

const utf8 = new TextEncoder();

function product(dims: readonly number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

function copyBytes(view: ArrayBufferView): Uint8Array<ArrayBuffer> {
  // Always copy: the source may be a view into a larger (or shared) buffer, and the tensor must own its bytes.
  const out = new Uint8Array(view.byteLength);
  out.set(new Uint8Array(view.buffer, view.byteOffset, view.byteLength));
  return out;
}

/**
 * Builds an initializer / constant tensor. Numeric data is stored little-endian in `raw_data`
 * (compact and what exporters emit); BYTES elements go to `string_data` (strings are UTF-8 encoded).
 * FP16 data is a Uint16Array of half-precision bits, BOOL a Uint8Array of 0/1.
 * @example
 * const w = makeTensor('fc.weight', 'FP32', [4, 2], new Float32Array(8));
 * const labels = makeTensor('labels', 'BYTES', [2], ['cat', 'dog']);
 */
export function makeTensor(
  name: string,
  datatype: OipDatatype,
  dims: readonly number[],
  data: TensorData,
): TensorProto {
  const count = product(dims);
  if (data.length !== count) {
    throw new InvalidArgumentError(
      `tensor ${name}: ${data.length} elements for dims [${dims.join(', ')}] (expected ${count})`,
    );
  }
  const tensor = create(TensorProtoSchema, {
    name,
    dataType: onnxFromOip(datatype),
    dims: dims.map((d) => BigInt(d)),
  });
  if (datatype === 'BYTES') {
    if (!Array.isArray(data))
      throw new InvalidArgumentError(`tensor ${name}: BYTES data must be an array of strings or Uint8Arrays`);
    tensor.stringData = Array.from(data as readonly (string | Uint8Array)[], (s) =>
      typeof s === 'string' ? utf8.encode(s) : copyBytes(s),
    );
    return tensor;
  }
  if (!ArrayBuffer.isView(data) || (data as OipTypedArray).BYTES_PER_ELEMENT !== elementByteSize(datatype)) {
    throw new InvalidArgumentError(`tensor ${name}: data is not a typed array of ${datatype} elements`);
  }
  tensor.rawData = copyBytes(data);
  return tensor;
}

/**
 * FP32 initializer from a Float32Array (the common case, shorthand for {@link makeTensor}).
 * @example
 * graph.initializer.push(tensorFromFloat32('fc.bias', [10], bias));
 */
export function tensorFromFloat32(name: string, dims: readonly number[], data: Float32Array): TensorProto {
  return makeTensor(name, 'FP32', dims, data);
}

/**
 * Reads the elements of a tensor, whichever encoding the producer chose (`raw_data` or the typed
 * `*_data` fields). Returned arrays are fresh copies (safe to mutate, properly aligned).
 * Throws UnprocessableError for external data, element types OIP cannot carry, or a data length
 * that does not match the dims.
 * @example
 * const w = readTensor(initializer);
 * if (w.datatype === 'FP32') quantize(w.data, w.dims);
 */
export function readTensor(tensor: TensorProto): TensorContent {
  const dims = tensor.dims.map((d) => Number(d));
  const count = product(dims);
  const datatype = oipFromOnnx(tensor.dataType);
  const where = `tensor "${tensor.name}"`;
  if (tensor.dataLocation === TensorProto_DataLocation.EXTERNAL || tensor.externalData.length > 0) {
    throw new UnprocessableError(`${where} stores its data in an external file, which maas does not read`);
  }
  if (datatype === undefined) {
    const name = TensorProto_DataType[tensor.dataType] ?? String(tensor.dataType);
    throw new UnprocessableError(`${where} has element type ${name}, which has no OIP datatype`);
  }
  const mismatch = (found: number): UnprocessableError =>
    new UnprocessableError(
      `${where} holds ${found} elements but its dims [${dims.join(', ')}] need ${count}`,
    );

  if (datatype === 'BYTES') {
    if (tensor.stringData.length !== count) throw mismatch(tensor.stringData.length);
    return { datatype, dims, data: tensor.stringData.map((s) => s.slice()) };
  }
  const Ctor = typedArrayConstructorOf(datatype) as unknown as new (
    arg: number | ArrayBuffer,
  ) => OipTypedArray;
  const size = elementByteSize(datatype) ?? 1;
  let data: OipTypedArray;
  if (tensor.rawData.byteLength > 0 || count === 0) {
    if (tensor.rawData.byteLength !== count * size) throw mismatch(tensor.rawData.byteLength / size);
    data = new Ctor(tensor.rawData.slice().buffer);
  } else {
    // Typed fields, per the onnx.proto rules: which field holds which element type.
    const source: readonly (number | bigint)[] =
      datatype === 'FP32'
        ? tensor.floatData
        : datatype === 'FP64'
          ? tensor.doubleData
          : datatype === 'INT64'
            ? tensor.int64Data
            : datatype === 'UINT32' || datatype === 'UINT64'
              ? tensor.uint64Data
              : tensor.int32Data; // BOOL, (U)INT8, (U)INT16, INT32, FP16 (as bits)
    if (source.length !== count) throw mismatch(source.length);
    data = new Ctor(count);
    const target = data as unknown as { [i: number]: number | bigint };
    const big = datatype === 'INT64' || datatype === 'UINT64';
    for (let i = 0; i < count; i++) {
      const v = source[i] ?? 0;
      target[i] = big ? BigInt(v) : Number(v);
    }
  }
  return { datatype, dims, data } as TensorContent;
}

/**
 * FP32 view of a tensor's values, converting FP16/FP64/integers; for graph rewriting code that
 * works in float (quantization statistics, fp16 conversion checks).
 * @example
 * const values = readTensorAsFloat32(model.graph!.initializer[0]!);
 */
export function readTensorAsFloat32(tensor: TensorProto): Float32Array {
  const content = readTensor(tensor);
  if (content.datatype === 'FP32') return content.data;
  if (content.datatype === 'BYTES')
    throw new UnprocessableError(`tensor "${tensor.name}" holds strings, not numbers`);
  const out = new Float32Array(content.data.length);
  if (content.datatype === 'FP16') {
    for (let i = 0; i < out.length; i++) out[i] = float16BitsToFloat32(content.data[i] ?? 0);
  } else {
    const src = content.data as ArrayLike<number | bigint>;
    for (let i = 0; i < out.length; i++) out[i] = Number(src[i] ?? 0);
  }
  return out;
}

/**
 * Converts numbers to a Uint16Array of FP16 bits (for FP16 initializers and onnxruntime 'float16' tensors).
 * @example
 * makeTensor('w16', 'FP16', [2], toFloat16Bits([0.5, 1.5]));
 */
export function toFloat16Bits(values: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = float32ToFloat16Bits(values[i] ?? 0);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Nodes, attributes, value infos, graphs, models
// ---------------------------------------------------------------------------------------------

/**
 * An attribute value, tagged by kind. Tagged because JavaScript cannot tell an INT attribute from
 * a FLOAT one (1 vs 1.0), and operators reject the wrong kind.
 */
export type AttributeValue =
  | { int: number | bigint }
  | { float: number }
  | { string: string | Uint8Array }
  | { ints: readonly (number | bigint)[] }
  | { floats: readonly number[] }
  | { strings: readonly (string | Uint8Array)[] }
  | { tensor: TensorProto }
  | { tensors: readonly TensorProto[] }
  | { graph: GraphProto }
  | { graphs: readonly GraphProto[] };

const bytesOf = (s: string | Uint8Array): Uint8Array<ArrayBuffer> =>
  typeof s === 'string' ? utf8.encode(s) : copyBytes(s);

/**
 * Builds a node attribute.
 * @example
 * makeAttribute('kernel_shape', { ints: [3, 3] });
 * makeAttribute('alpha', { float: 1 });
 */
export function makeAttribute(name: string, value: AttributeValue): AttributeProto {
  const T = AttributeProto_AttributeType;
  if ('int' in value) return create(AttributeProtoSchema, { name, type: T.INT, i: BigInt(value.int) });
  if ('float' in value) return create(AttributeProtoSchema, { name, type: T.FLOAT, f: value.float });
  if ('string' in value)
    return create(AttributeProtoSchema, { name, type: T.STRING, s: bytesOf(value.string) });
  if ('ints' in value)
    return create(AttributeProtoSchema, { name, type: T.INTS, ints: value.ints.map((v) => BigInt(v)) });
  if ('floats' in value)
    return create(AttributeProtoSchema, { name, type: T.FLOATS, floats: [...value.floats] });
  if ('strings' in value)
    return create(AttributeProtoSchema, { name, type: T.STRINGS, strings: value.strings.map(bytesOf) });
  if ('tensor' in value) return create(AttributeProtoSchema, { name, type: T.TENSOR, t: value.tensor });
  if ('tensors' in value)
    return create(AttributeProtoSchema, { name, type: T.TENSORS, tensors: [...value.tensors] });
  if ('graph' in value) return create(AttributeProtoSchema, { name, type: T.GRAPH, g: value.graph });
  return create(AttributeProtoSchema, { name, type: T.GRAPHS, graphs: [...value.graphs] });
}

/** Optional node fields for {@link makeNode}. */
export interface NodeOptions {
  /** Node name; unique names make onnxruntime error messages and profiles readable. */
  name?: string;
  /** Operator domain, '' (default ONNX domain) unless e.g. 'com.microsoft'. */
  domain?: string;
}

/**
 * Builds a node.
 * @example
 * makeNode('Conv', ['x', 'conv.weight', 'conv.bias'], ['y'], { pads: { ints: [1, 1, 1, 1] } }, { name: 'conv1' });
 */
export function makeNode(
  opType: string,
  inputs: readonly string[],
  outputs: readonly string[],
  attributes: Readonly<Record<string, AttributeValue>> = {},
  options: NodeOptions = {},
): NodeProto {
  return create(NodeProtoSchema, {
    opType,
    input: [...inputs],
    output: [...outputs],
    attribute: Object.entries(attributes).map(([k, v]) => makeAttribute(k, v)),
    ...(options.name !== undefined ? { name: options.name } : {}),
    ...(options.domain !== undefined ? { domain: options.domain } : {}),
  });
}

/** A dimension: a size, a symbolic name ('batch'), or null / -1 for an anonymous unknown size. */
export type Dim = number | string | null;

/**
 * Builds a tensor-typed ValueInfo (graph input/output or value_info). `shape` undefined means the
 * rank itself is unknown (no shape recorded).
 * @example
 * makeValueInfo('input', 'FP32', ['batch', 3, 224, 224]);
 */
export function makeValueInfo(
  name: string,
  datatype: OipDatatype | TensorProto_DataType,
  shape?: readonly Dim[],
): ValueInfoProto {
  const elemType = typeof datatype === 'number' ? datatype : onnxFromOip(datatype);
  const tensorType = create(TypeProto_TensorSchema, { elemType });
  if (shape !== undefined) {
    tensorType.shape = create(TensorShapeProtoSchema, {
      dim: shape.map((d) =>
        create(TensorShapeProto_DimensionSchema, {
          value:
            typeof d === 'string'
              ? { case: 'dimParam', value: d }
              : d === null || d < 0
                ? { case: undefined }
                : { case: 'dimValue', value: BigInt(d) },
        }),
      ),
    });
  }
  return create(ValueInfoProtoSchema, {
    name,
    type: create(TypeProtoSchema, { value: { case: 'tensorType', value: tensorType } }),
  });
}

/** Contents of a graph for {@link makeGraph}. */
export interface GraphSpec {
  name?: string;
  nodes: readonly NodeProto[];
  inputs: readonly ValueInfoProto[];
  outputs: readonly ValueInfoProto[];
  initializers?: readonly TensorProto[];
  valueInfo?: readonly ValueInfoProto[];
}

/**
 * Builds a graph (also used for If/Loop/Scan bodies).
 * @example
 * const g = makeGraph({ nodes: [makeNode('Relu', ['x'], ['y'])], inputs: [makeValueInfo('x', 'FP32', [4])], outputs: [makeValueInfo('y', 'FP32', [4])] });
 */
export function makeGraph(spec: GraphSpec): GraphProto {
  return create(GraphProtoSchema, {
    name: spec.name ?? 'graph',
    node: [...spec.nodes],
    input: [...spec.inputs],
    output: [...spec.outputs],
    initializer: [...(spec.initializers ?? [])],
    valueInfo: [...(spec.valueInfo ?? [])],
  });
}

/** Model-level fields for {@link makeModel}. */
export interface ModelOptions {
  /** Default-domain opset version. */
  opset?: number;
  /** Extra operator sets, e.g. `{ domain: 'com.microsoft', version: 1 }`. */
  extraOpsets?: readonly { domain: string; version: number }[];
  irVersion?: number;
  producerName?: string;
  producerVersion?: string;
  docString?: string;
  /** Free-form metadata_props. */
  metadata?: Readonly<Record<string, string>>;
}

/**
 * Wraps a graph into a model.
 * @example
 * const bytes = encodeModel(makeModel(graph, { opset: 17 }));
 */
export function makeModel(graph: GraphProto, options: ModelOptions = {}): ModelProto {
  const opsets = [{ domain: '', version: options.opset ?? DEFAULT_OPSET }, ...(options.extraOpsets ?? [])];
  return create(ModelProtoSchema, {
    irVersion: BigInt(options.irVersion ?? DEFAULT_IR_VERSION),
    producerName: options.producerName ?? 'maas',
    producerVersion: options.producerVersion ?? '0.1.0',
    ...(options.docString !== undefined ? { docString: options.docString } : {}),
    graph,
    opsetImport: opsets.map((o) =>
      create(OperatorSetIdProtoSchema, { domain: o.domain, version: BigInt(o.version) }),
    ),
    metadataProps: Object.entries(options.metadata ?? {}).map(([key, value]) =>
      create(StringStringEntryProtoSchema, { key, value }),
    ),
  });
}

// ---------------------------------------------------------------------------------------------
// Ready-made models
// ---------------------------------------------------------------------------------------------

/** A generated model: its encoded bytes and the message it was encoded from. */
export interface BuiltModel {
  bytes: Uint8Array;
  model: ModelProto;
}

/** One dense layer: y = x·W + b with W row-major [rows = in, cols = out]. */
export interface DenseLayer {
  W: Float32Array;
  b: Float32Array;
  rows: number;
  cols: number;
}

/** Options of {@link buildMlp}. */
export interface MlpOptions {
  inputSize: number;
  hiddenSizes: readonly number[];
  outputSize: number;
  seed: number;
  /** 'dynamic' (default): symbolic dim 'batch'; a number fixes the batch size. */
  batch?: 'dynamic' | number;
  /** Activation after each hidden layer (default 'relu'). */
  activation?: 'relu' | 'none';
  /** Append Softmax over the last axis (default false). */
  softmax?: boolean;
  opset?: number;
}

/** Result of {@link buildMlp}: the model plus everything {@link mlpReference} needs. */
export interface BuiltMlp extends BuiltModel {
  weights: DenseLayer[];
  activation: 'relu' | 'none';
  softmax: boolean;
}

function batchDim(batch: 'dynamic' | number | undefined): Dim {
  return batch === undefined || batch === 'dynamic' ? 'batch' : batch;
}

function denseLayer(rand: () => number, rows: number, cols: number): DenseLayer {
  // Glorot-uniform weights keep activations O(1) through the layers, so reference comparisons with
  // a relative tolerance stay meaningful; small non-zero biases make bias bugs visible.
  const limit = Math.sqrt(6 / (rows + cols));
  return {
    W: randomFloat32(rand, rows * cols, -limit, limit),
    b: randomFloat32(rand, cols, -0.1, 0.1),
    rows,
    cols,
  };
}

/**
 * Builds a multi-layer perceptron 'input' [batch, inputSize] → 'output' [batch, outputSize] from
 * MatMul + Add (+ Relu) nodes with seeded weights as initializers.
 * @example
 * const mlp = buildMlp({ inputSize: 16, hiddenSizes: [32], outputSize: 4, seed: 1 });
 * const session = await ort.InferenceSession.create(mlp.bytes);
 */
export function buildMlp(options: MlpOptions): BuiltMlp {
  const { inputSize, hiddenSizes, outputSize, seed } = options;
  const activation = options.activation ?? 'relu';
  const softmax = options.softmax ?? false;
  const sizes = [inputSize, ...hiddenSizes, outputSize];
  if (sizes.some((s) => !Number.isInteger(s) || s <= 0))
    throw new InvalidArgumentError('MLP layer sizes must be positive integers');
  const rand = mulberry32(seed);
  const weights: DenseLayer[] = [];
  const nodes: NodeProto[] = [];
  const initializers: TensorProto[] = [];
  let x = 'input';
  for (let i = 0; i + 1 < sizes.length; i++) {
    const layer = denseLayer(rand, sizes[i] ?? 0, sizes[i + 1] ?? 0);
    weights.push(layer);
    const last = i + 2 === sizes.length;
    initializers.push(tensorFromFloat32(`fc${i}.weight`, [layer.rows, layer.cols], layer.W));
    initializers.push(tensorFromFloat32(`fc${i}.bias`, [layer.cols], layer.b));
    nodes.push(makeNode('MatMul', [x, `fc${i}.weight`], [`fc${i}.matmul`], {}, { name: `fc${i}_matmul` }));
    const y = last && !softmax ? 'output' : `fc${i}.out`;
    nodes.push(makeNode('Add', [`fc${i}.matmul`, `fc${i}.bias`], [y], {}, { name: `fc${i}_add` }));
    x = y;
    if (!last && activation === 'relu') {
      nodes.push(makeNode('Relu', [x], [`fc${i}.relu`], {}, { name: `fc${i}_relu` }));
      x = `fc${i}.relu`;
    }
  }
  if (softmax) nodes.push(makeNode('Softmax', [x], ['output'], { axis: { int: -1 } }, { name: 'softmax' }));
  const b = batchDim(options.batch);
  const graph = makeGraph({
    name: 'mlp',
    nodes,
    inputs: [makeValueInfo('input', 'FP32', [b, inputSize])],
    outputs: [makeValueInfo('output', 'FP32', [b, outputSize])],
    initializers,
  });
  const model = makeModel(graph, options.opset !== undefined ? { opset: options.opset } : {});
  return { bytes: encodeModel(model), model, weights, activation, softmax };
}

function softmaxRows(out: Float32Array, batch: number, cols: number): void {
  for (let r = 0; r < batch; r++) {
    let max = -Infinity;
    for (let c = 0; c < cols; c++) max = Math.max(max, out[r * cols + c] ?? 0);
    let sum = 0;
    for (let c = 0; c < cols; c++) {
      const e = Math.exp((out[r * cols + c] ?? 0) - max);
      out[r * cols + c] = e;
      sum += e;
    }
    for (let c = 0; c < cols; c++) out[r * cols + c] = (out[r * cols + c] ?? 0) / sum;
  }
}

/**
 * Plain-JS forward pass of a {@link buildMlp} model, the oracle tests compare onnxruntime against.
 * Accumulates in float64, so expect ~1e-6 relative differences from onnxruntime's float32.
 * @example
 * const expected = mlpReference(mlp.weights, input, 4, { softmax: mlp.softmax });
 */
export function mlpReference(
  weights: readonly DenseLayer[],
  input: Float32Array,
  batch: number,
  options: { activation?: 'relu' | 'none'; softmax?: boolean } = {},
): Float32Array {
  let x = input;
  weights.forEach((layer, i) => {
    if (x.length !== batch * layer.rows)
      throw new InvalidArgumentError(`layer ${i} expects ${batch}x${layer.rows} inputs, got ${x.length}`);
    const y = new Float32Array(batch * layer.cols);
    const relu = (options.activation ?? 'relu') === 'relu' && i + 1 < weights.length;
    for (let r = 0; r < batch; r++) {
      for (let c = 0; c < layer.cols; c++) {
        let acc = layer.b[c] ?? 0;
        for (let k = 0; k < layer.rows; k++)
          acc += (x[r * layer.rows + k] ?? 0) * (layer.W[k * layer.cols + c] ?? 0);
        y[r * layer.cols + c] = relu ? Math.max(0, acc) : acc;
      }
    }
    x = y;
  });
  if (options.softmax) softmaxRows(x, batch, weights[weights.length - 1]?.cols ?? 0);
  return x;
}

/** Options of {@link buildConvNet}. */
export interface ConvNetOptions {
  seed: number;
  batch?: 'dynamic' | number;
  inputChannels?: number;
  /** Square input side (default 32); must be even (one 2x2 max pool). */
  imageSize?: number;
  /** Output channels of the two 3x3 convolutions (default [8, 16]). */
  channels?: readonly [number, number];
  numClasses?: number;
  softmax?: boolean;
  opset?: number;
}

/** One 3x3 'same' convolution: W is [outC, inC, 3, 3] (OIHW), b is [outC]. */
export interface ConvLayer {
  W: Float32Array;
  b: Float32Array;
  outC: number;
  inC: number;
}

/** Weights of a {@link buildConvNet} model. The classifier is a Gemm with transB=1: W is [numClasses, channels[1]]. */
export interface ConvNetParams {
  conv: [ConvLayer, ConvLayer];
  fc: { W: Float32Array; b: Float32Array; outFeatures: number; inFeatures: number };
  inputChannels: number;
  imageSize: number;
  softmax: boolean;
}

/** Result of {@link buildConvNet}. */
export interface BuiltConvNet extends BuiltModel {
  params: ConvNetParams;
  /** Input shape with batch as -1 when dynamic. */
  inputShape: number[];
  outputShape: number[];
}

/**
 * Builds a small image classifier: Conv3x3+Relu → MaxPool2x2 → Conv3x3+Relu → GlobalAveragePool →
 * Flatten → Gemm (→ Softmax), input 'input' [batch, 3, 32, 32] and output 'output' [batch, 10] by default.
 * @example
 * const net = buildConvNet({ seed: 7 });
 * const session = await ort.InferenceSession.create(net.bytes);
 */
export function buildConvNet(options: ConvNetOptions): BuiltConvNet {
  const inC = options.inputChannels ?? 3;
  const size = options.imageSize ?? 32;
  const [c1, c2] = options.channels ?? [8, 16];
  const classes = options.numClasses ?? 10;
  const softmax = options.softmax ?? false;
  if (size % 2 !== 0 || size < 2) throw new InvalidArgumentError('imageSize must be an even number >= 2');
  const rand = mulberry32(options.seed);
  const conv = (outC: number, cin: number): ConvLayer => {
    const fanIn = cin * 9;
    const limit = Math.sqrt(6 / (fanIn + outC * 9));
    return {
      W: randomFloat32(rand, outC * cin * 9, -limit, limit),
      b: randomFloat32(rand, outC, -0.1, 0.1),
      outC,
      inC: cin,
    };
  };
  const conv1 = conv(c1, inC);
  const conv2 = conv(c2, c1);
  const fcLimit = Math.sqrt(6 / (c2 + classes));
  const fc = {
    W: randomFloat32(rand, classes * c2, -fcLimit, fcLimit),
    b: randomFloat32(rand, classes, -0.1, 0.1),
    outFeatures: classes,
    inFeatures: c2,
  };
  const same = { kernel_shape: { ints: [3, 3] }, pads: { ints: [1, 1, 1, 1] } } as const;
  const nodes = [
    makeNode('Conv', ['input', 'conv1.weight', 'conv1.bias'], ['conv1.out'], same, { name: 'conv1' }),
    makeNode('Relu', ['conv1.out'], ['relu1.out'], {}, { name: 'relu1' }),
    makeNode(
      'MaxPool',
      ['relu1.out'],
      ['pool1.out'],
      { kernel_shape: { ints: [2, 2] }, strides: { ints: [2, 2] } },
      { name: 'pool1' },
    ),
    makeNode('Conv', ['pool1.out', 'conv2.weight', 'conv2.bias'], ['conv2.out'], same, { name: 'conv2' }),
    makeNode('Relu', ['conv2.out'], ['relu2.out'], {}, { name: 'relu2' }),
    makeNode('GlobalAveragePool', ['relu2.out'], ['gap.out'], {}, { name: 'gap' }),
    makeNode('Flatten', ['gap.out'], ['flat.out'], { axis: { int: 1 } }, { name: 'flatten' }),
    makeNode(
      'Gemm',
      ['flat.out', 'fc.weight', 'fc.bias'],
      [softmax ? 'fc.out' : 'output'],
      { transB: { int: 1 } },
      { name: 'fc' },
    ),
    ...(softmax
      ? [makeNode('Softmax', ['fc.out'], ['output'], { axis: { int: -1 } }, { name: 'softmax' })]
      : []),
  ];
  const initializers = [
    tensorFromFloat32('conv1.weight', [c1, inC, 3, 3], conv1.W),
    tensorFromFloat32('conv1.bias', [c1], conv1.b),
    tensorFromFloat32('conv2.weight', [c2, c1, 3, 3], conv2.W),
    tensorFromFloat32('conv2.bias', [c2], conv2.b),
    tensorFromFloat32('fc.weight', [classes, c2], fc.W),
    tensorFromFloat32('fc.bias', [classes], fc.b),
  ];
  const b = batchDim(options.batch);
  const graph = makeGraph({
    name: 'convnet',
    nodes,
    inputs: [makeValueInfo('input', 'FP32', [b, inC, size, size])],
    outputs: [makeValueInfo('output', 'FP32', [b, classes])],
    initializers,
  });
  const model = makeModel(graph, options.opset !== undefined ? { opset: options.opset } : {});
  const n = typeof b === 'number' ? b : -1;
  return {
    bytes: encodeModel(model),
    model,
    params: { conv: [conv1, conv2], fc, inputChannels: inC, imageSize: size, softmax },
    inputShape: [n, inC, size, size],
    outputShape: [n, classes],
  };
}

function conv3x3Relu(x: Float32Array, layer: ConvLayer, size: number): Float32Array {
  const { W, b, outC, inC } = layer;
  const y = new Float32Array(outC * size * size);
  for (let o = 0; o < outC; o++) {
    for (let i = 0; i < size; i++) {
      for (let j = 0; j < size; j++) {
        let acc = b[o] ?? 0;
        for (let c = 0; c < inC; c++) {
          for (let ki = 0; ki < 3; ki++) {
            const ii = i + ki - 1;
            if (ii < 0 || ii >= size) continue;
            for (let kj = 0; kj < 3; kj++) {
              const jj = j + kj - 1;
              if (jj < 0 || jj >= size) continue;
              acc += (x[(c * size + ii) * size + jj] ?? 0) * (W[((o * inC + c) * 3 + ki) * 3 + kj] ?? 0);
            }
          }
        }
        y[(o * size + i) * size + j] = Math.max(0, acc);
      }
    }
  }
  return y;
}

/**
 * Plain-JS forward pass of a {@link buildConvNet} model (NCHW input, batch images back to back).
 * @example
 * const expected = convNetReference(net.params, input, 2);
 */
export function convNetReference(params: ConvNetParams, input: Float32Array, batch: number): Float32Array {
  const { conv, fc, inputChannels, imageSize: size } = params;
  const per = inputChannels * size * size;
  if (input.length !== batch * per)
    throw new InvalidArgumentError(`expected ${batch * per} input values, got ${input.length}`);
  const out = new Float32Array(batch * fc.outFeatures);
  const half = size / 2;
  for (let n = 0; n < batch; n++) {
    const a = conv3x3Relu(input.subarray(n * per, (n + 1) * per), conv[0], size);
    const pooled = new Float32Array(conv[0].outC * half * half);
    for (let c = 0; c < conv[0].outC; c++) {
      for (let i = 0; i < half; i++) {
        for (let j = 0; j < half; j++) {
          const at = (di: number, dj: number): number => a[(c * size + 2 * i + di) * size + 2 * j + dj] ?? 0;
          pooled[(c * half + i) * half + j] = Math.max(at(0, 0), at(0, 1), at(1, 0), at(1, 1));
        }
      }
    }
    const h = conv3x3Relu(pooled, conv[1], half);
    const feat = new Float64Array(conv[1].outC);
    for (let c = 0; c < conv[1].outC; c++) {
      let s = 0;
      for (let k = 0; k < half * half; k++) s += h[c * half * half + k] ?? 0;
      feat[c] = s / (half * half);
    }
    for (let o = 0; o < fc.outFeatures; o++) {
      let acc = fc.b[o] ?? 0;
      for (let k = 0; k < fc.inFeatures; k++) acc += (feat[k] ?? 0) * (fc.W[o * fc.inFeatures + k] ?? 0);
      out[n * fc.outFeatures + o] = acc;
    }
  }
  if (params.softmax) softmaxRows(out, batch, fc.outFeatures);
  return out;
}

/**
 * Builds a single-Identity-node model 'input' → 'output' of the given datatype and shape, to test
 * that each datatype survives the request → onnxruntime → response path unchanged.
 * @example
 * const { bytes } = buildIdentityModel('FP16', ['batch', 4]);
 */
export function buildIdentityModel(
  datatype: OipDatatype,
  shape: readonly Dim[] = ['batch', 4],
  options: { opset?: number } = {},
): BuiltModel {
  const graph = makeGraph({
    name: `identity_${datatype.toLowerCase()}`,
    nodes: [makeNode('Identity', ['input'], ['output'], {}, { name: 'identity' })],
    inputs: [makeValueInfo('input', datatype, shape)],
    outputs: [makeValueInfo('output', datatype, shape)],
  });
  const model = makeModel(graph, options.opset !== undefined ? { opset: options.opset } : {});
  return { bytes: encodeModel(model), model };
}
