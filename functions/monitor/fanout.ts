import type { LambdaClient } from '@aws-sdk/client-lambda';
import {
  MAX_BATCH_SIZE,
  type MonitorBatch,
  type MonitorBatchEvent,
  scheduleMonitorRun,
} from '../../shared/monitor/fanout';
import { newRunId } from '../../shared/monitor/run';
import { readSettings } from '../../shared/settings';
import { invokeEvent } from '../../shared/util/lambda-event';
import { getStore } from '../lib/runtime';
import { type MonitorRunSummary, runMonitorHere } from './run';

/**
 * How the scheduled run's batches reach their workers. On AWS the monitor function invokes
 * itself asynchronously (`InvocationType: 'Event'`) with one batch per invocation: no queue to
 * provision, Lambda queues the events itself, retries a failed one twice (idempotent: the
 * batch's fixed cutoff) and throttles to the account's concurrency. SQS would add a queue, an
 * event source mapping and a dead-letter queue for the same at-least-once delivery. Locally
 * (serverless-offline, tests, plain Node) the batches run in this process, one after another.
 */
export interface BatchDispatcher {
  readonly kind: 'lambda';
  dispatch(batch: MonitorBatch): Promise<void>;
}

/** Time a worker keeps in reserve: no model is started with less left (one model's window fits in it). */
export const WORKER_RESERVE_MS = 60_000;

/**
 * Asynchronous Lambda invocation of the monitor function with one batch.
 * @example
 * await new LambdaBatchDispatcher('maas-prod-monitor').dispatch({ runId, at, models: ['iris'] });
 */
export class LambdaBatchDispatcher implements BatchDispatcher {
  readonly kind = 'lambda';
  constructor(
    readonly functionName: string,
    /** Default: the container's shared client (shared/util/lambda-event.ts). */
    private readonly client?: Pick<LambdaClient, 'send'>,
  ) {}

  async dispatch(batch: MonitorBatch): Promise<void> {
    const payload: MonitorBatchEvent = { maasMonitorBatch: batch };
    await invokeEvent(this.functionName, payload, 'a monitor batch worker', this.client);
  }
}

/** The fan-out settings (`MAAS_MONITOR_BATCH_SIZE`). */
export interface FanoutSettings {
  /** Models per worker invocation. */
  batchSize: number;
}

/**
 * Reads the fan-out settings; an invalid one throws `MisconfiguredError`.
 * @example
 * const { batchSize } = fanoutSettings(); // 100
 */
export function fanoutSettings(env: NodeJS.ProcessEnv = process.env): FanoutSettings {
  return readSettings(
    (r) => ({
      batchSize: r.getNumberFromEnv({
        key: 'MAAS_MONITOR_BATCH_SIZE',
        defaultValue: 100,
        min: 1,
        max: MAX_BATCH_SIZE,
        integer: true,
      }),
    }),
    env,
  );
}

let dispatcher: BatchDispatcher | null | undefined;

/**
 * The Lambda dispatcher inside a real Lambda (`AWS_LAMBDA_FUNCTION_NAME` set and not under
 * serverless-offline, whose `IS_OFFLINE` has no Lambda to invoke), otherwise undefined: run in
 * process. The function invokes itself; `MAAS_MONITOR_WORKER_FUNCTION` may name another.
 * @example
 * const lambda = getBatchDispatcher(); // undefined under npm start
 */
export function getBatchDispatcher(env: NodeJS.ProcessEnv = process.env): BatchDispatcher | undefined {
  if (dispatcher === undefined) {
    const fn = env.IS_OFFLINE
      ? undefined
      : readSettings(
          (r) => r.getStringFromEnv({ key: 'MAAS_MONITOR_WORKER_FUNCTION', defaultValue: undefined }),
          env,
        ) || env.AWS_LAMBDA_FUNCTION_NAME;
    dispatcher = fn ? new LambdaBatchDispatcher(fn) : null;
  }
  return dispatcher ?? undefined;
}

/** Tests: forget the dispatcher so the next call re-reads the environment. */
export function resetFanout(): void {
  dispatcher = undefined;
}

/** Counts of a run's model outcomes, and the failures by name. */
export interface RunTally {
  processed: number;
  idle: number;
  skipped: number;
  failed: { model: string; error: string }[];
}

/** What the scheduled run answers: what it handed on, and (in process) how the models fared. */
export interface ScheduledRunResult {
  runId: string;
  at: string;
  /** Models with monitoring data, and the batches they went out in. */
  models: number;
  batches: number;
  dispatch: 'lambda' | 'in-process';
  /** In process only: the outcome of every batch (on AWS the workers log and alarm their own). */
  results?: RunTally;
}

/**
 * The scheduled run: lists the models page by page and hands each batch to a worker invocation
 * (AWS) or runs it here (locally), keeping only counts. Memory: one page and one batch.
 * @example
 * const run = await runScheduled(); // { runId, models: 2345, batches: 24, dispatch: 'lambda' }
 */
export async function runScheduled(request: { graceSeconds?: number } = {}): Promise<ScheduledRunResult> {
  const { batchSize } = fanoutSettings();
  const lambda = getBatchDispatcher();
  const at = new Date();
  const tally: RunTally = { processed: 0, idle: 0, skipped: 0, failed: [] };
  const run = await scheduleMonitorRun({
    store: getStore(),
    batchSize,
    runId: newRunId(at),
    at,
    ...(request.graceSeconds !== undefined ? { graceSeconds: request.graceSeconds } : {}),
    dispatch: lambda
      ? (batch) => lambda.dispatch(batch)
      : async (batch) => {
          for (const m of (await runBatch(batch)).models)
            if (m.status === 'failed') tally.failed.push({ model: m.model, error: m.error ?? '' });
            else tally[m.status]++;
        },
  });
  return { ...run, dispatch: lambda ? 'lambda' : 'in-process', ...(lambda ? {} : { results: tally }) };
}

/**
 * A worker: runs one batch with the run's cutoff. Given the invocation's remaining time, it starts
 * no model within {@link WORKER_RESERVE_MS} of the end and hands the rest on as a new batch.
 * @example
 * const summary = await runBatch(event.maasMonitorBatch, context.getRemainingTimeInMillis());
 */
export async function runBatch(batch: MonitorBatch, remainingMs?: number): Promise<MonitorRunSummary> {
  const lambda = getBatchDispatcher();
  // Only a worker that can hand on its remainder may stop early; in process every model runs.
  const deadline =
    lambda && remainingMs !== undefined ? Date.now() + remainingMs - WORKER_RESERVE_MS : undefined;
  const summary = await runMonitorHere({
    models: batch.models,
    now: new Date(batch.at),
    runId: batch.runId,
    ...(batch.graceSeconds !== undefined ? { graceSeconds: batch.graceSeconds } : {}),
    ...(deadline !== undefined ? { deadline } : {}),
  });
  if (summary.remaining && lambda) await lambda.dispatch({ ...batch, models: summary.remaining });
  return summary;
}
