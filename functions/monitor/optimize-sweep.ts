import { type OptimizeSweepResult, sweepStaleOptimizations } from '../../shared/monitor/optimize-sweep';
// The two modules directly, not the shared/optimize index: that one loads onnxruntime, which the
// monitor function's package does not carry.
import { LambdaEventDispatcher, type OptimizationDispatcher } from '../../shared/optimize/dispatch';
import { OptimizationJobStore } from '../../shared/optimize/jobs';
import { getStore } from '../lib/runtime';

/**
 * The scheduled run's sweep of stale optimize jobs (shared/monitor/optimize-sweep.ts), with the
 * dispatcher this environment allows:
 * - deployed (`AWS_LAMBDA_FUNCTION_NAME`, not serverless-offline): an asynchronous invoke of
 *   `MAAS_OPTIMIZE_WORKER_FUNCTION`; without it the sweep is skipped (it must never fall back to
 *   invoking the monitor function itself, as the optimize function's dispatcher does);
 * - locally (serverless-offline, plain Node): in this process, like the optimize function.
 *
 * @example
 * ```ts
 * const swept = await sweepOptimizeJobs(process.env); // { redispatched: [...], abandoned: [], errors: [] }
 * ```
 */
export async function sweepOptimizeJobs(
  env: NodeJS.ProcessEnv,
): Promise<OptimizeSweepResult | { skipped: string }> {
  let dispatcher: Pick<OptimizationDispatcher, 'dispatch'>;
  let jobs: OptimizationJobStore;
  if (env.AWS_LAMBDA_FUNCTION_NAME && !env.IS_OFFLINE) {
    if (!env.MAAS_OPTIMIZE_WORKER_FUNCTION)
      return { skipped: 'MAAS_OPTIMIZE_WORKER_FUNCTION is not set for the monitor function' };
    dispatcher = new LambdaEventDispatcher(env.MAAS_OPTIMIZE_WORKER_FUNCTION);
    jobs = new OptimizationJobStore(getStore());
  } else {
    // Loaded only here (lazily, also in the bundle): the in-process worker needs the optimizer and onnxruntime.
    const optimize = await import('../optimize/runtime.js');
    dispatcher = optimize.getDispatcher();
    jobs = optimize.getJobStore();
  }
  return sweepStaleOptimizations({ store: getStore(), jobs, dispatcher });
}
