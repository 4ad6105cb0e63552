/**
 * The scheduled monitor run, fanned out: a scheduler lists the models with monitoring data page
 * by page and hands them on in batches of at most `batchSize`; a worker runs one batch
 * ({@link runMonitor} with `models`). Neither holds more than one listing page and one batch, so
 * a run over 10,000 models needs no more memory than one over 100, and each worker invocation is
 * bounded in models (and, with a deadline, in time).
 *
 * Every batch of a run carries the scheduler's time: the workers' windows all end at the same
 * cutoff, so a batch delivered twice (an asynchronous invocation retried, a remainder handed on
 * by a worker running out of time) finds its models' watermarks already at that cutoff and does
 * nothing the second time. How batches travel (Lambda's asynchronous invocation on AWS, in
 * process locally) is the caller's business: shared/ knows nothing of Lambda.
 */
import type { ObjectStore } from '../store';
import { compareBytes } from '../store/file-store';
import { monitoringLayout } from './layout';

/** One worker's share of a scheduled run. */
export interface MonitorBatch {
  /** The run all batches belong to (reports name it). */
  runId: string;
  /** The scheduler's time (ISO): every batch's window ends at the same cutoff. */
  at: string;
  /** The models of this batch, at most the batch size. */
  models: string[];
  /** Overrides the worker's `MAAS_MONITOR_GRACE_SECONDS` (direct invocations). */
  graceSeconds?: number;
}

/** The payload a worker receives; the `maasMonitorBatch` key tells it apart from other events. */
export interface MonitorBatchEvent {
  maasMonitorBatch: MonitorBatch;
}

/** Most models one batch may name (an asynchronous Lambda payload stays far below its 256 KB limit). */
export const MAX_BATCH_SIZE = 1000;

/**
 * Type guard for a worker's event (a well-formed batch).
 * @example
 * if (isMonitorBatchEvent(event)) await runBatch(event.maasMonitorBatch);
 */
export function isMonitorBatchEvent(event: unknown): event is MonitorBatchEvent {
  const b = (event as { maasMonitorBatch?: unknown } | null)?.maasMonitorBatch as
    | Record<string, unknown>
    | undefined;
  return (
    typeof b === 'object' &&
    b !== null &&
    typeof b.runId === 'string' &&
    typeof b.at === 'string' &&
    !Number.isNaN(Date.parse(b.at)) &&
    Array.isArray(b.models) &&
    b.models.length <= MAX_BATCH_SIZE &&
    b.models.every((m) => typeof m === 'string') &&
    (b.graceSeconds === undefined || (typeof b.graceSeconds === 'number' && b.graceSeconds >= 0))
  );
}

/**
 * The names of the models with captures or feedback, in key order, without duplicates, read one
 * listing page (of each root) at a time.
 *
 * @example
 * ```ts
 * for await (const model of modelsWithMonitoringData(store)) console.log(model);
 * ```
 */
export async function* modelsWithMonitoringData(
  store: ObjectStore,
  options: { pageSize?: number } = {},
): AsyncGenerator<string> {
  const captures = namesUnder(store, monitoringLayout.capturesRoot, options.pageSize);
  const feedback = namesUnder(store, monitoringLayout.feedbackRoot, options.pageSize);
  let a = await captures.next();
  let b = await feedback.next();
  // Both listings come in the store's key order of `{name}/`: merge them like two sorted files.
  while (!a.done || !b.done) {
    const order = a.done ? 1 : b.done ? -1 : compareBytes(`${a.value}/`, `${b.value}/`);
    const name = order <= 0 ? (a.value as string) : (b.value as string);
    if (order <= 0) a = await captures.next();
    if (order >= 0) b = await feedback.next();
    yield name;
  }
}

async function* namesUnder(store: ObjectStore, root: string, pageSize?: number): AsyncGenerator<string> {
  let token: string | undefined;
  do {
    // One common prefix per model: a page is at most `pageSize` names, whatever lies under them.
    const page = await store.list({
      prefix: root,
      delimiter: '/',
      ...(pageSize ? { maxKeys: pageSize } : {}),
      ...(token ? { continuationToken: token } : {}),
    });
    for (const p of page.commonPrefixes) yield p.slice(root.length).replace(/\/$/, '');
    token = page.nextToken;
  } while (token);
}

/** What {@link scheduleMonitorRun} did. */
export interface ScheduledRun {
  runId: string;
  at: string;
  /** Models handed on. */
  models: number;
  batches: number;
}

/**
 * Lists the models with monitoring data and calls `dispatch` with each batch as soon as it is
 * full (and once more with the rest); resolves when every batch is handed on.
 *
 * @example
 * ```ts
 * const run = await scheduleMonitorRun({ store, batchSize: 100, runId, at: new Date(), dispatch: (b) => invokeWorker(b) });
 * // { runId, at, models: 2345, batches: 24 }
 * ```
 */
export async function scheduleMonitorRun(options: {
  store: ObjectStore;
  batchSize: number;
  runId: string;
  at: Date;
  graceSeconds?: number;
  dispatch: (batch: MonitorBatch) => Promise<void>;
  /** Listing page size (default: the store's, 1000). */
  pageSize?: number;
}): Promise<ScheduledRun> {
  const { batchSize } = options;
  if (!(Number.isInteger(batchSize) && batchSize >= 1 && batchSize <= MAX_BATCH_SIZE))
    throw new RangeError(`batchSize must be an integer from 1 to ${MAX_BATCH_SIZE}, got ${batchSize}`);
  const at = options.at.toISOString();
  let models = 0;
  let batches = 0;
  let pending: string[] = [];
  const flush = async () => {
    const batch: MonitorBatch = {
      runId: options.runId,
      at,
      models: pending,
      ...(options.graceSeconds !== undefined ? { graceSeconds: options.graceSeconds } : {}),
    };
    pending = [];
    batches++;
    await options.dispatch(batch);
  };
  for await (const model of modelsWithMonitoringData(
    options.store,
    options.pageSize ? { pageSize: options.pageSize } : {},
  )) {
    pending.push(model);
    models++;
    if (pending.length >= batchSize) await flush();
  }
  if (pending.length > 0) await flush();
  return { runId: options.runId, at, models, batches };
}
