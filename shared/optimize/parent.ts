/**
 * The parent of an optimization as one in-memory ONNX model: a single-file version as read, a
 * bundle with its external data resolved (every data file read through the registry's verified
 * stream, each range checked against the bundle's file list first).
 *
 * Memory: a bundle's data files are held while the graph is re-encoded inline, so the peak is about
 * twice the parent's size, then the parent's size for the rest of the run. Parents whose inline
 * encoding would reach protobuf's 2 GiB limit are refused with a clear error: onnxruntime cannot
 * create a session from such a buffer, and candidates are evaluated against the parent in memory.
 */
import { UnprocessableError } from '../errors';
import { decodeModel, encodeModel } from '../onnx/codec';
import { resolveExternalData } from '../onnx/external-data';
import { type BundleFile, isBundle, type ModelRegistry, type ModelVersion } from '../registry';

/** Protobuf's hard limit on one message, so on one inline ONNX file. */
export const PROTOBUF_LIMIT_BYTES = 2 ** 31 - 1;

async function readAll(stream: AsyncIterable<Buffer | Uint8Array>, size: number): Promise<Buffer> {
  // One allocation of the known size (no chunk list doubling the memory); the verified stream
  // fails on a size or digest mismatch before this returns.
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  for await (const chunk of stream) {
    if (at + chunk.byteLength > size)
      throw new UnprocessableError('bundle file is longer than its manifest says');
    out.set(chunk, at);
    at += chunk.byteLength;
  }
  if (at !== size) throw new UnprocessableError('bundle file is shorter than its manifest says');
  return out;
}

/**
 * Reads a version as one inline ONNX model (verified bytes).
 *
 * @example
 * const parentBytes = await readParentModel(registry, await registry.getVersion('llm', 3));
 * const session = await ort.InferenceSession.create(parentBytes);
 */
export async function readParentModel(registry: ModelRegistry, version: ModelVersion): Promise<Uint8Array> {
  if (!isBundle(version)) return new Uint8Array(await registry.readModel(version));
  const files = version.files as BundleFile[];
  const payloadBytes = files.filter((f) => f.role === 'data').reduce((n, f) => n + f.size, 0);
  const graphFile = files.find((f) => f.role === 'graph') as BundleFile;
  if (graphFile.size + payloadBytes >= PROTOBUF_LIMIT_BYTES) {
    throw new UnprocessableError(
      `version ${version.version} of ${version.name} holds ${graphFile.size + payloadBytes} bytes of graph and external data: optimizing a bundle that does not fit in one 2 GiB ONNX file is not supported yet`,
    );
  }
  const model = decodeModel(await registry.readModel(version));
  const sizes = new Map(files.filter((f) => f.role === 'data').map((f) => [f.name, f.size]));
  const loaded = new Map<string, Buffer>();
  await resolveExternalData(model, sizes, async (location, offset, length) => {
    let bytes = loaded.get(location);
    if (!bytes) {
      const file = files.find((f) => f.name === location) as BundleFile;
      bytes = await readAll(await registry.openFile(version, file), file.size);
      loaded.set(location, bytes);
    }
    return bytes.subarray(offset, offset + length);
  });
  return encodeModel(model);
}
