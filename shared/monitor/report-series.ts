/**
 * A model's monitor reports over time, read in pages straight from where the monitor writes them
 * (`monitoring/reports/{name}/{window end, ISO with : and . as -}-{run}.json`, see layout.ts).
 * Report keys start with the window's end time, so a time range is one listing from a
 * `startAfter` key, stopped at the range's end: the cost of a page is one or two LIST requests
 * and `limit` GETs, however many reports the model has collected.
 */
import { InvalidArgumentError } from '../errors';
import type { ObjectStore } from '../store';
import { readJson } from '../store/documents';
import { mapLimit } from '../util/concurrency';
import { monitoringLayout } from './layout';
import type { MonitorReport } from './report';

/** Options of {@link readReportSeries}. */
export interface ReportSeriesOptions {
  /** Reports whose window ended at or after this time (default: the first report). */
  from?: Date;
  /** Reports whose window ended at or before this time (default: the last report). */
  to?: Date;
  /** Reports per page, 1..{@link MAX_REPORTS_PER_PAGE} (default {@link DEFAULT_REPORTS_PER_PAGE}). */
  limit?: number;
  /** `nextCursor` of the previous page. */
  cursor?: string;
  /** GETs in flight at once (default 8). */
  concurrency?: number;
}

/** One page of a report series, oldest first. */
export interface ReportSeriesPage {
  items: MonitorReport[];
  /** Pass as `cursor` for the next page; absent on the last one. */
  nextCursor?: string;
}

export const DEFAULT_REPORTS_PER_PAGE = 100;
export const MAX_REPORTS_PER_PAGE = 500;

/** `2026-12-01T20-05-00-000Z-{runId}.json`: the run reports (not `latest.json`). */
const REPORT_NAME = /^(\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d-\d{3}Z)-[0-9A-Za-z-]+\.json$/;
const ISO_KEY_LENGTH = 24;

/**
 * The time part of a report key for an instant: the ISO form with `:` and `.` replaced by `-`,
 * as the monitor names its reports.
 *
 * @example
 * ```ts
 * reportTimeKey(new Date('2026-12-01T20:05:00Z')); // '2026-12-01T20-05-00-000Z'
 * ```
 */
export function reportTimeKey(t: Date): string {
  return t.toISOString().replace(/[:.]/g, '-');
}

/**
 * One page of a model's monitor reports whose window ended within `[from, to]`, oldest first.
 * Reports removed between the listing and the read are skipped.
 *
 * @example
 * ```ts
 * let page = await readReportSeries(store, 'iris', { from: new Date(Date.now() - 86_400_000) });
 * while (page.nextCursor) page = await readReportSeries(store, 'iris', { cursor: page.nextCursor });
 * ```
 */
export async function readReportSeries(
  store: ObjectStore,
  model: string,
  options: ReportSeriesOptions = {},
): Promise<ReportSeriesPage> {
  const limit = options.limit ?? DEFAULT_REPORTS_PER_PAGE;
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_REPORTS_PER_PAGE)
    throw new InvalidArgumentError(`limit must be an integer from 1 to ${MAX_REPORTS_PER_PAGE}`, {
      field: 'limit',
    });
  if (options.cursor !== undefined && !REPORT_NAME.test(options.cursor))
    throw new InvalidArgumentError('invalid cursor', { field: 'cursor' });
  if (options.from && options.to && options.from > options.to)
    throw new InvalidArgumentError('from must not be after to', { field: 'from' });
  const prefix = monitoringLayout.reportsPrefix(model);
  // Keys of an instant t are `${timeKey(t)}-…`, strictly after `${timeKey(t)}` itself: `from` is inclusive.
  const startAfter = options.cursor ?? (options.from ? reportTimeKey(options.from) : undefined);
  const end = options.to ? reportTimeKey(options.to) : undefined;

  const names: string[] = [];
  let more = false;
  let token: string | undefined;
  scan: do {
    const page = await store.list({
      prefix,
      maxKeys: Math.min(1000, limit + 1),
      ...(token ? { continuationToken: token } : startAfter ? { startAfter: prefix + startAfter } : {}),
    });
    for (const o of page.objects) {
      const name = o.key.slice(prefix.length);
      const match = REPORT_NAME.exec(name);
      if (!match) continue; // latest.json (which sorts after every dated key) and strangers
      if (end !== undefined && match[1]!.slice(0, ISO_KEY_LENGTH) > end) break scan;
      if (names.length === limit) {
        more = true;
        break scan;
      }
      names.push(name);
    }
    token = page.nextToken;
  } while (token);

  const docs = await mapLimit(names, options.concurrency ?? 8, (name) =>
    readJson<MonitorReport>(store, prefix + name),
  );
  return {
    items: docs.flatMap((d) => (d ? [d.doc] : [])),
    ...(more ? { nextCursor: names.at(-1)! } : {}),
  };
}
