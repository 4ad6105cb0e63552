/**
 * Real data for the dashboard's tests and screenshots: models registered through the registry,
 * traffic through the real inference core (onnxruntime) with the capture observer predict uses,
 * feedback joined to it, and monitor runs over it, one window after another: every number the
 * pages show comes from the monitor's own reports.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { buildIrisClassifier } from '../../dev/demo/iris';
import { buildMlp, mulberry32 } from '../../dev/onnx-builder';
import { InferenceService } from '../../shared/inference';
import { CaptureObserver } from '../../shared/monitor/capture';
import { recordFeedback } from '../../shared/monitor/feedback';
import { LocalMetricsSink } from '../../shared/monitor/metrics-sink';
import { policyFromEnv } from '../../shared/monitor/policy';
import { runMonitor } from '../../shared/monitor/run';
import { ModelRegistry } from '../../shared/registry';
import type { ObjectStore } from '../../shared/store';

export interface SeedOptions {
  /** Monitor windows of traffic (default 4). */
  windows?: number;
  /** Requests per window (default 60). */
  requests?: number;
}

/**
 * Registers `iris` (v1 production, v2 as a 30 % canary), `digits` and `flowers` (one version each), sends
 * traffic whose inputs drift upwards window by window, records feedback, and runs the monitor
 * after each window.
 *
 * @example
 * ```ts
 * await seedDashboardData(store, { windows: 3 });
 * ```
 */
export async function seedDashboardData(store: ObjectStore, options: SeedOptions = {}): Promise<void> {
  const windows = options.windows ?? 4;
  const requests = options.requests ?? 60;
  const registry = new ModelRegistry(store);
  const iris = buildIrisClassifier();
  const v1 = (
    await registry.registerVersion('iris', iris.bytes, {
      description: 'hand-made flower classifier',
      tags: { team: 'demo' },
      actor: 'alice',
    })
  ).version;
  const retrained = buildMlp({ inputSize: 4, hiddenSizes: [6], outputSize: 3, seed: 7 });
  const v2 = (
    await registry.registerVersion('iris', retrained.bytes, {
      description: 'retrained',
      tags: { data: '2026-11' },
      actor: 'bob',
    })
  ).version;
  await registry.setAlias('iris', 'production', v1.version, { actor: 'alice', reason: 'first release' });
  await registry.setAlias('iris', 'production', v1.version, {
    actor: 'bob',
    reason: 'try the retrained model on 30 %',
    canary: { version: v2.version, weight: 0.3 },
  });
  await registry.setAlias('iris', 'staging', v2.version, { actor: 'bob', reason: 'retrained' });
  // Big enough for fp16 to halve it: what an optimization that keeps a candidate looks like.
  await registry.registerVersion(
    'digits',
    buildMlp({ inputSize: 32, hiddenSizes: [256, 256], outputSize: 8, seed: 4 }).bytes,
    { actor: 'dana', description: 'float32 original' },
  );
  await registry.registerVersion(
    'flowers',
    buildMlp({ inputSize: 4, hiddenSizes: [3], outputSize: 2, seed: 3 }).bytes,
    { actor: 'carol' },
  );

  const cacheDir = await mkdtemp(path.join(tmpdir(), 'ui-seed-models-'));
  const metricsDir = await mkdtemp(path.join(tmpdir(), 'ui-seed-metrics-'));
  const rand = mulberry32(11);
  try {
    for (let w = 0; w < windows; w++) {
      const capture = new CaptureObserver(store, { flushRequests: 10_000 });
      const service = new InferenceService({
        registry,
        observers: [capture],
        settings: { modelCacheDir: cacheDir },
      });
      const truth: { id: string; target: number }[] = [];
      for (let i = 0; i < requests; i++) {
        // Inputs drift upwards from the second window on.
        const shift = w * 0.8;
        const row = [4.5 + rand() * 3 + shift, 2 + rand() * 2, 1 + rand() * 5 + shift, rand() * 2.5];
        const id = `w${w}-r${i}`;
        const res = await service.infer(
          'iris',
          undefined,
          JSON.stringify({ id, inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 4], data: row }] }),
          { contentType: 'application/json' },
        );
        const out = JSON.parse(String(res.body)) as { outputs: { name: string; data: number[] }[] };
        // v1 answers a label; the canary (an MLP) only probabilities: take their argmax.
        const probs = out.outputs.find((o) => o.name !== 'label')!.data;
        const label =
          out.outputs.find((o) => o.name === 'label')?.data[0] ?? probs.indexOf(Math.max(...probs));
        // Ground truth agrees with the prediction 9 times in 10.
        truth.push({ id, target: i % 10 === 9 ? (Number(label) + 1) % 3 : Number(label) });
      }
      await capture.close();
      await service.close();
      await recordFeedback(store, 'iris', truth);
      const run = await runMonitor({
        store,
        registry,
        sink: new LocalMetricsSink(metricsDir),
        policy: policyFromEnv({ MAAS_ROLLBACK_CANARY: 'false' }),
        graceSeconds: 0,
        // A small traffic baseline, complete after the first window: drift shows from the second on.
        baselineRequests: Math.max(1, Math.floor(requests / 5)),
        models: ['iris'],
      });
      const result = run.models[0];
      if (result?.status !== 'processed')
        throw new Error(`monitor window ${w}: ${result?.status} ${result?.error ?? ''}`);
    }
  } finally {
    await rm(cacheDir, { recursive: true, force: true });
    await rm(metricsDir, { recursive: true, force: true });
  }
}
