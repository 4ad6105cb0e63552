import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';
import { CloudWatchClient } from '@aws-sdk/client-cloudwatch';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { CaptureObserver } from '../../shared/monitor/capture';
import {
  CLOUDWATCH_LIMITS,
  CloudWatchMetricsSink,
  createMonitorMetricsSink,
  type MonitorMetricPoint,
} from '../../shared/monitor/metrics-sink';
import { policyFromEnv } from '../../shared/monitor/policy';
import { runMonitor } from '../../shared/monitor/run';
import { ModelRegistry } from '../../shared/registry';
import { createTestStore, type TestStore } from '../support/stores';
import { fp32, observation } from './support';

/** One PutMetricData request as it reached the wire. */
interface WireCall {
  target: string;
  encoding: string | undefined;
  rawBytes: number;
  bytes: number;
  body: { Namespace: string; MetricData: WireDatum[] };
}
interface WireDatum {
  MetricName: string;
  Dimensions?: { Name: string; Value: string }[];
  Timestamp?: number;
  Unit?: string;
  Value?: number;
  Values?: number[];
  Counts?: number[];
}

/**
 * A loopback CloudWatch endpoint. The installed @aws-sdk/client-cloudwatch (3.1164) speaks
 * AWS JSON 1.0 (`X-Amz-Target: GraniteServiceVersion20100801.PutMetricData`, query-compatible
 * errors) and gzips bodies above 10 KiB, so the server inflates and parses JSON. It can be told
 * to fail the next requests with a 500 to exercise retries.
 */
function startFakeCloudWatch() {
  const calls: WireCall[] = [];
  let failNext = 0;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      const encoding = req.headers['content-encoding'];
      const text = (encoding === 'gzip' ? gunzipSync(raw) : raw).toString('utf8');
      if (failNext > 0) {
        failNext--;
        res.writeHead(500, { 'content-type': 'application/x-amz-json-1.0' });
        res.end(JSON.stringify({ __type: 'InternalServiceError', message: 'injected' }));
        return;
      }
      calls.push({
        target: String(req.headers['x-amz-target']),
        encoding,
        rawBytes: raw.length,
        bytes: Buffer.byteLength(text),
        body: JSON.parse(text),
      });
      res.writeHead(200, { 'content-type': 'application/x-amz-json-1.0' });
      res.end('{}');
    });
  });
  return {
    calls,
    failNext: (n: number) => {
      failNext = n;
    },
    listen: () =>
      new Promise<string>((resolve) =>
        server.listen(0, '127.0.0.1', () =>
          resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`),
        ),
      ),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

const credentials = { accessKeyId: 'AKIDTEST', secretAccessKey: 'secret' };

describe('PutMetricData on the wire (loopback CloudWatch endpoint)', () => {
  const cw = startFakeCloudWatch();
  let endpoint: string;
  beforeAll(async () => {
    endpoint = await cw.listen();
  });
  afterAll(async () => cw.close());
  beforeEach(() => void cw.calls.splice(0));

  const sink = (maxAttempts = 3, concurrency = 4) =>
    new CloudWatchMetricsSink({
      client: new CloudWatchClient({ endpoint, region: 'us-east-1', credentials, maxAttempts }),
      concurrency,
    });

  it('5,000 metrics are split within the limits: nothing dropped, nothing non-finite', async () => {
    const t = new Date('2026-11-29T02:00:00Z');
    const points: MonitorMetricPoint[] = [];
    const expected = new Map<string, number>(); // metric identity → values expected
    for (let i = 0; i < 4950; i++) {
      // Dimension counts cycle up to the maximum of 30.
      const dimensions = Object.fromEntries(
        Array.from({ length: 1 + (i % 30) }, (_, d) => [`D${d}`, `v${i}-${d}`]),
      );
      points.push({
        name: `M${i}`,
        dimensions,
        value: i % 7 === 0 ? 1e300 : i * 0.5,
        unit: 'Count',
        timestamp: t,
      });
      expected.set(`M${i}`, 1);
    }
    for (let i = 0; i < 50; i++) {
      // Distributions of 400 distinct values: 3 data of ≤ 150 values each on the wire.
      const values = Array.from({ length: 400 }, (_, k) => k + i / 100);
      points.push({
        name: `Dist${i}`,
        dimensions: { Model: 'm' },
        values,
        counts: values.map((_, k) => 1 + (k % 3)),
        unit: 'Milliseconds',
        timestamp: t,
      });
      expected.set(`Dist${i}`, 400);
    }
    // Non-finite inputs never reach the wire (and are counted).
    points.push(
      { name: 'Bad', dimensions: {}, value: NaN, timestamp: t },
      { name: 'Bad', dimensions: {}, value: Infinity, timestamp: t },
    );
    points.push({
      name: 'Mixed',
      dimensions: {},
      values: [1, NaN, 2, -Infinity],
      counts: [1, 1, 1, 1],
      timestamp: t,
    });
    expected.set('Mixed', 2);

    const result = await sink().put('maas-test', points);
    expect(result).toMatchObject({ failedCalls: 0, skippedNonFinite: 4, errors: [] });
    expect(result.delivered).toBe(4950 + 50 * 3 + 1);
    expect(result.calls).toBe(cw.calls.length);

    const seen = new Map<string, number>();
    for (const call of cw.calls) {
      expect(call.target).toBe('GraniteServiceVersion20100801.PutMetricData');
      expect(call.body.Namespace).toBe('maas-test');
      expect(call.body.MetricData.length).toBeLessThanOrEqual(CLOUDWATCH_LIMITS.metricsPerCall);
      expect(call.bytes).toBeLessThan(1_000_000);
      for (const d of call.body.MetricData) {
        expect(d.Dimensions?.length ?? 0).toBeLessThanOrEqual(30);
        expect(d.Values?.length ?? 0).toBeLessThanOrEqual(CLOUDWATCH_LIMITS.valuesPerMetric);
        expect(d.Values?.length).toBe(d.Counts?.length);
        for (const v of [
          ...(d.Value === undefined ? [] : [d.Value]),
          ...(d.Values ?? []),
          ...(d.Counts ?? []),
        ]) {
          expect(typeof v).toBe('number'); // JSON null would be a NaN/Infinity that slipped through
          expect(Number.isFinite(v)).toBe(true);
          expect(Math.abs(v)).toBeLessThanOrEqual(2 ** 360);
        }
        expect(d.Timestamp).toBe(t.getTime() / 1000);
        seen.set(d.MetricName, (seen.get(d.MetricName) ?? 0) + (d.Values?.length ?? 1));
      }
    }
    expect(cw.calls.length).toBeGreaterThanOrEqual(5); // ≥ 5,101 data at ≤ 1,000 per call
    expect(cw.calls.some((c) => c.encoding === 'gzip')).toBe(true);
    expect(seen).toEqual(expected);
    // Values and their counts survive the split (sum of counts per distribution).
    const countsOf = (name: string) =>
      cw.calls
        .flatMap((c) => c.body.MetricData.filter((d) => d.MetricName === name))
        .reduce((s, d) => s + (d.Counts ?? []).reduce((a, b) => a + b, 0), 0);
    expect(countsOf('Dist7')).toBe(
      Array.from({ length: 400 }, (_, k) => 1 + (k % 3)).reduce((a, b) => a + b, 0),
    );
    // Out-of-range magnitudes are clamped to CloudWatch's ±2^360.
    const m0 = cw.calls.flatMap((c) => c.body.MetricData).find((d) => d.MetricName === 'M0');
    expect(m0?.Value).toBe(2 ** 360);
  });

  it('retries failed calls (5xx) and reports calls that still fail without losing the other batches', async () => {
    const t = new Date();
    const points = Array.from(
      { length: 1500 },
      (_, i): MonitorMetricPoint => ({ name: `R${i}`, dimensions: { Model: 'm' }, value: i, timestamp: t }),
    );
    cw.failNext(1);
    const ok = await sink(3).put('maas-test', points);
    expect(ok).toMatchObject({ calls: 2, delivered: 1500, failedCalls: 0 });
    expect(cw.calls.flatMap((c) => c.body.MetricData).length).toBe(1500);

    cw.calls.splice(0);
    cw.failNext(2); // one call at a time: the first exhausts its 2 attempts, the second still lands
    const partial = await sink(2, 1).put('maas-test', points);
    expect(partial.failedCalls).toBe(1);
    expect(partial.delivered).toBe(cw.calls.flatMap((c) => c.body.MetricData).length);
    expect(partial.delivered).toBe(500);
    expect(partial.errors).toHaveLength(1);
  });

  it('the monitor pushes its window through the sink MAAS_METRICS_SINK / MAAS_CLOUDWATCH_ENDPOINT select', async () => {
    const ts: TestStore = await createTestStore('file', 'cw-monitor');
    const saved = { ...process.env };
    try {
      Object.assign(process.env, {
        AWS_ACCESS_KEY_ID: credentials.accessKeyId,
        AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey,
        AWS_REGION: 'us-east-1',
      });
      const s = createMonitorMetricsSink({ ...process.env, MAAS_CLOUDWATCH_ENDPOINT: endpoint });
      expect(s.kind).toBe('cloudwatch');
      expect(createMonitorMetricsSink({ MAAS_METRICS_SINK: 'local' }).kind).toBe('local');
      expect(createMonitorMetricsSink({}).kind).toBe('local');
      expect(() => createMonitorMetricsSink({ MAAS_METRICS_SINK: 'statsd' })).toThrow(/cloudwatch or local/);

      const c = new CaptureObserver(ts.store);
      for (let i = 0; i < 30; i++)
        c.observe(
          observation({
            model: 'cwm',
            version: 4,
            latencyMs: 10 + i,
            status: i < 3 ? 500 : 200,
            inputs: [fp32('x', [[i]])],
          }),
        );
      await c.close();
      const run = await runMonitor({
        store: ts.store,
        registry: new ModelRegistry(ts.store),
        sink: s,
        namespace: 'maas',
        policy: policyFromEnv({}),
        graceSeconds: 0,
      });
      const report = run.models[0]!.report!;
      expect(report.metrics).toMatchObject({ sink: 'cloudwatch', namespace: 'maas', failedCalls: 0 });
      const data = cw.calls.flatMap((call) => call.body.MetricData);
      expect(data.length).toBe(report.metrics.delivered);
      const metric = (name: string) =>
        data.find(
          (d) => d.MetricName === name && d.Dimensions?.some((x) => x.Name === 'version' && x.Value === '4'),
        );
      expect(metric('Invocations')?.Value).toBe(30);
      expect(metric('Errors')?.Value).toBe(3);
      expect(metric('ErrorRate')?.Value).toBeCloseTo(0.1, 12);
      expect(metric('LatencyP50')?.Unit).toBe('Milliseconds');
      expect(Math.abs(metric('LatencyP99')!.Value! - 39) / 39).toBeLessThan(0.13);
      // The latency distribution itself, for CloudWatch's own percentiles.
      expect(metric('Latency')?.Counts?.reduce((a, b) => a + b, 0)).toBe(30);
    } finally {
      process.env = saved;
      await ts.cleanup();
    }
  });
});
