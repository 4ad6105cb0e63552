import middy from '@middy/core';
import httpRouterHandler, { type Route } from '@middy/http-router';
import type { APIGatewayProxyResultV2, Context } from 'aws-lambda';
import { inferenceSettingsFromEnv } from '../../shared/inference/config';
import {
  assertEvaluationFits,
  assertOptimizeFits,
  isSweepEvent,
  isWorkerEvent,
  type OptimizeSweepResult,
  parseOptimizeRequest,
  type SweepEvent,
  type WorkerEvent,
} from '../../shared/optimize';
import {
  actorOf,
  type HttpEvent,
  httpErrors,
  json,
  jsonBody,
  notFoundRoute,
  pathParam,
  refuseWhenMisconfigured,
  withApiKey,
} from '../lib/http';
import { getRegistry, getRuntimeSettings } from '../lib/runtime';
import { getDispatcher, getJobStore } from './runtime';
import { sweepHandler } from './sweep';
import { handler as workerHandler } from './worker';

type Result = APIGatewayProxyResultV2;

/** POST: validate everything that can be checked cheaply, queue the job, hand it to the worker, answer 202. */
async function startOptimization(event: HttpEvent): Promise<Result> {
  const name = pathParam(event, 'name');
  const request = parseOptimizeRequest(jsonBody(event));
  // A number, an alias or `latest` (the newest active version); the job records the number.
  const version = await getRegistry().resolveVersion(name, pathParam(event, 'version'));
  assertEvaluationFits(version, request);
  // This function's own memory (the worker is this same function): refuse what it cannot hold.
  assertOptimizeFits(version, request.techniques, inferenceSettingsFromEnv().memory);
  const jobs = getJobStore();
  const queued = await jobs.create(name, version.version, request, actorOf(event));
  const { job } = queued.record;
  try {
    await getDispatcher().dispatch({ model: name, job });
  } catch (e) {
    await jobs
      .abandon(queued, { message: e instanceof Error ? e.message : String(e), code: 'unavailable' })
      .catch(() => undefined);
    throw e;
  }
  const statusUrl = `/models/${encodeURIComponent(name)}/optimizations/${job}`;
  return json(202, { job, status: 'queued', status_url: statusUrl }, { location: statusUrl });
}

async function getOptimization(event: HttpEvent): Promise<Result> {
  const { record } = await getJobStore().get(pathParam(event, 'name'), pathParam(event, 'job'));
  return json(200, record);
}

/**
 * The API key (when configured, read per request) guards the mutating route only; job status is
 * a read. It wraps the route itself, not the router, so the check follows whichever method the
 * router matched on (`httpMethod` on payload 1.0, `requestContext.http.method` on 2.0).
 */
const routes: Route<HttpEvent, Result>[] = [
  {
    method: 'POST',
    path: '/models/{name}/versions/{version}/optimize',
    handler: withApiKey(startOptimization),
  },
  { method: 'GET', path: '/models/{name}/optimizations/{job}', handler: getOptimization },
];

/** The HTTP routes of the optimize function. */
export const httpHandler = middy<HttpEvent, Result>()
  .use(httpErrors())
  .use(refuseWhenMisconfigured(getRuntimeSettings))
  .handler(httpRouterHandler<HttpEvent, Result>({ routes, notFoundResponse: notFoundRoute }));

/**
 * One Lambda for every part of optimize: API Gateway events go to the routes, the asynchronous
 * self-invocation (`{maasOptimizeJob}`) to the worker, the schedule's `{maasOptimizeSweep: true}`
 * to the sweep of stale jobs.
 */
export async function handler(
  event: HttpEvent | WorkerEvent | SweepEvent,
  context: Context,
): Promise<Result | { job: string; status: string } | OptimizeSweepResult> {
  if (isWorkerEvent(event)) return workerHandler(event);
  if (isSweepEvent(event)) return sweepHandler();
  return httpHandler(event, context);
}
