import { appendFile, mkdir } from 'node:fs/promises';
import * as path from 'node:path';
import {
  CloudWatchClient,
  type MetricDatum,
  PutMetricDataCommand,
  type StandardUnit,
} from '@aws-sdk/client-cloudwatch';
import { InvalidArgumentError } from '../errors';
import { readSettings } from '../settings';
import { mapLimit } from '../util/concurrency';

/**
 * PutMetricData limits (CloudWatch API reference, checked 2026): at most 1000 metric data per
 * request, 150 distinct values per datum (Values/Counts), 30 dimensions per metric, a 1 MB
 * request body, values within ±2^360 and never NaN or ±Infinity.
 */
export const CLOUDWATCH_LIMITS = {
  metricsPerCall: 1000,
  valuesPerMetric: 150,
  dimensionsPerMetric: 30,
  /** Kept below the 1 MB limit: our estimate of the serialized size is not byte-exact. */
  bytesPerCall: 800_000,
  maxMagnitude: 2 ** 360,
  minMagnitude: 2 ** -360,
} as const;

/** One metric observation of a monitor window, independent of any sink. */
export interface MonitorMetricPoint {
  name: string;
  dimensions: Record<string, string>;
  unit?: StandardUnit;
  timestamp: Date;
  /** A single value, or… */
  value?: number;
  /** …a distribution: distinct values and how often each occurred (same length). */
  values?: number[];
  counts?: number[];
}

export interface MonitorSinkResult {
  /** Requests made (PutMetricData calls, or files appended to). */
  calls: number;
  /** Data points delivered. */
  delivered: number;
  /** Values left out because they were NaN or infinite (CloudWatch rejects them). */
  skippedNonFinite: number;
  /** Calls that failed after retries (their points are lost; the report says so). */
  failedCalls: number;
  errors: string[];
}

/**
 * The monitor's metrics port: where a monitor run sends the per-window metrics it computed
 * (PutMetricData to CloudWatch on AWS, JSON-lines files locally). Not to be confused with
 * predict's per-request metrics (`shared/request-metrics`, EMF lines on stdout).
 */
export interface MonitorMetricsSink {
  readonly kind: 'cloudwatch' | 'local';
  put(namespace: string, points: readonly MonitorMetricPoint[]): Promise<MonitorSinkResult>;
}

/**
 * Turns points into PutMetricData-ready data: non-finite values removed (counted), magnitudes
 * clamped into CloudWatch's range, distributions split into data of at most 150 values.
 * Throws on more than 30 dimensions (a programming error, not data).
 *
 * @example
 * ```ts
 * const { data, skippedNonFinite } = toMetricData([{ name: 'PSI', dimensions: { model: 'iris', version: '3', feature: 'input:x[0]' }, value: 0.1, timestamp: new Date() }]);
 * ```
 */
export function toMetricData(points: readonly MonitorMetricPoint[]): {
  data: MetricDatum[];
  skippedNonFinite: number;
} {
  const data: MetricDatum[] = [];
  let skippedNonFinite = 0;
  for (const p of points) {
    const dims = Object.entries(p.dimensions);
    if (dims.length > CLOUDWATCH_LIMITS.dimensionsPerMetric) {
      throw new InvalidArgumentError(
        `metric ${p.name} has ${dims.length} dimensions; CloudWatch allows ${CLOUDWATCH_LIMITS.dimensionsPerMetric}`,
      );
    }
    const base: MetricDatum = {
      MetricName: p.name,
      Dimensions: dims.map(([Name, Value]) => ({ Name, Value })),
      Timestamp: p.timestamp,
      ...(p.unit ? { Unit: p.unit } : {}),
    };
    if (p.values) {
      const pairs: [number, number][] = [];
      p.values.forEach((v, i) => {
        const c = p.counts?.[i] ?? 1;
        if (Number.isFinite(v) && Number.isFinite(c) && c > 0) pairs.push([clampValue(v), c]);
        else skippedNonFinite++;
      });
      for (let i = 0; i < pairs.length; i += CLOUDWATCH_LIMITS.valuesPerMetric) {
        const chunk = pairs.slice(i, i + CLOUDWATCH_LIMITS.valuesPerMetric);
        data.push({ ...base, Values: chunk.map((x) => x[0]), Counts: chunk.map((x) => x[1]) });
      }
    } else if (p.value !== undefined && Number.isFinite(p.value)) {
      data.push({ ...base, Value: clampValue(p.value) });
    } else {
      skippedNonFinite++;
    }
  }
  return { data, skippedNonFinite };
}

/**
 * Groups data into PutMetricData calls within the count and size limits.
 *
 * @example
 * ```ts
 * for (const batch of batchMetricData(data)) await client.send(new PutMetricDataCommand({ Namespace: 'maas', MetricData: batch }));
 * ```
 */
export function batchMetricData(data: readonly MetricDatum[]): MetricDatum[][] {
  const batches: MetricDatum[][] = [];
  let current: MetricDatum[] = [];
  let bytes = 0;
  for (const d of data) {
    const size = JSON.stringify(d).length + 16;
    if (
      current.length > 0 &&
      (current.length >= CLOUDWATCH_LIMITS.metricsPerCall || bytes + size > CLOUDWATCH_LIMITS.bytesPerCall)
    ) {
      batches.push(current);
      current = [];
      bytes = 0;
    }
    current.push(d);
    bytes += size;
  }
  if (current.length > 0) batches.push(current);
  return batches;
}

function clampValue(v: number): number {
  const m = Math.abs(v);
  if (m > CLOUDWATCH_LIMITS.maxMagnitude) return Math.sign(v) * CLOUDWATCH_LIMITS.maxMagnitude;
  if (m !== 0 && m < CLOUDWATCH_LIMITS.minMagnitude) return 0;
  return v;
}

/**
 * Sends metrics with PutMetricData, batched within the API limits; the SDK retries throttling
 * and 5xx answers (`maxAttempts`, default 5) with backoff, and a call that still fails is
 * counted and reported rather than aborting the remaining batches.
 *
 * @example
 * ```ts
 * const sink = new CloudWatchMetricsSink({ client: new CloudWatchClient({}) });
 * await sink.put('maas', [{ name: 'Invocations', dimensions: { model: 'iris', version: '3' }, value: 12, timestamp: new Date() }]);
 * ```
 */
export class CloudWatchMetricsSink implements MonitorMetricsSink {
  readonly kind = 'cloudwatch';
  private readonly client: CloudWatchClient;
  private readonly concurrency: number;

  constructor(
    options: {
      client?: CloudWatchClient;
      endpoint?: string;
      region?: string;
      maxAttempts?: number;
      concurrency?: number;
    } = {},
  ) {
    this.client =
      options.client ??
      new CloudWatchClient({
        maxAttempts: options.maxAttempts ?? 5,
        ...(options.region ? { region: options.region } : {}),
        ...(options.endpoint ? { endpoint: options.endpoint } : {}),
      });
    this.concurrency = options.concurrency ?? 4;
  }

  async put(namespace: string, points: readonly MonitorMetricPoint[]): Promise<MonitorSinkResult> {
    const { data, skippedNonFinite } = toMetricData(points);
    const batches = batchMetricData(data);
    const result: MonitorSinkResult = {
      calls: 0,
      delivered: 0,
      skippedNonFinite,
      failedCalls: 0,
      errors: [],
    };
    // Every batch is tried: a failed call is counted, not thrown, so the others still go out.
    await mapLimit(batches, this.concurrency, async (batch) => {
      result.calls++;
      try {
        await this.client.send(new PutMetricDataCommand({ Namespace: namespace, MetricData: batch }));
        result.delivered += batch.length;
      } catch (e) {
        result.failedCalls++;
        result.errors.push(String((e as Error).message ?? e));
      }
    });
    return result;
  }
}

/**
 * Writes metrics as JSON lines to `{dir}/{namespace}/{yyyy-mm-dd}.jsonl` (local development,
 * where no CloudWatch exists). The same sanitizing as for CloudWatch applies, so what is seen
 * locally is what CloudWatch would get.
 */
export class LocalMetricsSink implements MonitorMetricsSink {
  readonly kind = 'local';
  constructor(readonly dir: string) {}

  async put(namespace: string, points: readonly MonitorMetricPoint[]): Promise<MonitorSinkResult> {
    const { data, skippedNonFinite } = toMetricData(points);
    const result: MonitorSinkResult = {
      calls: 0,
      delivered: 0,
      skippedNonFinite,
      failedCalls: 0,
      errors: [],
    };
    if (data.length === 0) return result;
    const byDay = new Map<string, string[]>();
    for (const d of data) {
      const day = (d.Timestamp ?? new Date()).toISOString().slice(0, 10);
      const lines = byDay.get(day) ?? [];
      lines.push(JSON.stringify({ namespace, ...d }));
      byDay.set(day, lines);
    }
    const folder = path.join(this.dir, namespace.replace(/[^A-Za-z0-9._-]/g, '_'));
    await mkdir(folder, { recursive: true });
    for (const [day, lines] of byDay) {
      await appendFile(path.join(folder, `${day}.jsonl`), `${lines.join('\n')}\n`);
      result.calls++;
    }
    result.delivered = data.length;
    return result;
  }
}

/**
 * The sink `MAAS_METRICS_SINK` selects (`cloudwatch` | `local`). Unset: CloudWatch on Lambda
 * or when `MAAS_CLOUDWATCH_ENDPOINT` is set, else local files under `MAAS_METRICS_DIR`
 * (default `.maas/metrics`).
 *
 * @example
 * ```ts
 * const sink = createMonitorMetricsSink(); // local on a laptop, CloudWatch on AWS
 * ```
 */
export function createMonitorMetricsSink(env: NodeJS.ProcessEnv = process.env): MonitorMetricsSink {
  const settings = readSettings((r) => {
    const endpoint = r.getStringFromEnv({
      key: 'MAAS_CLOUDWATCH_ENDPOINT',
      defaultValue: undefined,
      pattern: /^https?:\/\//,
      expected: 'an http(s) URL',
    });
    return {
      endpoint,
      chosen: r.getEnumFromEnv({
        key: 'MAAS_METRICS_SINK',
        values: ['cloudwatch', 'local'] as const,
        defaultValue: env.AWS_LAMBDA_FUNCTION_NAME || endpoint ? 'cloudwatch' : 'local',
      }),
      dir: r.getStringFromEnv({ key: 'MAAS_METRICS_DIR', defaultValue: '.maas/metrics' }),
      region: r.getStringFromEnv({ key: 'MAAS_CLOUDWATCH_REGION', defaultValue: env.AWS_REGION }),
      maxAttempts: r.getNumberFromEnv({
        key: 'MAAS_CLOUDWATCH_MAX_ATTEMPTS',
        defaultValue: 5,
        min: 1,
        max: 20,
        integer: true,
      }),
    };
  }, env);
  if (settings.chosen === 'local') return new LocalMetricsSink(path.resolve(settings.dir));
  return new CloudWatchMetricsSink({
    ...(settings.endpoint ? { endpoint: settings.endpoint } : {}),
    ...(settings.region ? { region: settings.region } : {}),
    maxAttempts: settings.maxAttempts,
  });
}
