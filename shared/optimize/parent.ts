/**
 * The parent of an optimization, read once with every byte verified: a single-file version as its
 * bytes; a bundle laid out in a private folder on local disk (graph and data files, each streamed
 * through its sha256 check), which onnxruntime loads by path, so a parent over protobuf's 2 GiB
 * works and its data never sits in memory twice.
 *
 * Memory: a single-file parent of P bytes is held (P); a bundle costs P of disk instead. Each
 * candidate build decodes a private copy with every tensor inline (P), freed after the build.
 */

import { createWriteStream } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { decodeModel, type ModelProto } from '../onnx/codec';
import { resolveExternalData } from '../onnx/external-data';
import { type BundleFile, isBundle, type ModelRegistry, type ModelVersion, versionFiles } from '../registry';
import type { ModelArtifact, ModelFolder } from './artifacts';

/** A parent as optimize uses it. */
export interface ParentModel {
  /** What sessions load (and sizes are measured on). */
  artifact: ModelArtifact;
  /** A private decoded copy with every tensor inline, for one candidate build to change at will. */
  decode(): Promise<ModelProto>;
  /** Deletes the folder of a bundle parent. */
  dispose(): Promise<void>;
}

// Files of a per-tensor bundle downloaded at once: enough to keep a fast link busy.
const DOWNLOAD_CONCURRENCY = 4;
const READ_STEP_BYTES = 256 * 1024 * 1024;

/**
 * Reads a version for optimize: verified bytes, or a verified folder for a bundle.
 *
 * @example
 * const parent = await openParentModel(registry, await registry.getVersion('llm', 3));
 * try {
 *   const session = await ort.InferenceSession.create(sessionSource(parent.artifact));
 * } finally {
 *   await parent.dispose();
 * }
 */
export async function openParentModel(
  registry: ModelRegistry,
  version: ModelVersion,
  options: { workDir?: string } = {},
): Promise<ParentModel> {
  if (!isBundle(version)) {
    const bytes = new Uint8Array(await registry.readModel(version));
    // decodeModel may keep views into its input: each decode gets its own copy.
    return { artifact: bytes, decode: async () => decodeModel(bytes.slice()), dispose: async () => {} };
  }
  const modelFiles = versionFiles(version).filter((f) => f.role !== 'companion');
  const dir = await mkdtemp(path.join(options.workDir ?? tmpdir(), 'maas-parent-'));
  try {
    const queue = [...modelFiles];
    const worker = async (): Promise<void> => {
      for (let f = queue.shift(); f; f = queue.shift())
        await pipeline(await registry.openFile(version, f), createWriteStream(path.join(dir, f.name)));
    };
    await Promise.all(Array.from({ length: Math.min(DOWNLOAD_CONCURRENCY, queue.length) }, worker));
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
  const graph = modelFiles.find((f) => f.role === 'graph') as BundleFile;
  const folder: ModelFolder = {
    dir,
    graph: graph.name,
    files: [graph, ...modelFiles.filter((f) => f !== graph)].map(({ name, size }) => ({ name, size })),
    size: modelFiles.reduce((n, f) => n + f.size, 0),
  };
  return {
    artifact: folder,
    decode: () => decodeFolder(folder, modelFiles),
    dispose: () => rm(dir, { recursive: true, force: true }),
  };
}

/** The folder's graph with every external tensor read back inline (ranges checked first). */
async function decodeFolder(folder: ModelFolder, files: readonly BundleFile[]): Promise<ModelProto> {
  // Copied into a plain Uint8Array: the decoded tensors are views of it (and Buffer's slice() would not copy).
  const model = decodeModel(new Uint8Array(await readFile(path.join(folder.dir, folder.graph))));
  const sizes = new Map(files.filter((f) => f.role === 'data').map((f) => [f.name, f.size]));
  const handles = new Map<string, FileHandle>();
  try {
    await resolveExternalData(model, sizes, async (location, offset, length) => {
      let handle = handles.get(location);
      if (!handle) {
        handle = await open(path.join(folder.dir, location), 'r');
        handles.set(location, handle);
      }
      // A plain Uint8Array on its own ArrayBuffer (not a Buffer, whose slice() is a view).
      const out = new Uint8Array(length);
      // In steps: one read(2) returns at most ~2 GiB, and a tensor may be bigger.
      let at = 0;
      while (at < length) {
        const { bytesRead } = await handle.read(out, at, Math.min(READ_STEP_BYTES, length - at), offset + at);
        if (bytesRead === 0) break;
        at += bytesRead;
      }
      return out.subarray(0, at);
    });
  } finally {
    await Promise.all([...handles.values()].map((h) => h.close()));
  }
  return model;
}
