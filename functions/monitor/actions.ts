import { InvalidArgumentError } from '../../shared/errors';
import { type BaselineData, createBaselineFromData } from '../../shared/monitor/baseline';
import { isMonitorBatchEvent, type MonitorBatchEvent } from '../../shared/monitor/fanout';
import { putPolicyOverride } from '../../shared/monitor/policy';
import { latestReport } from '../../shared/monitor/report';
import { logger } from '../lib/logger';
import { getStore } from '../lib/runtime';
import { sweepEvents } from './events-sweep';
import { runBatch, runScheduled, type ScheduledRunResult } from './fanout';
import { sweepRetentionIfDue } from './retention';
import { type MonitorRunSummary, runMonitorHere } from './run';

/**
 * What the function accepts besides HTTP: an EventBridge schedule event (anything without
 * `action`) runs the monitor over every model, fanned out in batches (functions/monitor/fanout.ts);
 * a batch event is one worker's share; direct invocations may name models or ask for other actions.
 */
export type MonitorEvent =
  | { action?: 'run'; models?: string[]; graceSeconds?: number }
  | MonitorBatchEvent
  | ({ action: 'baseline'; model: string; version: number } & BaselineData)
  | { action: 'policy'; model: string; policy: unknown }
  | { action: 'report'; model: string };

/**
 * Carries out one non-HTTP event (see {@link MonitorEvent}); bad payloads throw
 * InvalidArgumentError.
 *
 * @example
 * ```ts
 * await monitorAction({ action: 'report', model: 'iris' });
 * ```
 */
export async function monitorAction(
  event: MonitorEvent,
  context?: { getRemainingTimeInMillis(): number },
): Promise<unknown> {
  if ('maasMonitorBatch' in event) {
    if (!isMonitorBatchEvent(event)) throw new InvalidArgumentError('malformed monitor batch');
    return failOnFailures(await runBatch(event.maasMonitorBatch, context?.getRemainingTimeInMillis()));
  }
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
      const graceSeconds = typeof event.graceSeconds === 'number' ? { graceSeconds: event.graceSeconds } : {};
      if (event.models)
        return failOnFailures(await runMonitorHere({ models: event.models, ...graceSeconds }));
      const run: ScheduledRunResult = await runScheduled(graceSeconds);
      // The full scheduled run also retries registry events whose publication failed
      // (docs/api/events.md); its trouble is logged, never fatal.
      const eventsSweep = await sweepEvents().catch((e: unknown) => ({
        error: String((e as Error)?.message ?? e),
      }));
      if ('error' in eventsSweep) logger.error('event sweep', { details: eventsSweep.error });
      // Retention (expired records, orphaned blobs): within what is left of this invocation.
      const remaining = context?.getRemainingTimeInMillis();
      const retention = await sweepRetentionIfDue(
        remaining === undefined ? undefined : Date.now() + remaining - 15_000,
      ).catch((e: unknown) => ({ error: String((e as Error)?.message ?? e) }));
      if ('error' in retention) logger.error('retention sweep', { details: retention.error });
      const failed = run.results?.failed ?? [];
      // Fail the invocation (Lambda's Errors metric, alarms) once every model had its turn.
      if (failed.length > 0)
        throw new Error(
          `monitor run ${run.runId} failed for ${failed.map((m) => `${m.model} (${m.error})`).join(', ')}`,
        );
      return { ...run, eventsSweep, retention };
    }
    default:
      throw new InvalidArgumentError(
        `unknown action ${JSON.stringify((event as { action?: unknown }).action)}`,
      );
  }
}

/** Fails the invocation (Lambda's Errors metric, alarms; a batch is retried) once every model had its turn. */
function failOnFailures(summary: MonitorRunSummary): MonitorRunSummary {
  const failed = summary.models.filter((m) => m.status === 'failed');
  if (failed.length > 0)
    throw new Error(
      `monitor run ${summary.runId} failed for ${failed.map((m) => `${m.model} (${m.error})`).join(', ')}`,
    );
  return summary;
}
