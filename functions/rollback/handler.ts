import middy from '@middy/core';
import httpRouterHandler, { type Route } from '@middy/http-router';
import type { APIGatewayProxyResultV2 } from 'aws-lambda';
import { PreconditionFailedError } from '../../shared/errors';
import { type AliasRecord, parseVersionNumber, type VersionStatus } from '../../shared/registry';
import {
  actorOf,
  apiKeyAuth,
  type HttpEvent,
  type HttpResult,
  httpErrors,
  json,
  jsonBody,
  notFoundRoute,
  pathParam,
  refuseWhenMisconfigured,
  route,
} from '../lib/http';
import { idempotentRoute } from '../lib/idempotency';
import { getRegistry, getRuntimeSettings } from '../lib/runtime';
import { optionalString, parseCanary, precondition } from './requests';

type Result = APIGatewayProxyResultV2;

function aliasResponse(status: number, record: AliasRecord): HttpResult {
  return json(status, record, { etag: `"${record.etag}"` });
}

const routes: Route<HttpEvent, Result>[] = [
  route('PUT', '/models/{name}/aliases/{alias}', (event) =>
    idempotentRoute(event, async (requestId) => {
      const body = jsonBody(event);
      const canary = parseCanary(body);
      const reason = optionalString(body, 'reason');
      const ifMatch = precondition(event);
      const record = await getRegistry().setAlias(
        pathParam(event, 'name'),
        pathParam(event, 'alias'),
        parseVersionNumber(body.version),
        {
          actor: actorOf(event),
          ...(reason !== undefined ? { reason } : {}),
          ...(ifMatch !== undefined ? { ifMatch } : {}),
          ...(canary ? { canary } : {}),
          ...(requestId ? { requestId } : {}),
        },
      );
      return aliasResponse(record.revision === 1 ? 201 : 200, record);
    }),
  ),
  route('DELETE', '/models/{name}/aliases/{alias}', async (event) => {
    const [name, alias] = [pathParam(event, 'name'), pathParam(event, 'alias')];
    const current = await getRegistry().getAlias(name, alias);
    const ifMatch = precondition(event);
    // Checked just before the delete (the store has no conditional delete): narrows, not closes, the race.
    if (typeof ifMatch === 'string' && ifMatch !== current.etag)
      throw new PreconditionFailedError(`alias ${alias} of ${name} changed since it was read`, {
        etag: current.etag,
      });
    const reason = optionalString(event.queryStringParameters ?? {}, 'reason');
    await getRegistry().deleteAlias(name, alias, { actor: actorOf(event), ...(reason ? { reason } : {}) });
    return json(200, { deleted: true, name, alias, version: current.version });
  }),
  route('POST', '/models/{name}/rollback', (event) =>
    idempotentRoute(event, async (requestId) => {
      const body = jsonBody(event);
      const reason = optionalString(body, 'reason');
      const ifMatch = precondition(event);
      const record = await getRegistry().rollback(
        pathParam(event, 'name'),
        optionalString(body, 'alias') ?? 'production',
        {
          actor: actorOf(event),
          ...(reason ? { reason } : {}),
          ...(body.to !== undefined ? { to: parseVersionNumber(body.to) } : {}),
          ...(typeof ifMatch === 'string' ? { ifMatch } : {}),
          ...(requestId ? { requestId } : {}),
        },
      );
      return aliasResponse(200, record);
    }),
  ),
  route('POST', '/models/{name}/versions/{version}/status', async (event) => {
    const body = jsonBody(event);
    const reason = optionalString(body, 'reason');
    const version = await getRegistry().setStatus(
      pathParam(event, 'name'),
      parseVersionNumber(pathParam(event, 'version')),
      body.status as VersionStatus,
      {
        actor: actorOf(event),
        ...(reason ? { reason } : {}),
      },
    );
    return json(200, version);
  }),
];

/** Alias moves, rollbacks and version status: every change that alters what an alias serves. */
export const handler = middy<HttpEvent, Result>()
  .use(httpErrors())
  .use(refuseWhenMisconfigured(getRuntimeSettings))
  // Every route here writes, so the API key check (when configured) wraps the whole router.
  .use(apiKeyAuth())
  .handler(
    httpRouterHandler<HttpEvent, Result>({
      routes,
      notFoundResponse: notFoundRoute,
    }),
  );
