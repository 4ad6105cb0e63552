/**
 * The deployable generate function (functions/generate/lambda.ts) end to end: a bundle registered
 * in the container's store (MAAS_STORE), resolved by alias, downloaded into MAAS_MODEL_CACHE_DIR
 * and streamed to the official openai client through the Function URL stand-in.
 */
import { createReadStream, existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultChain, writeTextModelFolder } from '../../dev/text-model';
import {
  installLambdaStreamingShim,
  type StreamingHandler,
  serveStreamingHandler,
} from '../../functions/generate/local-server';
import { loadTextGenerator } from '../../shared/generate/engine';
import { ModelRegistry } from '../../shared/registry';
import { FileObjectStore } from '../../shared/store';

let dir: string;
let server: Server;
let client: OpenAI;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'maas-generate-lambda-'));
  const folder = join(dir, 'bundle');
  const files = writeTextModelFolder(folder, { chain: defaultChain(), externalData: true });
  const registry = new ModelRegistry(new FileObjectStore(join(dir, 'store')));
  await registry.registerBundle(
    'tiny',
    files.map((name) => ({ name, body: createReadStream(join(folder, name)) })),
  );
  await registry.setAlias('tiny', 'production', 1);
  process.env.MAAS_STORE = `file://${join(dir, 'store')}`;
  process.env.MAAS_MODEL_CACHE_DIR = join(dir, 'cache');
  process.env.MAAS_METRICS = 'off';
  process.env.MAAS_CAPTURE_FLUSH_REQUESTS = '1'; // each generation's capture is written at once
  installLambdaStreamingShim();
  // Imported after the shim and the environment are in place (the handler is built on import).
  const file = join(__dirname, '..', '..', 'functions', 'generate', 'lambda.ts');
  const { handler } = (await import(file)) as { handler: StreamingHandler };
  const served = await serveStreamingHandler(handler, { port: 0 });
  server = served.server;
  client = new OpenAI({ baseURL: `${served.url}/v1`, apiKey: 'unused', maxRetries: 0 });
});

afterAll(async () => {
  server?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('functions/generate/lambda', () => {
  it('streams a registered text model to the openai client', async () => {
    const direct = await loadTextGenerator(join(dir, 'bundle'), { sessionOptions: { logSeverityLevel: 3 } });
    let expected = '';
    for await (const e of direct.generate({ prompt: 'Grüße aus Köln', maxTokens: 16, temperature: 0 }))
      if (e.type === 'done') expected = e.text;
    await direct.session.release();
    const stream = await client.completions.create({
      model: 'tiny@production',
      prompt: 'Grüße aus Köln',
      max_tokens: 16,
      temperature: 0,
      stream: true,
    });
    let text = '';
    let chunks = 0;
    for await (const c of stream) {
      text += c.choices[0]?.text ?? '';
      chunks++;
    }
    expect(text).toBe(expected);
    expect(chunks).toBeGreaterThan(3);
    const missing = await client.completions
      .create({ model: 'tiny:9', prompt: 'x' })
      .catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(OpenAI.NotFoundError);
    expect((await client.models.list()).data.map((m) => m.id)).toEqual(['tiny']);

    // Monitoring's capture of the container: counts and timings of the generation, no text.
    // The flush runs after the response: wait for its object (the folder can exist before the
    // file is renamed into it).
    const captures = join(dir, 'store', 'monitoring', 'captures', 'tiny');
    const readCaptures = async () =>
      existsSync(captures)
        ? Promise.all(
            (await readdir(captures)).map(async (f) => JSON.parse(await readFile(join(captures, f), 'utf8'))),
          )
        : [];
    let docs = await readCaptures();
    const until = Date.now() + 10_000;
    while (docs.length === 0 && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 20));
      docs = await readCaptures();
    }
    const generation = docs.map((d) => d.versions['1']?.generation).find(Boolean);
    expect(generation).toMatchObject({ generations: 1, finishReasons: { length: 1 }, completionTokens: 16 });
    expect(JSON.stringify(docs)).not.toContain('Köln');
  });
});
