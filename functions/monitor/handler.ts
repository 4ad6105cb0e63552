import middy from '@middy/core';
import httpRouterHandler from '@middy/http-router';
import type { APIGatewayProxyResultV2, Context } from 'aws-lambda';
import { InvalidArgumentError } from '../../shared/errors';
import { assertModelName } from '../../shared/registry/names';
import {
  type HttpEvent,
  httpErrors,
  json,
  jsonBody,
  notFoundRoute,
  pathParam,
  route,
  withApiKey,
} from '../lib/http';
import { logger } from '../lib/logger';
import { type MonitorEvent, monitorAction } from './actions';
import { runMonitorHere } from './run';

export type { MonitorEvent } from './actions';

/** `POST /models/{name}/monitor/runs`: one run over this model now; body `{graceSeconds?}`. */
async function startRun(event: HttpEvent): Promise<APIGatewayProxyResultV2> {
  const name = pathParam(event, 'name');
  assertModelName(name);
  const { graceSeconds } = jsonBody(event);
  if (graceSeconds !== undefined && !(typeof graceSeconds === 'number' && graceSeconds >= 0))
    throw new InvalidArgumentError('graceSeconds must be a non-negative number', { field: 'graceSeconds' });
  const summary = await runMonitorHere({
    models: [name],
    ...(graceSeconds !== undefined ? { graceSeconds } : {}),
  });
  return json(200, { runId: summary.runId, ...summary.models[0]! });
}

const httpHandler = middy<HttpEvent, APIGatewayProxyResultV2>()
  .use(httpErrors({ logger }))
  .handler(
    httpRouterHandler<HttpEvent, APIGatewayProxyResultV2>({
      routes: [route('POST', '/models/{name}/monitor/runs', withApiKey(startRun))],
      notFoundResponse: notFoundRoute,
    }),
  );

/**
 * The monitor function: every 5 minutes on a schedule, on demand through its HTTP routes, and by
 * direct invocation (`aws lambda invoke --payload '{"models":["iris"]}'`, other actions in
 * {@link MonitorEvent}). See docs/api/monitor.md.
 */
export async function handler(event: MonitorEvent | HttpEvent, context: Context): Promise<unknown> {
  if (event && typeof event === 'object' && 'routeKey' in event && 'requestContext' in event)
    return httpHandler(event, context);
  return monitorAction((event ?? {}) as MonitorEvent, context);
}
