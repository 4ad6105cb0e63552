import { Logger } from '@aws-lambda-powertools/logger';
import { type OptimizeSweepResult, sweepStaleOptimizations } from '../../shared/optimize/sweep';
import { getStore } from '../lib/runtime';
import { getDispatcher, getJobStore } from './runtime';

const logger = new Logger({ serviceName: 'maas-optimize' });

/**
 * The scheduled sweep of stale optimize jobs (shared/optimize/sweep.ts) with this function's own
 * dispatcher: on AWS an asynchronous invoke of the optimize function (the worker), locally the
 * in-process worker. Trouble with single jobs is logged and returned, never thrown.
 *
 * @example
 * ```ts
 * const swept = await sweepHandler(); // { redispatched: [...], abandoned: [], errors: [] }
 * ```
 */
export async function sweepHandler(): Promise<OptimizeSweepResult> {
  const result = await sweepStaleOptimizations({
    store: getStore(),
    jobs: getJobStore(),
    dispatcher: getDispatcher(),
  });
  if (result.errors.length > 0) logger.error('optimize job sweep', { errors: result.errors });
  return result;
}
