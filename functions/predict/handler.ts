import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import httpRouterHandler, { type Route } from '@middy/http-router';
import type { APIGatewayProxyResultV2 } from 'aws-lambda';
import { type HttpEvent, type HttpResult, header, json, notFoundRoute, pathParam } from '../lib/http';
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
];

/** Open Inference Protocol routes (API Gateway HTTP API, payload 2.0); see docs/api/predict.md. */
export const handler = middy<HttpEvent, APIGatewayProxyResultV2>()
  .use(injectLambdaContext(logger, { resetKeys: true }))
  .use({
    onError: async (request) => {
      const { status, body } = predictError(request.error);
      // 4xx messages may quote request details: only status and code are logged for them.
      if (status >= 500)
        logger.error('request failed', { routeKey: request.event.routeKey, status, error: request.error });
      else logger.warn('request rejected', { routeKey: request.event.routeKey, status, code: body.code });
      request.response = json(status, body);
    },
  })
  .handler(
    httpRouterHandler({
      routes,
      notFoundResponse: notFoundRoute,
    }),
  );
