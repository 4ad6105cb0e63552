import middy from '@middy/core';
import httpRouterHandler, { type Route } from '@middy/http-router';
import type { APIGatewayProxyResultV2, S3Event } from 'aws-lambda';
import type { RegisterResult } from '../../shared/registry';
import {
  abortUploadSession,
  completeUploadSession,
  createUploadSession,
  parseUploadSessionRequest,
} from '../../shared/registry/upload-sessions';
import { createUploadTicket, registerFromUpload, writeLocalUpload } from '../../shared/registry/uploads';
import {
  actorOf,
  apiKeyAuth,
  bodyBytes,
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
import { getRegistry, getRuntimeSettings, getStore } from '../lib/runtime';
import { parseRegisterRequest, registerOptions } from './requests';
import { handleS3Event, type S3EventReport } from './s3-event';
import { localUploadUrl, sessionSettings, uploadExpiry } from './settings';

type Result = APIGatewayProxyResultV2;

// Every route here writes, so the API key check (when configured) wraps the whole router.
const routes: Route<HttpEvent, Result>[] = [
  route('POST', '/models/{name}/uploads', async (event) => {
    const local = localUploadUrl();
    return json(
      201,
      await createUploadTicket(getStore(), getRegistry(), pathParam(event, 'name'), {
        expiresInSeconds: uploadExpiry(),
        ...(local ? { localUploadUrl: local } : {}),
      }),
    );
  }),
  // Local file store only: the stand-in for the presigned S3 POST (no ticket exists on S3 stores).
  route('PUT', '/models/{name}/uploads/{id}', async (event) => {
    const registry = getRegistry();
    const bytes = bodyBytes(event, registry.maxModelBytes);
    return json(
      200,
      await writeLocalUpload(getStore(), pathParam(event, 'name'), pathParam(event, 'id'), bytes),
    );
  }),
  route('POST', '/models/{name}/upload-sessions', async (event) => {
    const local = localUploadUrl();
    const request = parseUploadSessionRequest(jsonBody(event, { required: true }));
    return json(
      201,
      await createUploadSession(getStore(), getRegistry(), pathParam(event, 'name'), request, {
        ...sessionSettings(),
        ...(local ? { localUploadUrl: local } : {}),
      }),
    );
  }),
  route('POST', '/models/{name}/upload-sessions/{id}/complete', (event) =>
    idempotentRoute(event, async () => {
      const name = pathParam(event, 'name');
      const options = { ...registerOptions(jsonBody(event)), actor: actorOf(event) };
      const id = pathParam(event, 'id');
      return versionCreated(name, await completeUploadSession(getStore(), getRegistry(), name, id, options));
    }),
  ),
  route('DELETE', '/models/{name}/upload-sessions/{id}', async (event) => {
    const [name, id] = [pathParam(event, 'name'), pathParam(event, 'id')];
    await abortUploadSession(getStore(), name, id);
    return json(200, { aborted: true, name, sessionId: id });
  }),
  // With an Idempotency-Key a retried registration gets the first answer: no second version even
  // with `force` (without one, identical bytes already return the existing version).
  route('POST', '/models/{name}/versions', (event) =>
    idempotentRoute(event, async () => {
      const name = pathParam(event, 'name');
      const request = parseRegisterRequest(event);
      const options = { ...request.options, actor: actorOf(event) };
      const registry = getRegistry();
      const result =
        'uploadKey' in request
          ? await registerFromUpload(getStore(), registry, name, request.uploadKey, options)
          : await registry.registerVersion(name, request.bytes, { source: 'api', ...options });
      return versionCreated(name, result);
    }),
  ),
];

/** `201` with the new version (`200` when these bytes were registered before), and its location. */
function versionCreated(name: string, result: RegisterResult): HttpResult {
  return json(
    result.created ? 201 : 200,
    { created: result.created, version: result.version },
    { location: `/models/${name}/versions/${result.version.version}` },
  );
}

/** The HTTP API routes of this function. */
export const httpHandler = middy<HttpEvent, APIGatewayProxyResultV2>()
  .use(httpErrors())
  .use(refuseWhenMisconfigured(getRuntimeSettings))
  .use(apiKeyAuth())
  .handler(
    httpRouterHandler<HttpEvent, APIGatewayProxyResultV2>({ routes, notFoundResponse: notFoundRoute }),
  );

/**
 * One Lambda, two triggers: API Gateway (payload 2.0) and S3 ObjectCreated on `incoming/`.
 * S3 events carry `Records`; HTTP events never do.
 */
export const handler = async (
  event: HttpEvent | S3Event,
  context: Parameters<typeof httpHandler>[1],
): Promise<APIGatewayProxyResultV2 | S3EventReport> =>
  'Records' in event ? handleS3Event(event) : httpHandler(event, context);
