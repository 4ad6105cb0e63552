import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import httpRouterHandler, { type Route } from '@middy/http-router';
import type { APIGatewayProxyResultV2, Context } from 'aws-lambda';
import { type AsyncWorkerEvent, isAsyncWorkerEvent } from '../../shared/inference';
import {
  type HttpEvent,
  type HttpResult,
  header,
  httpErrors,
  json,
  notFoundRoute,
  pathParam,
  refuseWhenMisconfigured,
} from '../lib/http';
import { asyncOutput, asyncStatus, createAsyncInput, submitAsync, worker } from './async';
import { explain, wantsExplanation } from './explain';
import { inferBody, inferResponse, predictError } from './http';
import { getInferenceService, logger } from './runtime';

type HttpRoute = Route<HttpEvent, APIGatewayProxyResultV2>;

/** `{version}` is optional: a number or an alias; absent means production, else latest. */
const versionOf = (event: HttpEvent): string | undefined =>
  event.pathParameters?.version ? pathParam(event, 'version') : undefined;

async function infer(event: HttpEvent): Promise<HttpResult> {
  if (wantsExplanation(event)) return explain(event);
  const result = await getInferenceService().infer(
    pathParam(event, 'name'),
    versionOf(event),
    inferBody(event),
    {
      contentType: header(event, 'content-type'),
      headerLength: header(event, 'inference-header-content-length'),
    },
  );
  return inferResponse(result);
}

const get = (path: string, fn: (event: HttpEvent) => unknown): HttpRoute => ({
  method: 'GET',
  path,
  handler: async (event: HttpEvent) => json(200, await fn(event)),
});
const metadata = (e: HttpEvent): Promise<unknown> =>
  getInferenceService().modelMetadata(pathParam(e, 'name'), versionOf(e));
const ready = (e: HttpEvent): Promise<unknown> =>
  getInferenceService().modelReady(pathParam(e, 'name'), versionOf(e));

const routes: HttpRoute[] = [
  get('/v2', () => getInferenceService().serverMetadata()),
  get('/v2/health/live', () => ({ live: true })),
  get('/v2/health/ready', () => ({ ready: true })),
  get('/v2/models/{name}', metadata),
  get('/v2/models/{name}/ready', ready),
  get('/v2/models/{name}/versions/{version}', metadata),
  get('/v2/models/{name}/versions/{version}/ready', ready),
  { method: 'POST', path: '/v2/models/{name}/infer', handler: infer },
  { method: 'POST', path: '/v2/models/{name}/versions/{version}/infer', handler: infer },
  { method: 'POST', path: '/v2/models/{name}/explain', handler: explain },
  { method: 'POST', path: '/v2/models/{name}/versions/{version}/explain', handler: explain },
  { method: 'POST', path: '/v2/models/{name}/infer-async', handler: submitAsync },
  { method: 'POST', path: '/v2/models/{name}/versions/{version}/infer-async', handler: submitAsync },
  { method: 'POST', path: '/v2/async/inputs', handler: createAsyncInput },
  { method: 'GET', path: '/v2/async/{id}', handler: asyncStatus },
  { method: 'GET', path: '/v2/async/{id}/output', handler: asyncOutput },
];

/**
 * Open Inference Protocol routes (API Gateway HTTP API, payload 2.0); see docs/api/predict.md.
 * The core (and with it every predict setting) is built before the first request is routed: a
 * misconfigured container answers every request with a 500 `misconfigured`.
 */
export const httpHandler = middy<HttpEvent, APIGatewayProxyResultV2>()
  .use(injectLambdaContext(logger, { resetKeys: true }))
  .use(httpErrors({ logger, toHttp: predictError }))
  .use(refuseWhenMisconfigured(getInferenceService))
  .handler(
    httpRouterHandler({
      routes,
      notFoundResponse: notFoundRoute,
    }),
  );

/**
 * The predict function's entry: API Gateway events go to the routes; the asynchronous invoke
 * of the `predict-async` function (same code, `{maasAsyncInference: {id}}`) to the worker.
 */
export async function handler(
  event: HttpEvent | AsyncWorkerEvent,
  context: Context,
): Promise<APIGatewayProxyResultV2 | { id: string; status: string }> {
  if (isAsyncWorkerEvent(event)) return worker(event, context);
  return httpHandler(event, context);
}
