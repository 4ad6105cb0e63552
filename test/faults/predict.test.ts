/**
 * Predict, through its exported handler, on a registry whose S3 traffic passes the fault proxy:
 * while RGW answers every request with 503 SlowDown or resets, a model predict has already loaded
 * keeps being served (from its session and alias caches), and one it has not is a clear 503 JSON
 * error, never a 500 or a hang; when the faults stop, that one serves too.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildMlp } from '../../dev/onnx-builder';
import { S3ObjectStore } from '../../shared/store';
import { bodyJson, inferEvent, invoke, type PredictFixture, predictFixture } from '../predict/support';
import { type FaultProxy, startFaultProxy } from '../support/fault-proxy';
import { localCopiesLanded } from '../support/model-cache';
import { s3TestConfig } from '../support/s3';

let fx: PredictFixture;
let proxy: FaultProxy;
const model = buildMlp({ inputSize: 4, hiddenSizes: [3], outputSize: 2, seed: 5 });
const request = { inputs: [{ name: 'input', shape: [1, 4], datatype: 'FP32', data: [0.1, 0.2, 0.3, 0.4] }] };

beforeAll(async () => {
  fx = await predictFixture();
  const cfg = s3TestConfig();
  proxy = await startFaultProxy(cfg.endpoint);
  const direct = fx.store as S3ObjectStore;
  const faulty = new S3ObjectStore({
    bucket: direct.bucket,
    prefix: direct.prefix,
    endpoint: proxy.endpoint,
    region: cfg.region,
    forcePathStyle: true,
    credentials: { accessKeyId: cfg.accessKeyId, secretAccessKey: cfg.secretAccessKey },
    maxAttempts: 2,
  });
  await fx.registry.registerVersion('cached', model.bytes, { alias: 'production' });
  await fx.registry.registerVersion(
    'cold',
    buildMlp({ inputSize: 4, hiddenSizes: [3], outputSize: 2, seed: 6 }).bytes,
  );
  await fx.reinstall({ aliasTtlMs: 60_000 }, faulty);
});
afterAll(async () => {
  await proxy?.close();
  await localCopiesLanded(fx.cacheDir, 2);
  await fx?.cleanup();
});

describe('predict while S3 fails', () => {
  it('serves what it has cached, answers 503 for the rest, and recovers', async () => {
    const warm = await invoke(inferEvent('cached', request));
    expect(warm.statusCode).toBe(200);
    const expected = bodyJson(warm).outputs;

    proxy.chaos({ seed: 21, rate: 1, actions: ['slowdown', 'reset-before', 'reset-mid-body'] });
    const before = proxy.log.length;
    for (let i = 0; i < 10; i++) {
      const res = await invoke(inferEvent('cached', request));
      expect(res.statusCode).toBe(200);
      expect(bodyJson(res).outputs).toEqual(expected);
    }
    const cold = await invoke(inferEvent('cold', request));
    expect(cold.statusCode).toBe(503);
    expect(bodyJson(cold)).toEqual({ error: expect.stringMatching(/unavailable/), code: 'unavailable' });
    expect(proxy.log.length).toBeGreaterThan(before); // the cold model did try S3, and met faults

    proxy.calm();
    const recovered = await invoke(inferEvent('cold', request));
    expect(recovered.statusCode).toBe(200);
  });
});
