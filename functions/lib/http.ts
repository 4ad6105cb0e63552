import type { MiddlewareObj } from '@middy/core';
import type { APIGatewayProxyEventV2, APIGatewayProxyResultV2, APIGatewayProxyStructuredResultV2, Context } from 'aws-lambda';
import { timingSafeEqual } from 'node:crypto';
import { InvalidArgumentError, MaasError, PayloadTooLargeError, UnsupportedMediaTypeError } from '../../shared/errors';
import { errorToHttp } from '../../shared/http/errors';

export type HttpEvent = APIGatewayProxyEventV2;
export type HttpResult = APIGatewayProxyStructuredResultV2;

/** Lambda's synchronous invocation payload limit: bodies above it never reach us on AWS. */
export const LAMBDA_SYNC_PAYLOAD_LIMIT = 6 * 1024 * 1024;

/** A JSON response. */
export function json(statusCode: number, body: unknown, headers: Record<string, string> = {}): HttpResult {
  return { statusCode, headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) };
}

/** The raw request body (API Gateway base64-encodes binary bodies). */
export function bodyBytes(event: HttpEvent, limit = LAMBDA_SYNC_PAYLOAD_LIMIT): Buffer {
  if (event.body === undefined || event.body === null) return Buffer.alloc(0);
  const bytes = event.isBase64Encoded ? Buffer.from(event.body, 'base64') : Buffer.from(event.body, 'utf8');
  if (bytes.length > limit) throw new PayloadTooLargeError(`request body is larger than ${limit} bytes`, { limit });
  return bytes;
}

/** The body parsed as a JSON object; `{}` when empty. */
export function jsonBody(event: HttpEvent): Record<string, unknown> {
  const bytes = bodyBytes(event);
  if (bytes.length === 0) return {};
  const type = header(event, 'content-type');
  if (type && !/^application\/(.+\+)?json\b/i.test(type)) {
    throw new UnsupportedMediaTypeError(`expected application/json, got ${type}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(bytes.toString('utf8'));
  } catch (e) {
    throw new InvalidArgumentError(`malformed JSON body: ${(e as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new InvalidArgumentError('JSON body must be an object');
  return parsed as Record<string, unknown>;
}

/** A header value, case-insensitively (HTTP API lower-cases them; tests and other callers may not). */
export function header(event: HttpEvent, name: string): string | undefined {
  const wanted = name.toLowerCase();
  for (const [k, v] of Object.entries(event.headers ?? {})) if (k.toLowerCase() === wanted) return v;
  return undefined;
}

/** A required path parameter, URL-decoded. */
export function pathParam(event: HttpEvent, name: string): string {
  const value = event.pathParameters?.[name];
  if (value === undefined || value === '') throw new InvalidArgumentError(`missing path parameter ${name}`);
  try {
    return decodeURIComponent(value);
  } catch {
    throw new InvalidArgumentError(`path parameter ${name} is not valid percent-encoding`);
  }
}

/** Who is calling: the IAM principal on AWS, else `local`. Recorded in history. */
export function actorOf(event: HttpEvent): string {
  const ctx = event.requestContext as HttpEvent['requestContext'] & {
    authorizer?: { iam?: { userArn?: string; userId?: string } };
  };
  return ctx.authorizer?.iam?.userArn ?? ctx.authorizer?.iam?.userId ?? 'local';
}

/**
 * middy middleware: turns thrown errors into `{error, code}` JSON responses with the status
 * their kind maps to, logging server errors (never request bodies).
 */
export function httpErrors(opts: { logger?: (message: string, error: unknown) => void } = {}): MiddlewareObj<HttpEvent, APIGatewayProxyResultV2, Error, Context> {
  const defaults = { logger: (message: string, error: unknown) => console.error(JSON.stringify({ level: 'ERROR', message, error: String((error as Error)?.stack ?? error) })) };
  const options = { ...defaults, ...opts };
  return {
    onError: async (request) => {
      const { status, body } = errorToHttp(request.error);
      if (status >= 500) options.logger(`request failed: ${request.event?.routeKey ?? ''}`, request.error);
      request.response = json(status, body);
    },
  };
}

/**
 * middy middleware: when `MAAS_API_KEY` is set, requests must carry it as `x-api-key` or
 * `Authorization: Bearer …` (local and key-protected stages; on AWS use IAM auth instead).
 */
export function apiKeyAuth(opts: { apiKey?: string | undefined } = {}): MiddlewareObj<HttpEvent, APIGatewayProxyResultV2, Error, Context> {
  const apiKey = 'apiKey' in opts ? opts.apiKey : process.env.MAAS_API_KEY;
  return {
    before: async (request) => {
      if (!apiKey) return;
      const given = header(request.event, 'x-api-key') ?? /^Bearer\s+(.+)$/i.exec(header(request.event, 'authorization') ?? '')?.[1] ?? '';
      const a = Buffer.from(given);
      const b = Buffer.from(apiKey);
      if (a.length !== b.length || !timingSafeEqual(a, b)) {
        return json(401, { error: 'missing or invalid API key (x-api-key header)', code: 'unauthorized' });
      }
      return undefined;
    },
  };
}

export { MaasError };
