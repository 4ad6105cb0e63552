import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildMlp, mlpReference } from '../../dev/onnx-builder';
import { InferenceService } from '../../shared/inference';
import { createBaselineFromData } from '../../shared/monitor/baseline';
import { CaptureObserver } from '../../shared/monitor/capture';
import { recordFeedback } from '../../shared/monitor/feedback';
import { LocalMetricsSink } from '../../shared/monitor/metrics-sink';
import { policyFromEnv } from '../../shared/monitor/policy';
import { runMonitor } from '../../shared/monitor/run';
import { ModelRegistry } from '../../shared/registry';
import { createTestStore, type TestStore } from '../support/stores';
import { fp32, gaussian } from './support';

/**
 * End to end through the real inference core: requests go through `InferenceService.infer`
 * (alias resolution, canary split by request id, onnxruntime), the capture observer is plugged
 * in exactly as predict's runtime does (`observers`), and the monitor reads what it wrote.
 */
describe('monitoring through predict (S3 store, real onnxruntime)', () => {
  let ts: TestStore;
  let registry: ModelRegistry;
  let cacheDir: string;
  let metricsDir: string;
  beforeAll(async () => {
    ts = await createTestStore('s3', 'mon-e2e');
    registry = new ModelRegistry(ts.store);
    cacheDir = await mkdtemp(path.join(tmpdir(), 'mon-e2e-models-'));
    metricsDir = await mkdtemp(path.join(tmpdir(), 'mon-e2e-metrics-'));
  });
  afterAll(async () => {
    await ts?.cleanup();
    await rm(cacheDir, { recursive: true, force: true });
    await rm(metricsDir, { recursive: true, force: true });
  });

  const service = (capture: CaptureObserver) =>
    new InferenceService({ registry, observers: [capture], settings: { modelCacheDir: cacheDir } });
  const body = (id: string, rows: number[][]) =>
    JSON.stringify({
      id,
      inputs: [{ name: 'input', datatype: 'FP32', shape: [rows.length, rows[0]!.length], data: rows.flat() }],
    });
  const monitor = (model: string, env: NodeJS.ProcessEnv = {}) =>
    runMonitor({
      store: ts.store,
      registry,
      sink: new LocalMetricsSink(metricsDir),
      policy: policyFromEnv(env),
      graceSeconds: 0,
      models: [model],
    });

  it('a canary whose model is broken fails its share of requests and is rolled back; feedback scores the primary', async () => {
    const model = 'e2e-canary';
    const mlp = buildMlp({ inputSize: 4, hiddenSizes: [8], outputSize: 3, seed: 1 });
    const v1 = (await registry.registerVersion(model, mlp.bytes)).version;
    const v2 = (
      await registry.registerVersion(
        model,
        buildMlp({ inputSize: 4, hiddenSizes: [8], outputSize: 3, seed: 2 }).bytes,
      )
    ).version;
    await registry.setAlias(model, 'production', v1.version, { actor: 'test' });
    await registry.setAlias(model, 'production', v1.version, {
      actor: 'test',
      canary: { version: v2.version, weight: 0.3 },
    });
    // Break the canary: its stored bytes no longer match the manifest, so predict refuses to serve it (500).
    await ts.store.put(
      v2.blobKey,
      buildMlp({ inputSize: 4, hiddenSizes: [8], outputSize: 3, seed: 99 }).bytes,
    );

    const capture = new CaptureObserver(ts.store, { flushRequests: 50 });
    const svc = service(capture);
    const rand = gaussian(5);
    const statuses = { ok: 0, failed: 0 };
    const truth: { id: string; target: number }[] = [];
    for (let i = 0; i < 200; i++) {
      const row = [rand(), rand(), rand(), rand()];
      const id = `req-${i}`;
      try {
        const res = await svc.infer(model, undefined, body(id, [row]), { contentType: 'application/json' });
        statuses.ok++;
        expect(res.version).toBe(v1.version);
        // Ground truth = the reference model's answer for 3 rows in 4, a wrong class otherwise → accuracy 0.75.
        const ref = mlpReference(mlp.weights, Float32Array.from(row), 1, {
          activation: mlp.activation,
          softmax: mlp.softmax,
        });
        const argmax = [...ref].indexOf(Math.max(...ref));
        truth.push({ id, target: truth.length % 4 === 3 ? (argmax + 1) % 3 : argmax });
      } catch (e) {
        statuses.failed++;
        expect(String(e)).toMatch(/integrity/);
      }
    }
    await capture.close();
    await svc.close();
    // The deterministic split sent roughly 30 % to the canary.
    expect(statuses.failed).toBeGreaterThan(30);
    expect(statuses.failed).toBeLessThan(90);
    const fb = await recordFeedback(ts.store, model, [...truth, { id: 'nope', target: 1 }]);
    expect(fb).toMatchObject({ accepted: truth.length, unknown: 1 });

    const report = (await monitor(model, { MAAS_ROLLBACK_WINDOWS: '1' })).models[0]!.report!;
    expect(report.versions[String(v2.version)]).toMatchObject({
      requests: statuses.failed,
      errors: statuses.failed,
      errorRate: 1,
    });
    expect(report.versions[String(v1.version)]).toMatchObject({
      requests: statuses.ok,
      errors: 0,
      aliases: { production: statuses.ok },
    });
    expect(report.versions[String(v1.version)]!.quality).toEqual({
      kind: 'class',
      n: truth.length,
      accuracy: Math.ceil((truth.length * 3) / 4) / truth.length,
    });
    expect(report.actions).toEqual([
      expect.objectContaining({ type: 'canary_removed', version: v2.version, to: v1.version, ok: true }),
    ]);
    const alias = await registry.getAlias(model, 'production');
    expect(alias.canary).toBeUndefined();
    expect((await registry.history(model)).items.at(-1)!.reason).toMatch(
      /canary version 2 of alias production breached error rate 1 > 0\.05 for 1 consecutive windows/,
    );
  });

  it('drifted inputs sent through predict raise PSI above the threshold; undrifted ones do not', async () => {
    const model = 'e2e-drift';
    const v = (
      await registry.registerVersion(
        model,
        buildMlp({ inputSize: 4, hiddenSizes: [8], outputSize: 3, seed: 3 }).bytes,
      )
    ).version;
    const rand = gaussian(9);
    const rows = (n: number, shift: number) =>
      Array.from({ length: n }, () => [rand() + shift, rand(), rand(), rand()]);
    await createBaselineFromData(ts.store, model, v.version, { inputs: [fp32('input', rows(3000, 0))] });

    const window = async (shift: number) => {
      const capture = new CaptureObserver(ts.store);
      const svc = service(capture);
      // Batches of 10 rows: per-position histograms count rows, not requests.
      for (let i = 0; i < 40; i++)
        await svc.infer(model, String(v.version), body(`d${shift}-${i}`, rows(10, shift)), {
          contentType: 'application/json',
        });
      await capture.close();
      await svc.close();
      return (await monitor(model)).models[0]!.report!.versions[String(v.version)]!.drift;
    };
    const calm = await window(0);
    expect(calm.maxInputPsi!).toBeLessThan(0.1);
    expect(Object.keys(calm.inputs).sort()).toEqual(['input[0]', 'input[1]', 'input[2]', 'input[3]']);
    const drifted = await window(2);
    expect(drifted.inputs['input[0]']!.psi).toBeGreaterThan(0.25);
    expect(drifted.inputs['input[3]']!.psi).toBeLessThan(0.1);
  });
});
