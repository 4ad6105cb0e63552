import { afterEach, describe, expect, it } from 'vitest';
import type { ObservedTensor } from '../../shared/inference/observer';
import {
  CaptureObserver,
  createCaptureObserver,
  MAX_VALUES_PER_TENSOR,
  summarizePrediction,
} from '../../shared/monitor/capture';
import { binOf } from '../../shared/monitor/histogram';
import { monitoringLayout } from '../../shared/monitor/layout';
import type { CaptureFile } from '../../shared/monitor/summary';
import { listAll, type ObjectStore, type PutBody, type PutOptions, type PutResult } from '../../shared/store';
import { createTestStore, type TestStore } from '../support/stores';
import { fp32, observation } from './support';

let ts: TestStore | undefined;
afterEach(async () => {
  await ts?.cleanup();
  ts = undefined;
});

async function captures(store: ObjectStore, model: string): Promise<{ key: string; doc: CaptureFile }[]> {
  const listed = await listAll(store, { prefix: monitoringLayout.capturesPrefix(model) });
  return Promise.all(
    listed.objects.map(async (o) => ({
      key: o.key,
      doc: JSON.parse((await store.get(o.key)).body.toString()) as CaptureFile,
    })),
  );
}

describe('CaptureObserver', () => {
  it('summarizes per model version: counts, latency, per-position and aggregated features, outputs, predicted classes', async () => {
    ts = await createTestStore('file', 'capture');
    const observer = new CaptureObserver(ts.store, {
      maxFeatures: 4,
      flushRequests: 1000,
      flushSeconds: 3600,
    });
    const image: ObservedTensor = {
      name: 'img',
      datatype: 'FP32',
      shape: [1, 3, 4, 4],
      data: new Float32Array(48).fill(0.5),
    };
    for (let i = 0; i < 10; i++) {
      observer.observe(
        observation({
          model: 'm',
          version: 1,
          alias: 'production',
          latencyMs: 10 + i,
          inputs: [fp32('x', [[i, 2 * i, 3, 4]]), image],
          outputs: [fp32('p', [[0.1, 0.9]])],
        }),
      );
    }
    observer.observe(
      observation({ model: 'm', version: 1, status: 500, latencyMs: 100, inputs: [], outputs: [] }),
    );
    observer.observe(observation({ model: 'm', version: 1, status: 400, latencyMs: 1 }));
    observer.observe(
      observation({
        model: 'm',
        version: 2,
        inputs: [
          fp32('x', [
            [1, 1, 1, 1],
            [2, 2, 2, 2],
          ]),
        ],
        batchSize: 2,
        outputs: [
          fp32('p', [
            [1, 0],
            [0, 1],
          ]),
        ],
      }),
    );
    observer.observe(observation({ model: 'other', version: 7 }));
    expect(observer.flushDue).toBe(false);
    await observer.close();

    const [file] = await captures(ts.store, 'm');
    expect(file).toBeDefined();
    const v1 = file!.doc.versions['1']!;
    expect(v1).toMatchObject({
      requests: 12,
      errors: 1,
      clientErrors: 1,
      rows: 10,
      aliases: { production: 10, '-': 2 },
      predictedClasses: { '1': 10 },
    });
    expect(v1.latencyMs.count).toBe(12);
    expect(v1.inferenceMs.count).toBe(10); // failed requests have no inference time
    expect(Object.keys(v1.inputs).sort()).toEqual(['img[*]', 'x[0]', 'x[1]', 'x[2]', 'x[3]']);
    expect(v1.inputs['x[2]']!.bins).toEqual({ [binOf(3)]: 10 });
    expect(v1.inputs['x[1]']!.sum).toBe(90); // 2·(0+…+9)
    expect(v1.inputs['img[*]']!.count).toBe(480);
    expect(Object.keys(v1.outputs).sort()).toEqual(['p[0]', 'p[1]']);
    const v2 = file!.doc.versions['2']!;
    expect(v2).toMatchObject({ requests: 1, rows: 2, predictedClasses: { '0': 1, '1': 1 } });
    expect(v2.inputs['x[0]']!.count).toBe(2);
    expect((await captures(ts.store, 'other'))[0]!.doc.versions['7']!.requests).toBe(1);
    expect(observer.stats).toMatchObject({ observed: 14, captureFilesWritten: 2, writeFailures: 0 });
  });

  it('is due after M requests or N seconds; every flush writes new unique keys; nothing is lost or doubled', async () => {
    ts = await createTestStore('s3', 'capture');
    let clock = 1_700_000_000_000;
    const observer = new CaptureObserver(ts.store, {
      flushRequests: 5,
      flushSeconds: 60,
      now: () => clock,
      containerId: 'c1',
    });
    const other = new CaptureObserver(ts.store, {
      flushRequests: 5,
      flushSeconds: 60,
      now: () => clock,
      containerId: 'c2',
    });
    let total = 0;
    for (let i = 0; i < 23; i++) {
      for (const o of [observer, other]) {
        o.observe(observation({ model: 'm', version: 1, inputs: [fp32('x', [[i]])] }));
        total++;
        if (o.flushDue) await o.flush();
      }
    }
    expect(observer.flushDue).toBe(false); // 3 left, below M, and no time has passed
    clock += 60_000;
    expect(observer.flushDue).toBe(true);
    await observer.flush();
    await other.close();
    await observer.drain();
    const files = await captures(ts.store, 'm');
    expect(files.length).toBe(10); // 4 + 1 flushes of each container, all at the same ms
    expect(new Set(files.map((f) => f.key)).size).toBe(files.length);
    expect(files.reduce((s, f) => s + f.doc.versions['1']!.requests, 0)).toBe(total);
    expect(files.reduce((s, f) => s + f.doc.versions['1']!.inputs['x[0]']!.count, 0)).toBe(total);
    expect(
      files.every(
        (f) =>
          f.key.includes(`/${String(1_700_000_000_000).padStart(13, '0')}-`) ||
          f.key.includes(`/${String(1_700_000_060_000).padStart(13, '0')}-`),
      ),
    ).toBe(true);
  });

  it('never holds flush() longer than its budget, and a failed write is retried unchanged with the next flush', async () => {
    ts = await createTestStore('file', 'capture');
    const inner = ts.store;
    let stall: Promise<void> | undefined;
    let release: () => void = () => undefined;
    let failNext = 0;
    const slow: ObjectStore = {
      ...inner,
      location: inner.location,
      get: (k) => inner.get(k),
      getStream: (k) => inner.getStream(k),
      getRange: (k, s, e) => inner.getRange(k, s, e),
      copy: (f, t, o) => inner.copy(f, t, o),
      head: (k) => inner.head(k),
      delete: (k) => inner.delete(k),
      list: (o) => inner.list(o),
      put: async (k: string, b: PutBody, o?: PutOptions): Promise<PutResult> => {
        if (failNext > 0) {
          failNext--;
          throw new Error('injected store failure');
        }
        if (stall) await stall;
        return inner.put(k, b, o);
      },
    };
    const observer = new CaptureObserver(slow, { flushBudgetMs: 20, logger: () => undefined });
    stall = new Promise<void>((r) => (release = r));
    observer.observe(observation({ model: 'm', version: 1 }));
    const started = performance.now();
    await observer.flush();
    const held = performance.now() - started;
    expect(held).toBeLessThan(1000); // the budget (20 ms) plus timer slack, not the stalled write
    expect(observer.stats.captureFilesWritten).toBe(0);
    release();
    stall = undefined;
    await observer.drain();
    expect(observer.stats.captureFilesWritten).toBe(1);

    failNext = 2; // both attempts of the next capture write fail
    observer.observe(observation({ model: 'm', version: 1 }));
    observer.observe(observation({ model: 'm', version: 1 }));
    await observer.flush();
    await observer.drain();
    expect(observer.stats.writeFailures).toBe(1);
    observer.observe(observation({ model: 'm', version: 1 }));
    await observer.close();
    const files = await captures(inner, 'm');
    // The failed file is written again unchanged (its key names it once for the monitor), next to the new one.
    expect(files.map((f) => f.doc.versions['1']!.requests).sort()).toEqual([1, 1, 2]);
  });

  it('keeps predictions of requests with an id for feedback (sampled, bounded) and bounds the values read per tensor', async () => {
    ts = await createTestStore('file', 'capture');
    const sampleDraws = [0.1, 0.9, 0.1, 0.1]; // feedbackSample 0.5 keeps draws below 0.5
    const observer = new CaptureObserver(ts.store, {
      feedbackSample: 0.5,
      random: () => sampleDraws.shift() ?? 0,
      maxPendingPredictions: 2,
      feedbackTtlHours: 1,
      now: () => 1_000_000,
    });
    for (const id of ['a', 'b', 'c', 'd'])
      observer.observe(
        observation({ model: 'm', version: 3, requestId: id, outputs: [fp32('p', [[0.2, 0.7, 0.1]])] }),
      );
    const big: ObservedTensor = {
      name: 'big',
      datatype: 'FP32',
      shape: [1, 100_000],
      data: new Float32Array(100_000),
    };
    observer.observe(observation({ model: 'm', version: 3, inputs: [big] }));
    await observer.close();
    expect(observer.stats).toMatchObject({ predictionsWritten: 2, predictionsDropped: 1 });
    const a = JSON.parse((await ts.store.get(monitoringLayout.prediction('m', 'a'))).body.toString());
    expect(a).toEqual({
      id: 'a',
      model: 'm',
      version: 3,
      kind: 'class',
      predicted: [1],
      at: new Date(1_000_000).toISOString(),
      expiresAt: new Date(1_000_000 + 3_600_000).toISOString(),
    });
    await expect(ts.store.get(monitoringLayout.prediction('m', 'b'))).rejects.toThrow(/not found/);
    const [file] = await captures(ts.store, 'm');
    expect(file!.doc.versions['3']!.inputs['big[*]']!.count).toBeLessThanOrEqual(MAX_VALUES_PER_TENSOR);
  });

  it.each(['file', 's3'] as const)(
    'keeps the first prediction recorded under a request id; a reused id is counted, not written (%s)',
    async (kind) => {
      ts = await createTestStore(kind, 'capture-ids');
      const first = new CaptureObserver(ts.store, { feedbackSample: 1, containerId: 'c1' });
      const second = new CaptureObserver(ts.store, { feedbackSample: 1, containerId: 'c2' });
      first.observe(
        observation({ model: 'm', version: 1, requestId: 'shared-id', outputs: [fp32('p', [[0.9, 0.1]])] }),
      );
      await first.close();
      // Another client (another container, later) reuses the id with a different prediction.
      second.observe(
        observation({ model: 'm', version: 2, requestId: 'shared-id', outputs: [fp32('p', [[0.1, 0.9]])] }),
      );
      second.observe(
        observation({ model: 'm', version: 2, requestId: 'fresh-id', outputs: [fp32('p', [[0.1, 0.9]])] }),
      );
      await second.close();
      const kept = JSON.parse(
        (await ts.store.get(monitoringLayout.prediction('m', 'shared-id'))).body.toString(),
      );
      expect(kept).toMatchObject({ version: 1, predicted: [0] });
      expect(first.stats).toMatchObject({
        predictionsWritten: 1,
        predictionIdCollisions: 0,
        writeFailures: 0,
      });
      expect(second.stats).toMatchObject({
        predictionsWritten: 1,
        predictionIdCollisions: 1,
        writeFailures: 0,
        predictionsDropped: 0,
      });
    },
  );

  it('summarizes predictions: argmax for scores, integer labels as classes, floats as regression values', () => {
    expect(
      summarizePrediction(
        fp32('p', [
          [0.1, 0.8, 0.1],
          [0.9, 0.05, 0.05],
        ]),
        2,
      ),
    ).toEqual({ kind: 'class', predicted: [1, 0] });
    expect(summarizePrediction({ name: 'label', datatype: 'INT64', shape: [2], data: [2n, 1n] }, 2)).toEqual({
      kind: 'class',
      predicted: [2, 1],
    });
    expect(summarizePrediction(fp32('y', [[1.5], [-2]]), 2)).toEqual({ kind: 'value', predicted: [1.5, -2] });
    expect(summarizePrediction({ name: 's', datatype: 'BYTES', shape: [1], data: ['x'] }, 1)).toBeUndefined();
  });

  it('is configured from MAAS_CAPTURE* settings and refuses bad ones', () => {
    const store = {} as ObjectStore;
    expect(createCaptureObserver(store, { MAAS_CAPTURE: 'off' })).toBeUndefined();
    const o = createCaptureObserver(store, { MAAS_CAPTURE_FLUSH_REQUESTS: '2' })!;
    o.observe(observation({ model: 'm', version: 1 }));
    expect(o.flushDue).toBe(false);
    o.observe(observation({ model: 'm', version: 1 }));
    expect(o.flushDue).toBe(true);
    expect(() => createCaptureObserver(store, { MAAS_CAPTURE_FEEDBACK_SAMPLE: '1.5' })).toThrow(
      /MAAS_CAPTURE_FEEDBACK_SAMPLE/,
    );
    expect(() => createCaptureObserver(store, { MAAS_CAPTURE_FLUSH_SECONDS: 'soon' })).toThrow(
      /MAAS_CAPTURE_FLUSH_SECONDS/,
    );
  });
});
