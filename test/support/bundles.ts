/**
 * Small generated model bundles for tests: a real MLP (onnxruntime can run it, `mlpReference`
 * computes what it must answer) whose initializers are moved out into external data files, the
 * way `onnx.save_model(..., save_as_external_data=True)` lays them out: one shared data file,
 * or one file per tensor.
 */
import { clone, create } from '@bufbuild/protobuf';
import {
  type ModelProto,
  ModelProtoSchema,
  StringStringEntryProtoSchema,
  type TensorProto,
  TensorProto_DataLocation,
} from 'onnx-buf';
import { type BuiltMlp, buildMlp, type MlpOptions } from '../../dev/onnx-builder';
import { encodeModel } from '../../shared/onnx/codec';
import { writeExternalData } from '../../shared/onnx/external-data';
import { ModelRegistry, type ModelVersion } from '../../shared/registry';
import type { ObjectStore } from '../../shared/store';

export interface BundleFileBytes {
  name: string;
  bytes: Uint8Array;
}

export interface BuiltBundle {
  /** Graph first, then the data files (in the order they were written). */
  files: BundleFileBytes[];
  graphName: string;
  /** The MLP the bundle holds (weights, for `mlpReference`). */
  mlp: BuiltMlp;
  /** The graph's ModelProto (payloads moved out), to craft malicious variants. */
  model: ModelProto;
}

export interface BundleOptions {
  /** `single`: every tensor in one `<graph>.data` file; `per-tensor`: one file per tensor. */
  layout?: 'single' | 'per-tensor';
  graphName?: string;
  /** Bytes between tensors in the shared file (onnx aligns offsets; 0 packs them). */
  align?: number;
  mlp?: Partial<MlpOptions>;
}

/** Points a tensor at `location` [offset, offset + length) and drops its inline bytes. */
export function setExternal(tensor: TensorProto, location: string, offset: number, length: number): void {
  tensor.rawData = new Uint8Array();
  tensor.dataLocation = TensorProto_DataLocation.EXTERNAL;
  tensor.externalData = [
    create(StringStringEntryProtoSchema, { key: 'location', value: location }),
    create(StringStringEntryProtoSchema, { key: 'offset', value: String(offset) }),
    create(StringStringEntryProtoSchema, { key: 'length', value: String(length) }),
  ];
}

/**
 * Builds an MLP bundle.
 *
 * @example
 * const bundle = buildBundle({ layout: 'per-tensor' });
 * await registry.registerBundle('mlp', bundle.files.map((f) => ({ name: f.name, body: f.bytes })));
 */
export function buildBundle(options: BundleOptions = {}): BuiltBundle {
  const graphName = options.graphName ?? 'model.onnx';
  const mlp = buildMlp({ inputSize: 8, hiddenSizes: [16], outputSize: 3, seed: 7, ...options.mlp });
  const model = clone(ModelProtoSchema, mlp.model);
  const data: BundleFileBytes[] = [];
  const initializers = model.graph?.initializer ?? [];
  if ((options.layout ?? 'single') === 'single') {
    const name = `${graphName}.data`;
    const parts: Uint8Array[] = [];
    let offset = 0;
    for (const t of initializers) {
      const pad = options.align && offset % options.align ? options.align - (offset % options.align) : 0;
      if (pad) parts.push(new Uint8Array(pad));
      offset += pad;
      const raw = t.rawData;
      parts.push(raw.slice());
      setExternal(t, name, offset, raw.byteLength);
      offset += raw.byteLength;
    }
    data.push({ name, bytes: Buffer.concat(parts) });
  } else {
    for (const t of initializers) {
      const name = t.name.replace(/[^A-Za-z0-9_]/g, '_');
      data.push({ name, bytes: t.rawData.slice() });
      setExternal(t, name, 0, t.rawData.byteLength);
    }
  }
  return { files: [{ name: graphName, bytes: encodeModel(model) }, ...data], graphName, mlp, model };
}

/** The graph of `bundle` re-encoded after `edit` changed a copy of its ModelProto. */
export function editedGraph(bundle: BuiltBundle, edit: (model: ModelProto) => void): Uint8Array {
  const model = clone(ModelProtoSchema, bundle.model);
  edit(model);
  return encodeModel(model);
}

/** Just the files of a bundle (what {@link toBundle} returns). */
export type BundleFiles = Pick<BuiltBundle, 'files'>;

/**
 * `model` as a bundle, every initializer external (shared/onnx/external-data.ts, what optimize
 * writes too): `layout: 'single'` puts them all in `<graph>.data` (4096-aligned offsets, as onnx
 * does for mmap), `'per-tensor'` one file per initializer. `model` itself is left unchanged.
 * @example
 * const bundle = toBundle(buildMlp({ inputSize: 4, hiddenSizes: [8], outputSize: 2, seed: 1 }).model, 'single');
 */
export function toBundle(
  model: ModelProto,
  layout: 'single' | 'per-tensor',
  graphName = 'model.onnx',
): BundleFiles {
  const { graph, files } = writeExternalData(model, {
    layout,
    dataFile: `${graphName}.data`,
    sizeThreshold: 1,
  });
  return {
    files: [
      { name: graphName, bytes: graph },
      ...files.map((f) => ({ name: f.name, bytes: Buffer.concat(f.chunks) })),
    ],
  };
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
  bundle: BundleFiles,
): Promise<ModelVersion> {
  const { version } = await new ModelRegistry(store).registerBundle(
    name,
    bundle.files.map((f) => ({ name: f.name, body: f.bytes })),
  );
  return version;
}
