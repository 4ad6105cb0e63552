/**
 * The janitor of optimize jobs. A job's worker can die mid-run (timeout, out of memory) and
 * leave the job `running`; nothing else would ever hand it to a worker again, so a scheduled
 * sweep (the optimize function's `{maasOptimizeSweep: true}` schedule event) re-dispatches jobs
 * that have gone stale (the rule of {@link OptimizationJobStore.isStale}: the worker's claim
 * takes such a job over). A job that has already used `maxAttempts` worker runs is marked
 * failed instead: it most likely kills its worker every time.
 */

import { layout } from '../registry';
import { listAll, type ObjectStore } from '../store';
import type { OptimizationDispatcher } from './dispatch';
import type { OptimizationJobStore, StoredJob } from './jobs';

/** The schedule event that asks the optimize function for a sweep. */
export interface SweepEvent {
  maasOptimizeSweep: true;
}

/**
 * Whether a Lambda event is the sweep's schedule event.
 *
 * @example
 * ```ts
 * if (isSweepEvent(event)) return sweepStaleOptimizations({ store, jobs, dispatcher });
 * ```
 */
export function isSweepEvent(event: unknown): event is SweepEvent {
  return (event as { maasOptimizeSweep?: unknown } | null)?.maasOptimizeSweep === true;
}

/** What one sweep did. */
export interface OptimizeSweepResult {
  /** `model/job` of the jobs handed to a worker again. */
  redispatched: string[];
  /** `model/job` of the jobs marked failed after `maxAttempts` runs. */
  abandoned: string[];
  /** Per-model or per-job failures; the sweep carries on past them. */
  errors: string[];
}

/** Options of {@link sweepStaleOptimizations}. */
export interface OptimizeSweepOptions {
  store: ObjectStore;
  jobs: OptimizationJobStore;
  dispatcher: Pick<OptimizationDispatcher, 'dispatch'>;
  /** Worker runs a job may have had before it is given up (default 3). */
  maxAttempts?: number;
  /** Limit the sweep to these models (default: every model in the registry). */
  models?: readonly string[];
}

/**
 * Re-dispatches stale `running` optimize jobs (see the module comment); never throws for one
 * model's or job's trouble: it is reported in `errors` and the sweep goes on.
 *
 * @example
 * ```ts
 * const swept = await sweepStaleOptimizations({ store, jobs: new OptimizationJobStore(store), dispatcher });
 * // { redispatched: ['mlp/opt-…'], abandoned: [], errors: [] }
 * ```
 */
export async function sweepStaleOptimizations(options: OptimizeSweepOptions): Promise<OptimizeSweepResult> {
  const { jobs, dispatcher } = options;
  const maxAttempts = options.maxAttempts ?? 3;
  const result: OptimizeSweepResult = { redispatched: [], abandoned: [], errors: [] };
  const models = options.models ?? (await modelNames(options.store));
  for (const model of models) {
    let stale: StoredJob[];
    try {
      stale = await jobs.listStale(model);
    } catch (e) {
      result.errors.push(`${model}: ${(e as Error)?.message ?? String(e)}`);
      continue;
    }
    for (const found of stale) {
      const id = `${model}/${found.record.job}`;
      try {
        if (found.record.attempts >= maxAttempts) {
          await jobs.abandon(found, {
            message: `the worker stopped without a result ${found.record.attempts} times; giving up`,
            code: 'internal',
          });
          result.abandoned.push(id);
        } else {
          await dispatcher.dispatch({ model, job: found.record.job });
          result.redispatched.push(id);
        }
      } catch (e) {
        // A lost compare-and-swap means a worker touched the job meanwhile: not stale after all.
        result.errors.push(`${id}: ${(e as Error)?.message ?? String(e)}`);
      }
    }
  }
  return result;
}

/** Every model name in the registry, from the key listing alone (no per-model reads). */
async function modelNames(store: ObjectStore): Promise<string[]> {
  const { commonPrefixes } = await listAll(store, { prefix: layout.modelsPrefix, delimiter: '/' });
  return commonPrefixes.map((p) => p.slice(layout.modelsPrefix.length, -1));
}
