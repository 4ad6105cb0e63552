import middy from '@middy/core';
import type { APIGatewayProxyResultV2 } from 'aws-lambda';
import { InvalidArgumentError, UnsupportedMediaTypeError } from '../../shared/errors';
import { parseFeedback, recordFeedback } from '../../shared/monitor/feedback';
import { apiKeyAuth, bodyBytes, header, httpErrors, json, pathParam, type HttpEvent } from '../lib/http';
import { getStore } from '../lib/runtime';

/** The body as JSON of any shape (feedback may be a bare array, which `jsonBody()` refuses). */
function parseJson(event: HttpEvent): unknown {
  const type = header(event, 'content-type');
  if (type && !/^application\/(.+\+)?json\b/i.test(type)) throw new UnsupportedMediaTypeError(`expected application/json, got ${type}`);
  const text = bodyBytes(event).toString('utf8');
  if (text.trim() === '') throw new InvalidArgumentError('feedback body is empty');
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new InvalidArgumentError(`malformed JSON body: ${(e as Error).message}`);
  }
}

/**
 * `POST /models/{name}/feedback`: ground truth for earlier inference requests, joined to the
 * predictions captured under their request `id`. Answers 200 with counts; unknown ids are
 * counted, not errors. A malformed body is a 400 and stores nothing.
 */
export const handler = middy<HttpEvent, APIGatewayProxyResultV2>()
  .use(httpErrors())
  .use(apiKeyAuth())
  .handler(async (event) => {
    const name = pathParam(event, 'name');
    const items = parseFeedback(parseJson(event));
    return json(200, await recordFeedback(getStore(), name, items));
  });
