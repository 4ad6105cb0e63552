/**
 * A predict container in a process of its own, for tests that measure what the process holds:
 * serves each named model of a file store once with one float32 input `x` of the given shape (the
 * binary tensor extension, both ways), and prints after each one a JSON line of the process's RSS (after a
 * full GC) and the session cache's estimate of what its sessions hold. Settings come from the
 * environment, as in the function.
 *
 * Usage: `node --expose-gc --import tsx test/support/serve-models-child.ts <storeRoot> <cacheDir> <shape JSON> <name>...`,
 * or `serveModels` (test/support/serve-models.ts).
 */
import { InferenceService } from '../../shared/inference';
import { ModelRegistry } from '../../shared/registry';
import { FileObjectStore } from '../../shared/store';
import { mulberry32 } from '../../shared/util/random';

/** One line per model served. */
export interface ServedLine {
  name: string;
  rssBytes: number;
  sessionBytes: number;
}

async function main(): Promise<void> {
  const [root, modelCacheDir, shapeJson, ...names] = process.argv.slice(2);
  if (!root || !modelCacheDir || !shapeJson)
    throw new Error('usage: <storeRoot> <cacheDir> <shape> <name>...');
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('run with --expose-gc');
  const shape = JSON.parse(shapeJson) as number[];
  const rand = mulberry32(1);
  const data = Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => rand());
  const store = new FileObjectStore(root);
  const service = new InferenceService({
    registry: new ModelRegistry(store),
    store,
    settings: { modelCacheDir },
  });
  for (const name of names) {
    const header = Buffer.from(
      JSON.stringify({
        inputs: [{ name: 'x', datatype: 'FP32', shape, parameters: { binary_data_size: data.byteLength } }],
        // Binary outputs: the JSON of a large output would dwarf what the sessions hold.
        parameters: { binary_data_output: true },
      }),
    );
    const body = Buffer.concat([header, Buffer.from(data.buffer)]);
    await service.infer(name, undefined, body, {
      contentType: 'application/octet-stream',
      headerLength: String(header.length),
    });
    // Twice around a turn of the event loop: memory behind ArrayBuffers is freed after the sweep.
    gc();
    await new Promise((r) => setImmediate(r));
    gc();
    const line: ServedLine = {
      name,
      rssBytes: process.memoryUsage.rss(),
      sessionBytes: service.sessions.bytes,
    };
    process.stdout.write(`${JSON.stringify(line)}\n`);
  }
  await service.close();
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? e.stack : String(e)}\n`);
  process.exit(1);
});
