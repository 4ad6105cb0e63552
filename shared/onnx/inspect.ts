/**
 * Validation and signature extraction for uploaded ONNX models.
 *
 * {@link inspectModel} is the gate every model passes before it is stored or served: it rejects what
 * onnxruntime could not load or what maas cannot serve over the Open Inference Protocol, and returns
 * the metadata (signature, opsets, operators, size) the registry records.
 */
import {
  type AttributeProto,
  type GraphProto,
  type ModelProto,
  type NodeProto,
  type SparseTensorProto,
  type TensorProto,
  TensorProto_DataLocation,
  TensorProto_DataType,
  type ValueInfoProto,
} from 'onnx-buf';
import { PayloadTooLargeError, UnprocessableError } from '../errors';
import { bundleFileNameProblem } from '../registry/bundle';
import { decodeModel } from './codec';
import { type OipDatatype, oipFromOnnx } from './datatypes';
import {
  type ModelStructure,
  type RandomAccessSource,
  type StructureOptions,
  scanModelBytes,
  scanModelSource,
  skippedPayloadBytes,
} from './structure';

/** One input or output of a model's signature. */
export interface TensorSpec {
  name: string;
  datatype: OipDatatype;
  /** Dimensions; -1 for dynamic/symbolic ones. Empty for scalars (and for unknown rank, see `unknownRank`). */
  shape: number[];
  /**
   * True when the model records no shape at all for this tensor (any rank is accepted); `shape` is
   * then `[]` and must not be read as "scalar". Absent otherwise.
   */
  unknownRank?: true;
}

/** What {@link inspectModel} learns about a model. */
export interface OnnxModelInfo {
  irVersion: number;
  opsets: { domain: string; version: number }[];
  producerName: string;
  producerVersion: string;
  /** Sorted unique operator types, including subgraphs and model-local functions; 'domain:Op' outside the default domain. */
  opTypes: string[];
  /** Graph inputs that are not initializers (i.e. what a caller must feed); may be empty. */
  inputs: TensorSpec[];
  outputs: TensorSpec[];
  /** Main-graph initializers, dense and sparse. */
  initializerCount: number;
  /** Total elements of main-graph initializers (dense size of sparse ones); Constant nodes are not counted. */
  parameterCount: number;
  /**
   * Bytes of every tensor payload the model holds, inline (`raw_data`, typed data) or in external
   * data files: initializers of all graphs and subgraphs, sparse tensors and tensor attributes
   * (Constant values). What a session has to load; absent in manifests older than bundles.
   */
  initializerBytes?: number;
  /**
   * Bytes main-graph initializers grow by when onnxruntime folds a constant `Cast` of them to a
   * wider type at load: int8 weights stored as Cast→Mul (int8-static's weights-only nodes) become
   * float32 in memory, 3 more bytes per element. Absent or 0 when there is none.
   */
  castWideningBytes?: number;
  /**
   * Nodes a session is built from: the main graph's and its subgraphs' (If, Loop, Scan bodies),
   * with a model-local function's body counted at each call, as onnxruntime inlines it (training
   * graphs are not loaded). What a session holds beside the tensors grows with it (kernels, graph
   * structures; ~2.8 KiB a node, measured). Absent in manifests written before it was recorded.
   */
  nodeCount?: number;
}

/** Options of {@link inspectModel}. */
export interface InspectOptions extends StructureOptions {
  /** Reject larger graph files with PayloadTooLargeError. Default {@link DEFAULT_MAX_MODEL_BYTES}. */
  maxBytes?: number;
  /**
   * The other files of the bundle this graph belongs to (name → size in bytes). Absent: a
   * single-file model, where any external data is refused. Present: every external-data
   * reference must name one of these files and lie inside it.
   */
  bundleFiles?: ReadonlyMap<string, number>;
}

/** What {@link inspectModelStructure} learns: the model facts and the files its tensors reference. */
export interface ModelInspection {
  info: OnnxModelInfo;
  /** Bundle files named by external-data `location`s (empty for a self-contained model). */
  referencedFiles: Set<string>;
}

/**
 * Protobuf caps a message at 2 GiB, so no single .onnx file (a bundle's graph included) can be
 * larger; bigger models keep their weights in external data files (a bundle).
 */
export const DEFAULT_MAX_MODEL_BYTES = 2 ** 31 - 1;

/** Default-domain aliases: nodes may name the default ONNX domain either way. */
const isDefaultDomain = (domain: string): boolean => domain === '' || domain === 'ai.onnx';

/** Where a tensor sits in the model, for error messages. */
type Visit = (tensor: TensorProto, where: string) => void;

/**
 * Calls `visit` for every tensor stored in the model: initializers, sparse initializers, node
 * attributes (Constant values and any other tensor attribute), recursively through subgraphs (If,
 * Loop, Scan bodies), model-local functions and training-info graphs. Calls `onNode` for every node.
 */
function walkModel(model: ModelProto, visit: Visit, onNode: (node: NodeProto) => void): void {
  const sparse = (s: SparseTensorProto, where: string): void => {
    if (s.values) visit(s.values, `${where} (sparse values)`);
    if (s.indices) visit(s.indices, `${where} (sparse indices)`);
  };
  const attribute = (a: AttributeProto, where: string): void => {
    const at = `${where} attribute "${a.name}"`;
    if (a.t) visit(a.t, at);
    a.tensors.forEach((t) => visit(t, at));
    if (a.sparseTensor) sparse(a.sparseTensor, at);
    a.sparseTensors.forEach((s) => sparse(s, at));
    if (a.g) graph(a.g, `${at} subgraph`);
    a.graphs.forEach((g) => graph(g, `${at} subgraph`));
  };
  const nodes = (list: readonly NodeProto[], where: string): void => {
    for (const n of list) {
      onNode(n);
      const label = `${where} node "${n.name || n.opType}" (${n.opType})`;
      n.attribute.forEach((a) => attribute(a, label));
    }
  };
  const graph = (g: GraphProto, where: string): void => {
    g.initializer.forEach((t) => visit(t, `${where} initializer`));
    g.sparseInitializer.forEach((s) => sparse(s, `${where} sparse initializer`));
    nodes(g.node, where);
  };
  if (model.graph) graph(model.graph, 'graph');
  model.functions.forEach((f) => {
    nodes(f.node, `function "${f.name}"`);
    f.attributeProto.forEach((a) => attribute(a, `function "${f.name}" default`));
  });
  model.trainingInfo.forEach((t, i) => {
    if (t.initialization) graph(t.initialization, `training_info[${i}].initialization`);
    if (t.algorithm) graph(t.algorithm, `training_info[${i}].algorithm`);
  });
}

/** See {@link OnnxModelInfo.nodeCount}. */
function inferenceNodeCount(model: ModelProto): number {
  const key = (domain: string, name: string): string => `${isDefaultDomain(domain) ? '' : domain}:${name}`;
  const functions = new Map(model.functions.map((f) => [key(f.domain, f.name), f]));
  const inlined = new Map<string, number>();
  const count = (nodes: readonly NodeProto[], calling: ReadonlySet<string>): number => {
    let n = 0;
    for (const node of nodes) {
      n++;
      for (const a of node.attribute) {
        if (a.g) n += count(a.g.node, calling);
        for (const g of a.graphs) n += count(g.node, calling);
      }
      const called = key(node.domain, node.opType);
      const f = functions.get(called);
      // A function calling itself is invalid ONNX; counted once rather than looping.
      if (f && !calling.has(called)) {
        let body = inlined.get(called);
        if (body === undefined) {
          body = count(f.node, new Set([...calling, called]));
          inlined.set(called, body);
        }
        n += body;
      }
    }
    return n;
  };
  return model.graph ? count(model.graph.node, new Set()) : 0;
}

/** See {@link OnnxModelInfo.castWideningBytes}. */
function castWidening(graph: GraphProto, elements: (dims: readonly bigint[]) => number): number {
  const initializers = new Map(graph.initializer.map((t) => [t.name, t]));
  let bytes = 0;
  for (const node of graph.node) {
    if (node.opType !== 'Cast' || !isDefaultDomain(node.domain)) continue;
    const source = initializers.get(node.input[0] ?? '');
    const to = node.attribute.find((a) => a.name === 'to')?.i;
    if (!source || to === undefined) continue;
    const [from, wide] = [ELEMENT_BYTES[source.dataType], ELEMENT_BYTES[Number(to)]];
    if (from !== undefined && wide !== undefined && wide > from)
      bytes += elements(source.dims) * (wide - from);
  }
  return bytes;
}

const usesExternalData = (tensor: TensorProto): boolean =>
  tensor.dataLocation === TensorProto_DataLocation.EXTERNAL || tensor.externalData.length > 0;

function rejectExternalData(tensor: TensorProto, where: string): void {
  if (!usesExternalData(tensor)) return;
  const location = tensor.externalData.find((e) => e.key === 'location')?.value;
  // Never follow these references: onnxruntime would open `location` relative to the model's
  // directory, and a crafted path ('../../etc/passwd') would read arbitrary files on the host.
  throw new UnprocessableError(
    `tensor "${tensor.name}" (${where}) uses external data` +
      (location !== undefined ? ` stored in file "${location}"` : '') +
      '; a single .onnx file must embed all its weights (external data references files outside it): ' +
      'register the model as a bundle with its data files, or save it self-contained',
    { tensor: tensor.name, location: location ?? null, where },
  );
}

/** Bytes per element of fixed-size ONNX types (4-bit types: half a byte); undefined for strings. */
const ELEMENT_BYTES: Partial<Record<number, number>> = {
  [TensorProto_DataType.FLOAT]: 4,
  [TensorProto_DataType.UINT8]: 1,
  [TensorProto_DataType.INT8]: 1,
  [TensorProto_DataType.UINT16]: 2,
  [TensorProto_DataType.INT16]: 2,
  [TensorProto_DataType.INT32]: 4,
  [TensorProto_DataType.INT64]: 8,
  [TensorProto_DataType.BOOL]: 1,
  [TensorProto_DataType.FLOAT16]: 2,
  [TensorProto_DataType.DOUBLE]: 8,
  [TensorProto_DataType.UINT32]: 4,
  [TensorProto_DataType.UINT64]: 8,
  [TensorProto_DataType.COMPLEX64]: 8,
  [TensorProto_DataType.COMPLEX128]: 16,
  [TensorProto_DataType.BFLOAT16]: 2,
  [TensorProto_DataType.FLOAT8E4M3FN]: 1,
  [TensorProto_DataType.FLOAT8E4M3FNUZ]: 1,
  [TensorProto_DataType.FLOAT8E5M2]: 1,
  [TensorProto_DataType.FLOAT8E5M2FNUZ]: 1,
  [TensorProto_DataType.UINT4]: 0.5,
  [TensorProto_DataType.INT4]: 0.5,
  [TensorProto_DataType.FLOAT4E2M1]: 0.5,
};

/** The exact byte size of a fixed-size tensor's data, or undefined (strings, unknown types, bad dims). */
function tensorDataBytes(tensor: TensorProto): number | undefined {
  const size = ELEMENT_BYTES[tensor.dataType];
  if (size === undefined) return undefined;
  let elements = 1;
  for (const d of tensor.dims) {
    if (d < 0n) return undefined;
    elements *= Number(d);
  }
  const bytes = Math.ceil(elements * size);
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}

const EXTERNAL_KEYS = new Set(['location', 'offset', 'length', 'checksum']);

/**
 * Checks one external-data reference against the bundle's files and returns the bytes it
 * covers. Every refusal names the tensor and the reason (422): the reference must be
 * well-formed, name a plain file of the bundle, and lie inside that file.
 */
function checkExternalData(
  tensor: TensorProto,
  where: string,
  files: ReadonlyMap<string, number>,
  referenced: Set<string>,
): number {
  const refuse = (reason: string, details: Record<string, unknown> = {}): never => {
    throw new UnprocessableError(`tensor "${tensor.name}" (${where}): ${reason}`, {
      tensor: tensor.name,
      where,
      ...details,
    });
  };
  if (tensor.dataLocation !== TensorProto_DataLocation.EXTERNAL)
    refuse('has external_data entries but its data_location is not EXTERNAL');
  const entries = new Map<string, string>();
  for (const { key, value } of tensor.externalData) {
    if (!EXTERNAL_KEYS.has(key)) refuse(`unknown external data key ${JSON.stringify(key)}`);
    if (entries.has(key)) refuse(`external data key "${key}" appears twice`);
    entries.set(key, value);
  }
  const location = entries.get('location');
  if (location === undefined) return refuse('external data has no location');
  const problem = bundleFileNameProblem(location);
  if (problem !== undefined)
    refuse(
      `external data location ${JSON.stringify(location)} is not a plain file name of the bundle (it ${problem})`,
      {
        location,
      },
    );
  const fileSize = files.get(location);
  if (fileSize === undefined)
    refuse(`external data location ${JSON.stringify(location)} is not a file of the bundle`, { location });
  const integer = (key: 'offset' | 'length'): number | undefined => {
    const text = entries.get(key);
    if (text === undefined) return undefined;
    const n = /^[0-9]{1,16}$/.test(text) ? Number(text) : Number.NaN;
    if (!Number.isSafeInteger(n))
      refuse(`external data ${key} ${JSON.stringify(text)} is not a non-negative integer`);
    return n;
  };
  const offset = integer('offset') ?? 0;
  const expected = tensorDataBytes(tensor);
  if (expected === undefined)
    refuse(`external data needs a fixed-size element type, not ${dataTypeName(tensor.dataType)}`);
  const length = integer('length') ?? (expected as number);
  if (length !== expected)
    refuse(`external data length ${length} does not match the tensor's ${expected} bytes`, {
      length,
      expected,
    });
  if (offset + length > (fileSize as number))
    refuse(
      `external data [${offset}, ${offset + length}) lies outside "${location}" (${fileSize as number} bytes)`,
      { location, offset, length, fileSize },
    );
  referenced.add(location);
  return length;
}

function dataTypeName(dataType: number): string {
  return TensorProto_DataType[dataType] ?? `data type ${dataType}`;
}

function tensorSpec(v: ValueInfoProto, role: 'input' | 'output'): TensorSpec {
  const type = v.type?.value;
  if (type?.case !== 'tensorType') {
    const kind = type?.case?.replace(/Type$/, '') ?? 'missing';
    throw new UnprocessableError(
      `model ${role} "${v.name}" has type ${kind}; only tensor ${role}s are supported by the Open Inference Protocol`,
      { [role]: v.name },
    );
  }
  const datatype = oipFromOnnx(type.value.elemType);
  if (datatype === undefined) {
    throw new UnprocessableError(
      `model ${role} "${v.name}" has element type ${dataTypeName(type.value.elemType)}, which has no Open Inference Protocol datatype`,
      { [role]: v.name },
    );
  }
  const shape = type.value.shape;
  if (shape === undefined) return { name: v.name, datatype, shape: [], unknownRank: true };
  return {
    name: v.name,
    datatype,
    shape: shape.dim.map((d) =>
      d.value.case === 'dimValue' && d.value.value >= 0n ? Number(d.value.value) : -1,
    ),
  };
}

/**
 * Validates an ONNX model and extracts its metadata.
 *
 * Throws PayloadTooLargeError above `maxBytes`, and UnprocessableError (with a message meant for
 * the uploader) when the bytes are not ONNX or truncated, the model has no graph, IR version or
 * opset, uses an operator domain it does not import, has no outputs, has non-tensor
 * inputs/outputs or element types OIP cannot carry, or stores any tensor as external data
 * (unless `bundleFiles` lists the files it may reference; see {@link inspectModelStructure}).
 * Tensor payloads are skipped, not decoded (shared/onnx/structure.ts).
 *
 * @example
 * const info = inspectModel(bytes, { maxBytes: 250 * 1024 * 1024 });
 * console.log(info.inputs); // [{ name: 'input', datatype: 'FP32', shape: [-1, 16] }]
 */
export function inspectModel(bytes: Uint8Array, options: InspectOptions = {}): OnnxModelInfo {
  checkSize(bytes.byteLength, options);
  return inspectModelStructure(scanModelBytes(bytes, options), options).info;
}

/**
 * {@link inspectModel} on a random-access source (a file, an object read with ranged GETs):
 * reads the structure and jumps over payloads, so memory follows the graph, not the weights.
 *
 * @example
 * const info = await inspectModelSource({ size, read: (o, n) => readRange(o, n) });
 */
export async function inspectModelSource(
  source: RandomAccessSource,
  options: InspectOptions & { windowBytes?: number } = {},
): Promise<OnnxModelInfo> {
  checkSize(source.size, options);
  return inspectModelStructure(await scanModelSource(source, options), options).info;
}

function checkSize(size: number, options: InspectOptions): void {
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_MODEL_BYTES;
  if (size > maxBytes) {
    throw new PayloadTooLargeError(`model is ${size} bytes, above the ${maxBytes}-byte limit`, {
      size,
      maxBytes,
    });
  }
}

/**
 * The checks of {@link inspectModel} on a scanned structure (registration scans while it
 * streams). With `bundleFiles`, external data is validated against them (location a plain file
 * name of the bundle that exists, offset and length inside it, length equal to the tensor's
 * size) and the files referenced are returned; without, any external data is refused.
 *
 * @example
 * const scanner = new StructureScanner();
 * for await (const chunk of body) scanner.write(chunk);
 * const { info, referencedFiles } = inspectModelStructure(scanner.end(), { bundleFiles });
 */
export function inspectModelStructure(
  structure: ModelStructure,
  options: InspectOptions = {},
): ModelInspection {
  checkSize(structure.size, options);
  const model = decodeModel(structure.skeleton);
  const graph = model.graph as GraphProto; // decodeModel guarantees a graph
  // onnxruntime refuses models without these; checking here also catches files truncated right
  // after the graph (protobuf cannot tell a missing trailing field from a cut-off one).
  if (model.irVersion <= 0n) throw new UnprocessableError('not a valid ONNX model: ir_version is missing');
  if (model.opsetImport.length === 0) {
    throw new UnprocessableError(
      'not a valid ONNX model: it imports no operator set (opset_import is empty)',
    );
  }
  const imported = new Set(model.opsetImport.map((o) => (isDefaultDomain(o.domain) ? '' : o.domain)));
  // Model-local functions define their own domain and may import opsets the model does not.
  for (const f of model.functions) {
    imported.add(f.domain);
    f.opsetImport.forEach((o) => imported.add(isDefaultDomain(o.domain) ? '' : o.domain));
  }

  const opTypes = new Set<string>();
  const referencedFiles = new Set<string>();
  const files = options.bundleFiles;
  let initializerBytes = 0;
  const visit = (tensor: TensorProto, where: string): void => {
    if (!usesExternalData(tensor)) {
      initializerBytes += skippedPayloadBytes(tensor);
      return;
    }
    if (files === undefined) rejectExternalData(tensor, where);
    else initializerBytes += checkExternalData(tensor, where, files, referencedFiles);
  };
  walkModel(model, visit, (node) => {
    const domain = isDefaultDomain(node.domain) ? '' : node.domain;
    const op = domain === '' ? node.opType : `${domain}:${node.opType}`;
    if (!imported.has(domain)) {
      throw new UnprocessableError(
        `model uses operator ${op} but does not import an opset for domain "${domain || 'ai.onnx'}"`,
        { opType: op },
      );
    }
    opTypes.add(op);
  });

  const initializerNames = new Set([
    ...graph.initializer.map((t) => t.name),
    ...graph.sparseInitializer.map((s) => s.values?.name ?? ''),
  ]);
  const inputs = graph.input.filter((v) => !initializerNames.has(v.name)).map((v) => tensorSpec(v, 'input'));
  const outputs = graph.output.map((v) => tensorSpec(v, 'output'));
  // No inputs is fine (a constant generator, or every graph input has an initializer default):
  // such a model is served with `inputs: []`. Without outputs there is nothing to serve.
  if (outputs.length === 0) throw new UnprocessableError('model has no outputs');

  const elements = (dims: readonly bigint[]): number => dims.reduce((a, d) => a * Number(d), 1);
  const castWideningBytes = castWidening(graph, elements);
  const parameterCount =
    graph.initializer.reduce((sum, t) => sum + elements(t.dims), 0) +
    graph.sparseInitializer.reduce((sum, s) => sum + elements(s.dims), 0);

  const info: OnnxModelInfo = {
    irVersion: Number(model.irVersion),
    opsets: model.opsetImport.map((o) => ({ domain: o.domain, version: Number(o.version) })),
    producerName: model.producerName,
    producerVersion: model.producerVersion,
    opTypes: [...opTypes].sort(),
    inputs,
    outputs,
    initializerCount: graph.initializer.length + graph.sparseInitializer.length,
    parameterCount,
    initializerBytes,
    ...(castWideningBytes > 0 ? { castWideningBytes } : {}),
    nodeCount: inferenceNodeCount(model),
  };
  return { info, referencedFiles };
}
