/**
 * Optimization jobs: records in the object store whose state moves only by conditional writes, so
 * duplicate deliveries of the same job (Lambda retries asynchronous invocations) cannot run it twice.
 *
 * | key | written | content |
 * | --- | --- | --- |
 * | `models/{name}/optimizations/{job}.json` | create-only, then compare-and-swap | the job record |
 * | `models/{name}/optimizations/{job}.inputs.json` | create-only, before the record | inline reference inputs |
 *
 * States: queued → running → succeeded (at least one candidate registered) | rejected (all measured,
 * none passed the gate) | failed (the run itself broke). A `running` job whose record has not
 * changed for `staleAfterMs` (the worker died: timeout, out of memory) may be claimed again.
 */
import { randomBytes } from 'node:crypto';
import { ConflictError, InvalidArgumentError, MaasError, NotFoundError } from '../errors';
import { assertModelName } from '../registry';
import { listAll, type ObjectStore } from '../store';
import { createJson, KEEP, readJson, updateJson } from '../store/documents';
import type { OptimizationReport } from './optimizer';
import type { OptimizeRequest } from './request';

export type JobStatus = 'queued' | 'running' | 'succeeded' | 'failed' | 'rejected';

/** The stored job record (also the `GET /models/{name}/optimizations/{job}` body). */
export interface OptimizationJob {
  job: string;
  model: string;
  version: number;
  status: JobStatus;
  /** The request, with inline reference inputs replaced by the key they were saved under. */
  request: Omit<OptimizeRequest, 'referenceInputs'> & { referenceInputs?: { key: string; inline?: true } };
  actor: string;
  createdAt: string;
  updatedAt: string;
  startedAt?: string;
  finishedAt?: string;
  /** Worker runs that claimed the job (more than 1 after a takeover of a stale run). */
  attempts: number;
  /** One line per candidate once finished, e.g. 'int8: registered as version 4'. */
  summary?: string[];
  report?: OptimizationReport;
  error?: { message: string; code: string };
}

/** A job record with the etag to pass back for the next transition. */
export interface StoredJob {
  record: OptimizationJob;
  etag: string;
}

const JOB_ID = /^opt-[0-9a-z]{8,14}-[0-9a-f]{8}$/;

/** Store keys of job objects. */
export const jobLayout = {
  prefix: (model: string): string => `models/${model}/optimizations/`,
  record: (model: string, job: string): string => `models/${model}/optimizations/${job}.json`,
  inputs: (model: string, job: string): string => `models/${model}/optimizations/${job}.inputs.json`,
};

/**
 * Checks a job id from a URL before it becomes part of a store key.
 * @example
 * assertJobId('opt-lx3k9a2b-0123abcd');
 */
export function assertJobId(job: unknown): asserts job is string {
  if (typeof job !== 'string' || !JOB_ID.test(job))
    throw new InvalidArgumentError(`invalid optimization job id ${JSON.stringify(job)}`, {
      job: String(job),
    });
}

/** Options of {@link OptimizationJobStore}. */
export interface JobStoreOptions {
  /** A running job untouched this long is presumed dead and may be claimed again (default 16 min: beyond Lambda's 15-min cap). */
  staleAfterMs?: number;
  now?: () => Date;
}

/**
 * Job records in an ObjectStore.
 *
 * @example
 * const jobs = new OptimizationJobStore(store);
 * const { record } = await jobs.create('mlp', 1, request, 'alice');
 * const claimed = await jobs.claim('mlp', record.job); // undefined if another worker has it
 */
export class OptimizationJobStore {
  private readonly staleAfterMs: number;
  private readonly now: () => Date;

  constructor(
    readonly store: ObjectStore,
    options: JobStoreOptions = {},
  ) {
    this.staleAfterMs = options.staleAfterMs ?? 16 * 60_000;
    this.now = options.now ?? (() => new Date());
  }

  /** Creates a queued job. Inline reference inputs are saved first, so a record never points at nothing. */
  async create(model: string, version: number, request: OptimizeRequest, actor: string): Promise<StoredJob> {
    assertModelName(model);
    const time = this.now();
    const job = `opt-${time.getTime().toString(36)}-${randomBytes(4).toString('hex')}`;
    const { referenceInputs, ...rest } = request;
    let stored: OptimizationJob['request'] = rest;
    if (referenceInputs && 'inputs' in referenceInputs) {
      const key = jobLayout.inputs(model, job);
      const saved = await createJson(
        this.store,
        key,
        { inputs: referenceInputs.inputs },
        { readExisting: false },
      );
      if (!saved.created)
        throw new ConflictError(`optimization job ${job} of ${model} already exists`, { job });
      stored = { ...rest, referenceInputs: { key, inline: true } };
    } else if (referenceInputs) {
      stored = { ...rest, referenceInputs: { key: referenceInputs.key } };
    }
    const record: OptimizationJob = {
      job,
      model,
      version,
      status: 'queued',
      request: stored,
      actor,
      createdAt: time.toISOString(),
      updatedAt: time.toISOString(),
      attempts: 0,
    };
    try {
      const created = await createJson(this.store, jobLayout.record(model, job), record, {
        readExisting: false,
      });
      // Ids carry 32 random bits on a millisecond clock: a taken one is a bug, not a race.
      if (!created.created)
        throw new ConflictError(`optimization job ${job} of ${model} already exists`, { job });
      return { record, etag: created.etag };
    } catch (e) {
      if (stored.referenceInputs?.inline)
        await this.store.delete(jobLayout.inputs(model, job)).catch(() => undefined);
      throw e;
    }
  }

  /** The job record; NotFoundError when there is none. */
  async get(model: string, job: string): Promise<StoredJob> {
    assertModelName(model);
    assertJobId(job);
    const found = await readJson<OptimizationJob>(this.store, jobLayout.record(model, job));
    if (!found) throw new NotFoundError(`model ${model} has no optimization job ${job}`, { model, job });
    return { record: found.doc, etag: found.etag };
  }

  /**
   * Moves a queued (or stale running) job to running. Returns undefined when the job is not
   * claimable: already finished, or running elsewhere, or another worker won the race.
   */
  async claim(model: string, job: string): Promise<StoredJob | undefined> {
    assertModelName(model);
    assertJobId(job);
    const { doc, etag, written } = await updateJson<OptimizationJob>(
      this.store,
      jobLayout.record(model, job),
      (current) => {
        if (!current)
          throw new NotFoundError(`model ${model} has no optimization job ${job}`, { model, job });
        const { doc: record } = current;
        // Lost a race? The re-read shows the winner's `running`: not claimable, so KEEP.
        if (record.status !== 'queued' && !this.isStale(record)) return KEEP;
        const time = this.now().toISOString();
        return {
          ...record,
          status: 'running',
          startedAt: time,
          updatedAt: time,
          attempts: record.attempts + 1,
        };
      },
    );
    return written && doc && etag ? { record: doc, etag } : undefined;
  }

  /** Records the outcome of a claimed job (compare-and-swap on the claim's etag). */
  async finish(
    claimed: StoredJob,
    outcome: { report: OptimizationReport } | { error: unknown },
  ): Promise<StoredJob> {
    const time = this.now().toISOString();
    const base = { ...claimed.record, updatedAt: time, finishedAt: time };
    if ('error' in outcome) {
      const e = outcome.error;
      const error =
        e instanceof MaasError && e.kind !== 'internal'
          ? { message: e.message, code: e.kind }
          : {
              message: `optimization failed: ${e instanceof Error ? e.message : String(e)}`,
              code: 'internal',
            };
      return this.replace(claimed, { ...base, status: 'failed', error });
    }
    const { report } = outcome;
    const registered = report.candidates.some((c) => c.status === 'registered');
    const summary = report.candidates.map((c) =>
      c.status === 'registered'
        ? `${c.technique}: registered as version ${c.version ?? '?'}${c.created === false ? ' (identical bytes already registered)' : ''}`
        : c.status === 'rejected'
          ? `${c.technique}: rejected (${(c.gate?.reasons ?? []).join('; ')})`
          : `${c.technique}: failed (${c.error ?? 'unknown error'})`,
    );
    return this.replace(claimed, {
      ...base,
      status: registered
        ? 'succeeded'
        : report.candidates.every((c) => c.status === 'failed')
          ? 'failed'
          : 'rejected',
      summary,
      report,
    });
  }

  /** Marks a queued job failed (e.g. its worker could not be started). */
  async abandon(stored: StoredJob, error: { message: string; code: string }): Promise<StoredJob> {
    const time = this.now().toISOString();
    return this.replace(stored, {
      ...stored.record,
      status: 'failed',
      updatedAt: time,
      finishedAt: time,
      error,
    });
  }

  /** Whether a job is `running` but untouched for longer than `staleAfterMs`: its worker presumably died, and {@link claim} would take it over. */
  isStale(record: OptimizationJob): boolean {
    return (
      record.status === 'running' && this.now().getTime() - Date.parse(record.updatedAt) > this.staleAfterMs
    );
  }

  /**
   * The stale running jobs of `model` (see {@link isStale}), for a sweeper to re-dispatch. Cheap
   * enough for a schedule: one listing, and only records last written between `staleAfterMs`
   * and `lookbackMs` ago (default 1 day) are read, since fresher ones cannot be stale and older
   * ones were finished or abandoned long ago.
   *
   * @example
   * for (const { record } of await jobs.listStale('mlp')) await dispatcher.dispatch({ model: record.model, job: record.job });
   */
  async listStale(model: string, options: { lookbackMs?: number } = {}): Promise<StoredJob[]> {
    assertModelName(model);
    const now = this.now().getTime();
    const lookbackMs = options.lookbackMs ?? 24 * 3_600_000;
    const prefix = jobLayout.prefix(model);
    const candidates: string[] = [];
    for (const o of (await listAll(this.store, { prefix })).objects) {
      const age = now - o.lastModified.getTime();
      if (
        o.key.endsWith('.json') &&
        !o.key.endsWith('.inputs.json') &&
        age > this.staleAfterMs &&
        age <= lookbackMs
      )
        candidates.push(o.key.slice(prefix.length, -'.json'.length));
    }
    const stale: StoredJob[] = [];
    for (const job of candidates) {
      const found = await this.get(model, job).catch((e: unknown) =>
        e instanceof NotFoundError || e instanceof InvalidArgumentError ? undefined : Promise.reject(e),
      );
      if (found && this.isStale(found.record)) stale.push(found);
    }
    return stale;
  }

  /**
   * Writes the next state of a job the caller holds: only over the exact record it holds (its
   * etag), so a worker whose stale run was taken over cannot overwrite the new run's record.
   */
  private async replace(held: StoredJob, record: OptimizationJob): Promise<StoredJob> {
    const { doc, etag } = await updateJson<OptimizationJob>(
      this.store,
      jobLayout.record(record.model, record.job),
      (current) => {
        if (current?.etag !== held.etag) {
          throw new ConflictError(
            `optimization job ${record.job} of ${record.model} changed under this worker`,
            {
              job: record.job,
              status: current?.doc.status ?? null,
            },
          );
        }
        return record;
      },
    );
    return { record: doc as OptimizationJob, etag: etag as string };
  }
}
