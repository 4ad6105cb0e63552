import type { MonitorReport } from '../../shared/monitor/report';
import { ApiError } from '../client';
import type { CliCommand } from '../context';
import { fields, table } from '../output';

const num = (x: number | null | undefined, digits = 3): string =>
  x === null || x === undefined || !Number.isFinite(x) ? '-' : Number(x.toPrecision(digits)).toString();

/**
 * Human-readable summary of a monitor report.
 *
 * @example
 * ```ts
 * console.log(renderReport((await client.request('GET', '/models/iris/reports/latest')).json()));
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

/** What `POST /models/{name}/monitor/runs` answers. */
interface RunAnswer {
  runId: string;
  model: string;
  status: 'processed' | 'idle' | 'skipped' | 'failed';
  error?: string;
}

/**
 * `maas monitor NAME`: prints the latest monitor report of a model (the catalog's `GET
 * /models/{name}/reports/latest`). `--run` first asks the deployed monitor function to run over
 * the model (`POST /models/{name}/monitor/runs`); the CLI never reads the store itself.
 */
export const command: CliCommand = {
  register: (program, run) =>
    program
      .command('monitor')
      .description("print a model's latest monitoring report (health, drift, accuracy, rollbacks)")
      .argument('<name>', 'model name')
      .option('--run', 'have the monitor run over this model now before printing')
      .option(
        '--grace <seconds>',
        'with --run: leave captures younger than this for a later run (default 0: everything up to now)',
        '0',
      )
      .action((name: string, o: { run?: boolean; grace: string }) =>
        run(async ({ client, out }) => {
          const path = `/models/${encodeURIComponent(name)}/monitor`;
          if (o.run) {
            const graceSeconds = Number(o.grace);
            if (!Number.isFinite(graceSeconds) || graceSeconds < 0)
              throw new Error(
                `--grace must be a non-negative number of seconds, got ${JSON.stringify(o.grace)}`,
              );
            const r = (
              await client.request('POST', `${path}/runs`, { json: { graceSeconds } })
            ).json<RunAnswer>();
            if (r.status === 'failed')
              throw new Error(`monitor run ${r.runId} failed for ${name}: ${r.error}`);
            out.info(`monitor run ${r.runId}: ${r.model} ${r.status}`);
          }
          let report: MonitorReport;
          try {
            report = (
              await client.request('GET', `/models/${encodeURIComponent(name)}/reports/latest`)
            ).json<MonitorReport>();
          } catch (e) {
            if (e instanceof ApiError && e.status === 404 && e.body.code === 'not_found')
              throw new Error(
                `no monitoring report for ${name} yet (is capture on, and has the monitor run? try --run)`,
              );
            throw e;
          }
          out.print(report, renderReport);
        }),
      ),
};
