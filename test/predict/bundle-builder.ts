/**
 * Test bundles: a generated ONNX model rewritten with its initializers as external data, the way
 * onnx's `save_model(..., save_as_external_data=True)` writes them (one data file for all tensors,
 * or one file per tensor), so predict and download tests can run on real bundles.
 */
import { create } from '@bufbuild/protobuf';
import {
  type ModelProto,
  StringStringEntryProtoSchema,
  type TensorProto,
  TensorProto_DataLocation,
} from 'onnx-buf';
import { encodeModel } from '../../shared/onnx/codec';
import { readTensor } from '../../shared/onnx/construct';
import { ModelRegistry, type ModelVersion } from '../../shared/registry';
import type { ObjectStore } from '../../shared/store';

export interface BundleFileBytes {
  name: string;
  bytes: Uint8Array;
}

/** The graph (first) and the data files of a model turned into a bundle. */
export interface BuiltBundle {
  files: BundleFileBytes[];
}

/** Little-endian bytes of one tensor's elements (what `raw_data` would hold). */
function tensorBytes(tensor: TensorProto): Uint8Array {
  if (tensor.rawData.length > 0) return tensor.rawData;
  const { data } = readTensor(tensor);
  const view = data as unknown as ArrayBufferView;
  return new Uint8Array(view.buffer.slice(view.byteOffset, view.byteOffset + view.byteLength));
}

function externalize(tensor: TensorProto, location: string, offset: number, length: number): void {
  tensor.rawData = new Uint8Array();
  tensor.floatData = [];
  tensor.dataLocation = TensorProto_DataLocation.EXTERNAL;
  tensor.externalData = [
    create(StringStringEntryProtoSchema, { key: 'location', value: location }),
    create(StringStringEntryProtoSchema, { key: 'offset', value: String(offset) }),
    create(StringStringEntryProtoSchema, { key: 'length', value: String(length) }),
  ];
}

/**
 * Rewrites `model` (mutated: pass a fresh one) as a bundle: `layout: 'single'` puts every
 * initializer in `model.onnx.data` (4096-aligned offsets, as onnx does for mmap), `'per-tensor'`
 * one file per initializer named after it.
 * @example
 * const bundle = toBundle(buildMlp({ inputSize: 4, hiddenSizes: [8], outputSize: 2, seed: 1 }).model, 'single');
 */
export function toBundle(
  model: ModelProto,
  layout: 'single' | 'per-tensor',
  graphName = 'model.onnx',
): BuiltBundle {
  const graph = model.graph;
  if (!graph) throw new Error('model has no graph');
  const data: BundleFileBytes[] = [];
  if (layout === 'single') {
    const parts: Uint8Array[] = [];
    let size = 0;
    for (const tensor of graph.initializer) {
      const bytes = tensorBytes(tensor);
      const offset = Math.ceil(size / 4096) * 4096;
      if (offset > size) parts.push(new Uint8Array(offset - size));
      parts.push(bytes);
      size = offset + bytes.length;
      externalize(tensor, `${graphName}.data`, offset, bytes.length);
    }
    data.push({ name: `${graphName}.data`, bytes: Buffer.concat(parts) });
  } else {
    for (const tensor of graph.initializer) {
      const bytes = tensorBytes(tensor);
      externalize(tensor, tensor.name, 0, bytes.length);
      data.push({ name: tensor.name, bytes });
    }
  }
  return { files: [{ name: graphName, bytes: encodeModel(model) }, ...data] };
}

/**
 * Registers a bundle through the registry (`ModelRegistry.registerBundle`: hashed while it
 * streams, external data validated, manifest with `initializerBytes`) and returns its version.
 * @example
 * const version = await storeTestBundle(store, 'big', toBundle(mlp.model, 'single'));
 */
export async function storeTestBundle(
  store: ObjectStore,
  name: string,
  bundle: BuiltBundle,
): Promise<ModelVersion> {
  const { version } = await new ModelRegistry(store).registerBundle(
    name,
    bundle.files.map((f) => ({ name: f.name, body: f.bytes })),
  );
  return version;
}
