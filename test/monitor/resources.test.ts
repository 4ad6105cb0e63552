/**
 * Resource metrics: predict reports, per invocation, the memory its sessions hold and the
 * container's RSS (EMF through shared/request-metrics), and the monitor aggregates what the capture saw
 * into each version's report — through the real inference core, onnxruntime and RGW.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { buildMlp } from '../../dev/onnx-builder';
import { InferenceService, PREDICT_METRICS } from '../../shared/inference';
import { NODE_BYTES, SESSION_OVERHEAD_BYTES } from '../../shared/inference/session-cache';
import { CaptureObserver } from '../../shared/monitor/capture';
import type { MonitorMetricPoint, MonitorSinkResult } from '../../shared/monitor/metrics-sink';
import { policyFromEnv } from '../../shared/monitor/policy';
import { runMonitor } from '../../shared/monitor/run';
import { inspectModel } from '../../shared/onnx/inspect';
import { ModelRegistry } from '../../shared/registry';
import { EmfRequestMetrics, MemoryRequestMetrics } from '../../shared/request-metrics';
import { createTestStore, type TestStore } from '../support/stores';

class MemorySink {
  readonly kind = 'local' as const;
  async put(_ns: string, points: readonly MonitorMetricPoint[]): Promise<MonitorSinkResult> {
    return { calls: 1, delivered: points.length, skippedNonFinite: 0, failedCalls: 0, errors: [] };
  }
}

/** The session cache's documented estimate of a small model's session (docs/api/predict.md). */
const estimate = (model: Uint8Array): number =>
  Math.ceil(model.byteLength * 1.5) +
  (inspectModel(model).nodeCount ?? 0) * NODE_BYTES +
  SESSION_OVERHEAD_BYTES;

describe('resource metrics', () => {
  let ts: TestStore;
  let registry: ModelRegistry;
  let cacheDir: string;
  const small = buildMlp({ inputSize: 8, hiddenSizes: [16], outputSize: 2, seed: 41 });
  const large = buildMlp({ inputSize: 8, hiddenSizes: [512, 512], outputSize: 2, seed: 42 });
  beforeAll(async () => {
    ts = await createTestStore('s3', 'resources');
    registry = new ModelRegistry(ts.store);
    cacheDir = await mkdtemp(path.join(tmpdir(), 'resources-models-'));
    await registry.registerVersion('res', small.bytes);
    await registry.registerVersion('res', large.bytes);
  });
  afterAll(async () => {
    await ts?.cleanup();
    await rm(cacheDir, { recursive: true, force: true });
  });

  const body = JSON.stringify({
    inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 8], data: [1, 2, 3, 4, 5, 6, 7, 8] }],
  });

  it('reports session memory and RSS per invocation and the monitor aggregates them per version', async () => {
    const metrics = new MemoryRequestMetrics();
    const capture = new CaptureObserver(ts.store);
    const service = new InferenceService({
      registry,
      metrics,
      observers: [capture],
      settings: { modelCacheDir: cacheDir },
    });
    try {
      for (let i = 0; i < 3; i++) await service.infer('res', '1', body);
      for (let i = 0; i < 2; i++) await service.infer('res', '2', body);
      const sessionOf = (v: string) =>
        metrics.points(PREDICT_METRICS.sessionMemory, { model: 'res', version: v });
      // The session cache's estimate of each version's session: 1.5 × the model bytes + 4 KiB a node + 256 KiB.
      expect(sessionOf('1').map((p) => p.value)).toEqual(new Array(3).fill(estimate(small.bytes)));
      expect(sessionOf('2').map((p) => p.value)).toEqual(new Array(2).fill(estimate(large.bytes)));
      expect(sessionOf('1').every((p) => p.unit === 'Bytes')).toBe(true);
      const total = estimate(small.bytes) + estimate(large.bytes);
      expect(
        metrics.points(PREDICT_METRICS.sessionCacheMemory, { version: '2' }).map((p) => p.value),
      ).toEqual([total, total]);
      const rss = metrics.points(PREDICT_METRICS.containerRss, { model: 'res' });
      expect(rss).toHaveLength(5);
      // Plausible RSS of this very process: at least the heap in use, below the machine's memory.
      for (const p of rss) expect(p.value).toBeGreaterThan(process.memoryUsage().heapUsed / 2);

      await capture.close();
      const run = await runMonitor({
        store: ts.store,
        registry,
        sink: new MemorySink(),
        policy: policyFromEnv({}),
        graceSeconds: 0,
        models: ['res'],
      });
      const versions = run.models[0]!.report!.versions;
      expect(versions['1']?.resources).toMatchObject({
        samples: 3,
        sessionBytesMax: estimate(small.bytes),
      });
      expect(versions['2']?.resources).toMatchObject({
        samples: 2,
        sessionBytesMax: estimate(large.bytes),
        sessionCacheBytesMax: total,
      });
      const v1 = versions['1']!.resources!;
      const seen = rss.filter((p) => p.dimensions.version === '1').map((p) => p.value);
      expect(v1.rssBytesMax).toBe(Math.max(...seen));
      expect(v1.rssBytesMean).toBeCloseTo(seen.reduce((a, b) => a + b, 0) / seen.length, 0);
    } finally {
      await service.close();
    }
  });

  it('writes them as CloudWatch EMF with the model and version dimensions', async () => {
    const lines: string[] = [];
    const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: unknown) => {
      lines.push(String(chunk));
      return true;
    });
    const service = new InferenceService({
      registry,
      metrics: new EmfRequestMetrics({ namespace: 'maas-test' }),
      settings: { modelCacheDir: cacheDir },
    });
    try {
      await service.infer('res', '1', body);
    } finally {
      spy.mockRestore();
      await service.close();
    }
    const docs = lines
      .flatMap((l) => l.split('\n'))
      .filter((l) => l.includes('_aws'))
      .map((l) => JSON.parse(l));
    const doc = docs.find((d) => d.model === 'res' && d.version === '1');
    expect(doc).toBeDefined();
    const names = (doc._aws.CloudWatchMetrics[0].Metrics as { Name: string; Unit: string }[]).map(
      (m) => `${m.Name}:${m.Unit}`,
    );
    expect(names).toEqual(
      expect.arrayContaining(['SessionMemory:Bytes', 'SessionCacheMemory:Bytes', 'ContainerRss:Bytes']),
    );
    expect(doc.SessionMemory).toBe(estimate(small.bytes));
    expect(doc.ContainerRss).toBeGreaterThan(0);
  });
});
