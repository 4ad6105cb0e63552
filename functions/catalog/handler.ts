import middy from '@middy/core';
import httpRouterHandler, { type Route } from '@middy/http-router';
import type { APIGatewayProxyResultV2 } from 'aws-lambda';
import { InvalidArgumentError, NotFoundError } from '../../shared/errors';
import type { PageOptions } from '../../shared/registry';
import {
  type HttpEvent,
  httpErrors,
  json,
  notFoundRoute,
  pathParam,
  refuseWhenMisconfigured,
  route,
} from '../lib/http';
import { getRegistry, getRuntimeSettings, getStore } from '../lib/runtime';
import { describeModel } from './describe';
import { downloadResponse } from './download';
import { reportRoutes } from './reports';

type Result = APIGatewayProxyResultV2;

function page(event: HttpEvent): PageOptions {
  const q = event.queryStringParameters ?? {};
  const out: PageOptions = {};
  if (q.limit !== undefined) {
    if (!/^[0-9]{1,4}$/.test(q.limit))
      throw new InvalidArgumentError('limit must be a positive integer', { field: 'limit' });
    out.limit = Number(q.limit);
  }
  if (q.cursor) out.cursor = q.cursor;
  return out;
}

/** 404 for models that do not exist (their listings would otherwise be merely empty). */
async function existingModel(event: HttpEvent): Promise<string> {
  const name = pathParam(event, 'name');
  if ((await getRegistry().getLatestVersionNumber(name)) === 0)
    throw new NotFoundError(`model ${name} does not exist`, { name });
  return name;
}

/** A version by number, alias or `latest` (the newest active version, as predict serves it). */
async function versionOf(event: HttpEvent) {
  return getRegistry().resolveVersion(pathParam(event, 'name'), pathParam(event, 'version'));
}

const routes: Route<HttpEvent, Result>[] = [
  route('GET', '/models', async (event) => json(200, await getRegistry().listModels(page(event)))),
  route('GET', '/models/{name}', async (event) =>
    json(200, await describeModel(getRegistry(), pathParam(event, 'name'))),
  ),
  route('GET', '/models/{name}/versions', async (event) =>
    json(200, await getRegistry().listVersions(await existingModel(event), page(event))),
  ),
  route('GET', '/models/{name}/versions/{version}', async (event) => json(200, await versionOf(event))),
  route('GET', '/models/{name}/history', async (event) =>
    json(200, await getRegistry().history(await existingModel(event), page(event))),
  ),
  route('GET', '/models/{name}/versions/{version}/download', async (event) =>
    downloadResponse(getRegistry(), getStore(), await versionOf(event)),
  ),
  ...reportRoutes,
];

/** Read-only registry views: safe to expose more widely than the mutating functions. */
export const handler = middy<HttpEvent, Result>()
  .use(httpErrors())
  .use(refuseWhenMisconfigured(getRuntimeSettings))
  .handler(
    httpRouterHandler<HttpEvent, Result>({
      routes,
      notFoundResponse: notFoundRoute,
    }),
  );
