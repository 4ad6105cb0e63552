/**
 * ONNX external data: writing a model as a bundle (graph + data files) and resolving a bundle's
 * external data back into memory.
 *
 * ONNX's protobuf limit is 2 GiB per message, so bigger models keep tensor payloads in files next
 * to the graph: the tensor's `data_location` is EXTERNAL and its `external_data` entries name the
 * file (`location`, relative to the graph's folder), `offset` and `length`. This is what onnx's
 * `save_model(..., save_as_external_data=True)` writes (one `model.onnx.data` with payloads aligned
 * to 4096 bytes, or one file per tensor); onnxruntime reads it when a session is created from the
 * graph's path.
 *
 * Reading back goes through a caller-supplied reader so the caller decides how (and whether) files
 * are read — a local folder, a verified registry stream, a ranged GET — and every location and range
 * is checked before the reader is asked: the graph is untrusted input.
 */
import { clearField, create } from '@bufbuild/protobuf';
import {
  type ModelProto,
  StringStringEntryProtoSchema,
  type TensorProto,
  TensorProto_DataLocation,
  TensorProtoSchema,
} from 'onnx-buf';
import { UnprocessableError } from '../errors';
import { encodeModel } from './codec';

/** Default name of the single data file, as onnx's `save_model` names it for `model.onnx`. */
export const DEFAULT_DATA_FILE = 'model.onnx.data';
/** Payload alignment in the single data file: onnx aligns to 4096 (page size) so files can be mmapped. */
export const DEFAULT_ALIGNMENT = 4096;
/** Tensors whose payload is at least this many bytes go external (onnx's `size_threshold` default). */
export const DEFAULT_SIZE_THRESHOLD = 1024;

/** How {@link writeExternalData} lays out payloads. */
export interface ExternalDataOptions {
  /** `'single'`: one data file (default); `'per-tensor'`: one file per tensor. */
  layout?: 'single' | 'per-tensor';
  /** Name of the single data file (default {@link DEFAULT_DATA_FILE}). */
  dataFile?: string;
  /** Tensors with fewer payload bytes stay inline (default {@link DEFAULT_SIZE_THRESHOLD}). */
  sizeThreshold?: number;
  /** Offset alignment in the single data file (default {@link DEFAULT_ALIGNMENT}). */
  alignment?: number;
}

/** A data file of a bundle, as a list of chunks (payload views, padding) to write in order. */
export interface ExternalDataFile {
  name: string;
  size: number;
  chunks: Uint8Array[];
}

/** The result of {@link writeExternalData}: the graph bytes plus the data files it references. */
export interface ExternalDataBundle {
  graph: Uint8Array;
  files: ExternalDataFile[];
}

/** Reads `length` bytes at `offset` of the bundle file `location` (a plain name already checked). */
export type ExternalDataReader = (location: string, offset: number, length: number) => Promise<Uint8Array>;

/** Every tensor holding data in a model: graph initializers and Constant / attribute tensors, subgraphs included. */
function* modelTensors(model: ModelProto): Generator<TensorProto> {
  const graphs = model.graph ? [model.graph] : [];
  while (graphs.length > 0) {
    const g = graphs.pop();
    if (!g) break;
    yield* g.initializer;
    for (const s of g.sparseInitializer) {
      if (s.values) yield s.values;
      if (s.indices) yield s.indices;
    }
    for (const node of g.node) {
      for (const a of node.attribute) {
        if (a.t) yield a.t;
        yield* a.tensors;
        if (a.g) graphs.push(a.g);
        graphs.push(...a.graphs);
      }
    }
  }
}

function sanitizeName(name: string, index: number): string {
  // A tensor name may hold '/', ':' and more (PyTorch names like "/layer.0/MatMul"): keep a plain
  // file name, made unique by its index.
  const clean = name
    .replace(/[^A-Za-z0-9._-]/g, '_')
    .replace(/^\.+/, '_')
    .slice(0, 200);
  return `${clean || 'tensor'}.${index}.bin`;
}

/**
 * Writes a model as a bundle: tensors with at least `sizeThreshold` bytes of `raw_data` move to
 * external data (one aligned data file, or one file per tensor); the rest stays inline. The input
 * model is not modified; the file chunks are views of its payloads (no copy of the weights).
 *
 * @example
 * const { graph, files } = writeExternalData(model, { layout: 'single' });
 * await writeFile('dir/model.onnx', graph);
 * for (const f of files) await writeFile(`dir/${f.name}`, Buffer.concat(f.chunks));
 */
export function writeExternalData(model: ModelProto, options: ExternalDataOptions = {}): ExternalDataBundle {
  const layout = options.layout ?? 'single';
  const dataFile = options.dataFile ?? DEFAULT_DATA_FILE;
  const threshold = options.sizeThreshold ?? DEFAULT_SIZE_THRESHOLD;
  const alignment = options.alignment ?? DEFAULT_ALIGNMENT;
  // The caller's model is left untouched: edits go to a copy that shares only the payload bytes.
  const out = structuredCloneModel(model);
  const single: ExternalDataFile = { name: dataFile, size: 0, chunks: [] };
  const files: ExternalDataFile[] = [];
  let index = 0;
  for (const t of modelTensors(out)) {
    if (t.dataLocation === TensorProto_DataLocation.EXTERNAL) {
      throw new UnprocessableError(
        `tensor "${t.name}": already external; resolve it first (resolveExternalData)`,
      );
    }
    const payload = t.rawData;
    if (payload.byteLength === 0 || payload.byteLength < threshold) continue;
    let location: string;
    let offset = 0;
    if (layout === 'single') {
      const pad = (alignment - (single.size % alignment)) % alignment;
      if (pad > 0) single.chunks.push(new Uint8Array(pad));
      offset = single.size + pad;
      single.chunks.push(payload);
      single.size = offset + payload.byteLength;
      location = dataFile;
    } else {
      location = sanitizeName(t.name, index);
      files.push({ name: location, size: payload.byteLength, chunks: [payload] });
    }
    index++;
    t.dataLocation = TensorProto_DataLocation.EXTERNAL;
    t.externalData = [
      create(StringStringEntryProtoSchema, { key: 'location', value: location }),
      create(StringStringEntryProtoSchema, { key: 'offset', value: String(offset) }),
      create(StringStringEntryProtoSchema, { key: 'length', value: String(payload.byteLength) }),
    ];
    t.rawData = new Uint8Array(0);
  }
  if (single.chunks.length > 0) files.unshift(single);
  return { graph: encodeModel(out), files };
}

/** Deep copy of a model whose bytes fields stay shared views (payloads are never mutated here). */
function structuredCloneModel(model: ModelProto): ModelProto {
  // Collect payloads, clone without them (structuredClone would copy gigabytes), then re-attach.
  const payloads: Uint8Array[] = [];
  const tensors = [...modelTensors(model)];
  for (const t of tensors) {
    payloads.push(t.rawData);
    t.rawData = new Uint8Array(0);
  }
  try {
    const copy = structuredClone(model) as ModelProto;
    const copied = [...modelTensors(copy)];
    copied.forEach((t, i) => {
      t.rawData = payloads[i] as Uint8Array<ArrayBuffer>;
    });
    return copy;
  } finally {
    tensors.forEach((t, i) => {
      t.rawData = payloads[i] as Uint8Array<ArrayBuffer>;
    });
  }
}

/** True when the model has at least one tensor with external data. */
export function hasExternalData(model: ModelProto): boolean {
  for (const t of modelTensors(model)) if (t.dataLocation === TensorProto_DataLocation.EXTERNAL) return true;
  return false;
}

/** Where one external tensor's payload lives, checked. */
export interface ExternalDataRef {
  tensor: TensorProto;
  location: string;
  offset: number;
  length: number;
}

/**
 * A plain file name of a bundle: no separators, `..`, drive letters, NUL or control characters.
 * The registry enforces the same rules on bundle file names (shared/registry/bundle.ts).
 */
function isPlainFileName(name: string): boolean {
  if (name.length === 0 || Buffer.byteLength(name, 'utf8') > 255) return false;
  if (name === '.' || name === '..' || name.includes('..')) return false;
  if (/[/\\]/.test(name) || /^[A-Za-z]:/.test(name)) return false;
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused
  return !/[\u0000-\u001f\u007f]/.test(name);
}

function parseUint(tensor: string, key: string, value: string): number {
  if (!/^\d{1,16}$/.test(value) || !Number.isSafeInteger(Number(value))) {
    throw new UnprocessableError(
      `tensor "${tensor}": external data ${key} "${value}" is not a non-negative integer`,
    );
  }
  return Number(value);
}

/**
 * Lists and checks every external tensor's reference: `location` must be a plain file name of the
 * bundle (`fileSizes`), `offset + length` inside that file; `length` defaults to the rest of the file.
 * Throws {@link UnprocessableError} naming the tensor and the reason.
 *
 * @example
 * const refs = externalDataRefs(model, new Map([['model.onnx.data', 123456]]));
 */
export function externalDataRefs(
  model: ModelProto,
  fileSizes: ReadonlyMap<string, number>,
): ExternalDataRef[] {
  const refs: ExternalDataRef[] = [];
  for (const t of modelTensors(model)) {
    if (t.dataLocation !== TensorProto_DataLocation.EXTERNAL) continue;
    const entries = new Map(t.externalData.map((e) => [e.key, e.value]));
    const location = entries.get('location');
    if (location === undefined)
      throw new UnprocessableError(`tensor "${t.name}": external data has no location`);
    if (!isPlainFileName(location)) {
      throw new UnprocessableError(
        `tensor "${t.name}": external data location "${location}" is not a plain file name of the bundle`,
      );
    }
    const fileSize = fileSizes.get(location);
    if (fileSize === undefined) {
      throw new UnprocessableError(
        `tensor "${t.name}": external data file "${location}" is not in the bundle`,
      );
    }
    const offsetText = entries.get('offset');
    const offset = offsetText === undefined ? 0 : parseUint(t.name, 'offset', offsetText);
    const lengthText = entries.get('length');
    const length = lengthText === undefined ? fileSize - offset : parseUint(t.name, 'length', lengthText);
    if (offset > fileSize || length < 0 || offset + length > fileSize) {
      throw new UnprocessableError(
        `tensor "${t.name}": external data range ${offset}+${length} lies outside "${location}" (${fileSize} bytes)`,
      );
    }
    refs.push({ tensor: t, location, offset, length });
  }
  return refs;
}

/**
 * Resolves external data into memory, in place: each external tensor's `raw_data` is set from its
 * checked file range (read through `read`) and its location becomes DEFAULT. Peak memory is the
 * graph plus all external payloads; reads go one at a time, in file order, so a streaming reader
 * sees increasing offsets.
 *
 * @example
 * const model = decodeModel(await readFile('dir/model.onnx'));
 * await resolveExternalData(model, sizes, (loc, off, len) => readRange(`dir/${loc}`, off, len));
 */
export async function resolveExternalData(
  model: ModelProto,
  fileSizes: ReadonlyMap<string, number>,
  read: ExternalDataReader,
): Promise<void> {
  const refs = externalDataRefs(model, fileSizes);
  refs.sort((a, b) => (a.location === b.location ? a.offset - b.offset : a.location < b.location ? -1 : 1));
  for (const ref of refs) {
    const bytes = await read(ref.location, ref.offset, ref.length);
    if (bytes.byteLength !== ref.length) {
      throw new UnprocessableError(
        `tensor "${ref.tensor.name}": read ${bytes.byteLength} bytes of "${ref.location}", expected ${ref.length}`,
      );
    }
    ref.tensor.rawData = bytes as Uint8Array<ArrayBuffer>;
    // Cleared, not set to DEFAULT: proto2 would write an explicit default, and a resolved model
    // should encode exactly like one that never had external data.
    clearField(ref.tensor, TensorProtoSchema.field.dataLocation);
    ref.tensor.externalData = [];
  }
}
