import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { handler as feedbackHandler } from '../../functions/feedback/handler';
import { resetRuntime } from '../../functions/lib/runtime';
import { CaptureObserver } from '../../shared/monitor/capture';
import type { FeedbackFile } from '../../shared/monitor/feedback';
import { monitoringLayout } from '../../shared/monitor/layout';
import { LocalMetricsSink } from '../../shared/monitor/metrics-sink';
import { policyFromEnv } from '../../shared/monitor/policy';
import { runMonitor } from '../../shared/monitor/run';
import { ModelRegistry } from '../../shared/registry';
import { createObjectStore, listAll, type ObjectStore } from '../../shared/store';
import { type GatewayRoute, invoke } from '../support/gateway';
import { createTestBucket, type TestBucket } from '../support/s3';
import { fp32, observation } from './support';

const routes: GatewayRoute[] = [
  { routeKey: 'POST /models/{name}/feedback', handler: feedbackHandler as GatewayRoute['handler'] },
];
const post = (model: string, body: unknown, headers: Record<string, string> = {}) =>
  invoke(routes, 'POST', `/models/${model}/feedback`, {
    body: typeof body === 'string' ? body : (body as object),
    headers: { 'content-type': 'application/json', ...headers },
  });

describe('ground-truth feedback joined to captured predictions (S3)', () => {
  let bucket: TestBucket;
  let store: ObjectStore;
  let dir: string;
  beforeAll(async () => {
    bucket = await createTestBucket('feedback');
    process.env.MAAS_STORE = `s3://${bucket.bucket}/maas`;
    resetRuntime();
    store = createObjectStore(process.env.MAAS_STORE);
    dir = await mkdtemp(path.join(tmpdir(), 'feedback-metrics-'));
  });
  afterAll(async () => {
    delete process.env.MAAS_STORE;
    delete process.env.MAAS_API_KEY;
    resetRuntime();
    await bucket?.cleanup();
    await rm(dir, { recursive: true, force: true });
  });

  it('classification: accuracy on a labelled set is exact; unknown ids are counted, not errors', async () => {
    const observer = new CaptureObserver(store);
    // 200 requests predicting class i % 3 (scores peak there).
    for (let i = 0; i < 200; i++) {
      const scores = [0.1, 0.1, 0.1];
      scores[i % 3] = 0.8;
      observer.observe(
        observation({
          model: 'clf',
          version: 1,
          requestId: `r${i}`,
          inputs: [fp32('x', [[i]])],
          outputs: [fp32('p', [scores])],
        }),
      );
    }
    await observer.close();
    // Labels: the first 150 agree with the prediction, the last 50 do not → accuracy 0.75.
    const labelled = Array.from({ length: 200 }, (_, i) => ({
      id: `r${i}`,
      target: i < 150 ? i % 3 : (i + 1) % 3,
    }));
    const unknown = Array.from({ length: 7 }, (_, i) => ({ id: `never-seen-${i}`, target: 0 }));
    const res = await post('clf', [...labelled.slice(0, 120), ...unknown]);
    expect(res.status).toBe(200);
    expect(res.json()).toMatchObject({
      model: 'clf',
      received: 127,
      accepted: 120,
      unknown: 7,
      expired: 0,
      mismatched: 0,
    });
    const res2 = await post('clf', { feedback: labelled.slice(120) });
    expect(res2.json()).toMatchObject({ received: 80, accepted: 80, unknown: 0 });

    const files = await listAll(store, { prefix: monitoringLayout.feedbackPrefix('clf') });
    expect(files.objects.length).toBe(2);
    const stored = JSON.parse((await store.get(files.objects[0]!.key)).body.toString()) as FeedbackFile;
    expect(stored.records[0]).toMatchObject({ version: 1, kind: 'class' });

    const result = await runMonitor({
      store,
      registry: new ModelRegistry(store),
      sink: new LocalMetricsSink(dir),
      policy: policyFromEnv({}),
      graceSeconds: 0,
      models: ['clf'],
    });
    const report = result.models[0]!.report!;
    expect(report.feedback.records).toBe(200);
    expect(report.versions['1']!.quality).toEqual({ kind: 'class', n: 200, accuracy: 0.75 });
  });

  it('regression: MAE and RMSE; batch rows are scored one by one', async () => {
    const observer = new CaptureObserver(store);
    observer.observe(
      observation({
        model: 'reg',
        version: 2,
        requestId: 'a',
        outputs: [fp32('y', [[1], [2]])],
        batchSize: 2,
      }),
    );
    observer.observe(observation({ model: 'reg', version: 2, requestId: 'b', outputs: [fp32('y', [[10]])] }));
    await observer.close();
    const res = await post('reg', [
      { id: 'a', target: [2, 0] },
      { id: 'b', target: 7 },
      { id: 'b', target: [1, 2] },
    ]);
    expect(res.json()).toMatchObject({ accepted: 2, mismatched: 1 });
    const result = await runMonitor({
      store,
      registry: new ModelRegistry(store),
      sink: new LocalMetricsSink(dir),
      policy: policyFromEnv({}),
      graceSeconds: 0,
      models: ['reg'],
    });
    // errors 1, 2, 3 → MAE 2, RMSE sqrt(14/3)
    const q = result.models[0]!.report!.versions['2']!.quality!;
    expect(q.kind).toBe('value');
    expect(q.n).toBe(3);
    expect(q.mae).toBeCloseTo(2, 6);
    expect(q.rmse).toBeCloseTo(Math.sqrt(14 / 3), 6);
  });

  it('bad bodies are 4xx with a clear message and store nothing', async () => {
    const before = (await listAll(store, { prefix: 'monitoring/feedback/' })).objects.length;
    const cases: [unknown, number, RegExp][] = [
      ['{not json', 400, /malformed JSON/],
      [{ items: [] }, 400, /array of \{id, target\}/],
      [[], 400, /empty/],
      [
        [
          { id: 'a', target: 1 },
          { id: '', target: 1 },
        ],
        400,
        /feedback\[1\]\.id/,
      ],
      [[{ id: 'a', target: 'cat' }], 400, /feedback\[0\]\.target/],
      [[{ id: 'a', target: [1, null] }], 400, /feedback\[0\]\.target/],
      [Array.from({ length: 1001 }, (_, i) => ({ id: `x${i}`, target: 1 })), 413, /at most 1000/],
    ];
    for (const [body, status, message] of cases) {
      const res = await post('clf', body);
      expect(res.status, JSON.stringify(body).slice(0, 60)).toBe(status);
      expect(res.json<{ error: string }>().error).toMatch(message);
    }
    expect((await post('Bad Name', [{ id: 'a', target: 1 }])).status).toBe(400);
    expect((await post('clf', [{ id: 'a', target: 1 }], { 'content-type': 'text/plain' })).status).toBe(415);
    expect((await listAll(store, { prefix: 'monitoring/feedback/' })).objects.length).toBe(before);
  });

  it('requires the API key when MAAS_API_KEY is set', async () => {
    // The middleware reads the key when the handler module is built: load a fresh copy.
    process.env.MAAS_API_KEY = 'sesame';
    try {
      vi.resetModules();
      const file = path.resolve(__dirname, '../../functions/feedback/handler.ts');
      const fresh = ((await import(file)) as { handler: GatewayRoute['handler'] }).handler;
      const call = (headers: Record<string, string>) =>
        invoke(
          [{ routeKey: 'POST /models/{name}/feedback', handler: fresh }],
          'POST',
          '/models/clf/feedback',
          { body: [{ id: 'r1', target: 1 }], headers },
        );
      expect((await call({})).status).toBe(401);
      expect((await call({ 'x-api-key': 'sesame' })).status).toBe(200);
    } finally {
      delete process.env.MAAS_API_KEY;
    }
  });
});
