import type { StandardUnit } from '@aws-sdk/client-cloudwatch';
import { binMidpoint, type Histogram, sortedBins } from './histogram';
import type { MonitorMetricPoint } from './metrics-sink';
import type { VersionReport } from './report';
import type { RoleEvaluation } from './rollback-evaluation';

/**
 * The CloudWatch metrics a window produces, ready for a {@link MonitorMetricsSink}: per version
 * (`model`, `version`), per feature (`model`, `version`, `feature`) and per alias role (`model`,
 * `alias`, `role`). See docs/api/monitor.md for the catalogue.
 *
 * @example
 * ```ts
 * await sink.put('maas', metricPoints('iris', report.versions, report.evaluations, new Date()));
 * ```
 */
export function metricPoints(
  model: string,
  versions: Record<string, VersionReport>,
  evaluations: readonly RoleEvaluation[],
  timestamp: Date,
  latency: ReadonlyMap<number, Histogram> = new Map(),
  timeToFirstToken: ReadonlyMap<number, Histogram> = new Map(),
): MonitorMetricPoint[] {
  const points: MonitorMetricPoint[] = [];
  const add = (
    name: string,
    dimensions: Record<string, string>,
    value: number | null | undefined,
    unit: StandardUnit = 'None',
  ): void => {
    if (value === null || value === undefined || !Number.isFinite(value)) return;
    points.push({ name, dimensions, value, unit, timestamp });
  };
  for (const [v, r] of Object.entries(versions)) {
    const d = { model, version: v };
    add('Invocations', d, r.requests, 'Count');
    add('Errors', d, r.errors, 'Count');
    add('ClientErrors', d, r.clientErrors, 'Count');
    if (r.requests > 0) {
      add('ErrorRate', d, r.errorRate);
      add('LatencyP50', d, r.latencyMs.p50, 'Milliseconds');
      add('LatencyP90', d, r.latencyMs.p90, 'Milliseconds');
      add('LatencyP99', d, r.latencyMs.p99, 'Milliseconds');
    }
    const h = latency.get(Number(v));
    const dist = h ? distributionPoint('Latency', d, h, timestamp) : undefined;
    if (dist) points.push(dist);
    add('MaxInputPSI', d, r.drift.maxInputPsi);
    add('MaxOutputPSI', d, r.drift.maxOutputPsi);
    for (const [kind, features] of [
      ['input', r.drift.inputs],
      ['output', r.drift.outputs],
    ] as const) {
      for (const [f, s] of Object.entries(features)) {
        const fd = { ...d, feature: `${kind}:${f}` };
        add('PSI', fd, s.psi);
        add('KS', fd, s.ks);
        add('JSDivergence', fd, s.js);
      }
    }
    const g = r.generation;
    if (g) {
      add('Generations', d, g.generations, 'Count');
      for (const [reason, n] of Object.entries(g.finishReasons))
        add('Generations', { ...d, finish_reason: reason }, n, 'Count');
      add('PromptTokens', d, g.promptTokens, 'Count');
      add('CompletionTokens', d, g.completionTokens, 'Count');
      add('TimeToFirstTokenP50', d, g.timeToFirstTokenMs.p50, 'Milliseconds');
      add('TimeToFirstTokenP90', d, g.timeToFirstTokenMs.p90, 'Milliseconds');
      add('TimeToFirstTokenP99', d, g.timeToFirstTokenMs.p99, 'Milliseconds');
      add('TokensPerSecondP10', d, g.tokensPerSecond.p10);
      add('TokensPerSecondP50', d, g.tokensPerSecond.p50);
      const ttft = timeToFirstToken.get(Number(v));
      const ttftDist = ttft ? distributionPoint('TimeToFirstToken', d, ttft, timestamp) : undefined;
      if (ttftDist) points.push(ttftDist);
    }
    if (r.quality) {
      add('FeedbackCount', d, r.quality.n, 'Count');
      add('Accuracy', d, r.quality.accuracy);
      add('MAE', d, r.quality.mae);
      add('RMSE', d, r.quality.rmse);
    }
  }
  // Per alias role: stable dimensions for alarms while versions come and go.
  for (const e of evaluations) {
    const r = versions[e.version];
    if (!r || r.requests === 0) continue;
    const d = { model, alias: e.alias, role: e.role };
    add('Invocations', d, r.requests, 'Count');
    add('ErrorRate', d, r.errorRate);
    add('LatencyP99', d, r.latencyMs.p99, 'Milliseconds');
    add('MaxInputPSI', d, r.drift.maxInputPsi);
    add('Accuracy', d, r.quality?.accuracy);
  }
  return points;
}

/**
 * Latency distribution as CloudWatch Values/Counts (bin midpoints), so CloudWatch can compute its own percentiles.
 *
 * @example
 * ```ts
 * const p = distributionPoint('Latency', { model: 'iris', version: '3' }, latencyHistogram, new Date());
 * ```
 */
export function distributionPoint(
  name: string,
  dimensions: Record<string, string>,
  h: Histogram,
  timestamp: Date,
): MonitorMetricPoint | undefined {
  const bins = sortedBins(h);
  if (bins.length === 0) return undefined;
  return {
    name,
    dimensions,
    unit: 'Milliseconds',
    timestamp,
    values: bins.map(binMidpoint),
    counts: bins.map((b) => h.bins[b] ?? 0),
  };
}
