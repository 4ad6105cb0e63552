/**
 * Child process of bundle-over-2gib.test.ts: registers the bundle in `argv[2]` (a folder with
 * model.onnx + model.onnx.data) into the file store at `argv[3]` from disk streams, and prints
 * `{ version, maxRssBytes }` as JSON. A separate process so its peak RSS is the register step's
 * alone, not the test's (which holds the weights to compute the reference).
 */
import { createReadStream, statSync } from 'node:fs';
import * as path from 'node:path';
import { ModelRegistry } from '../../shared/registry';
import { FileObjectStore } from '../../shared/store/file-store';

const [folder, storeRoot] = process.argv.slice(2) as [string, string];
const registry = new ModelRegistry(new FileObjectStore(storeRoot), { maxModelBytes: 4 * 2 ** 30 });
const file = (name: string) => ({
  name,
  body: createReadStream(path.join(folder, name)),
  size: statSync(path.join(folder, name)).size,
});
async function main(): Promise<void> {
  const { version } = await registry.registerBundle('big', [file('model.onnx'), file('model.onnx.data')]);
  // resourceUsage().maxRSS is in KiB: the process's high-water mark, not a sample.
  process.stdout.write(
    `${JSON.stringify({ version, maxRssBytes: process.resourceUsage().maxRSS * 1024 })}\n`,
  );
}
main().catch((e) => {
  process.stderr.write(`${e instanceof Error ? e.stack : String(e)}\n`);
  process.exit(1);
});
