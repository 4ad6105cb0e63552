import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../shared/errors';
import { monitoringLayout } from '../../shared/monitor/layout';
import type { MonitorReport } from '../../shared/monitor/report';
import { readReportSeries, reportTimeKey } from '../../shared/monitor/report-series';
import { listJobs } from '../../shared/optimize/job-list';
import { OptimizationJobStore } from '../../shared/optimize/jobs';
import { parseOptimizeRequest } from '../../shared/optimize/request';
import { mapLimit } from '../../shared/util/concurrency';
import { countingStore } from '../support/counting-store';
import { createTestStore, type TestStore } from '../support/stores';

const START = Date.parse('2026-11-20T00:00:00.000Z');
const STEP = 5 * 60_000;
const COUNT = 1_200; // more than one S3 listing page (1000 keys)

/** A report as the monitor stores it: key from the window end, `{iso}-{run}.json`. */
function report(i: number): {
  key: string;
  doc: Pick<MonitorReport, 'format' | 'runId' | 'model' | 'window'>;
} {
  const to = new Date(START + i * STEP);
  const runId = `${String(to.getTime()).padStart(13, '0')}-${i.toString(16).padStart(8, '0')}`;
  return {
    key: monitoringLayout.report('busy', reportTimeKey(to), runId),
    doc: {
      format: 'maas.monitor-report/1',
      runId,
      model: 'busy',
      window: {
        number: i + 1,
        from: i ? new Date(START + (i - 1) * STEP).toISOString() : null,
        to: to.toISOString(),
      },
    },
  };
}

describe('report series (S3 store)', () => {
  let ts: TestStore;
  beforeAll(async () => {
    ts = await createTestStore('s3', 'series');
    await mapLimit([...Array(COUNT).keys()], 16, async (i) => {
      const { key, doc } = report(i);
      await ts.store.put(key, JSON.stringify(doc), { contentType: 'application/json', ifNoneMatch: '*' });
    });
    await ts.store.put(monitoringLayout.latestReport('busy'), JSON.stringify(report(COUNT - 1).doc));
  }, 120_000);
  afterAll(async () => ts?.cleanup());

  it('pages through every report in time order, skipping latest.json, at one or two listings and `limit` reads a page', async () => {
    const { store, calls, reset } = countingStore(ts.store);
    const seen: number[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      reset();
      const page = await readReportSeries(store, 'busy', { limit: 500, ...(cursor ? { cursor } : {}) });
      seen.push(...page.items.map((r) => r.window.number));
      expect(calls.filter((c) => c.startsWith('list')).length).toBeLessThanOrEqual(2);
      expect(calls.filter((c) => c.startsWith('get')).length).toBe(page.items.length);
      cursor = page.nextCursor;
      pages++;
    } while (cursor);
    expect(pages).toBe(3);
    expect(seen).toEqual([...Array(COUNT).keys()].map((i) => i + 1));
  });

  it('a time range is inclusive at both ends, and a page deep in the series costs one listing', async () => {
    const { store, calls } = countingStore(ts.store);
    const from = new Date(START + 1_000 * STEP);
    const to = new Date(START + 1_009 * STEP);
    const page = await readReportSeries(store, 'busy', { from, to });
    expect(page.items.map((r) => r.window.number)).toEqual([...Array(10).keys()].map((i) => 1_001 + i));
    expect(page.nextCursor).toBeUndefined();
    expect(calls.filter((c) => c.startsWith('list'))).toHaveLength(1);
    expect(calls.filter((c) => c.startsWith('get'))).toHaveLength(10);
    // Between two windows: nothing.
    const gap = await readReportSeries(ts.store, 'busy', {
      from: new Date(START + 1),
      to: new Date(START + STEP - 1),
    });
    expect(gap.items).toEqual([]);
    // A range ending before the first report stops at once; one after the last reads nothing.
    expect((await readReportSeries(ts.store, 'busy', { to: new Date(START - 1) })).items).toEqual([]);
    expect(
      (await readReportSeries(ts.store, 'busy', { from: new Date(START + COUNT * STEP) })).items,
    ).toEqual([]);
  });

  it('refuses a bad limit, cursor or range', async () => {
    for (const options of [
      { limit: 0 },
      { limit: 501 },
      { limit: 1.5 },
      { cursor: '../../models/x/head.json' },
      { cursor: 'latest.json' },
      { from: new Date(START + STEP), to: new Date(START) },
    ])
      await expect(readReportSeries(ts.store, 'busy', options)).rejects.toBeInstanceOf(InvalidArgumentError);
  });

  it('lists optimization jobs in creation order, paged, ignoring their inline-input files', async () => {
    let t = Date.parse('2026-11-20T00:00:00.000Z');
    // One second apart: job ids (and so the listing order) follow creation time.
    const clock = (): Date => {
      t += 1000;
      return new Date(t);
    };
    const jobs = new OptimizationJobStore(ts.store, { now: clock });
    const created: string[] = [];
    for (let i = 0; i < 5; i++) {
      // Every other job has inline reference inputs, stored beside its record.
      const request = parseOptimizeRequest({
        techniques: ['fp16'],
        ...(i % 2
          ? {
              referenceInputs: {
                inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }],
              },
            }
          : {}),
      });
      const { record } = await jobs.create('busy', 1, request, 'alice');
      created.push(record.job);
    }
    expect((await ts.store.list({ prefix: 'models/busy/optimizations/' })).objects).toHaveLength(7);
    const { store, calls } = countingStore(ts.store);
    const first = await listJobs(store, 'busy', { limit: 2 });
    expect(first.items.map((j) => j.job)).toEqual(created.slice(0, 2));
    expect(calls.filter((c) => c.startsWith('list'))).toHaveLength(1);
    const rest: string[] = [];
    let cursor = first.nextCursor;
    while (cursor) {
      const page = await listJobs(ts.store, 'busy', { limit: 2, cursor });
      rest.push(...page.items.map((j) => j.job));
      cursor = page.nextCursor;
    }
    expect([...first.items.map((j) => j.job), ...rest]).toEqual(created);
    await expect(listJobs(ts.store, 'busy', { cursor: 'x/../y' })).rejects.toBeInstanceOf(
      InvalidArgumentError,
    );
    await expect(listJobs(ts.store, 'busy', { limit: 101 })).rejects.toBeInstanceOf(InvalidArgumentError);
  });
});
