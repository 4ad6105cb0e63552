import { execFile } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import type { Context } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resetRuntime } from '../../functions/lib/runtime';
import type { ScheduledRunResult } from '../../functions/monitor/fanout';
import { handler, type MonitorEvent } from '../../functions/monitor/handler';
import { CaptureObserver } from '../../shared/monitor/capture';
import { monitoringLayout } from '../../shared/monitor/layout';
import type { MonitorReport } from '../../shared/monitor/report';
import { createObjectStore, type ObjectStore } from '../../shared/store';
import { loadRoutes, startGateway } from '../support/gateway';
import { fp32, observation } from './support';

const context = {
  awsRequestId: 'test',
  functionName: 'maas-monitor',
  getRemainingTimeInMillis: () => 60_000,
} as unknown as Context;
const invoke = (event: MonitorEvent | Record<string, unknown>) => handler(event as MonitorEvent, context);

describe('monitor function (schedule + on-demand actions) and `maas monitor`', () => {
  let dir: string;
  let store: ObjectStore;
  const saved = { ...process.env };
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'monitor-fn-'));
    Object.assign(process.env, {
      MAAS_STORE: `file://${dir}/store`,
      MAAS_METRICS_DIR: `${dir}/metrics`,
      MAAS_MONITOR_GRACE_SECONDS: '0',
    });
    delete process.env.MAAS_METRICS_SINK;
    delete process.env.MAAS_CLOUDWATCH_ENDPOINT;
    resetRuntime();
    store = createObjectStore(process.env.MAAS_STORE!);
  });
  afterAll(async () => {
    process.env = saved;
    resetRuntime();
    await rm(dir, { recursive: true, force: true });
  });

  it('stores a reference baseline on demand and refuses bad reference data with a clear error', async () => {
    const res = await invoke({
      action: 'baseline',
      model: 'fn',
      version: 1,
      inputs: [{ name: 'x', datatype: 'FP32', shape: [3, 2], data: [1, 2, 3, 4, 5, 6] }],
    });
    expect(res).toEqual({
      model: 'fn',
      version: 1,
      source: 'reference',
      rows: 3,
      inputs: ['x[0]', 'x[1]'],
      outputs: [],
    });
    await expect(
      invoke({
        action: 'baseline',
        model: 'fn',
        version: 1,
        inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 2], data: [1, 2] }],
      }),
    ).rejects.toThrow(/already has a baseline/);
    await expect(
      invoke({
        action: 'baseline',
        model: 'fn',
        version: 2,
        inputs: [{ name: 'x', datatype: 'FP32', shape: [2, 2], data: [1, 2, 3] }],
      }),
    ).rejects.toThrow(/must hold 4 values/);
    await expect(invoke({ action: 'baseline', model: 'fn', version: 2, inputs: [] })).rejects.toThrow(
      /at least one input/,
    );
    await expect(store.head(monitoringLayout.baseline('fn', 2))).rejects.toThrow(/not found/);
    await expect(invoke({ action: 'policy', model: 'fn', policy: { windows: 0 } })).rejects.toThrow(
      /policy.windows/,
    );
    expect(
      await invoke({ action: 'policy', model: 'fn', policy: { primary: true, thresholds: { psi: null } } }),
    ).toEqual({ model: 'fn', policy: { primary: true, thresholds: { psi: null } } });
    await expect(invoke({ action: 'explode' })).rejects.toThrow(/unknown action/);
  });

  it('a scheduled event runs the monitor over every model with captures; metrics go to the local sink', async () => {
    const capture = new CaptureObserver(store);
    for (let i = 0; i < 25; i++)
      capture.observe(observation({ model: 'fn', version: 1, inputs: [fp32('x', [[i % 6, 1]])] }));
    await capture.close();
    const scheduled = {
      version: '0',
      id: 'e1',
      'detail-type': 'Scheduled Event',
      source: 'aws.events',
      time: new Date().toISOString(),
      detail: {},
    };
    const res = (await invoke(scheduled)) as ScheduledRunResult;
    // Locally the batches run in this process: one model, one batch, processed.
    expect(res).toMatchObject({
      models: 1,
      batches: 1,
      dispatch: 'in-process',
      results: { processed: 1, idle: 0, skipped: 0, failed: [] },
    });
    // Optimize jobs are not the monitor's business (their sweep is the optimize function's schedule);
    // the registry's event sweep is, and without a configured sink it says so.
    expect(Object.keys(res).sort()).toEqual([
      'at',
      'batches',
      'dispatch',
      'eventsSweep',
      'models',
      'results',
      'retention',
      'runId',
    ]);
    expect((res as { eventsSweep?: unknown }).eventsSweep).toEqual({
      skipped: 'no event sink is configured',
    });
    const report = (await invoke({ action: 'report', model: 'fn' })) as MonitorReport;
    expect(report.runId).toBe(res.runId);
    expect(report.versions['1']).toMatchObject({ requests: 25, drift: { baseline: 'reference' } });
    expect(report.policy.primary).toBe(true); // the stored override applies
    expect(report.policy.thresholds.psi).toBeUndefined();
    expect(await readdir(path.join(dir, 'metrics', 'maas'))).toHaveLength(1);
    expect(((await invoke({})) as ScheduledRunResult).results).toEqual({
      processed: 0,
      idle: 1,
      skipped: 0,
      failed: [],
    });
  });

  it('a model with a broken policy fails alone: the others are processed, then the invocation fails', async () => {
    await store.put(monitoringLayout.policy('broken'), '{"windows": -1}');
    const capture = new CaptureObserver(store);
    for (const model of ['broken', 'fine']) capture.observe(observation({ model, version: 1 }));
    await capture.close();
    await expect(invoke({ models: ['broken', 'fine'] })).rejects.toThrow(
      /failed for broken \(policy.windows must be/,
    );
    expect((await invoke({ action: 'report', model: 'fine' })) as MonitorReport).toMatchObject({
      model: 'fine',
      versions: { '1': { requests: 1 } },
    });
    expect(await invoke({ action: 'report', model: 'broken' })).toBeNull();
  });

  it('`maas monitor NAME [--run]` asks the monitor function over HTTP (real CLI, test gateway)', async () => {
    // The CLI gets no store: only the API endpoint, as against a deployed stage.
    const gateway = await startGateway(await loadRoutes(['monitor', 'catalog']));
    const env: NodeJS.ProcessEnv = { ...process.env, MAAS_ENDPOINT: gateway.url };
    delete env.MAAS_STORE;
    const maas = (...args: string[]) =>
      new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
        execFile(
          process.execPath,
          [path.resolve(__dirname, '../../bin/maas.cjs'), ...args],
          { env, cwd: dir, timeout: 60_000 },
          (error, stdout, stderr) =>
            resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
        );
      });
    try {
      const text = await maas('monitor', 'fn');
      expect(text.code, text.stderr).toBe(0);
      expect(text.stdout).toMatch(/model:\s+fn/);
      expect(text.stdout).toMatch(/VERSION\s+REQUESTS\s+ERRORS/);
      expect(text.stdout).toMatch(/\n1\s+25\s+0\s+0\s/);
      const json = await maas('--json', 'monitor', 'fn');
      expect(JSON.parse(json.stdout).versions['1'].requests).toBe(25);
      const missing = await maas('monitor', 'unknown-model');
      expect(missing.code).toBe(1);
      expect(missing.stderr).toMatch(/no monitoring report for unknown-model/);

      // --run: the deployed monitor merges what arrived since (here 7 requests) and reports it.
      const capture = new CaptureObserver(store);
      for (let i = 0; i < 7; i++) capture.observe(observation({ model: 'fn', version: 1 }));
      await capture.close();
      const ran = await maas('--json', 'monitor', 'fn', '--run');
      expect(ran.code, ran.stderr).toBe(0);
      expect(ran.stderr).toMatch(/monitor run \S+: fn processed/);
      const report = JSON.parse(ran.stdout) as MonitorReport;
      expect(report.versions['1']!.requests).toBe(7);
      expect(report.window.number).toBe(2);
      const again = await maas('monitor', 'fn', '--run');
      expect(again.stderr).toMatch(/: fn idle/);
      const badGrace = await maas('monitor', 'fn', '--run', '--grace', 'soon');
      expect(badGrace.code).toBe(1);
      expect(badGrace.stderr).toMatch(/--grace must be a non-negative number/);

      // The route itself: bad bodies are 400s, the API key guards the run but not the report.
      const post = (body: unknown, headers: Record<string, string> = {}) =>
        fetch(`${gateway.url}/models/fn/monitor/runs`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...headers },
          body: JSON.stringify(body),
        });
      const bad = await post({ graceSeconds: -1 });
      expect(bad.status).toBe(400);
      expect(((await bad.json()) as { error: string }).error).toMatch(/graceSeconds/);
      expect((await fetch(`${gateway.url}/models/Not%20A%20Name/reports/latest`)).status).toBe(400);
      process.env.MAAS_API_KEY = 'monitor-key';
      try {
        expect((await post({})).status).toBe(401);
        const keyed = await post({}, { 'x-api-key': 'monitor-key' });
        expect(keyed.status).toBe(200);
        expect(await keyed.json()).toMatchObject({ model: 'fn', status: 'idle', conflicts: 0, actions: [] });
        expect((await fetch(`${gateway.url}/models/fn/reports/latest`)).status).toBe(200);
      } finally {
        delete process.env.MAAS_API_KEY;
      }
    } finally {
      await gateway.close();
    }
  }, 120_000);
});
