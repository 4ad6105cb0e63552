/**
 * Request metrics: the port predict's inference core records per-request metrics through
 * (`Invocations`, latency, model loads… with dimensions `model` and `version`).
 *
 * Predict's runtime plugs in {@link EmfRequestMetrics}, which writes CloudWatch Embedded Metric
 * Format lines to stdout through `@aws-lambda-powertools/metrics` (CloudWatch Logs turns them into
 * metrics: no network call on the request path; Powertools adds a `service` dimension). Tests use
 * {@link MemoryRequestMetrics}, `MAAS_METRICS=off` {@link NoopRequestMetrics}. The monitor's
 * per-window metrics go elsewhere: `shared/monitor/metrics-sink.ts` (PutMetricData).
 */
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import { readSettings } from '../settings';

/** Units maas metrics use (a subset of CloudWatch's). */
export type RequestMetricUnit = 'Count' | 'Milliseconds' | 'Bytes';

/** Dimension name → value; keep cardinality bounded (model name and version, never request data). */
export type MetricDimensions = Readonly<Record<string, string>>;

/** One recorded data point. */
export interface RequestMetricPoint {
  name: string;
  unit: RequestMetricUnit;
  value: number;
  dimensions: MetricDimensions;
}

/**
 * Where components record metrics. `add` only buffers in memory; `flush` publishes what was
 * buffered (for EMF: writes to stdout) and must not do network I/O.
 */
export interface RequestMetrics {
  add(name: string, unit: RequestMetricUnit, value: number, dimensions?: MetricDimensions): void;
  flush(): void;
}

/** Options of {@link EmfRequestMetrics}. */
export interface EmfRequestMetricsOptions {
  /** CloudWatch namespace (default `POWERTOOLS_METRICS_NAMESPACE` or `maas`). */
  namespace?: string;
  /** `service` dimension added to every metric (default `POWERTOOLS_SERVICE_NAME` or `maas`). */
  serviceName?: string;
}

const UNITS: Record<RequestMetricUnit, (typeof MetricUnit)[keyof typeof MetricUnit]> = {
  Count: MetricUnit.Count,
  Milliseconds: MetricUnit.Milliseconds,
  Bytes: MetricUnit.Bytes,
};

/**
 * EMF through Powertools. Powertools' `Metrics` holds one dimension set per instance, so the sink
 * keeps one instance per distinct dimension set (per model version: bounded) and publishes all
 * of them on `flush`, one EMF document each, with all data points of that set.
 *
 * @example
 * ```ts
 * const metrics = new EmfRequestMetrics({ namespace: 'maas' });
 * metrics.add('Invocations', 'Count', 1, { model: 'iris', version: '3' });
 * metrics.flush(); // one EMF line on stdout: dimensions service, model, version
 * ```
 */
export class EmfRequestMetrics implements RequestMetrics {
  private readonly byDimensions = new Map<string, Metrics>();
  private readonly options: Required<EmfRequestMetricsOptions>;

  constructor(options: EmfRequestMetricsOptions = {}) {
    this.options = {
      namespace: options.namespace ?? process.env.POWERTOOLS_METRICS_NAMESPACE ?? 'maas',
      serviceName: options.serviceName ?? process.env.POWERTOOLS_SERVICE_NAME ?? 'maas',
    };
  }

  add(name: string, unit: RequestMetricUnit, value: number, dimensions: MetricDimensions = {}): void {
    const key = dimensionKey(dimensions);
    let metrics = this.byDimensions.get(key);
    if (!metrics) {
      metrics = new Metrics({
        namespace: this.options.namespace,
        serviceName: this.options.serviceName,
        defaultDimensions: { ...dimensions },
      });
      this.byDimensions.set(key, metrics);
    }
    metrics.addMetric(name, UNITS[unit], value);
  }

  flush(): void {
    for (const metrics of this.byDimensions.values()) {
      // Publishing an empty buffer makes Powertools warn; only sets with data are written.
      if (metrics.hasStoredMetrics()) metrics.publishStoredMetrics();
    }
  }
}

/**
 * Keeps every point in memory (tests, local diagnostics). `flush` moves points from `pending` to
 * `published`, so tests can tell buffered from flushed data.
 *
 * @example
 * ```ts
 * const metrics = new MemoryRequestMetrics();
 * metrics.add('Invocations', 'Count', 1, { model: 'iris', version: '3' });
 * metrics.flush();
 * metrics.sum('Invocations', { model: 'iris' }); // 1: every version of iris
 * ```
 */
export class MemoryRequestMetrics implements RequestMetrics {
  readonly pending: RequestMetricPoint[] = [];
  readonly published: RequestMetricPoint[] = [];

  add(name: string, unit: RequestMetricUnit, value: number, dimensions: MetricDimensions = {}): void {
    this.pending.push({ name, unit, value, dimensions: { ...dimensions } });
  }

  flush(): void {
    this.published.push(...this.pending.splice(0));
  }

  /** Published and pending points of a metric whose dimensions include `where`. */
  points(name: string, where: MetricDimensions = {}): RequestMetricPoint[] {
    return [...this.published, ...this.pending].filter(
      (p) => p.name === name && Object.entries(where).every(([k, v]) => p.dimensions[k] === v),
    );
  }

  /** Sum of the values of {@link points}. */
  sum(name: string, where: MetricDimensions = {}): number {
    return this.points(name, where).reduce((acc, p) => acc + p.value, 0);
  }
}

/** Discards everything (metrics switched off). */
export class NoopRequestMetrics implements RequestMetrics {
  add(): void {}
  flush(): void {}
}

/**
 * The sink the environment asks for: `MAAS_METRICS=off` → {@link NoopRequestMetrics}, otherwise
 * {@link EmfRequestMetrics} (namespace from `MAAS_METRICS_NAMESPACE`, default `maas`).
 *
 * @example
 * ```ts
 * const metrics = createRequestMetrics(); // EMF on Lambda
 * ```
 */
export function createRequestMetrics(env: NodeJS.ProcessEnv = process.env): RequestMetrics {
  const { on, namespace } = readSettings(
    (r) => ({
      on: r.getBooleanFromEnv({ key: 'MAAS_METRICS', defaultValue: true }),
      namespace: r.getStringFromEnv({ key: 'MAAS_METRICS_NAMESPACE', defaultValue: undefined }),
    }),
    env,
  );
  if (!on) return new NoopRequestMetrics();
  return new EmfRequestMetrics(namespace ? { namespace } : {});
}

function dimensionKey(dimensions: MetricDimensions): string {
  return Object.keys(dimensions)
    .sort()
    .map((k) => `${k}=${dimensions[k]}`)
    .join('\u0000');
}
