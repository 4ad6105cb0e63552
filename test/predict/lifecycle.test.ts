/**
 * The warm-container behaviour of predict, through the handler with models in RGW: alias TTL
 * and rollback, no store request on the warm path, single-flight loading, sha256 verification,
 * LRU eviction, canary routing, status rules, observers and EMF output.
 */
import { mkdir, open, readdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type BuiltMlp, buildMlp, mlpReference, mulberry32, randomFloat32 } from '../../dev/onnx-builder';
import { setInferenceService } from '../../functions/predict/runtime';
import {
  type InferenceLogger,
  type InferenceObservation,
  type InferenceObserver,
  InferenceService,
  RouteResolver,
} from '../../shared/inference';
import { ModelRegistry } from '../../shared/registry';
import { createRequestMetrics, EmfRequestMetrics, NoopRequestMetrics } from '../../shared/request-metrics';
import { type ObjectStore, StoreError } from '../../shared/store';
import { countingStore } from '../support/counting-store';
import { apiEvent, bodyJson, inferEvent, invoke, type PredictFixture, predictFixture } from './support';

let fx: PredictFixture;
const models: Record<number, BuiltMlp> = {};
const x = randomFloat32(mulberry32(1), 8);
const request = (id?: string): unknown => ({
  ...(id ? { id } : {}),
  inputs: [{ name: 'input', shape: [1, 8], datatype: 'FP32', data: Array.from(x) }],
});

/** Which registered MLP produced these outputs (each seed computes something different). */
function producedBy(body: Record<string, unknown>): number {
  const data = (body.outputs as { data: number[] }[])[0]!.data;
  for (const [seed, m] of Object.entries(models)) {
    const ref = mlpReference(m.weights, x, 1);
    if (ref.every((v, i) => Math.abs(v - data[i]!) < 1e-4)) return Number(seed);
  }
  throw new Error('outputs match no registered model');
}

async function register(name: string, seed: number, alias?: string): Promise<number> {
  models[seed] ??= buildMlp({ inputSize: 8, hiddenSizes: [16], outputSize: 3, seed });
  const { version } = await fx.registry.registerVersion(name, models[seed].bytes, alias ? { alias } : {});
  return version.version;
}

beforeAll(async () => {
  fx = await predictFixture({ aliasTtlMs: 400 });
});
// Each test starts from a default core, even when the one before failed half-way.
afterEach(async () => {
  await fx.reinstall();
});
afterAll(async () => fx?.cleanup());

describe('alias resolution', () => {
  it('after a rollback, a warm container serves the new version within the TTL', async () => {
    await register('roll', 1, 'production');
    await register('roll', 2, 'production');
    const first = bodyJson(await invoke(inferEvent('roll', request())));
    expect(first.model_version).toBe('2');
    expect(producedBy(first)).toBe(2);

    await fx.registry.rollback('roll', 'production', { actor: 'test', reason: 'bad release' });
    const rolledBackAt = Date.now();
    let body = first;
    while (body.model_version !== '1') {
      expect(Date.now() - rolledBackAt).toBeLessThan(fx.service.settings.aliasTtlMs + 5000);
      await new Promise((r) => setTimeout(r, 25));
      body = bodyJson(await invoke(inferEvent('roll', request())));
    }
    expect(producedBy(body)).toBe(1);
  });

  it('the warm path makes no store request within the TTL; concurrent cold requests load once', async () => {
    await register('warm', 3, 'production');
    const counter = countingStore(fx.store);
    const service = await fx.reinstall(
      { aliasTtlMs: 60_000, modelCacheDir: path.join(fx.cacheDir, 'single-flight') },
      counter.store,
    );
    const responses = await Promise.all(
      Array.from({ length: 6 }, () => invoke(inferEvent('warm', request()))),
    );
    expect(responses.map((r) => r.statusCode)).toEqual(new Array(6).fill(200));
    expect(counter.calls.filter((c) => /^get(Stream)? blobs\//.test(c))).toHaveLength(1);
    expect(counter.calls.filter((c) => c.includes('/aliases/'))).toHaveLength(1);
    expect(fx.metrics.points('ModelLoadTime', { model: 'warm', version: '1' })).toHaveLength(1);
    expect(service.sessions.keys()).toHaveLength(1);

    counter.reset();
    for (let i = 0; i < 20; i++) expect((await invoke(inferEvent('warm', request()))).statusCode).toBe(200);
    expect(counter.calls).toEqual([]);
    await fx.reinstall();
  });

  it('explicit numbers serve archived versions but not rejected ones; aliases serve active versions only', async () => {
    const v1 = await register('status', 4, 'production');
    const v2 = await register('status', 5);
    await fx.registry.setStatus('status', v1, 'archived', { actor: 'test' });
    const archived = await invoke(inferEvent('status', request(), String(v1)));
    expect(archived.statusCode).toBe(200);
    // production still points at the archived v1: refused rather than silently rerouted.
    const viaAlias = await invoke(inferEvent('status', request()));
    expect(viaAlias.statusCode).toBe(409);
    expect(bodyJson(viaAlias).error).toMatch(
      /alias production of status points at version 1, which is archived/,
    );

    await fx.registry.setStatus('status', v2, 'rejected', { actor: 'test' });
    const rejected = await invoke(inferEvent('status', request(), String(v2)));
    expect(rejected.statusCode).toBe(409);
    expect(bodyJson(rejected).error).toMatch(/version 2 of status is rejected/);
    expect((await invoke(inferEvent('status', request(), 'latest'))).statusCode).toBe(409);
  });

  it('a store outage after the TTL keeps serving the last known version; unknown models get 503', async () => {
    await register('outage', 14, 'production');
    let failing = false;
    let clock = 1_000_000;
    const down = (): Promise<never> => Promise.reject(new StoreError('connection reset', true));
    const store: ObjectStore = {
      location: fx.store.location,
      get: (k) => (failing ? down() : fx.store.get(k)),
      getStream: (k) => (failing ? down() : fx.store.getStream(k)),
      getRange: (k, s, e) => (failing ? down() : fx.store.getRange(k, s, e)),
      copy: (f, t, o) => fx.store.copy(f, t, o),
      head: (k) => (failing ? down() : fx.store.head(k)),
      list: (o) => (failing ? down() : fx.store.list(o)),
      put: (k, b, o) => fx.store.put(k, b, o),
      delete: (k) => fx.store.delete(k),
    };
    const service = new InferenceService({
      registry: new ModelRegistry(store),
      metrics: fx.metrics,
      now: () => clock,
      settings: { aliasTtlMs: 1000, modelCacheDir: fx.cacheDir },
    });
    await setInferenceService(service);
    expect(bodyJson(await invoke(inferEvent('outage', request()))).model_version).toBe('1');
    failing = true;
    clock += 5000;
    const during = await invoke(inferEvent('outage', request()));
    expect(during.statusCode).toBe(200);
    expect(producedBy(bodyJson(during))).toBe(14);
    const unknown = await invoke(inferEvent('roll', request()));
    expect(unknown.statusCode).toBe(503);
    expect(bodyJson(unknown)).toEqual({
      error: 'service temporarily unavailable, retry later',
      code: 'unavailable',
    });
    failing = false;
    await fx.registry.setAlias('outage', 'production', await register('outage', 15), { actor: 'test' });
    clock += 5000;
    expect(bodyJson(await invoke(inferEvent('outage', request()))).model_version).toBe('2');
    await fx.reinstall();
  });

  it('unknown models and models with nothing active are answered from the cache for the TTL', async () => {
    await register('retired', 16);
    await register('retired', 17);
    await fx.registry.setStatus('retired', 1, 'archived', { actor: 'test' });
    await fx.registry.setStatus('retired', 2, 'rejected', { actor: 'test' });
    const counter = countingStore(fx.store);
    let clock = 1_000_000;
    const service = new InferenceService({
      registry: new ModelRegistry(counter.store),
      metrics: fx.metrics,
      now: () => clock,
      settings: { aliasTtlMs: 1000, modelCacheDir: fx.cacheDir },
    });
    await setInferenceService(service);
    for (const [name, status] of [
      ['ghost', 404],
      ['retired', 409],
    ] as const) {
      expect((await invoke(inferEvent(name, request()))).statusCode).toBe(status);
      expect(counter.count()).toBeGreaterThan(0);
      counter.reset();
      for (let i = 0; i < 5; i++) expect((await invoke(inferEvent(name, request()))).statusCode).toBe(status);
      expect((await invoke(apiEvent('GET /v2/models/{name}', { name }))).statusCode).toBe(status);
      expect(counter.calls).toEqual([]);
    }
    // After the TTL the registry is asked again: a model registered meanwhile is served.
    await register('ghost', 18);
    expect((await invoke(inferEvent('ghost', request()))).statusCode).toBe(404);
    clock += 1001;
    expect(producedBy(bodyJson(await invoke(inferEvent('ghost', request()))))).toBe(18);

    // Failed resolutions are bounded: client-chosen names must not grow the cache forever.
    const routes = new RouteResolver(new ModelRegistry(counter.store), { ttlMs: 60_000, maxEntries: 3 });
    for (let i = 0; i < 10; i++)
      await expect(routes.resolve(`ghost-${i}`)).rejects.toMatchObject({ kind: 'not_found' });
    expect(routes.size).toBe(3);
    counter.reset();
    await expect(routes.resolve('ghost-9')).rejects.toMatchObject({ kind: 'not_found' });
    expect(counter.calls).toEqual([]);
  });

  it('without a production alias, the newest active version serves', async () => {
    await register('noalias', 6);
    await register('noalias', 7);
    await fx.registry.setStatus('noalias', 2, 'rejected', { actor: 'test' });
    const body = bodyJson(await invoke(inferEvent('noalias', request())));
    expect(body.model_version).toBe('1');
    expect(producedBy(body)).toBe(6);
  });
});

describe('canary', () => {
  it('routes the canary share by a stable hash of the request id, reporting the version that ran', async () => {
    const v1 = await register('canary', 8, 'production');
    const v2 = await register('canary', 9);
    await fx.registry.setAlias('canary', 'production', v1, {
      actor: 'test',
      canary: { version: v2, weight: 0.3 },
    });
    const seen = new Map<string, string>();
    for (let i = 0; i < 60; i++) {
      const body = bodyJson(await invoke(inferEvent('canary', request(`req-${i}`))));
      expect(producedBy(body)).toBe(body.model_version === '2' ? 9 : 8);
      seen.set(`req-${i}`, body.model_version as string);
    }
    const canaryShare = [...seen.values()].filter((v) => v === '2').length / seen.size;
    expect(canaryShare).toBeGreaterThan(0.1);
    expect(canaryShare).toBeLessThan(0.55);
    for (const id of ['req-0', 'req-1', 'req-2', 'req-3']) {
      expect(bodyJson(await invoke(inferEvent('canary', request(id)))).model_version).toBe(seen.get(id));
    }
    expect(fx.metrics.sum('Invocations', { model: 'canary', version: '2' })).toBeGreaterThan(0);
    expect(fx.metrics.sum('Invocations', { model: 'canary', version: '1' })).toBeGreaterThan(0);
  });
});

describe('model integrity', () => {
  it('a tampered blob is refused with a clear error and a metric, never served', async () => {
    const good = await register('tamper', 10);
    const version = await fx.registry.getVersion('tamper', good);
    await fx.store.put(
      version.blobKey,
      buildMlp({ inputSize: 8, hiddenSizes: [16], outputSize: 3, seed: 666 }).bytes,
    );
    for (const event of [
      inferEvent('tamper', request()),
      apiEvent('GET /v2/models/{name}/ready', { name: 'tamper' }),
    ]) {
      const res = await invoke(event);
      expect(res.statusCode).toBe(500);
      expect(bodyJson(res)).toMatchObject({
        code: 'integrity_error',
        error: expect.stringMatching(/tamper version 1 failed its integrity check/),
      });
    }
    expect(
      fx.metrics.sum('ModelIntegrityFailures', { model: 'tamper', version: '1' }),
    ).toBeGreaterThanOrEqual(1);
    expect(fx.metrics.sum('ServerErrors', { model: 'tamper', version: '1' })).toBe(1);
    expect(await readdir(fx.cacheDir)).not.toContain(`${version.sha256}.onnx`);
    expect((await invoke(inferEvent('roll', request()))).statusCode).toBe(200);
  });

  it('a corrupted local copy is discarded and fetched again from the store', async () => {
    const v = await fx.registry.getVersion('noalias', 1);
    await mkdir(fx.cacheDir, { recursive: true });
    await writeFile(path.join(fx.cacheDir, `${v.sha256}.onnx`), 'garbage');
    await fx.reinstall();
    const body = bodyJson(await invoke(inferEvent('noalias', request(), '1')));
    expect(producedBy(body)).toBe(6);
  });
});

describe('local model copies', () => {
  it('a reload of a copy this container wrote and verified skips the second hash; other copies are hashed', async () => {
    await register('rehash', 19);
    const version = await fx.registry.getVersion('rehash', 1);
    const loads: Record<string, unknown>[] = [];
    const logger: InferenceLogger = {
      info: (message, attributes = {}) => void (message === 'model loaded' && loads.push(attributes)),
      warn() {},
      error() {},
    };
    const cacheDir = path.join(fx.cacheDir, 'rehash');
    const file = path.join(cacheDir, `${version.sha256}.onnx`);
    const service = new InferenceService({
      registry: fx.registry,
      metrics: fx.metrics,
      logger,
      settings: { modelCacheDir: cacheDir },
    });
    const load = async (): Promise<Record<string, unknown> | undefined> => {
      await service.sessions.clear();
      (await service.sessions.acquire(version)).release();
      return loads.at(-1);
    };
    /** The local copy is written in the background after a store fetch. */
    const written = async (): Promise<void> => {
      for (let i = 0; !(await stat(file).catch(() => undefined)); i++) {
        expect(i).toBeLessThan(200);
        await new Promise((r) => setTimeout(r, 25));
      }
    };
    try {
      expect(await load()).toMatchObject({ source: 'store', hashed: true });
      await written();
      expect(await load()).toMatchObject({ source: 'local', hashed: false });
      expect(await load()).toMatchObject({ source: 'local', hashed: false });

      // Changed in place after this process wrote it (same size): hashed, refused, fetched again.
      const handle = await open(file, 'r+');
      await handle.write(Buffer.alloc(64, 0x5a), 0, 64, 0);
      await handle.close();
      expect(await load()).toMatchObject({ source: 'store', hashed: true });
      await written();
      expect(await load()).toMatchObject({ source: 'local', hashed: false });

      // The same bytes put there by someone else (an earlier container sharing /tmp): hashed, every time.
      await writeFile(`${file}.other`, await readFile(file));
      await rename(`${file}.other`, file);
      expect(await load()).toMatchObject({ source: 'local', hashed: true });
      expect(await load()).toMatchObject({ source: 'local', hashed: true });
      expect(producedBy(bodyJson(await invoke(inferEvent('rehash', request()))))).toBe(19);
    } finally {
      await service.close();
    }
  });
});

describe('session LRU', () => {
  it('evicts least recently used sessions under a small memory budget and reloads them from the local copy', async () => {
    const sizes: number[] = [];
    for (const [i, seed] of [11, 12, 13].entries()) {
      await register(`lru${i}`, seed);
      sizes.push((await fx.registry.getVersion(`lru${i}`, 1)).size);
    }
    const counter = countingStore(fx.store);
    // Room for two sessions (estimated at 1.5× the file plus 256 KiB each), not three.
    const budget = Math.floor((Math.max(...sizes) * 1.5 + 256 * 1024) * 2.5);
    const service = await fx.reinstall({ sessionCacheBytes: budget }, counter.store);
    const sha = async (i: number): Promise<string> => (await fx.registry.getVersion(`lru${i}`, 1)).sha256;
    for (const i of [0, 1]) expect((await invoke(inferEvent(`lru${i}`, request()))).statusCode).toBe(200);
    expect(service.sessions.keys()).toEqual([await sha(0), await sha(1)]);
    await invoke(inferEvent('lru0', request())); // lru0 becomes most recent
    await invoke(inferEvent('lru2', request()));
    expect(service.sessions.keys()).toEqual([await sha(0), await sha(2)]);
    expect(service.sessions.bytes).toBeLessThanOrEqual(budget);

    counter.reset();
    await service.sessions.localCopiesWritten(); // written after the response, not before it
    const again = bodyJson(await invoke(inferEvent('lru1', request())));
    expect(producedBy(again)).toBe(12);
    expect(counter.calls.filter((c) => /^get(Stream)? blobs\//.test(c))).toEqual([]); // from the local copy
    expect(service.sessions.keys()).toEqual([await sha(2), await sha(1)]);
    await fx.reinstall();
  });
});

describe('observers and metrics output', () => {
  it('observers see each response; a slow flush does not hold the response', async () => {
    const seen: InferenceObservation[] = [];
    let flushes = 0;
    const observer: InferenceObserver = {
      observe: (o) => void seen.push(o),
      get flushDue() {
        return seen.length >= 2;
      },
      flush: () => {
        flushes++;
        return new Promise<void>(() => undefined); // never settles
      },
    };
    const service = await fx.reinstall({ observerFlushBudgetMs: 20 });
    service.addObserver(observer);
    for (let i = 0; i < 4; i++)
      expect((await invoke(inferEvent('roll', request(`obs-${i}`)))).statusCode).toBe(200);
    expect(seen).toHaveLength(4);
    expect(flushes).toBe(1); // a flush in progress is not started again
    expect(seen[0]).toMatchObject({
      model: 'roll',
      version: 1,
      requestId: 'obs-0',
      alias: 'production',
      status: 200,
      batchSize: 1,
    });
    expect(Array.from(seen[0]!.inputs[0]!.data as Float32Array)).toEqual(Array.from(x));
    expect(seen[0]!.outputs[0]).toMatchObject({ name: 'output', datatype: 'FP32', shape: [1, 3] });
    await invoke(inferEvent('roll', { inputs: [] }));
    expect(seen).toHaveLength(5);
    expect(seen[4]).toMatchObject({ status: 400, inputs: [], outputs: [] });
    await fx.reinstall();
  });

  it('EMF lines carry model and version dimensions and go to stdout', () => {
    const lines: string[] = [];
    const write = process.stdout.write.bind(process.stdout);
    process.stdout.write = ((chunk: string | Uint8Array) => {
      lines.push(String(chunk));
      return true;
    }) as typeof process.stdout.write;
    try {
      const sink = new EmfRequestMetrics({ namespace: 'maas-test' });
      sink.add('Invocations', 'Count', 1, { model: 'iris', version: '3' });
      sink.add('Latency', 'Milliseconds', 4.5, { model: 'iris', version: '3' });
      sink.add('Invocations', 'Count', 1, { model: 'iris', version: '4' });
      sink.flush();
      sink.flush(); // nothing buffered: writes nothing
    } finally {
      process.stdout.write = write;
    }
    const docs = lines.map(
      (l) =>
        JSON.parse(l) as Record<string, unknown> & {
          _aws: {
            CloudWatchMetrics: {
              Namespace: string;
              Dimensions: string[][];
              Metrics: { Name: string; Unit: string }[];
            }[];
          };
        },
    );
    expect(docs).toHaveLength(2);
    const v3 = docs.find((d) => d.version === '3')!;
    expect(v3._aws.CloudWatchMetrics[0]!.Namespace).toBe('maas-test');
    expect(v3._aws.CloudWatchMetrics[0]!.Dimensions[0]).toEqual(expect.arrayContaining(['model', 'version']));
    expect(v3._aws.CloudWatchMetrics[0]!.Metrics).toEqual(
      expect.arrayContaining([{ Name: 'Latency', Unit: 'Milliseconds' }]),
    );
    expect(v3).toMatchObject({ model: 'iris', Invocations: 1, Latency: 4.5 });
    expect(createRequestMetrics({ MAAS_METRICS: 'off' })).toBeInstanceOf(NoopRequestMetrics);
  });
});
