import { open, readdir, stat } from 'node:fs/promises';
import * as path from 'node:path';
import type { AttributeProto, GraphProto, ModelProto, SparseTensorProto, TensorProto } from 'onnx-buf';
import { decodeStructure, scanModelSource } from '../shared/onnx/structure';
import { bundleFileNameProblem, bundleFileRole, COMPANION_FILES } from '../shared/registry/bundle';

/** One local file of the bundle about to be registered. */
export interface LocalBundleFile {
  /** Name in the bundle (the file's base name). */
  name: string;
  path: string;
  size: number;
}

/** What `maas register NAME <file|folder>` sends: the graph first, then data and companion files. */
export interface LocalBundle {
  files: LocalBundleFile[];
  /** Files of the folder left out (neither referenced by the graph nor an allowlisted companion). */
  ignored: string[];
}

/**
 * The external-data `location`s of every tensor in a model (initializers, sparse
 * initializers, node attributes, subgraphs, functions), each with the first tensor naming it.
 */
export function externalDataLocations(model: ModelProto): Map<string, string> {
  const found = new Map<string, string>();
  const tensor = (t: TensorProto): void => {
    const location = t.externalData.find((e) => e.key === 'location')?.value;
    if (location !== undefined && !found.has(location)) found.set(location, t.name);
  };
  const sparse = (s: SparseTensorProto): void => {
    if (s.values) tensor(s.values);
    if (s.indices) tensor(s.indices);
  };
  const attribute = (a: AttributeProto): void => {
    if (a.t) tensor(a.t);
    a.tensors.forEach(tensor);
    if (a.sparseTensor) sparse(a.sparseTensor);
    a.sparseTensors.forEach(sparse);
    if (a.g) graph(a.g);
    a.graphs.forEach(graph);
  };
  const graph = (g: GraphProto): void => {
    g.initializer.forEach(tensor);
    g.sparseInitializer.forEach(sparse);
    for (const n of g.node) n.attribute.forEach(attribute);
  };
  if (model.graph) graph(model.graph);
  for (const f of model.functions) for (const n of f.node) n.attribute.forEach(attribute);
  for (const t of model.trainingInfo) {
    if (t.initialization) graph(t.initialization);
    if (t.algorithm) graph(t.algorithm);
  }
  return found;
}

/**
 * The graph's structure without its weights (payloads are jumped over): a big single-file model
 * costs the CLI memory for its graph only.
 */
async function readGraphStructure(file: string, size: number): Promise<ModelProto> {
  const handle = await open(file, 'r');
  try {
    const source = {
      size,
      read: async (offset: number, length: number): Promise<Uint8Array> => {
        const buffer = Buffer.alloc(length);
        const { bytesRead } = await handle.read(buffer, 0, length, offset);
        return buffer.subarray(0, bytesRead);
      },
    };
    return decodeStructure((await scanModelSource(source)).skeleton);
  } catch (e) {
    throw new Error(`${file} is not a readable ONNX model: ${(e as Error).message}`);
  } finally {
    await handle.close();
  }
}

/** Regular files (or links to them) of a folder, by name. */
async function filesOf(dir: string): Promise<Map<string, LocalBundleFile>> {
  const out = new Map<string, LocalBundleFile>();
  for (const entry of await readdir(dir)) {
    const p = path.join(dir, entry);
    const s = await stat(p).catch(() => undefined);
    if (s?.isFile()) out.set(entry, { name: entry, path: p, size: s.size });
  }
  return out;
}

/**
 * The files `maas register` sends for `target`: an `.onnx` file plus, from its folder, the
 * external data files its graph references and the allowlisted companion files present
 * (`tokenizer.json`, `config.json`, …); or, for a folder, the same around its one `.onnx` file.
 * A referenced file that is missing, or a location that is not a plain file name, is an error
 * here, before anything is uploaded. The graph's structure is only read (weights skipped) when
 * its folder holds files that could be its data.
 *
 * @example
 * ```ts
 * const { files } = await localBundle('./export/model.onnx');
 * // [{ name: 'model.onnx', … }, { name: 'model.onnx.data', … }, { name: 'tokenizer.json', … }]
 * ```
 */
export async function localBundle(target: string): Promise<LocalBundle> {
  const s = await stat(target);
  let dir: string;
  let graphName: string;
  if (s.isDirectory()) {
    dir = target;
    const graphs = [...(await filesOf(dir)).keys()].filter((n) => bundleFileRole(n) === 'graph');
    if (graphs.length !== 1)
      throw new Error(
        `${target} holds ${graphs.length} .onnx files${graphs.length ? ` (${graphs.join(', ')})` : ''}: a bundle has exactly one; name it, e.g. ${path.join(target, graphs[0] ?? 'model.onnx')}`,
      );
    graphName = graphs[0]!;
  } else {
    dir = path.dirname(target);
    graphName = path.basename(target);
  }
  const all = await filesOf(dir);
  const graph = all.get(graphName) ?? { name: graphName, path: target, size: s.size };
  all.delete(graphName);
  const companions = [...all.values()].filter((f) => COMPANION_FILES.includes(f.name));
  const others = [...all.values()].filter((f) => !COMPANION_FILES.includes(f.name));
  const data: LocalBundleFile[] = [];
  if (others.length > 0 && bundleFileRole(graphName) === 'graph') {
    const locations = externalDataLocations(await readGraphStructure(graph.path, graph.size));
    for (const [location, tensorName] of [...locations].sort(([a], [b]) => (a < b ? -1 : 1))) {
      const problem = bundleFileNameProblem(location);
      if (problem)
        throw new Error(
          `tensor "${tensorName}": external data location ${JSON.stringify(location)} ${problem}`,
        );
      const file = all.get(location);
      if (!file)
        throw new Error(
          `tensor "${tensorName}": external data file ${JSON.stringify(location)} not found next to ${graph.path}`,
        );
      data.push(file);
    }
  }
  const sent = new Set([graphName, ...data.map((f) => f.name), ...companions.map((f) => f.name)]);
  return {
    files: [graph, ...data, ...companions],
    ignored: [...all.keys()].filter((n) => !sent.has(n)).sort(),
  };
}
