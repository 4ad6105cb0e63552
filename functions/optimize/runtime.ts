import {
  capturedInputsFromMonitoring,
  capturedPromptsFromMonitoring,
  createDispatcher,
  type OptimizationDispatcher,
  OptimizationJobStore,
  type RunJobOptions,
  runOptimizationJob,
} from '../../shared/optimize';
import { getRegistry, getStore } from '../lib/runtime';

/**
 * Per-container singletons of the optimize function, built on first use from the environment:
 * `MAAS_OPTIMIZE_WORKER_FUNCTION` set → jobs go to that Lambda function asynchronously,
 * otherwise they run in this process after the response (local, tests).
 */
let dispatcher: OptimizationDispatcher | undefined;
let jobs: OptimizationJobStore | undefined;

export function getJobStore(): OptimizationJobStore {
  jobs ??= new OptimizationJobStore(getStore());
  return jobs;
}

export function getDispatcher(): OptimizationDispatcher {
  dispatcher ??= createDispatcher(process.env, (ref) =>
    runOptimizationJob(getRegistry(), ref, workerOptions()),
  );
  return dispatcher;
}

/** What the worker runs with: the store (reference inputs), the job store, and captured traffic (monitoring: tensors, prompts) as evaluation inputs. */
export function workerOptions(): RunJobOptions {
  return {
    store: getStore(),
    jobs: getJobStore(),
    capturedInputs: capturedInputsFromMonitoring(getStore()),
    capturedPrompts: capturedPromptsFromMonitoring(getStore()),
  };
}

/** Tests: forget the singletons so the next call re-reads the environment. */
export function resetOptimizeRuntime(): void {
  dispatcher = undefined;
  jobs = undefined;
}
