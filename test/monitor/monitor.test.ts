import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createBaselineFromData, readBaseline } from '../../shared/monitor/baseline';
import { CaptureObserver } from '../../shared/monitor/capture';
import { monitoringLayout } from '../../shared/monitor/layout';
import {
  LocalMetricsSink,
  type MonitorMetricPoint,
  type MonitorMetricsSink,
  type MonitorSinkResult,
} from '../../shared/monitor/metrics-sink';
import { policyFromEnv, putPolicyOverride } from '../../shared/monitor/policy';
import { latestReport, type MonitorReport } from '../../shared/monitor/report';
import { type MonitorOptions, runMonitor } from '../../shared/monitor/run';
import { ModelRegistry } from '../../shared/registry';
import { listAll } from '../../shared/store';
import { tinyModel } from '../support/models';
import { createTestStore, storeKinds, type TestStore } from '../support/stores';
import { fp32, gaussian, observation } from './support';

/** A sink that keeps what it is given (the CloudWatch wire format has its own test). */
class MemorySink implements MonitorMetricsSink {
  readonly kind = 'local';
  points: MonitorMetricPoint[] = [];
  async put(_ns: string, points: readonly MonitorMetricPoint[]): Promise<MonitorSinkResult> {
    this.points.push(...points);
    return { calls: 1, delivered: points.length, skippedNonFinite: 0, failedCalls: 0, errors: [] };
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.each(storeKinds)('monitor on the %s store', (kind) => {
  let ts: TestStore;
  let registry: ModelRegistry;
  beforeAll(async () => {
    ts = await createTestStore(kind, 'monitor');
    registry = new ModelRegistry(ts.store);
  });
  afterAll(async () => ts?.cleanup());

  const options = (over: Partial<MonitorOptions> = {}): MonitorOptions => ({
    store: ts.store,
    registry,
    sink: new MemorySink(),
    policy: policyFromEnv({}),
    graceSeconds: 0,
    ...over,
  });

  it('merges every capture exactly once while containers flush and two monitors run concurrently', async () => {
    const model = `once-${kind}`;
    const containers = [0, 1, 2].map(
      (i) => new CaptureObserver(ts.store, { flushRequests: 7, containerId: `c${i}` }),
    );
    let observed = 0;
    const reports: MonitorReport[] = [];
    let conflicts = 0;
    const collect = (r: Awaited<ReturnType<typeof runMonitor>>) =>
      r.models.forEach((m) => {
        conflicts += m.conflicts;
        if (m.report) reports.push(m.report);
      });
    // Grace 0.5 s: a run only takes captures flushed at least 0.5 s before it started, long after their writes finished.
    const monitor = () => runMonitor(options({ graceSeconds: 0.5, models: [model] }));
    let trafficDone = false;
    const traffic = (async () => {
      for (let round = 0; round < 40; round++) {
        for (const [i, c] of containers.entries()) {
          for (let k = 0; k < 3; k++) {
            c.observe(observation({ model, version: 1 + (i % 2), inputs: [fp32('x', [[round, k]])] }));
            observed++;
            if (c.flushDue) await c.flush();
          }
        }
        await sleep(40);
      }
      trafficDone = true;
    })();
    const monitors = (async () => {
      for (let extra = 2; !trafficDone || extra-- > 0; ) {
        // Two runs at the same moment: they race for the same window.
        const [a, b] = await Promise.all([monitor(), monitor()]);
        collect(a);
        collect(b);
        await sleep(150);
      }
    })();
    await Promise.all([traffic, monitors]);
    for (const c of containers) await c.close();
    await sleep(600);
    const [a, b] = await Promise.all([monitor(), monitor()]);
    collect(a);
    collect(b);
    // Whatever was left (if the two final runs split the window) is empty now.
    expect((await monitor()).models[0]!.status).toBe('idle');

    const captureFiles = (await listAll(ts.store, { prefix: monitoringLayout.capturesPrefix(model) })).objects
      .length;
    const merged = reports.reduce((s, r) => s + r.captures.files, 0);
    const invocations = reports.reduce(
      (s, r) => s + Object.values(r.versions).reduce((t, v) => t + v.requests, 0),
      0,
    );
    expect(captureFiles).toBeGreaterThan(10);
    expect(merged).toBe(captureFiles);
    expect(invocations).toBe(observed);
    expect(reports.length).toBeGreaterThan(2);
    expect(conflicts).toBeGreaterThan(0); // the race did happen: some run lost the swap and re-read
    // Window numbers are unique: no two runs ever took the same window.
    expect(new Set(reports.map((r) => r.window.number)).size).toBe(reports.length);
    const stored = await listAll(ts.store, { prefix: monitoringLayout.reportsPrefix(model) });
    expect(stored.objects.length).toBe(reports.length + 1); // + latest.json
    expect((await latestReport(ts.store, model))?.window.number).toBe(
      Math.max(...reports.map((r) => r.window.number)),
    );
  });

  it('works through a backlog at most maxFiles captures per run, each exactly once', async () => {
    const model = `backlog-${kind}`;
    for (let f = 0; f < 5; f++) {
      const c = new CaptureObserver(ts.store, { containerId: `b${f}` });
      for (let i = 0; i <= f; i++) c.observe(observation({ model, version: 1 }));
      await c.close();
    }
    const runs = [];
    for (let r = 0; r < 4; r++)
      runs.push((await runMonitor(options({ models: [model], maxFiles: 2 }))).models[0]!);
    expect(runs.map((r) => r.status)).toEqual(['processed', 'processed', 'processed', 'idle']);
    expect(runs.map((r) => r.report?.captures.files ?? 0)).toEqual([2, 2, 1, 0]);
    expect(runs.reduce((s, r) => s + (r.report?.versions['1']?.requests ?? 0), 0)).toBe(1 + 2 + 3 + 4 + 5);
  });

  it('a drifted input distribution raises PSI above the threshold; an undrifted one does not', async () => {
    const model = `drift-${kind}`;
    const { version } = await registry.registerVersion(model, tinyModel(11));
    const rand = gaussian(7);
    const rows = (n: number, shift = 0) =>
      Array.from({ length: n }, () => [rand() + shift, rand(), rand() * 3]);
    await createBaselineFromData(ts.store, model, version.version, { inputs: [fp32('x', rows(4000))] });
    expect((await readBaseline(ts.store, model, version.version))?.doc).toMatchObject({
      source: 'reference',
      complete: true,
      requests: 4000,
    });

    const window = async (shift: number) => {
      const c = new CaptureObserver(ts.store);
      for (const r of rows(600, shift))
        c.observe(observation({ model, version: version.version, inputs: [fp32('x', [r])] }));
      await c.close();
      const sink = new MemorySink();
      const report = (await runMonitor(options({ sink, models: [model] }))).models[0]!.report!;
      return { drift: report.versions[String(version.version)]!.drift, sink };
    };
    const calm = await window(0);
    expect(calm.drift.baseline).toBe('reference');
    expect(calm.drift.maxInputPsi!).toBeLessThan(0.1);
    for (const f of ['x[0]', 'x[1]', 'x[2]']) expect(calm.drift.inputs[f]!.psi).toBeLessThan(0.1);

    const drifted = await window(1.5); // feature 0 moves by 1.5 standard deviations
    expect(drifted.drift.inputs['x[0]']!.psi).toBeGreaterThan(0.25);
    expect(drifted.drift.inputs['x[0]']!.ks).toBeGreaterThan(0.3);
    expect(drifted.drift.inputs['x[1]']!.psi).toBeLessThan(0.1);
    expect(drifted.drift.maxInputPsi!).toBeGreaterThan(0.25);
    const psiPoint = drifted.sink.points.find(
      (p) => p.name === 'PSI' && p.dimensions.feature === 'input:x[0]',
    );
    expect(psiPoint?.value).toBe(drifted.drift.inputs['x[0]']!.psi);
    expect(psiPoint?.dimensions).toEqual({ model, version: String(version.version), feature: 'input:x[0]' });
  });

  it('without reference data, the first N requests become the baseline, then drift is measured against it', async () => {
    const model = `traffic-${kind}`;
    const rand = gaussian(3);
    const send = async (n: number, shift: number) => {
      const c = new CaptureObserver(ts.store);
      for (let i = 0; i < n; i++)
        c.observe(
          observation({ model, version: 1, alias: 'production', inputs: [fp32('x', [[rand() + shift]])] }),
        );
      await c.close();
      return (await runMonitor(options({ baselineRequests: 500, models: [model] }))).models[0]!.report!
        .versions['1']!.drift;
    };
    expect(await send(300, 0)).toMatchObject({
      baseline: 'building',
      baselineRequests: 300,
      maxInputPsi: null,
    });
    expect(await send(300, 0)).toMatchObject({
      baseline: 'traffic',
      baselineRequests: 600,
      maxInputPsi: null,
    });
    const after = await send(400, 2);
    expect(after.baseline).toBe('traffic');
    expect(after.maxInputPsi!).toBeGreaterThan(0.25);
    expect((await readBaseline(ts.store, model, 1))?.doc.requests).toBe(600); // complete: not extended any more
  });

  it('errors injected into a canary remove its split after K windows, with the reason in history; the primary is left alone', async () => {
    const model = `canary-${kind}`;
    for (const seed of [21, 22]) await registry.registerVersion(model, tinyModel(seed));
    await registry.setAlias(model, 'production', 1, { actor: 'test', reason: 'launch' });
    await registry.setAlias(model, 'production', 1, {
      actor: 'test',
      reason: 'canary v2',
      canary: { version: 2, weight: 0.2 },
    });
    await putPolicyOverride(ts.store, model, { windows: 2 });
    let n = 0;
    let k = 0;
    const window = async () => {
      const c = new CaptureObserver(ts.store);
      for (let i = 0; i < 100; i++) {
        const canary = i % 5 === 0;
        // The canary fails 40 % of its requests; the primary 1 % (below its threshold, and primary rollback is off anyway).
        const status = canary ? (k++ % 5 < 2 ? 500 : 200) : i === 1 ? 500 : 200;
        c.observe(
          observation({ model, version: canary ? 2 : 1, alias: 'production', status, requestId: `q${n++}` }),
        );
      }
      await c.close();
      return (await runMonitor(options({ models: [model] }))).models[0]!.report!;
    };
    const first = await window();
    const canaryEval = first.evaluations.find((e) => e.role === 'canary')!;
    expect(canaryEval).toMatchObject({
      alias: 'production',
      version: 2,
      evidence: true,
      consecutive: 1,
      autoRollback: true,
    });
    expect(canaryEval.breaches[0]).toMatch(/^error rate 0\.4 > 0\.05$/);
    expect(first.evaluations.find((e) => e.role === 'primary')).toMatchObject({
      version: 1,
      breaches: [],
      consecutive: 0,
      autoRollback: false,
    });
    expect(first.actions).toEqual([]);
    expect((await registry.getAlias(model, 'production')).canary).toEqual({ version: 2, weight: 0.2 });

    const second = await window();
    expect(second.actions).toHaveLength(1);
    expect(second.actions[0]).toMatchObject({
      type: 'canary_removed',
      alias: 'production',
      version: 2,
      to: 1,
      ok: true,
    });
    const alias = await registry.getAlias(model, 'production');
    expect(alias.version).toBe(1);
    expect(alias.canary).toBeUndefined();
    expect(alias.actor).toBe('maas-monitor');
    const last = (await registry.history(model)).items.at(-1)!;
    expect(last).toMatchObject({
      type: 'alias_moved',
      alias: 'production',
      version: 1,
      actor: 'maas-monitor',
    });
    expect(last.reason).toMatch(
      /automatic rollback by monitor .*canary version 2 of alias production breached error rate 0\.4 > 0\.05 for 2 consecutive windows/,
    );
    expect(last.details).toBeUndefined(); // no canary any more

    // The next window has no canary to judge and takes no action.
    const third = await window();
    expect(third.evaluations.map((e) => e.role)).toEqual(['primary']);
    expect(third.actions).toEqual([]);
  });

  it('rolls a breaching primary back only when the policy turns it on', async () => {
    const model = `primary-${kind}`;
    for (const seed of [31, 32]) await registry.registerVersion(model, tinyModel(seed));
    await registry.setAlias(model, 'production', 1, { actor: 'test' });
    await registry.setAlias(model, 'production', 2, { actor: 'test' });
    const window = async (policy = policyFromEnv({ MAAS_ROLLBACK_WINDOWS: '1' })) => {
      const c = new CaptureObserver(ts.store);
      for (let i = 0; i < 50; i++)
        c.observe(observation({ model, version: 2, alias: 'production', latencyMs: i < 10 ? 9000 : 20 }));
      await c.close();
      return (await runMonitor(options({ models: [model], policy }))).models[0]!.report!;
    };
    const off = await window();
    expect(off.evaluations[0]).toMatchObject({
      role: 'primary',
      version: 2,
      consecutive: 1,
      autoRollback: false,
    });
    expect(off.evaluations[0]!.breaches[0]).toMatch(/^p99 latency .* ms > 5000 ms$/);
    expect(off.actions).toEqual([]);
    expect((await registry.getAlias(model, 'production')).version).toBe(2);

    const on = await window(policyFromEnv({ MAAS_ROLLBACK_WINDOWS: '1', MAAS_ROLLBACK_PRIMARY: 'true' }));
    expect(on.actions[0]).toMatchObject({ type: 'rolled_back', version: 2, to: 1, ok: true });
    const last = (await registry.history(model)).items.at(-1)!;
    expect(last).toMatchObject({
      type: 'rolled_back',
      alias: 'production',
      version: 1,
      from: 2,
      actor: 'maas-monitor',
    });
    expect(last.reason).toMatch(/primary version 2 .*p99 latency/);
  });
});

describe('local metrics sink', () => {
  let dir: string;
  afterEach(async () => dir && rm(dir, { recursive: true, force: true }));
  it('writes what CloudWatch would get as JSON lines under {dir}/{namespace}/{day}.jsonl', async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'metrics-'));
    const sink = new LocalMetricsSink(dir);
    const t = new Date('2026-11-29T01:02:03Z');
    const result = await sink.put('maas', [
      { name: 'A', dimensions: { Model: 'm' }, value: 1, timestamp: t },
      { name: 'B', dimensions: { Model: 'm' }, value: NaN, timestamp: t },
      { name: 'C', dimensions: {}, values: [1, 2], counts: [3, 4], timestamp: t },
    ]);
    expect(result).toMatchObject({ delivered: 2, skippedNonFinite: 1 });
    expect(await readdir(path.join(dir, 'maas'))).toEqual(['2026-11-29.jsonl']);
    const lines = (await readFile(path.join(dir, 'maas', '2026-11-29.jsonl'), 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines).toEqual([
      {
        namespace: 'maas',
        MetricName: 'A',
        Dimensions: [{ Name: 'Model', Value: 'm' }],
        Timestamp: t.toISOString(),
        Value: 1,
      },
      {
        namespace: 'maas',
        MetricName: 'C',
        Dimensions: [],
        Timestamp: t.toISOString(),
        Values: [1, 2],
        Counts: [3, 4],
      },
    ]);
  });
});
