import type { WorkerEvent } from '../../shared/optimize';
import { runOptimizationJob } from '../../shared/optimize';
import { logger } from '../lib/logger';
import { getRegistry } from '../lib/runtime';
import { workerOptions } from './runtime';

/**
 * Asynchronous worker: runs one queued optimization job (invoked with `InvocationType: 'Event'`).
 * Job failures are recorded in the job, not thrown, so Lambda does not retry finished work;
 * a duplicate delivery finds the job already claimed and returns.
 */
export async function handler(event: WorkerEvent): Promise<{ job: string; status: string }> {
  const ref = event.maasOptimizeJob;
  const final = await runOptimizationJob(getRegistry(), ref, workerOptions());
  const status = final?.record.status ?? 'skipped (already claimed or finished)';
  logger.info('optimize job done', { model: ref.model, job: ref.job, status });
  return { job: ref.job, status };
}
