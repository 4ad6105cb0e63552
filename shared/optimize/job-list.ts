/**
 * A model's optimization jobs, in pages (the dashboard's optimization page). Job ids start with
 * their creation time in base 36 (`opt-{time36}-{hex}`, see jobs.ts), so a listing of
 * `models/{name}/optimizations/` is in creation order and a page is one LIST from a
 * `startAfter` key plus `limit` GETs, however many jobs the model has had.
 */
import { InvalidArgumentError } from '../errors';
import { assertModelName } from '../registry';
import type { ObjectStore } from '../store';
import { readJson } from '../store/documents';
import { mapLimit } from '../util/concurrency';
import { assertJobId, jobLayout, type OptimizationJob } from './jobs';

/** Options of {@link listJobs}. */
export interface ListJobsOptions {
  /** Jobs per page, 1..100 (default 50). */
  limit?: number;
  /** `nextCursor` of the previous page (a job id). */
  cursor?: string;
}

/** One page of job records, oldest first. */
export interface JobPage {
  items: OptimizationJob[];
  nextCursor?: string;
}

const RECORD = /^(opt-[0-9a-z]+-[0-9a-f]+)\.json$/;

/**
 * One page of a model's optimization job records, oldest first.
 *
 * @example
 * ```ts
 * const { items, nextCursor } = await listJobs(store, 'iris', { limit: 20 });
 * ```
 */
export async function listJobs(
  store: ObjectStore,
  model: string,
  options: ListJobsOptions = {},
): Promise<JobPage> {
  assertModelName(model);
  const limit = options.limit ?? 50;
  if (!Number.isInteger(limit) || limit < 1 || limit > 100)
    throw new InvalidArgumentError('limit must be an integer from 1 to 100', { field: 'limit' });
  if (options.cursor !== undefined) assertJobId(options.cursor);
  const prefix = jobLayout.prefix(model);
  const ids: string[] = [];
  let more = false;
  let token: string | undefined;
  scan: do {
    const page = await store.list({
      prefix,
      // Each job has up to two objects (record, inline inputs).
      maxKeys: Math.min(1000, 2 * limit + 2),
      ...(token
        ? { continuationToken: token }
        : options.cursor
          ? { startAfter: jobLayout.record(model, options.cursor) }
          : {}),
    });
    for (const o of page.objects) {
      const id = RECORD.exec(o.key.slice(prefix.length))?.[1];
      if (!id) continue;
      if (ids.length === limit) {
        more = true;
        break scan;
      }
      ids.push(id);
    }
    token = page.nextToken;
  } while (token);
  const records = await mapLimit(ids, 8, (id) =>
    readJson<OptimizationJob>(store, jobLayout.record(model, id)),
  );
  return {
    items: records.flatMap((r) => (r ? [r.doc] : [])),
    ...(more ? { nextCursor: ids.at(-1)! } : {}),
  };
}
