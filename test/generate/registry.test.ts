/**
 * Text models registered as bundles (graph + external data + tokenizer files) on the test RGW,
 * resolved by name, alias and version like predict's infer routes, downloaded into the model
 * cache and generating the same text as the folder they came from.
 */
import { createReadStream, readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildMlp } from '../../dev/onnx-builder';
import { defaultChain, writeTextModelFolder } from '../../dev/text-model';
import { NotFoundError, UnprocessableError } from '../../shared/errors';
import { loadTextGenerator } from '../../shared/generate/engine';
import { registryTextResolver } from '../../shared/generate/registry-resolver';
import { handleGenerateRequest } from '../../shared/generate/routes';
import { inferenceSettingsFromEnv } from '../../shared/inference';
import { ModelRegistry } from '../../shared/registry';
import { createTestStore, type TestStore } from '../support/stores';

let ts: TestStore;
let dir: string;
let registry: ModelRegistry;

beforeAll(async () => {
  ts = await createTestStore('s3', 'maas-generate');
  registry = new ModelRegistry(ts.store);
  dir = await mkdtemp(join(tmpdir(), 'maas-generate-registry-'));
  const folder = join(dir, 'bundle');
  const files = writeTextModelFolder(folder, { chain: defaultChain(), externalData: true });
  await registry.registerBundle(
    'tiny',
    files.map((name) => ({ name, body: createReadStream(join(folder, name)) })),
  );
  await registry.registerVersion(
    'mlp',
    buildMlp({ inputSize: 4, hiddenSizes: [4], outputSize: 2, seed: 1 }).bytes,
  );
});

afterAll(async () => {
  await ts?.cleanup();
  await rm(dir, { recursive: true, force: true });
});

describe('registryTextResolver', () => {
  it('serves a registered bundle by name, alias and version, generating what its folder generates', async () => {
    const resolver = registryTextResolver({
      registry,
      store: ts.store,
      cacheDir: join(dir, 'cache'),
      materialize: inferenceSettingsFromEnv().materialize,
      generator: { sessionOptions: { logSeverityLevel: 3 } },
    });
    const direct = await loadTextGenerator(join(dir, 'bundle'), { sessionOptions: { logSeverityLevel: 3 } });
    try {
      const resolved = await resolver.resolve({ name: 'tiny' });
      expect(resolved).toMatchObject({ name: 'tiny', version: 1 });
      expect(resolved.engine.tokenizer.hasChatTemplate).toBe(true);
      const cached = readdirSync(join(dir, 'cache'));
      expect(cached.some((e) => e.endsWith('.bundle'))).toBe(true);
      await registry.setAlias('tiny', 'production', 1);
      expect((await resolver.resolve({ name: 'tiny', alias: 'production' })).engine).toBe(resolved.engine); // loaded once
      expect((await resolver.resolve({ name: 'tiny', version: 1 })).version).toBe(1);
      const text = async (engine: { generate: typeof direct.generate }) => {
        for await (const e of engine.generate({ prompt: 'Grüße aus Köln', maxTokens: 12, temperature: 0 }))
          if (e.type === 'done') return e.text;
        return undefined;
      };
      expect(await text(resolved.engine)).toBe(await text(direct));

      const reply = await handleGenerateRequest(
        {
          method: 'POST',
          path: '/v1/completions',
          body: JSON.stringify({
            model: 'tiny@production',
            prompt: 'Grüße aus Köln',
            max_tokens: 12,
            temperature: 0,
          }),
        },
        resolver,
      );
      expect(reply.status).toBe(200);
      expect(JSON.parse('body' in reply ? reply.body : '{}').choices[0].text).toBe(await text(direct));
      expect((await resolver.list()).map((m) => m.id).sort()).toEqual(['tiny']); // mlp is no text model

      await expect(resolver.resolve({ name: 'mlp' })).rejects.toThrow(UnprocessableError);
      await expect(resolver.resolve({ name: 'mlp' })).rejects.toThrow(/not a text-generation model/);
      await expect(resolver.resolve({ name: 'nope' })).rejects.toThrow(NotFoundError);
      await expect(resolver.resolve({ name: 'tiny', version: 7 })).rejects.toThrow(NotFoundError);
      await (resolved.engine as typeof direct).session.release();
    } finally {
      await direct.session.release();
    }
  });
});
