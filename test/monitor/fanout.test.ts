import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import type { Context } from 'aws-lambda';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { resetRuntime } from '../../functions/lib/runtime';
import { resetFanout, type ScheduledRunResult, WORKER_RESERVE_MS } from '../../functions/monitor/fanout';
import { handler, type MonitorEvent } from '../../functions/monitor/handler';
import type { MonitorRunSummary } from '../../functions/monitor/run';
import { CaptureObserver } from '../../shared/monitor/capture';
import { type MonitorBatch, type MonitorBatchEvent, scheduleMonitorRun } from '../../shared/monitor/fanout';
import { monitoringLayout } from '../../shared/monitor/layout';
import type { MonitorReport } from '../../shared/monitor/report';
import { createObjectStore, listAll, type ObjectStore } from '../../shared/store';
import { countingStore } from '../support/counting-store';
import { startLoopbackLambda } from '../support/loopback-lambda';
import { fp32, observation } from './support';

const context = (remainingMs = 200_000) =>
  ({
    awsRequestId: 'test',
    functionName: 'maas-test-monitor',
    getRemainingTimeInMillis: () => remainingMs,
  }) as unknown as Context;
const invoke = (event: MonitorEvent | Record<string, unknown>, remainingMs?: number) =>
  handler(event as MonitorEvent, context(remainingMs));

/** Captures `requests` observations of each model (one capture file per model). */
async function capture(store: ObjectStore, models: string[], requests = 3): Promise<void> {
  const observer = new CaptureObserver(store);
  for (const model of models)
    for (let i = 0; i < requests; i++)
      observer.observe(observation({ model, version: 1, inputs: [fp32('x', [[i, 1]])] }));
  await observer.close();
}

const names = (n: number, prefix = 'm') =>
  Array.from({ length: n }, (_, i) => `${prefix}${String(i).padStart(3, '0')}`);

describe('scheduleMonitorRun: lists page by page and hands batches on while listing', () => {
  let dir: string;
  let store: ObjectStore;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'fanout-core-'));
    store = createObjectStore(`file://${dir}`);
    await capture(store, names(25), 1);
    // Feedback-only models are monitored too; a model with both appears once.
    for (const model of ['m003', 'zz-feedback-only'])
      await store.put(monitoringLayout.feedback(model, Date.now(), 'abc'), '{"records":[]}');
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('every model once, in batches of at most batchSize, the first before the listing is done', async () => {
    const counting = countingStore(store);
    const batches: MonitorBatch[] = [];
    const listsBeforeFirstBatch: number[] = [];
    const at = new Date('2026-12-02T10:00:00Z');
    const run = await scheduleMonitorRun({
      store: counting.store,
      batchSize: 10,
      pageSize: 10,
      runId: 'run-1',
      at,
      dispatch: async (b) => {
        if (batches.length === 0) listsBeforeFirstBatch.push(counting.calls.length);
        batches.push(b);
      },
    });
    expect(run).toEqual({ runId: 'run-1', at: at.toISOString(), models: 26, batches: 3 });
    expect(batches.map((b) => b.models.length)).toEqual([10, 10, 6]);
    expect(batches.flatMap((b) => b.models)).toEqual([...names(25), 'zz-feedback-only']);
    expect(new Set(batches.map((b) => `${b.runId} ${b.at}`))).toEqual(new Set([`run-1 ${at.toISOString()}`]));
    // Only listings (no object is read), one page of each root at a time: 3 for captures, 1 for feedback.
    expect(counting.calls.every((c) => c.startsWith('list '))).toBe(true);
    // The first batch left before the captures' last page was asked for (the merge reads one name ahead).
    expect(counting.calls).toHaveLength(4);
    expect(listsBeforeFirstBatch[0]).toBeLessThanOrEqual(3);
  });

  it('refuses a batch size outside 1..1000', async () => {
    const dispatch = async () => {};
    for (const batchSize of [0, 1.5, 1001])
      await expect(
        scheduleMonitorRun({ store, batchSize, runId: 'r', at: new Date(), dispatch }),
      ).rejects.toThrow(/batchSize must be an integer from 1 to 1000/);
  });
});

describe('monitor fan-out on AWS: the schedule invokes the function itself asynchronously, one batch each', () => {
  let dir: string;
  let store: ObjectStore;
  let lambda: Awaited<ReturnType<typeof startLoopbackLambda>>;
  const saved = { ...process.env };
  const models = names(23);

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'fanout-fn-'));
    lambda = await startLoopbackLambda();
    Object.assign(process.env, {
      MAAS_STORE: `file://${dir}/store`,
      MAAS_METRICS_DIR: `${dir}/metrics`,
      MAAS_MONITOR_GRACE_SECONDS: '0',
      MAAS_MONITOR_BATCH_SIZE: '10',
      AWS_LAMBDA_FUNCTION_NAME: 'maas-test-monitor',
      ...lambda.env,
    });
    delete process.env.IS_OFFLINE;
    delete process.env.MAAS_METRICS_SINK;
    resetRuntime();
    resetFanout();
    store = createObjectStore(process.env.MAAS_STORE!);
    await capture(store, models);
  });
  beforeEach(() => {
    lambda.received.length = 0;
    lambda.status = 202;
  });
  afterAll(async () => {
    process.env = saved;
    resetRuntime();
    resetFanout();
    await lambda.close();
    await rm(dir, { recursive: true, force: true });
  });

  const reports = async () =>
    (await listAll(store, { prefix: 'monitoring/reports/' })).objects.filter(
      (o) => !o.key.endsWith('latest.json'),
    );

  it('hands 23 models on as 3 Event invocations, runs nothing itself; each batch then runs once, a retry merges nothing', async () => {
    const run = (await invoke({
      source: 'aws.events',
      'detail-type': 'Scheduled Event',
    })) as ScheduledRunResult;
    expect(run).toMatchObject({ models: 23, batches: 3, dispatch: 'lambda' });
    expect(run.results).toBeUndefined();
    expect(lambda.received).toHaveLength(3);
    for (const r of lambda.received) {
      expect(r.url).toBe('/2015-03-31/functions/maas-test-monitor/invocations');
      expect(r.headers['x-amz-invocation-type']).toBe('Event');
      expect(r.headers.authorization).toMatch(
        /^AWS4-HMAC-SHA256 Credential=test\/\d{8}\/us-east-1\/lambda\//,
      );
    }
    const events = lambda.received.map((r) => JSON.parse(r.body) as MonitorBatchEvent);
    expect(events.map((e) => e.maasMonitorBatch.models.length)).toEqual([10, 10, 3]);
    expect(events.flatMap((e) => e.maasMonitorBatch.models)).toEqual(models);
    expect(
      events.every((e) => e.maasMonitorBatch.runId === run.runId && e.maasMonitorBatch.at === run.at),
    ).toBe(true);
    expect(await reports()).toHaveLength(0); // the scheduler merged nothing itself

    // Traffic after the scheduler's time waits for the next run: every batch's window ends at `at`.
    await new Promise((r) => setTimeout(r, 5));
    await capture(store, ['m000'], 5);
    for (const event of events) {
      const summary = (await invoke(event)) as MonitorRunSummary;
      expect(summary.runId).toBe(run.runId);
      expect(summary.models.map((m) => m.status)).toEqual(
        event.maasMonitorBatch.models.map(() => 'processed'),
      );
    }
    expect(await reports()).toHaveLength(23);
    const first = (await invoke({ action: 'report', model: 'm000' })) as MonitorReport;
    expect(first).toMatchObject({ runId: run.runId, versions: { '1': { requests: 3 } } });
    // Lambda retries an event whose invocation failed: the same batch again changes nothing.
    const again = (await invoke(events[0]!)) as MonitorRunSummary;
    expect(again.models.every((m) => m.status === 'idle')).toBe(true);
    expect(await reports()).toHaveLength(23);
    expect(lambda.received).toHaveLength(3); // workers hand nothing on when they finish in time

    // The next scheduled run picks up what came after the cutoff.
    const next = (await invoke({})) as ScheduledRunResult;
    expect(next.batches).toBe(3);
    for (const r of lambda.received.slice(3)) await invoke(JSON.parse(r.body));
    expect(
      ((await invoke({ action: 'report', model: 'm000' })) as MonitorReport).versions['1'],
    ).toMatchObject({
      requests: 5,
    });
  });

  it('a worker short of time starts no model and hands the whole rest on with the same run and cutoff', async () => {
    await capture(store, ['m001', 'm002']);
    const batch: MonitorBatch = {
      runId: 'late-run',
      at: new Date(Date.now() + 10).toISOString(),
      models: ['m001', 'm002'],
    };
    await new Promise((r) => setTimeout(r, 20));
    const summary = (await invoke({ maasMonitorBatch: batch }, WORKER_RESERVE_MS - 1)) as MonitorRunSummary;
    expect(summary).toEqual({ runId: 'late-run', models: [], remaining: ['m001', 'm002'] });
    expect(lambda.received.map((r) => JSON.parse(r.body))).toEqual([{ maasMonitorBatch: batch }]);
    // That hand-over, delivered with time to spare, processes both.
    const done = (await invoke({ maasMonitorBatch: batch })) as MonitorRunSummary;
    expect(done.models.map((m) => [m.model, m.status])).toEqual([
      ['m001', 'processed'],
      ['m002', 'processed'],
    ]);
  });

  it('a refused invoke fails the scheduled run (Errors metric) with a clear message; a malformed batch is refused', async () => {
    lambda.status = 403;
    await expect(invoke({})).rejects.toThrow(/could not start a monitor batch worker maas-test-monitor/);
    await expect(invoke({ maasMonitorBatch: { runId: 'x', models: 'm000' } })).rejects.toThrow(
      /malformed monitor batch/,
    );
  });
});
