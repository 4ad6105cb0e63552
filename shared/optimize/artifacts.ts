/**
 * Models as optimize holds them: inline bytes when the model fits in one ONNX file, else a folder
 * on local disk (the graph plus its external data files), which onnxruntime loads by path. Protobuf
 * caps one message, so one ONNX file or buffer, at 2 GiB: a bigger parent or candidate can only be
 * a folder, and a folder costs disk instead of memory (the function's `/tmp`).
 */
import { createReadStream } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import * as ort from 'onnxruntime-node';
import { encodeModel, type ModelProto } from '../onnx/codec';
import { writeExternalData } from '../onnx/external-data';

/** Protobuf's hard limit on one message, so on one inline ONNX file. */
export const PROTOBUF_LIMIT_BYTES = 2 ** 31 - 1;

/** A model laid out on disk: `graph` and the data files it references, all inside `dir`. */
export interface ModelFolder {
  dir: string;
  /** File name of the graph inside `dir`. */
  graph: string;
  /** Every file of the model, graph first (no companion files). */
  files: { name: string; size: number }[];
  /** Bytes of all `files` together. */
  size: number;
}

/** A model to load, evaluate or register: inline bytes, or a folder. */
export type ModelArtifact = Uint8Array | ModelFolder;

/**
 * Bytes of a model (a folder: every file of it).
 * @example
 * const ratio = artifactSize(candidate) / artifactSize(parent);
 */
export function artifactSize(artifact: ModelArtifact): number {
  return artifact instanceof Uint8Array ? artifact.byteLength : artifact.size;
}

/**
 * An onnxruntime session of it: from the bytes, or from the graph's path (onnxruntime then reads
 * the external data beside it).
 * @example
 * const session = await createSession(artifact, evaluationSessionOptions());
 */
export function createSession(
  artifact: ModelArtifact,
  options: ort.InferenceSession.SessionOptions,
): Promise<ort.InferenceSession> {
  return artifact instanceof Uint8Array
    ? ort.InferenceSession.create(artifact, options)
    : ort.InferenceSession.create(path.join(artifact.dir, artifact.graph), options);
}

/**
 * The files of a model for `registry.registerBundle`, each streamed from disk with its size.
 * @example
 * await registry.registerBundle('llm', artifactFiles(folder), options);
 */
export function artifactFiles(folder: ModelFolder): { name: string; body: Readable; size: number }[] {
  return folder.files.map((f) => ({
    name: f.name,
    body: createReadStream(path.join(folder.dir, f.name)),
    size: f.size,
  }));
}

/** Deletes a folder artifact from disk (inline bytes: nothing to do). */
export async function disposeArtifact(artifact: ModelArtifact | undefined): Promise<void> {
  if (artifact && !(artifact instanceof Uint8Array)) await rm(artifact.dir, { recursive: true, force: true });
}

/**
 * Size of a model encoded as one ONNX file, without encoding it: the graph without its payloads
 * plus the payloads (a few bytes of field tags per tensor aside).
 * @example
 * if (inlineSize(model) >= PROTOBUF_LIMIT_BYTES) throw new Error('needs external data');
 */
export function inlineSize(model: ModelProto): number {
  const { graph, files } = writeExternalData(model, { alignment: 1 });
  return files.reduce((n, f) => n + f.size, graph.byteLength);
}

/** Options of {@link writeModelArtifact}. */
export interface WriteArtifactOptions {
  /** Models whose inline encoding reaches this size become folders (default {@link PROTOBUF_LIMIT_BYTES}). */
  inlineLimitBytes?: number;
  /** File name of the graph in a folder (default `model.onnx`); its data file is `<graph>.data`. */
  graphName?: string;
  /** Where folders are created (default the OS temp dir: `/tmp` on Lambda). */
  workDir?: string;
}

// Field tags and lengths the payload-free estimate leaves out (a few bytes per tensor).
const ENCODING_MARGIN_BYTES = 1024 * 1024;

/**
 * A built model as one ONNX file's bytes when that stays under the limit, else written as a
 * bundle folder (one 4096-aligned data file, onnx's own layout) without copying its payloads.
 * @example
 * const artifact = await writeModelArtifact(model, { graphName: 'decoder.onnx' });
 */
export async function writeModelArtifact(
  model: ModelProto,
  options: WriteArtifactOptions = {},
): Promise<ModelArtifact> {
  const limit = options.inlineLimitBytes ?? PROTOBUF_LIMIT_BYTES;
  if (inlineSize(model) + ENCODING_MARGIN_BYTES < limit) return encodeModel(model);
  const graph = options.graphName ?? 'model.onnx';
  const bundle = writeExternalData(model, { layout: 'single', dataFile: `${graph}.data` });
  const dir = await mkdtemp(path.join(options.workDir ?? tmpdir(), 'maas-candidate-'));
  try {
    await writeFile(path.join(dir, graph), bundle.graph);
    for (const f of bundle.files) await writeFile(path.join(dir, f.name), f.chunks);
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
  const files = [
    { name: graph, size: bundle.graph.byteLength },
    ...bundle.files.map(({ name, size }) => ({ name, size })),
  ];
  return { dir, graph, files, size: files.reduce((n, f) => n + f.size, 0) };
}
