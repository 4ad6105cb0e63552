/**
 * Low-level ONNX construction helpers: tensors (made from and read back into typed arrays),
 * attributes, nodes, value infos, graphs and models. Graph-editing code (quantization, fp16,
 * pruning) uses them to read and rewrite decoded models; the ready-made test models built on top
 * of them live in `dev/onnx-builder.ts`, outside every function bundle.
 */
import { create } from '@bufbuild/protobuf';
import {
  type AttributeProto,
  AttributeProto_AttributeType,
  AttributeProtoSchema,
  type GraphProto,
  GraphProtoSchema,
  type ModelProto,
  ModelProtoSchema,
  type NodeProto,
  NodeProtoSchema,
  OperatorSetIdProtoSchema,
  StringStringEntryProtoSchema,
  type TensorProto,
  TensorProto_DataLocation,
  TensorProto_DataType,
  TensorProtoSchema,
  TensorShapeProto_DimensionSchema,
  TensorShapeProtoSchema,
  TypeProto_TensorSchema,
  TypeProtoSchema,
  type ValueInfoProto,
  ValueInfoProtoSchema,
} from 'onnx-buf';
import { InvalidArgumentError, UnprocessableError } from '../errors';
import {
  elementByteSize,
  float16BitsToFloat32,
  float32ToFloat16Bits,
  type NumericOipDatatype,
  type OipDatatype,
  type OipTypedArray,
  type OipTypedArrayMap,
  oipFromOnnx,
  onnxFromOip,
  typedArrayConstructorOf,
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
    // Uint8Array's slice copies (a Buffer's would be a view of its whole, maybe pooled, memory).
    data = new Ctor(Uint8Array.prototype.slice.call(tensor.rawData).buffer);
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

/**
 * Builds a `Cast` node of `input` to the element type `to`.
 * @example
 * makeCast('w_q', 'w_f', TensorProto_DataType.FLOAT, 'w_cast');
 */
export function makeCast(input: string, output: string, to: TensorProto_DataType, name: string): NodeProto {
  return makeNode('Cast', [input], [output], { to: { int: to } }, { name });
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
