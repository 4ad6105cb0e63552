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
import { decodeModel } from './codec';
import { type OipDatatype, oipFromOnnx } from './datatypes';

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
}

/** Options of {@link inspectModel}. */
export interface InspectOptions {
  /** Reject larger inputs with PayloadTooLargeError. Default {@link DEFAULT_MAX_MODEL_BYTES}. */
  maxBytes?: number;
}

/**
 * Protobuf caps a message at 2 GiB; larger ONNX models must use external data, which maas refuses,
 * so nothing above this can be a servable model.
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
  model.functions.forEach((f) => nodes(f.node, `function "${f.name}"`));
  model.trainingInfo.forEach((t, i) => {
    if (t.initialization) graph(t.initialization, `training_info[${i}].initialization`);
    if (t.algorithm) graph(t.algorithm, `training_info[${i}].algorithm`);
  });
}

function rejectExternalData(tensor: TensorProto, where: string): void {
  if (tensor.dataLocation !== TensorProto_DataLocation.EXTERNAL && tensor.externalData.length === 0) return;
  const location = tensor.externalData.find((e) => e.key === 'location')?.value;
  // Never follow these references: onnxruntime would open `location` relative to the model's
  // directory, and a crafted path ('../../etc/passwd') would read arbitrary files on the host.
  throw new UnprocessableError(
    `tensor "${tensor.name}" (${where}) uses external data` +
      (location !== undefined ? ` stored in file "${location}"` : '') +
      '; external data is not supported (it references files outside the model, a path traversal risk): ' +
      'upload a self-contained .onnx file with all weights embedded',
    { tensor: tensor.name, location: location ?? null, where },
  );
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
 * inputs/outputs or element types OIP cannot carry, or stores any tensor as external data.
 *
 * @example
 * const info = inspectModel(bytes, { maxBytes: 250 * 1024 * 1024 });
 * console.log(info.inputs); // [{ name: 'input', datatype: 'FP32', shape: [-1, 16] }]
 */
export function inspectModel(bytes: Uint8Array, options: InspectOptions = {}): OnnxModelInfo {
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_MODEL_BYTES;
  if (bytes.byteLength > maxBytes) {
    throw new PayloadTooLargeError(`model is ${bytes.byteLength} bytes, above the ${maxBytes}-byte limit`, {
      size: bytes.byteLength,
      maxBytes,
    });
  }
  const model = decodeModel(bytes);
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
  walkModel(model, rejectExternalData, (node) => {
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
  const parameterCount =
    graph.initializer.reduce((sum, t) => sum + elements(t.dims), 0) +
    graph.sparseInitializer.reduce((sum, s) => sum + elements(s.dims), 0);

  return {
    irVersion: Number(model.irVersion),
    opsets: model.opsetImport.map((o) => ({ domain: o.domain, version: Number(o.version) })),
    producerName: model.producerName,
    producerVersion: model.producerVersion,
    opTypes: [...opTypes].sort(),
    inputs,
    outputs,
    initializerCount: graph.initializer.length + graph.sparseInitializer.length,
    parameterCount,
  };
}
