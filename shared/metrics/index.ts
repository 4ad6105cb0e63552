/**
 * Metrics port shared by every maas function.
 *
 * Components record through the small {@link MetricsSink} interface; the Lambda adapters plug in
 * {@link EmfMetricsSink}, which writes CloudWatch Embedded Metric Format lines to stdout through
 * `@aws-lambda-powertools/metrics` (CloudWatch Logs turns them into metrics: no network call on the
 * request path). Tests and local runs use {@link MemoryMetricsSink} or {@link NoopMetricsSink}.
 */
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import { readSettings } from '../settings';

/** Units maas metrics use (a subset of CloudWatch's). */
export type MetricUnitName = 'Count' | 'Milliseconds' | 'Bytes';

/** Dimension name → value; keep cardinality bounded (model name and version, never request data). */
export type MetricDimensions = Readonly<Record<string, string>>;

/** One recorded data point. */
export interface MetricPoint {
  name: string;
  unit: MetricUnitName;
  value: number;
  dimensions: MetricDimensions;
}

/**
 * Where components record metrics. `add` only buffers in memory; `flush` publishes what was
 * buffered (for EMF: writes to stdout) and must not do network I/O.
 */
export interface MetricsSink {
  add(name: string, unit: MetricUnitName, value: number, dimensions?: MetricDimensions): void;
  flush(): void;
}

/** Options of {@link EmfMetricsSink}. */
export interface EmfMetricsSinkOptions {
  /** CloudWatch namespace (default `POWERTOOLS_METRICS_NAMESPACE` or `maas`). */
  namespace?: string;
  /** `service` dimension added to every metric (default `POWERTOOLS_SERVICE_NAME` or `maas`). */
  serviceName?: string;
}

const UNITS: Record<MetricUnitName, (typeof MetricUnit)[keyof typeof MetricUnit]> = {
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
 * const metrics = new EmfMetricsSink({ namespace: 'maas' });
 * metrics.add('Invocations', 'Count', 1, { model: 'iris', version: '3' });
 * metrics.flush(); // one JSON line on stdout
 * ```
 */
export class EmfMetricsSink implements MetricsSink {
  private readonly byDimensions = new Map<string, Metrics>();
  private readonly options: Required<EmfMetricsSinkOptions>;

  constructor(options: EmfMetricsSinkOptions = {}) {
    this.options = {
      namespace: options.namespace ?? process.env.POWERTOOLS_METRICS_NAMESPACE ?? 'maas',
      serviceName: options.serviceName ?? process.env.POWERTOOLS_SERVICE_NAME ?? 'maas',
    };
  }

  add(name: string, unit: MetricUnitName, value: number, dimensions: MetricDimensions = {}): void {
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
 * const metrics = new MemoryMetricsSink();
 * metrics.add('Invocations', 'Count', 1, { model: 'iris' });
 * metrics.flush();
 * metrics.sum('Invocations', { model: 'iris' }); // 1
 * ```
 */
export class MemoryMetricsSink implements MetricsSink {
  readonly pending: MetricPoint[] = [];
  readonly published: MetricPoint[] = [];

  add(name: string, unit: MetricUnitName, value: number, dimensions: MetricDimensions = {}): void {
    this.pending.push({ name, unit, value, dimensions: { ...dimensions } });
  }

  flush(): void {
    this.published.push(...this.pending.splice(0));
  }

  /** Published and pending points of a metric whose dimensions include `where`. */
  points(name: string, where: MetricDimensions = {}): MetricPoint[] {
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
export class NoopMetricsSink implements MetricsSink {
  add(): void {}
  flush(): void {}
}

/**
 * The sink the environment asks for: `MAAS_METRICS=off` → {@link NoopMetricsSink}, otherwise
 * {@link EmfMetricsSink} (namespace from `MAAS_METRICS_NAMESPACE`, default `maas`).
 *
 * @example
 * ```ts
 * const metrics = createMetricsSink(); // EMF on Lambda
 * ```
 */
export function createMetricsSink(env: NodeJS.ProcessEnv = process.env): MetricsSink {
  const { on, namespace } = readSettings(
    (r) => ({
      on: r.getBooleanFromEnv({ key: 'MAAS_METRICS', defaultValue: true }),
      namespace: r.getStringFromEnv({ key: 'MAAS_METRICS_NAMESPACE', defaultValue: undefined }),
    }),
    env,
  );
  if (!on) return new NoopMetricsSink();
  return new EmfMetricsSink(namespace ? { namespace } : {});
}

function dimensionKey(dimensions: MetricDimensions): string {
  return Object.keys(dimensions)
    .sort()
    .map((k) => `${k}=${dimensions[k]}`)
    .join('\u0000');
}
