import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InferenceService } from '../../shared/inference';
import { CaptureObserver } from '../../shared/monitor/capture';
import { monitoringLayout } from '../../shared/monitor/layout';
import { LocalMetricsSink } from '../../shared/monitor/metrics-sink';
import { policyFromEnv } from '../../shared/monitor/policy';
import { type MonitorRunResult, runMonitor } from '../../shared/monitor/run';
import { ModelRegistry } from '../../shared/registry';
import { listAll, type ObjectStore, type PutBody, type PutOptions, type PutResult } from '../../shared/store';
import { sleep } from '../../shared/util/backoff';
import { tinyModel } from '../support/models';
import { createTestStore, storeKinds, type TestStore } from '../support/stores';
import { fp32, observation } from './support';

/** Wraps a store; capture writes can be held back (land late) or have their reply lost after landing. */
class FaultyCaptureStore implements ObjectStore {
  /** `hold`: capture puts wait for `release()`; `lost-reply`: they land, then fail. */
  mode: 'ok' | 'hold' | 'lost-reply' = 'ok';
  private held: (() => void)[] = [];
  constructor(private readonly inner: ObjectStore) {}
  get location() {
    return this.inner.location;
  }
  get(key: string) {
    return this.inner.get(key);
  }
  getStream(key: string) {
    return this.inner.getStream(key);
  }
  getRange(key: string, start: number, end: number) {
    return this.inner.getRange(key, start, end);
  }
  copy(from: string, to: string, options?: Parameters<ObjectStore['copy']>[2]) {
    return this.inner.copy(from, to, options);
  }
  head(key: string) {
    return this.inner.head(key);
  }
  delete(key: string) {
    return this.inner.delete(key);
  }
  list(options?: Parameters<ObjectStore['list']>[0]) {
    return this.inner.list(options);
  }
  async put(key: string, body: PutBody, options?: PutOptions): Promise<PutResult> {
    if (!key.startsWith(monitoringLayout.capturesRoot) || this.mode === 'ok')
      return this.inner.put(key, body, options);
    if (this.mode === 'hold') {
      await new Promise<void>((resolve) => this.held.push(resolve));
      return this.inner.put(key, body, options);
    }
    await this.inner.put(key, body, options).catch(() => undefined);
    throw new Error('socket hang up (reply lost)');
  }
  release(): void {
    for (const r of this.held.splice(0)) r();
  }
}

const requestsIn = (r: MonitorRunResult, version: number): number =>
  r.models.reduce((n, m) => n + (m.report?.versions[String(version)]?.requests ?? 0), 0);

describe('capture delivery: a burst then silence reaches the monitor (S3 store, real onnxruntime)', () => {
  let ts: TestStore;
  let cacheDir: string;
  let metricsDir: string;
  beforeAll(async () => {
    ts = await createTestStore('s3', 'cap-burst');
    cacheDir = await mkdtemp(path.join(tmpdir(), 'cap-burst-models-'));
    metricsDir = await mkdtemp(path.join(tmpdir(), 'cap-burst-metrics-'));
  });
  afterAll(async () => {
    await ts?.cleanup();
    await rm(cacheDir, { recursive: true, force: true });
    await rm(metricsDir, { recursive: true, force: true });
  });

  it('60 requests in a burst, then no traffic: the flush timer writes them and the monitor counts all 60', async () => {
    const registry = new ModelRegistry(ts.store);
    const model = 'burst';
    const v = (await registry.registerVersion(model, tinyModel(1))).version;
    await registry.setAlias(model, 'production', v.version, { actor: 'test' });
    // The defaults except a 1 s flush period: 1000 requests would be needed for a count-based flush.
    const capture = new CaptureObserver(ts.store, { flushSeconds: 1 });
    const svc = new InferenceService({
      registry,
      observers: [capture],
      settings: { modelCacheDir: cacheDir },
    });
    const body = JSON.stringify({
      inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }],
    });
    await Promise.all(
      Array.from({ length: 60 }, () =>
        svc.infer(model, undefined, body, { contentType: 'application/json' }),
      ),
    );
    // No further request, no close(): only the timer can write them.
    let files = 0;
    for (let i = 0; i < 50 && files === 0; i++) {
      await sleep(100);
      files = (await listAll(ts.store, { prefix: monitoringLayout.capturesPrefix(model) })).objects.length;
    }
    expect(files).toBeGreaterThan(0);
    await capture.drain();
    const run = await runMonitor({
      store: ts.store,
      registry,
      sink: new LocalMetricsSink(metricsDir),
      policy: policyFromEnv({}),
      graceSeconds: 0,
      models: [model],
    });
    expect(requestsIn(run, v.version)).toBe(60);
    expect(run.models[0]!.report!.versions[String(v.version)]!.aliases).toEqual({ production: 60 });
    await svc.close();
    await capture.close();
  });
});

describe.each(storeKinds)('capture delivery under faults (%s store)', (kind) => {
  let ts: TestStore;
  let metricsDir: string;
  beforeAll(async () => {
    ts = await createTestStore(kind, 'cap-late');
    metricsDir = await mkdtemp(path.join(tmpdir(), 'cap-late-metrics-'));
  });
  afterAll(async () => {
    await ts?.cleanup();
    await rm(metricsDir, { recursive: true, force: true });
  });
  const monitor = (model: string) =>
    runMonitor({
      store: ts.store,
      registry: new ModelRegistry(ts.store),
      sink: new LocalMetricsSink(metricsDir),
      policy: policyFromEnv({}),
      graceSeconds: 0,
      models: [model],
    });
  const observe = (c: CaptureObserver, model: string, n: number) => {
    for (let i = 0; i < n; i++)
      c.observe(
        observation({ model, version: 1, inputs: [fp32('x', [[i, 1]])], outputs: [fp32('y', [[0.2, 0.8]])] }),
      );
  };

  it('a capture write that lands after the monitor moved past its time is merged in the next run, exactly once', async () => {
    const model = `late-${kind}`;
    const faulty = new FaultyCaptureStore(ts.store);
    const slow = new CaptureObserver(faulty, { containerId: 'slow', flushTimer: false, flushBudgetMs: 0 });
    const fast = new CaptureObserver(ts.store, { containerId: 'fast', flushTimer: false });
    faulty.mode = 'hold';
    observe(slow, model, 7);
    await slow.flush(); // returns after the budget; the write is held
    await sleep(5); // the fast container's key time is after the slow one's
    observe(fast, model, 5);
    await fast.close();
    const first = await monitor(model);
    expect(requestsIn(first, 1)).toBe(5);
    faulty.release();
    await slow.drain();
    const second = await monitor(model);
    expect(requestsIn(second, 1)).toBe(7);
    const third = await monitor(model);
    expect(third.models[0]!.status).toBe('idle');
    expect(requestsIn(third, 1)).toBe(0);
  });

  it('a capture whose write landed but whose reply was lost is retried under the same key and counted once', async () => {
    const model = `lost-${kind}`;
    const faulty = new FaultyCaptureStore(ts.store);
    const logged: string[] = [];
    const c = new CaptureObserver(faulty, {
      containerId: 'lost',
      flushTimer: false,
      logger: (m) => logged.push(m),
    });
    faulty.mode = 'lost-reply';
    observe(c, model, 9);
    await c.flush();
    await c.drain();
    expect(c.stats.writeFailures).toBe(1);
    expect(logged.join('\n')).toMatch(/kept for the next flush/);
    faulty.mode = 'ok';
    await c.close(); // the retry: same key, already there
    const keys = (await listAll(ts.store, { prefix: monitoringLayout.capturesPrefix(model) })).objects;
    expect(keys).toHaveLength(1);
    expect(requestsIn(await monitor(model), 1)).toBe(9);
  });

  it('pending captures are bounded in bytes: a flush comes due, and unsent files beyond twice the budget are dropped (counted)', async () => {
    const model = `bytes-${kind}`;
    const broken: ObjectStore = {
      ...ts.store,
      location: ts.store.location,
      put: async () => {
        throw new Error('store down');
      },
    };
    const budget = 64 * 1024;
    const c = new CaptureObserver(broken, {
      flushTimer: false,
      maxPendingBytes: budget,
      flushRequests: 1_000_000,
      flushSeconds: 3600,
      logger: () => undefined,
    });
    let flushes = 0;
    for (let m = 0; m < 200; m++) {
      // 32 features per row: 32 histograms per new model version.
      c.observe(
        observation({
          model: `${model}-${m}`,
          version: 1,
          inputs: [fp32('x', [Array.from({ length: 32 }, (_, i) => i)])],
        }),
      );
      if (c.flushDue) {
        flushes++;
        await c.flush();
        await c.drain();
      }
      expect(c.pendingBytes).toBeLessThan(3 * budget);
    }
    expect(flushes).toBeGreaterThan(10);
    expect(c.stats.capturesDropped).toBeGreaterThan(0);
  });
});
