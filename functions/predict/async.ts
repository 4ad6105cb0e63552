import type { Context } from 'aws-lambda';
import { PayloadTooLargeError } from '../../shared/errors';
import { type AsyncWorkerEvent, parseAsyncSubmission } from '../../shared/inference';
import {
  type HttpEvent,
  type HttpResult,
  json,
  jsonBody,
  LAMBDA_SYNC_PAYLOAD_LIMIT,
  pathParam,
} from '../lib/http';
import { getAsyncInference, logger } from './runtime';

/**
 * The asynchronous inference routes (docs/api/predict.md#asynchronous-inference); the core is
 * shared/inference/async.ts.
 * @example
 * { method: 'POST', path: '/v2/models/{name}/infer-async', handler: submitAsync }
 */
export async function submitAsync(event: HttpEvent): Promise<HttpResult> {
  const submission = parseAsyncSubmission(jsonBody(event, { required: true }));
  const version = event.pathParameters?.version ? pathParam(event, 'version') : undefined;
  const record = await getAsyncInference().submit(pathParam(event, 'name'), version, submission);
  const statusUrl = `/v2/async/${record.id}`;
  return json(202, { id: record.id, status: record.status, status_url: statusUrl }, { location: statusUrl });
}

/** `POST /v2/async/inputs`: where to upload an input (presigned POST, or a file locally). */
export async function createAsyncInput(): Promise<HttpResult> {
  return json(201, await getAsyncInference().createInputTicket());
}

/** `GET /v2/async/{id}`: pending, running, succeeded (response inline or a link), failed (the error). */
export async function asyncStatus(event: HttpEvent): Promise<HttpResult> {
  return json(200, await getAsyncInference().status(pathParam(event, 'id')));
}

/** `GET /v2/async/{id}/output`: the stored response (the file store's stand-in for a presigned link). */
export async function asyncOutput(event: HttpEvent): Promise<HttpResult> {
  const { body, contentType, headerLength, size } = await getAsyncInference().readOutput(
    pathParam(event, 'id'),
  );
  // On AWS the status hands out a presigned link instead; a body over Lambda's limit would fail opaquely.
  if (
    !process.env.IS_OFFLINE &&
    Math.ceil(size / 3) * 4 > LAMBDA_SYNC_PAYLOAD_LIMIT &&
    process.env.AWS_LAMBDA_FUNCTION_NAME
  ) {
    body.destroy();
    throw new PayloadTooLargeError(
      `the response (${size} bytes) is over Lambda's limit: fetch it with the link GET /v2/async/{id} returns`,
      {
        limit: LAMBDA_SYNC_PAYLOAD_LIMIT,
        size,
      },
    );
  }
  const chunks: Buffer[] = [];
  for await (const chunk of body as AsyncIterable<Buffer>) chunks.push(chunk);
  const bytes = Buffer.concat(chunks);
  const headers: Record<string, string> = { 'content-type': contentType };
  if (headerLength === undefined) return { statusCode: 200, headers, body: bytes.toString('utf8') };
  headers['inference-header-content-length'] = String(headerLength);
  return { statusCode: 200, headers, body: bytes.toString('base64'), isBase64Encoded: true };
}

/**
 * The `predict-async` function (asynchronous Lambda invoke with `{maasAsyncInference: {id}}`):
 * one run, bounded by the time the function has left. Failures are recorded in the request,
 * not thrown, so Lambda retries only a run that died; a retry finds the record claimed.
 */
export async function worker(
  event: AsyncWorkerEvent,
  context?: Context,
): Promise<{ id: string; status: string }> {
  const { id } = event.maasAsyncInference;
  const remainingMs = context?.getRemainingTimeInMillis?.();
  const done = await getAsyncInference().run(id, remainingMs === undefined ? {} : { remainingMs });
  const status = done?.status ?? 'skipped (unknown, already claimed or finished)';
  logger.info('async inference done', {
    id,
    status,
    ...(done?.httpStatus ? { httpStatus: done.httpStatus } : {}),
  });
  return { id, status };
}
