/**
 * Registration recognizes text-generation versions (decoder graph + tokenizer files) and records
 * what the runtime needs in the manifest (`textGeneration`); incomplete ones are refused with a
 * 422 and nothing stored; `GET /v1/models` lists only text models. On the file store and the RGW.
 */
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildMlp } from '../../dev/onnx-builder';
import { buildTextModel, QWEN3_TOKENIZER_DIR, writeTextModelFolder } from '../../dev/text-model';
import { httpStatusOf, UnprocessableError } from '../../shared/errors';
import { registryTextResolver } from '../../shared/generate/registry-resolver';
import { handleGenerateRequest } from '../../shared/generate/routes';
import { inferenceSettingsFromEnv } from '../../shared/inference';
import { encodeModel } from '../../shared/onnx/codec';
import { type BundleSource, ModelRegistry } from '../../shared/registry';
import { listAll } from '../../shared/store';
import { createTestStore, storeKinds, type TestStore } from '../support/stores';

const small = { vocabSize: 64, hidden: 8, heads: 2, layers: 2, context: 32 } as const;
const tokenizerJson = readFileSync(join(QWEN3_TOKENIZER_DIR, 'tokenizer.json'));
const tokenizerConfig = readFileSync(join(QWEN3_TOKENIZER_DIR, 'tokenizer_config.json'));
const config = Buffer.from(JSON.stringify({ model_type: 'gpt2', n_positions: 32 }));

const bundle = (graph: Uint8Array, extra: Record<string, Uint8Array> = {}): BundleSource[] => [
  { name: 'model.onnx', body: graph },
  ...Object.entries({
    'tokenizer.json': tokenizerJson,
    'tokenizer_config.json': tokenizerConfig,
    'config.json': config,
    ...extra,
  }).map(([name, body]) => ({ name, body })),
];

describe.each(storeKinds)('text-generation registration (%s store)', (kind) => {
  let ts: TestStore;
  let dir: string;
  // Small in-memory limit: tokenizer_config.json (9 KiB) goes through a staging object.
  let registry: ModelRegistry;
  const keys = async () => (await listAll(ts.store, { prefix: '' })).objects.map((o) => o.key).sort();

  beforeAll(async () => {
    ts = await createTestStore(kind, 'maas-gen-reg');
    registry = new ModelRegistry(ts.store, { inMemoryBytes: 4096 });
    dir = await mkdtemp(join(tmpdir(), 'maas-gen-reg-'));
  });
  afterAll(async () => {
    await ts?.cleanup();
    await rm(dir, { recursive: true, force: true });
  });

  it('records the kind, KV cache, context length and chat template of each decoder layout', async () => {
    for (const graphKind of ['cached', 'uncached', 'merged'] as const) {
      const { model } = buildTextModel({ ...small, kind: graphKind, cacheDatatype: 'FP16' });
      const { version } = await registry.registerBundle(`tiny-${graphKind}`, bundle(encodeModel(model)));
      const expected = {
        task: 'text-generation',
        kvCache: graphKind,
        layers: graphKind === 'uncached' ? 0 : 2,
        ...(graphKind === 'uncached' ? {} : { cacheDatatype: 'FP16' }),
        contextLength: 32,
        vocabSize: 64,
        chatTemplate: true,
      };
      expect(version.textGeneration).toEqual(expected);
      expect((await registry.getVersion(`tiny-${graphKind}`, 1)).textGeneration).toEqual(expected);
    }
  });

  it('reads companions that arrive as store objects (uploads), and a folder written by the dev tooling', async () => {
    const folder = join(dir, 'folder');
    const files = writeTextModelFolder(folder, { ...small, externalData: true });
    await ts.store.put('incoming/config.json', readFileSync(join(folder, 'config.json')), {
      contentType: 'application/json',
    });
    const { version } = await registry.registerBundle(
      'from-upload',
      files.map((name) =>
        name === 'config.json'
          ? { name, storeKey: 'incoming/config.json' }
          : { name, body: readFileSync(join(folder, name)) },
      ),
    );
    expect(version.textGeneration).toMatchObject({ kvCache: 'cached', contextLength: 32 });
  });

  it('refuses incomplete text models with a 422 naming the problem, storing nothing', async () => {
    const before = await keys();
    const { model } = buildTextModel(small);
    const graph = encodeModel(model);
    const refused = async (sources: BundleSource[], message: RegExp) => {
      const error = await registry.registerBundle('broken', sources).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(UnprocessableError);
      expect(httpStatusOf(error)).toBe(422);
      expect((error as Error).message).toMatch(message);
    };
    // A decoder graph whose tokenizer.json is missing.
    await refused(
      bundle(graph).filter((s) => s.name !== 'tokenizer.json'),
      /no tokenizer\.json/,
    );
    // A decoder graph with its tokenizer but past_key_values and no present.* outputs.
    const noPresent = buildTextModel(small).model;
    if (!noPresent.graph) throw new Error('no graph');
    noPresent.graph.output = noPresent.graph.output.filter((o) => !o.name.startsWith('present.'));
    await refused(bundle(encodeModel(noPresent)), /present\.0\.key and \.value are not both outputs/);
    // No context length anywhere (no config.json, no model_max_length).
    const { model_max_length: _, ...withoutLength } = JSON.parse(tokenizerConfig.toString('utf8'));
    const noContext = bundle(graph, {
      'tokenizer_config.json': Buffer.from(JSON.stringify(withoutLength)),
    }).filter((s) => s.name !== 'config.json');
    await refused(noContext, /states no context length/);
    // tokenizer_config.json that is not JSON.
    await refused(
      bundle(graph, { 'tokenizer_config.json': Buffer.from('{"chat_template": ') }),
      /not valid JSON/,
    );
    expect(await keys()).toEqual(before);
  });

  it('registers other models with tokenizer files as before, without textGeneration', async () => {
    const mlp = buildMlp({ inputSize: 4, hiddenSizes: [4], outputSize: 2, seed: 1 }).bytes;
    const { version } = await registry.registerBundle('classifier', bundle(mlp));
    expect(version.files?.map((f) => f.name)).toContain('tokenizer.json');
    expect(version.textGeneration).toBeUndefined();
    expect((await registry.registerVersion('plain', mlp)).version.textGeneration).toBeUndefined();
  });

  it('GET /v1/models lists only the text-generation models', async () => {
    const resolver = registryTextResolver({
      registry,
      store: ts.store,
      cacheDir: join(dir, 'cache'),
      materialize: inferenceSettingsFromEnv().materialize,
    });
    const reply = await handleGenerateRequest({ method: 'GET', path: '/v1/models' }, resolver);
    expect(reply.status).toBe(200);
    const body = JSON.parse('body' in reply ? reply.body : '{}') as {
      data: { id: string; object: string; created: number }[];
    };
    expect(body.data.map((m) => m.id).sort()).toEqual([
      'from-upload',
      'tiny-cached',
      'tiny-merged',
      'tiny-uncached',
    ]);
    expect(body.data.every((m) => m.object === 'model' && m.created > 1_600_000_000)).toBe(true);
  });

  it('lists text models from their index: one list request, no manifest reads, paged by cursor', async () => {
    const calls: string[] = [];
    const counted = new Proxy(ts.store, {
      get(target, prop, receiver) {
        const value = Reflect.get(target, prop, receiver);
        if (typeof value !== 'function') return value;
        return (...args: unknown[]) => {
          calls.push(String(prop));
          return value.apply(target, args);
        };
      },
    });
    const resolver = registryTextResolver({
      registry: new ModelRegistry(counted),
      store: counted,
      cacheDir: join(dir, 'cache'),
      materialize: inferenceSettingsFromEnv().materialize,
    });
    expect((await resolver.list()).map((m) => m.id)).toEqual([
      'from-upload',
      'tiny-cached',
      'tiny-merged',
      'tiny-uncached',
    ]);
    expect(calls).toEqual(['list']);
    const first = await registry.listTextModels({ limit: 3 });
    expect(first.items.map((m) => m.name)).toEqual(['from-upload', 'tiny-cached', 'tiny-merged']);
    const second = await registry.listTextModels({ limit: 3, cursor: first.nextCursor! });
    expect(second).toEqual({ items: [expect.objectContaining({ name: 'tiny-uncached' })] });
  });
});
