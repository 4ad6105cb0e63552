import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readBaseline } from '../../shared/monitor/baseline';
import { CaptureObserver } from '../../shared/monitor/capture';
import { LocalMetricsSink } from '../../shared/monitor/metrics-sink';
import { policyFromEnv } from '../../shared/monitor/policy';
import { runMonitor } from '../../shared/monitor/run';
import { ModelRegistry } from '../../shared/registry';
import { tinyModel } from '../support/models';
import { createTestStore, type TestStore } from '../support/stores';
import { fp32, observation } from './support';

/**
 * Anyone who may call predict may call `/versions/{n}`: that traffic must not decide rollbacks or
 * shape baselines. Observations are what predict reports (`alias` set only when the request was
 * routed through one).
 */
describe('monitor decisions only from alias traffic (S3 store)', () => {
  let ts: TestStore;
  let registry: ModelRegistry;
  let metricsDir: string;
  beforeAll(async () => {
    ts = await createTestStore('s3', 'trusted');
    registry = new ModelRegistry(ts.store);
    metricsDir = await mkdtemp(path.join(tmpdir(), 'trusted-metrics-'));
  });
  afterAll(async () => {
    await ts?.cleanup();
    await rm(metricsDir, { recursive: true, force: true });
  });
  const monitor = (model: string) =>
    runMonitor({
      store: ts.store,
      registry,
      sink: new LocalMetricsSink(metricsDir),
      policy: policyFromEnv({ MAAS_ROLLBACK_WINDOWS: '1', MAAS_ROLLBACK_PRIMARY: 'true' }),
      graceSeconds: 0,
      baselineRequests: 10,
      models: [model],
    });
  async function canaryModel(model: string) {
    const v1 = (await registry.registerVersion(model, tinyModel(11))).version.version;
    const v2 = (await registry.registerVersion(model, tinyModel(12))).version.version;
    await registry.setAlias(model, 'production', v1, { actor: 'test', canary: { version: v2, weight: 0.2 } });
    return { v1, v2 };
  }

  it('failing calls to /versions/{canary} do not roll the canary back; the same failures through the alias do', async () => {
    const model = 'steer';
    const { v1, v2 } = await canaryModel(model);
    const capture = new CaptureObserver(ts.store, { flushTimer: false });
    for (let i = 0; i < 60; i++) capture.observe(observation({ model, version: v2, status: 500 }));
    for (let i = 0; i < 40; i++) capture.observe(observation({ model, version: v1, alias: 'production' }));
    await capture.close();
    const first = (await monitor(model)).models[0]!.report!;
    expect(first.versions[String(v2)]).toMatchObject({ requests: 60, errors: 60 });
    expect(first.actions).toEqual([]);
    expect(first.evaluations.find((e) => e.role === 'canary')).toMatchObject({
      version: v2,
      evidence: false,
    });
    expect((await registry.getAlias(model, 'production')).canary).toMatchObject({ version: v2 });

    for (let i = 0; i < 30; i++)
      capture.observe(observation({ model, version: v2, alias: 'production', status: 500 }));
    await capture.close();
    const second = (await monitor(model)).models[0]!.report!;
    expect(second.actions).toMatchObject([
      { type: 'canary_removed', alias: 'production', version: v2, ok: true },
    ]);
    expect((await registry.getAlias(model, 'production')).canary).toBeUndefined();
  });

  it('a traffic baseline is built from alias traffic only', async () => {
    const model = 'poison';
    const { v1 } = await canaryModel(model);
    const capture = new CaptureObserver(ts.store, { flushTimer: false });
    // 50 direct calls with far-off inputs, 10 through the alias with the real distribution.
    for (let i = 0; i < 50; i++)
      capture.observe(observation({ model, version: v1, inputs: [fp32('x', [[1e5, 1e5]])] }));
    for (let i = 0; i < 10; i++)
      capture.observe(
        observation({ model, version: v1, alias: 'production', inputs: [fp32('x', [[1, 2]])] }),
      );
    await capture.close();
    await monitor(model);
    const baseline = (await readBaseline(ts.store, model, v1))!.doc;
    expect(baseline).toMatchObject({ source: 'traffic', requests: 10, complete: true });
    expect(baseline.inputs['x[0]']).toMatchObject({ count: 10, max: 1 });
  });
});
