import { PayloadTooLargeError } from '../../shared/errors';
import { type ErrorBody, errorToHttp } from '../../shared/http/errors';
import type { InferResult } from '../../shared/inference';
import { bodyBytes, type HttpEvent, type HttpResult, LAMBDA_SYNC_PAYLOAD_LIMIT } from '../lib/http';

/**
 * The inference body as the core takes it: JSON text as the string API Gateway delivered (no
 * bytes round trip, which costs ~1 ms per MB), binary or base64-encoded bodies as bytes.
 * @example
 * await service.infer(name, version, inferBody(event), options);
 */
export function inferBody(event: HttpEvent): string | Buffer {
  const text = event.body;
  if (event.isBase64Encoded || text === undefined || text === null) return bodyBytes(event);
  if (text.length * 3 > LAMBDA_SYNC_PAYLOAD_LIMIT && Buffer.byteLength(text) > LAMBDA_SYNC_PAYLOAD_LIMIT) {
    throw new PayloadTooLargeError(`request body is larger than ${LAMBDA_SYNC_PAYLOAD_LIMIT} bytes`, {
      limit: LAMBDA_SYNC_PAYLOAD_LIMIT,
    });
  }
  return text;
}

/**
 * The Lambda result of an inference: JSON as text, binary-extension bodies base64-encoded (as
 * API Gateway requires). A response over Lambda's 6 MB limit would fail opaquely at the
 * platform, so it is answered with a 413 that says what to change.
 * @example
 * return inferResponse(await service.infer(name, version, body));
 */
export function inferResponse(result: InferResult): HttpResult {
  const headers: Record<string, string> = {
    'content-type': result.contentType,
    'x-maas-model-version': String(result.version),
  };
  const binary = result.headerLength !== undefined;
  const size = binary ? Math.ceil(result.body.length / 3) * 4 : Buffer.byteLength(result.body);
  if (size > LAMBDA_SYNC_PAYLOAD_LIMIT) {
    throw new PayloadTooLargeError(
      `the response (${size} bytes) exceeds Lambda's ${LAMBDA_SYNC_PAYLOAD_LIMIT}-byte limit; request fewer outputs, a smaller batch, or binary outputs`,
      { limit: LAMBDA_SYNC_PAYLOAD_LIMIT, size },
    );
  }
  if (!binary) return { statusCode: 200, headers, body: result.body as string };
  headers['inference-header-content-length'] = String(result.headerLength);
  return {
    statusCode: 200,
    headers,
    body: (result.body as Buffer).toString('base64'),
    isBase64Encoded: true,
  };
}

/**
 * Status and body of a failed predict request: the shared mapping (which keeps the message of an
 * `integrity_error`, so operators and clients both know the model was refused).
 * @example
 * const { status, body } = predictError(error);
 */
export function predictError(error: unknown): { status: number; body: ErrorBody } {
  return errorToHttp(error);
}
