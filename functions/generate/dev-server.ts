/**
 * `npx tsx functions/generate/dev-server.ts [models-folder] [port]`: the generate routes over the
 * folders of `models-folder` (default `.maas/text-models`, one sub-folder of bundle files per
 * model, each served as version 1) on 127.0.0.1:`port` (default 3003), streamed through the real
 * handler and the Function URL stand-in. With no such folder it first writes the tiny test decoder
 * as `tiny`. Development only: no function bundles it.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { defaultChain, writeTextModelFolder } from '../../dev/text-model';
import { folderResolver } from '../../shared/generate/folders';
import { createGenerateHandler } from './handler';
import { installLambdaStreamingShim, serveStreamingHandler } from './local-server';

async function main(): Promise<void> {
  const root = process.argv[2] ?? join('.maas', 'text-models');
  if (!existsSync(root)) writeTextModelFolder(join(root, 'tiny'), { chain: defaultChain(), context: 1024 });
  installLambdaStreamingShim(); // before the handler is built
  const handler = createGenerateHandler(folderResolver(root, { sessionOptions: { logSeverityLevel: 3 } }));
  const { url } = await serveStreamingHandler(handler, { port: Number(process.argv[3] ?? 3003) });
  console.log(`text generation on ${url}/v1 and ${url}/v2/models/{name}/generate (models in ${root})`);
}

void main();
