import { latestReport, type MonitorReport, runMonitor } from '../../shared/monitor/monitor';
import { policyFromEnv } from '../../shared/monitor/policy';
import { createMetricSink } from '../../shared/monitor/sink';
import { ModelRegistry } from '../../shared/registry';
import { createObjectStore, DEFAULT_STORE_URL } from '../../shared/store';
import type { CliCommand } from '../context';
import { fields, table } from '../output';

const num = (x: number | null | undefined, digits = 3): string =>
  x === null || x === undefined || !Number.isFinite(x) ? '-' : Number(x.toPrecision(digits)).toString();

/**
 * Human-readable summary of a monitor report.
 *
 * @example
 * ```ts
 * console.log(renderReport(await latestReport(store, 'iris')));
 * ```
 */
export function renderReport(r: MonitorReport): string {
  const versions = Object.entries(r.versions).map(([v, x]) => [
    v,
    x.requests,
    x.errors,
    num(x.errorRate),
    num(x.latencyMs.p50),
    num(x.latencyMs.p90),
    num(x.latencyMs.p99),
    x.drift.baseline,
    num(x.drift.maxInputPsi),
    num(x.drift.maxOutputPsi),
    x.quality?.accuracy !== undefined
      ? num(x.quality.accuracy)
      : x.quality?.mae !== undefined
        ? `mae ${num(x.quality.mae)}`
        : '-',
  ]);
  const evaluations = r.evaluations.map((e) => [
    e.alias,
    e.role,
    e.version,
    e.breaches.join('; ') || 'ok',
    `${e.consecutive}/${r.policy.windows}`,
    e.autoRollback ? 'on' : 'off',
  ]);
  return [
    fields([
      ['model', r.model],
      ['window', `#${r.window.number} ${r.window.from ?? 'start'} .. ${r.window.to}`],
      ['run', r.runId],
      ['captures', r.captures.files],
      ['feedback', r.feedback.records],
      [
        'metrics',
        `${r.metrics.delivered} to ${r.metrics.sink} (${r.metrics.namespace})${r.metrics.failedCalls ? `, ${r.metrics.failedCalls} calls failed` : ''}`,
      ],
    ]),
    '',
    table(
      [
        'VERSION',
        'REQUESTS',
        'ERRORS',
        'ERROR_RATE',
        'P50_MS',
        'P90_MS',
        'P99_MS',
        'BASELINE',
        'MAX_PSI_IN',
        'MAX_PSI_OUT',
        'ACCURACY',
      ],
      versions,
    ),
    ...(evaluations.length
      ? ['', table(['ALIAS', 'ROLE', 'VERSION', 'BREACHES', 'STREAK', 'AUTO_ROLLBACK'], evaluations)]
      : []),
    ...r.actions.map(
      (a) =>
        `\n${a.ok ? 'ACTION' : 'FAILED ACTION'}: ${a.type} ${a.alias} v${a.version}${a.to ? ` -> v${a.to}` : ''}: ${a.reason}${a.error ? ` (${a.error})` : ''}`,
    ),
  ].join('\n');
}

/**
 * `maas monitor NAME`: prints the latest monitor report of a model. It reads the store itself
 * (`--store` / `MAAS_STORE`, default `file://./.maas`, the local setup) so that `--run` can run
 * the monitor there first; the HTTP API serves the same reports read-only
 * (`GET /models/{name}/reports[/latest]`, for the dashboard). `--run` first runs the monitor locally (metrics to the local sink unless
 * `MAAS_METRICS_SINK` says otherwise).
 */
export const command: CliCommand = {
  register: (program, run) =>
    program
      .command('monitor')
      .description("print a model's latest monitoring report (health, drift, accuracy, rollbacks)")
      .argument('<name>', 'model name')
      .option('--store <url>', 'object store holding monitoring data (default: MAAS_STORE or file://./.maas)')
      .option('--run', 'run the monitor now (all captures up to now) before printing')
      .action((name: string, o: { store?: string; run?: boolean }) =>
        run(async ({ out }) => {
          const store = createObjectStore(o.store ?? process.env.MAAS_STORE ?? DEFAULT_STORE_URL);
          if (o.run) {
            const result = await runMonitor({
              store,
              registry: new ModelRegistry(store),
              sink: createMetricSink(),
              policy: policyFromEnv(),
              graceSeconds: 0,
              models: [name],
            });
            out.info(
              `monitor run ${result.runId}: ${result.models.map((m) => `${m.model} ${m.status}`).join(', ')}`,
            );
          }
          const report = await latestReport(store, name);
          if (!report)
            throw new Error(
              `no monitoring report for ${name} yet (is capture on, and has the monitor run? try --run)`,
            );
          out.print(report, renderReport);
        }),
      ),
};
