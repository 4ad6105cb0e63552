import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { extendTrafficBaseline, readBaseline } from '../../shared/monitor/baseline';
import { CaptureObserver } from '../../shared/monitor/capture';
import { addValue, emptyHistogram } from '../../shared/monitor/histogram';
import { monitoringLayout } from '../../shared/monitor/layout';
import type { MonitorMetricsSink } from '../../shared/monitor/metrics-sink';
import { policyFromEnv } from '../../shared/monitor/policy';
import { runMonitor } from '../../shared/monitor/run';
import { emptyVersionSummary, type VersionSummary } from '../../shared/monitor/summary';
import { ModelRegistry } from '../../shared/registry';
import type { ObjectStore } from '../../shared/store';
import { createTestStore, storeKinds, type TestStore } from '../support/stores';
import { fp32, gaussian, observation } from './support';

/** The real store, with every key passed to get() recorded. */
function countingGets(store: ObjectStore): { store: ObjectStore; gets: string[] } {
  const gets: string[] = [];
  const wrapped: ObjectStore = {
    location: store.location,
    get: (key) => {
      gets.push(key);
      return store.get(key);
    },
    getStream: (key) => store.getStream(key),
    getRange: (key, start, end) => store.getRange(key, start, end),
    copy: (from, to, options) => store.copy(from, to, options),
    head: (key) => store.head(key),
    put: (key, body, options) => store.put(key, body, options),
    delete: (key) => store.delete(key),
    list: (options) => store.list(options),
  };
  return { store: wrapped, gets };
}

/** Metrics are not what this file checks: accept and drop them. */
const sink: MonitorMetricsSink = {
  kind: 'local',
  put: async (_ns, points) => ({
    calls: 1,
    delivered: points.length,
    skippedNonFinite: 0,
    failedCalls: 0,
    errors: [],
  }),
};

function windowOf(requests: number, values: number[]): VersionSummary {
  const s = emptyVersionSummary();
  s.requests = requests;
  const h = emptyHistogram();
  for (const v of values) addValue(h, v);
  s.inputs['x[0]'] = h;
  return s;
}

describe.each(storeKinds)('traffic baseline reuse on the %s store', (kind) => {
  let ts: TestStore;
  beforeAll(async () => {
    ts = await createTestStore(kind, 'baseline-reuse');
  });
  afterAll(async () => ts?.cleanup());

  it('a monitor run reads a building traffic baseline once, and still extends it', async () => {
    const model = `reuse-${kind}`;
    const rand = gaussian(11);
    const { store, gets } = countingGets(ts.store);
    const runOnce = async (n: number) => {
      const c = new CaptureObserver(ts.store);
      for (let i = 0; i < n; i++)
        c.observe(observation({ model, version: 1, alias: 'production', inputs: [fp32('x', [[rand()]])] }));
      await c.close();
      gets.length = 0;
      const result = await runMonitor({
        store,
        registry: new ModelRegistry(store),
        sink,
        policy: policyFromEnv({}),
        graceSeconds: 0,
        baselineRequests: 1000,
        models: [model],
      });
      return result.models[0]!.report!.versions['1']!.drift;
    };
    expect(await runOnce(100)).toMatchObject({ baseline: 'building', baselineRequests: 100 });
    expect(gets.filter((k) => k === monitoringLayout.baseline(model, 1))).toHaveLength(1);
    expect(await runOnce(50)).toMatchObject({ baseline: 'building', baselineRequests: 150 });
    expect(gets.filter((k) => k === monitoringLayout.baseline(model, 1))).toHaveLength(1);
    expect((await readBaseline(ts.store, model, 1))?.doc.requests).toBe(150);
  });

  it('a stale prefetched baseline loses its compare-and-swap and is re-read, so no window is lost', async () => {
    const model = `stale-${kind}`;
    const now = new Date('2026-11-29T00:00:00Z');
    await extendTrafficBaseline(ts.store, model, 1, windowOf(10, [1, 2]), 1000, now);
    const stale = await readBaseline(ts.store, model, 1);
    expect(stale?.doc.requests).toBe(10);
    // Someone else extends it after our read.
    await extendTrafficBaseline(ts.store, model, 1, windowOf(20, [3]), 1000, now);
    const result = await extendTrafficBaseline(ts.store, model, 1, windowOf(5, [4]), 1000, now, stale);
    expect(result?.requests).toBe(35);
    const stored = (await readBaseline(ts.store, model, 1))!.doc;
    expect(stored.requests).toBe(35);
    expect(stored.inputs['x[0]']!.count).toBe(4);
  });

  it('a prefetched "none" that another writer beat to creation is re-read too', async () => {
    const model = `raced-${kind}`;
    const now = new Date('2026-11-29T00:00:00Z');
    await extendTrafficBaseline(ts.store, model, 1, windowOf(7, [1]), 1000, now);
    const result = await extendTrafficBaseline(ts.store, model, 1, windowOf(3, [2]), 1000, now, null);
    expect(result?.requests).toBe(10);
  });
});
