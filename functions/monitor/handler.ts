import middy from '@middy/core';
import { InvalidArgumentError } from '../../shared/errors';
import { type BaselineData, createBaselineFromData } from '../../shared/monitor/baseline';
import { numberSetting } from '../../shared/monitor/config';
import { latestReport, type MonitorRunResult, runMonitor } from '../../shared/monitor/monitor';
import { policyFromEnv, putPolicyOverride } from '../../shared/monitor/policy';
import { createMetricSink } from '../../shared/monitor/sink';
import { getStringFromEnv } from '../../shared/settings';
import { logger } from '../lib/logger';
import { getRegistry, getStore } from '../lib/runtime';
import { sweepOptimizeJobs } from './optimize-sweep';

/**
 * What the function accepts: an EventBridge schedule event (anything without `action`) runs
 * the monitor over every model; direct invocations may name models or ask for other actions.
 */
export type MonitorEvent =
  | { action?: 'run'; models?: string[]; graceSeconds?: number }
  | ({ action: 'baseline'; model: string; version: number } & BaselineData)
  | { action: 'policy'; model: string; policy: unknown }
  | { action: 'report'; model: string };

async function dispatch(event: MonitorEvent): Promise<unknown> {
  const env = process.env;
  switch (event.action) {
    case 'baseline': {
      const doc = await createBaselineFromData(getStore(), event.model, event.version, event);
      return {
        model: doc.model,
        version: doc.version,
        source: doc.source,
        rows: doc.requests,
        inputs: Object.keys(doc.inputs),
        outputs: Object.keys(doc.outputs),
      };
    }
    case 'policy':
      return { model: event.model, policy: await putPolicyOverride(getStore(), event.model, event.policy) };
    case 'report':
      return (await latestReport(getStore(), event.model)) ?? null;
    case undefined:
    case 'run': {
      if (
        event.models !== undefined &&
        !(Array.isArray(event.models) && event.models.every((m) => typeof m === 'string'))
      )
        throw new InvalidArgumentError('models must be an array of model names');
      const result: MonitorRunResult = await runMonitor({
        store: getStore(),
        registry: getRegistry(),
        sink: createMetricSink(env),
        namespace: getStringFromEnv({ key: 'MAAS_METRICS_NAMESPACE', defaultValue: 'maas' }),
        graceSeconds:
          typeof event.graceSeconds === 'number'
            ? event.graceSeconds
            : numberSetting(env, 'MAAS_MONITOR_GRACE_SECONDS', 120, { min: 0 }),
        baselineRequests: numberSetting(env, 'MAAS_BASELINE_REQUESTS', 1000, { min: 1 }),
        maxFiles: numberSetting(env, 'MAAS_MONITOR_MAX_FILES', 5000, { min: 1 }),
        policy: policyFromEnv(env),
        ...(event.models ? { models: event.models } : {}),
        logger: (message, details) => logger.error(message, { details }),
      });
      // The full scheduled run also re-dispatches optimize jobs whose worker died; its trouble is logged, never fatal.
      const optimizeSweep = event.models
        ? undefined
        : await sweepOptimizeJobs(env).catch((e: unknown) => ({
            errors: [String((e as Error)?.message ?? e)],
          }));
      if (optimizeSweep && 'errors' in optimizeSweep && optimizeSweep.errors.length > 0)
        logger.error('optimize job sweep', { details: optimizeSweep.errors });
      const failed = result.models.filter((m) => m.status === 'failed');
      // Fail the invocation (Lambda's Errors metric, alarms) once every model had its turn.
      if (failed.length > 0)
        throw new Error(
          `monitor run ${result.runId} failed for ${failed.map((m) => `${m.model} (${m.error})`).join(', ')}`,
        );
      // The full reports are in the store; the invocation answers with where to find them.
      const models = result.models.map(({ model, status, conflicts, reportKey, report }) => ({
        model,
        status,
        conflicts,
        reportKey,
        actions: report?.actions ?? [],
      }));
      return { runId: result.runId, models, ...(optimizeSweep ? { optimizeSweep } : {}) };
    }
    default:
      throw new InvalidArgumentError(
        `unknown action ${JSON.stringify((event as { action?: unknown }).action)}`,
      );
  }
}

/**
 * The monitor function: every 5 minutes on a schedule, and on demand
 * (`aws lambda invoke --payload '{"models":["iris"]}'`). See docs/api/monitor.md.
 */
export const handler = middy<MonitorEvent, unknown>().handler((event) =>
  dispatch((event ?? {}) as MonitorEvent),
);
