import middy from '@middy/core';
import type { APIGatewayProxyResultV2 } from 'aws-lambda';
import { parseFeedback, recordFeedback } from '../../shared/monitor/feedback';
import {
  apiKeyAuth,
  type HttpEvent,
  httpErrors,
  json,
  jsonBody,
  pathParam,
  refuseWhenMisconfigured,
} from '../lib/http';
import { getRuntimeSettings, getStore } from '../lib/runtime';

/**
 * `POST /models/{name}/feedback`: ground truth for earlier inference requests, joined to the
 * predictions captured under their request `id`. Answers 200 with counts; unknown ids are
 * counted, not errors. A malformed body is a 400 and stores nothing.
 */
export const handler = middy<HttpEvent, APIGatewayProxyResultV2>()
  .use(httpErrors())
  .use(refuseWhenMisconfigured(getRuntimeSettings))
  .use(apiKeyAuth())
  .handler(async (event) => {
    const name = pathParam(event, 'name');
    // Feedback may be a bare array of items, and an empty body is a mistake, not `{}`.
    const items = parseFeedback(jsonBody(event, { allowArray: true, required: true }));
    return json(200, await recordFeedback(getStore(), name, items));
  });
