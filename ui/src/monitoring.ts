import type { MonitorReport, VersionReport } from '../../shared/monitor/report';
import { type Line, timeChart } from './charts';
import { h } from './dom';

/** Time ranges of the monitoring page. */
export const RANGES = [
  { id: '1h', label: 'last hour', ms: 3_600_000 },
  { id: '6h', label: 'last 6 hours', ms: 6 * 3_600_000 },
  { id: '24h', label: 'last 24 hours', ms: 24 * 3_600_000 },
  { id: '7d', label: 'last 7 days', ms: 7 * 24 * 3_600_000 },
  { id: '30d', label: 'last 30 days', ms: 30 * 24 * 3_600_000 },
];

type Role = 'primary' | 'canary';

/** The version a role of the alias served in a report's window (the busiest version when no alias is chosen). */
function versionOf(r: MonitorReport, alias: string | undefined, role: Role): VersionReport | undefined {
  if (alias === undefined) {
    if (role === 'canary') return undefined;
    return Object.values(r.versions).sort((a, b) => b.requests - a.requests)[0];
  }
  const e = r.evaluations.find((x) => x.alias === alias && x.role === role);
  return e ? r.versions[String(e.version)] : undefined;
}

const finite = (x: number | null | undefined): number | null =>
  typeof x === 'number' && Number.isFinite(x) ? x : null;

/**
 * The series the charts plot, one value per report (x: window end, seconds): each metric for the
 * primary and canary versions of `alias`, per-feature PSI of the primary, and the rollback
 * thresholds of each window's policy.
 *
 * @example
 * ```ts
 * const s = reportSeries(reports, 'production'); // s.primary.requests[i] belongs to s.x[i]
 * ```
 */
export function reportSeries(reports: MonitorReport[], alias: string | undefined) {
  const x = reports.map((r) => Date.parse(r.window.to) / 1000);
  const metric = (role: Role, pick: (v: VersionReport) => number | null | undefined) =>
    reports.map((r) => {
      const v = versionOf(r, alias, role);
      return v ? finite(pick(v)) : null;
    });
  const roleSeries = (role: Role) => ({
    requests: metric(role, (v) => v.requests),
    errorRate: metric(role, (v) => (v.requests > 0 ? v.errorRate : null)),
    p50: metric(role, (v) => v.latencyMs.p50),
    p99: metric(role, (v) => v.latencyMs.p99),
    inputPsi: metric(role, (v) => v.drift.maxInputPsi),
    outputPsi: metric(role, (v) => v.drift.maxOutputPsi),
    accuracy: metric(role, (v) => v.quality?.accuracy),
  });
  const features = new Set<string>();
  for (const r of reports) {
    const v = versionOf(r, alias, 'primary');
    for (const f of Object.keys(v?.drift.inputs ?? {})) features.add(`input:${f}`);
    for (const f of Object.keys(v?.drift.outputs ?? {})) features.add(`output:${f}`);
  }
  const featurePsi = Object.fromEntries(
    [...features].sort().map((f) => {
      const [kind, name] = [f.slice(0, f.indexOf(':')), f.slice(f.indexOf(':') + 1)];
      return [f, metric('primary', (v) => (kind === 'input' ? v.drift.inputs : v.drift.outputs)[name]?.psi)];
    }),
  );
  const threshold = (pick: (t: MonitorReport['policy']['thresholds']) => number | undefined) =>
    reports.map((r) => finite(pick(r.policy.thresholds)));
  return {
    x,
    primary: roleSeries('primary'),
    canary: roleSeries('canary'),
    featurePsi,
    thresholds: {
      errorRate: threshold((t) => t.errorRate),
      p99LatencyMs: threshold((t) => t.p99LatencyMs),
      psi: threshold((t) => t.psi),
    },
  };
}

const FEATURE_COLORS = ['--c1', '--c2', '--c3', '--c4', '--c5', '--c6'];

/**
 * The monitoring charts for `alias` over `reports`: requests, error rate, latency, drift (max and
 * per feature) and accuracy, primary against canary, with the automatic-rollback thresholds dashed.
 */
export function monitoringCharts(reports: MonitorReport[], alias: string | undefined): HTMLElement[] {
  const s = reportSeries(reports, alias);
  const hasCanary = Object.values(s.canary).some((values) => values.some((v) => v !== null));
  const both = (key: keyof typeof s.primary, label: string): Line[] => [
    { label: `primary ${label}`.trim(), values: s.primary[key], color: '--primary' },
    ...(hasCanary ? [{ label: `canary ${label}`.trim(), values: s.canary[key], color: '--canary' }] : []),
  ];
  const th = (label: string, values: (number | null)[]): Line[] =>
    values.some((v) => v !== null) ? [{ label, values, color: '--threshold', dash: true }] : [];
  const last = reports.at(-1);
  return [
    h(
      'p',
      { class: 'muted' },
      alias
        ? `Alias ${alias}: the version it serves (primary) and its canary, per monitor window.`
        : 'No alias: the busiest version per window.',
      last
        ? ` Automatic rollback: canary ${last.policy.canary ? 'on' : 'off'}, primary ${last.policy.primary ? 'on' : 'off'}, after ${last.policy.windows} breaching windows of at least ${last.policy.minRequests} requests.`
        : '',
    ),
    h(
      'div',
      { class: 'charts' },
      timeChart('requests', 'Requests per window', s.x, both('requests', '')),
      timeChart('error-rate', 'Error rate (5xx share)', s.x, [
        ...both('errorRate', ''),
        ...th('rollback threshold', s.thresholds.errorRate),
      ]),
      timeChart(
        'latency',
        'Latency p50 / p99 (ms)',
        s.x,
        [
          ...both('p50', 'p50'),
          ...both('p99', 'p99').map((l) => ({ ...l, color: `${l.color}-alt` })),
          ...th('p99 rollback threshold', s.thresholds.p99LatencyMs),
        ],
        { unit: 'ms', log: true },
      ),
      timeChart('psi', 'Drift: largest input and output PSI', s.x, [
        ...both('inputPsi', 'input'),
        ...both('outputPsi', 'output').map((l) => ({ ...l, color: `${l.color}-alt` })),
        ...th('rollback threshold', s.thresholds.psi),
      ]),
      timeChart(
        'feature-psi',
        'PSI per feature (primary)',
        s.x,
        Object.entries(s.featurePsi).map(([f, values], i) => ({
          label: f,
          values,
          color: FEATURE_COLORS[i % FEATURE_COLORS.length]!,
        })),
      ),
      timeChart(
        'accuracy',
        `Accuracy from feedback${last?.policy.thresholds.accuracyDrop !== undefined ? ` (rollback when ${last.policy.thresholds.accuracyDrop} below the reference)` : ''}`,
        s.x,
        both('accuracy', ''),
      ),
    ),
  ];
}
