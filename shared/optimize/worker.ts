/**
 * The asynchronous half of an optimize request: claim the job, run the optimizer, record the outcome.
 * Never throws for a job-level failure (it is recorded instead), so Lambda does not retry a run
 * that already reported its result.
 */
import type { ModelRegistry } from '../registry';
import type { OptimizationJobStore, StoredJob } from './jobs';
import { type OptimizeOptions, optimizeVersion } from './optimizer';
import type { OptimizeRequest } from './request';

/** What the dispatcher hands the worker. */
export interface JobRef {
  model: string;
  job: string;
}

/** Options of {@link runOptimizationJob}. */
export type RunJobOptions = Omit<OptimizeOptions, 'jobId' | 'actor'> & { jobs: OptimizationJobStore };

/**
 * Runs one queued job to completion. Returns the final record, or undefined when the job was not
 * claimable (finished already or running elsewhere: a duplicate delivery).
 *
 * @example
 * const final = await runOptimizationJob(registry, { model: 'mlp', job: 'opt-lx3k9a2b-0123abcd' }, { store, jobs: new OptimizationJobStore(store) });
 * console.log(final?.record.status);
 */
export async function runOptimizationJob(
  registry: ModelRegistry,
  ref: JobRef,
  options: RunJobOptions,
): Promise<StoredJob | undefined> {
  const { jobs, ...optimizeOptions } = options;
  const claimed = await jobs.claim(ref.model, ref.job);
  if (!claimed) return undefined;
  const { record } = claimed;
  const request: OptimizeRequest = {
    ...record.request,
    ...(record.request.referenceInputs ? { referenceInputs: record.request.referenceInputs } : {}),
  };
  try {
    const report = await optimizeVersion(registry, record.model, record.version, request, {
      ...optimizeOptions,
      jobId: record.job,
      actor: record.actor,
    });
    return await jobs.finish(claimed, { report });
  } catch (error) {
    return jobs.finish(claimed, { error });
  }
}
