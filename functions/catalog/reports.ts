import type { Route } from '@middy/http-router';
import type { APIGatewayProxyResultV2 } from 'aws-lambda';
import { InvalidArgumentError, NotFoundError } from '../../shared/errors';
import { latestReport } from '../../shared/monitor/report';
import { readReportSeries } from '../../shared/monitor/report-series';
import { listJobs } from '../../shared/optimize/job-list';
import { assertModelName } from '../../shared/registry/names';
import { type HttpEvent, json, pathParam, route } from '../lib/http';
import { getRegistry, getStore } from '../lib/runtime';

/** 404 for models that do not exist (their series would otherwise be merely empty). */
async function existingModel(event: HttpEvent): Promise<string> {
  const name = pathParam(event, 'name');
  if ((await getRegistry().getLatestVersionNumber(name)) === 0)
    throw new NotFoundError(`model ${name} does not exist`, { name });
  return name;
}

function timeParam(event: HttpEvent, field: 'from' | 'to'): Date | undefined {
  const raw = event.queryStringParameters?.[field];
  if (raw === undefined || raw === '') return undefined;
  const t = new Date(/^\d+$/.test(raw) ? Number(raw) : raw);
  if (Number.isNaN(t.getTime()))
    throw new InvalidArgumentError(`${field} must be an ISO 8601 time or epoch milliseconds`, { field });
  return t;
}

function limitParam(event: HttpEvent): number | undefined {
  const raw = event.queryStringParameters?.limit;
  if (raw === undefined) return undefined;
  if (!/^[0-9]{1,4}$/.test(raw))
    throw new InvalidArgumentError('limit must be a positive integer', { field: 'limit' });
  return Number(raw);
}

function cursorParam(event: HttpEvent): { cursor?: string } {
  const cursor = event.queryStringParameters?.cursor;
  return cursor ? { cursor } : {};
}

/**
 * The catalog's monitoring and optimization views (what the dashboard charts): a model's monitor
 * report series for a time range, its latest report, and its optimization jobs, all paged.
 *
 * @example
 * ```ts
 * httpRouterHandler({ routes: [...registryRoutes, ...reportRoutes] });
 * ```
 */
export const reportRoutes: Route<HttpEvent, APIGatewayProxyResultV2>[] = [
  route('GET', '/models/{name}/reports', async (event) => {
    const name = await existingModel(event);
    const from = timeParam(event, 'from');
    const to = timeParam(event, 'to');
    const limit = limitParam(event);
    return json(
      200,
      await readReportSeries(getStore(), name, {
        ...(from ? { from } : {}),
        ...(to ? { to } : {}),
        ...(limit !== undefined ? { limit } : {}),
        ...cursorParam(event),
      }),
    );
  }),
  route('GET', '/models/{name}/reports/latest', async (event) => {
    // No existence check: without a report the answer is the same 404 either way.
    const name = pathParam(event, 'name');
    assertModelName(name);
    const report = await latestReport(getStore(), name);
    if (!report) throw new NotFoundError(`model ${name} has no monitor report yet`, { name });
    return json(200, report);
  }),
  route('GET', '/models/{name}/optimizations', async (event) => {
    const name = await existingModel(event);
    const limit = limitParam(event);
    return json(
      200,
      await listJobs(getStore(), name, {
        ...(limit !== undefined ? { limit } : {}),
        ...cursorParam(event),
      }),
    );
  }),
];
