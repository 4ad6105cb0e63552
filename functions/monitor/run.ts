import { numberSetting } from '../../shared/monitor/config';
import { createMonitorMetricsSink } from '../../shared/monitor/metrics-sink';
import { policyFromEnv } from '../../shared/monitor/policy';
import type { MonitorAction } from '../../shared/monitor/rollback-actions';
import { type ModelRunResult, runMonitor } from '../../shared/monitor/run';
import { getStringFromEnv } from '../../shared/settings';
import { logger } from '../lib/logger';
import { getRegistry, getStore } from '../lib/runtime';

/** What a run answers: where the reports are, not the reports themselves. */
export interface MonitorRunSummary {
  runId: string;
  /** Models not started before the deadline (see {@link runMonitorHere}). */
  remaining?: string[];
  models: (Pick<ModelRunResult, 'model' | 'status' | 'conflicts' | 'reportKey' | 'error'> & {
    actions: MonitorAction[];
  })[];
}

/**
 * One monitor run with this function's settings (`MAAS_MONITOR_*`, `MAAS_ROLLBACK_*`,
 * `MAAS_METRICS_*`), shared by the schedule, direct invocations and the HTTP route.
 *
 * @example
 * ```ts
 * const summary = await runMonitorHere({ models: ['iris'], graceSeconds: 0 });
 * ```
 */
export async function runMonitorHere(
  request: { models?: string[]; graceSeconds?: number; now?: Date; runId?: string; deadline?: number } = {},
): Promise<MonitorRunSummary> {
  const env = process.env;
  const result = await runMonitor({
    store: getStore(),
    registry: getRegistry(),
    sink: createMonitorMetricsSink(env),
    namespace: getStringFromEnv({ key: 'MAAS_METRICS_NAMESPACE', defaultValue: 'maas' }),
    graceSeconds: request.graceSeconds ?? numberSetting(env, 'MAAS_MONITOR_GRACE_SECONDS', 120, { min: 0 }),
    lateSeconds: numberSetting(env, 'MAAS_MONITOR_LATE_SECONDS', 900, { min: 0 }),
    baselineRequests: numberSetting(env, 'MAAS_BASELINE_REQUESTS', 1000, { min: 1 }),
    maxFiles: numberSetting(env, 'MAAS_MONITOR_MAX_FILES', 5000, { min: 1 }),
    policy: policyFromEnv(env),
    ...(request.models ? { models: request.models } : {}),
    ...(request.now ? { now: () => request.now! } : {}),
    ...(request.runId ? { runId: request.runId } : {}),
    ...(request.deadline !== undefined ? { deadline: request.deadline } : {}),
    logger: (message, details) => logger.error(message, { details }),
  });
  const models = result.models.map(({ model, status, conflicts, reportKey, report, error }) => ({
    model,
    status,
    conflicts,
    ...(reportKey ? { reportKey } : {}),
    ...(error ? { error } : {}),
    actions: report?.actions ?? [],
  }));
  return { runId: result.runId, models, ...(result.remaining ? { remaining: result.remaining } : {}) };
}
