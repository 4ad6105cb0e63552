import { timingSafeEqual } from 'node:crypto';
import type { Logger } from '@aws-lambda-powertools/logger';
import type { MiddlewareObj } from '@middy/core';
import type { Route } from '@middy/http-router';
import type {
  APIGatewayProxyEventV2,
  APIGatewayProxyResultV2,
  APIGatewayProxyStructuredResultV2,
  Context,
} from 'aws-lambda';
import {
  InvalidArgumentError,
  MaasError,
  NotFoundError,
  PayloadTooLargeError,
  UnsupportedMediaTypeError,
} from '../../shared/errors';
import { type ErrorBody, errorToHttp } from '../../shared/http/errors';
import { getStringFromEnv, MisconfiguredError } from '../../shared/settings';
import { logger as functionLogger } from './logger';

export type HttpEvent = APIGatewayProxyEventV2;
export type HttpResult = APIGatewayProxyStructuredResultV2;

/** Lambda's synchronous invocation payload limit: bodies above it never reach us on AWS. */
export const LAMBDA_SYNC_PAYLOAD_LIMIT = 6 * 1024 * 1024;

/** A JSON response. */
export function json(statusCode: number, body: unknown, headers: Record<string, string> = {}): HttpResult {
  return {
    statusCode,
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  };
}

/** The raw request body (API Gateway base64-encodes binary bodies). */
export function bodyBytes(event: HttpEvent, limit = LAMBDA_SYNC_PAYLOAD_LIMIT): Buffer {
  if (event.body === undefined || event.body === null) return Buffer.alloc(0);
  const bytes = event.isBase64Encoded ? Buffer.from(event.body, 'base64') : Buffer.from(event.body, 'utf8');
  if (bytes.length > limit)
    throw new PayloadTooLargeError(`request body is larger than ${limit} bytes`, { limit });
  return bytes;
}

/** Options of {@link jsonBody}. */
export interface JsonBodyOptions {
  /** Also accept a top-level JSON array (default false: bodies are objects). */
  allowArray?: boolean;
  /** Refuse an empty body with 400 instead of reading it as `{}` (default false). */
  required?: boolean;
}

/**
 * The body parsed as JSON: an object (`{}` when empty), or with `allowArray` also an array.
 * A non-JSON content type is a 415, malformed JSON or another top-level shape a 400.
 *
 * @example
 * ```ts
 * const body = jsonBody(event); // Record<string, unknown>
 * const items = jsonBody(event, { allowArray: true, required: true }); // object or array
 * ```
 */
export function jsonBody(
  event: HttpEvent,
  options?: JsonBodyOptions & { allowArray?: false },
): Record<string, unknown>;
export function jsonBody(event: HttpEvent, options: JsonBodyOptions): Record<string, unknown> | unknown[];
export function jsonBody(
  event: HttpEvent,
  options: JsonBodyOptions = {},
): Record<string, unknown> | unknown[] {
  const bytes = bodyBytes(event);
  if (bytes.length === 0 && !options.required) return {};
  const type = header(event, 'content-type');
  if (type && !/^application\/(.+\+)?json\b/i.test(type)) {
    throw new UnsupportedMediaTypeError(`expected application/json, got ${type}`);
  }
  const text = bytes.toString('utf8');
  if (options.required && text.trim() === '') throw new InvalidArgumentError('request body is empty');
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new InvalidArgumentError(`malformed JSON body: ${(e as Error).message}`);
  }
  if (Array.isArray(parsed) && options.allowArray) return parsed as unknown[];
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new InvalidArgumentError(
      options.allowArray ? 'JSON body must be an object or an array' : 'JSON body must be an object',
    );
  }
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

/** Status and body of a failed request (the default is the shared `errorToHttp`). */
export type ErrorMapping = (error: unknown) => { status: number; body: ErrorBody };

/** Options of {@link httpErrors}. */
export interface HttpErrorsOptions {
  /** Powertools Logger for refusals and failures (default: `functions/lib/logger.ts`). */
  logger?: Logger;
  /** Maps a thrown error to status and body (default `errorToHttp`); a function may refine it. */
  toHttp?: ErrorMapping;
}

/**
 * middy middleware, the one error path of every HTTP function: turns thrown errors into
 * `{error, code}` JSON responses with the status their kind maps to. Server errors are logged
 * with the error; refusals (4xx) only with status and code, since their messages may quote the
 * request (request bodies are never logged).
 *
 * @example
 * ```ts
 * export const handler = middy().use(httpErrors({ logger })).handler(router);
 * ```
 */
export function httpErrors(
  opts: HttpErrorsOptions = {},
): MiddlewareObj<HttpEvent, APIGatewayProxyResultV2, Error, Context> {
  const logger = opts.logger ?? functionLogger;
  const toHttp = opts.toHttp ?? errorToHttp;
  return {
    onError: async (request) => {
      const { status, body } = toHttp(request.error);
      const routeKey = request.event?.routeKey;
      // A bad setting was reported (with its value) once at start-up; each refusal only names it.
      if (request.error instanceof MisconfiguredError)
        logger.warn('request refused: misconfigured', { routeKey, status, settings: request.error.settings });
      else if (status >= 500)
        logger.error('request failed', { routeKey, status, error: request.error as Error });
      else logger.warn('request rejected', { routeKey, status, code: body.code });
      request.response = json(status, body);
    },
  };
}

/**
 * middy middleware: runs `check` (the function's settings, read once per container) before
 * every request, so that a misconfigured function answers every request — health checks
 * included — with the 500 `misconfigured` of {@link httpErrors} instead of serving half-right.
 * Register it after {@link httpErrors}.
 *
 * @example
 * ```ts
 * middy().use(httpErrors({ logger })).use(refuseWhenMisconfigured(() => getInferenceService()));
 * ```
 */
export function refuseWhenMisconfigured(
  check: () => unknown,
): MiddlewareObj<HttpEvent, APIGatewayProxyResultV2, Error, Context> {
  return {
    before: async () => {
      check();
    },
  };
}

/**
 * One `@middy/http-router` route of an HTTP API function (the router's object spelled as a call,
 * so a route table reads as `METHOD path → handler` lines).
 *
 * @example
 * ```ts
 * const routes = [route('GET', '/models/{name}', async (event) => json(200, await describe(pathParam(event, 'name'))))];
 * ```
 */
export function route(
  method: Route<HttpEvent, APIGatewayProxyResultV2>['method'],
  path: string,
  handler: (event: HttpEvent) => Promise<APIGatewayProxyResultV2>,
): Route<HttpEvent, APIGatewayProxyResultV2> {
  return { method, path, handler };
}

/**
 * The `notFoundResponse` of every `@middy/http-router` here: an unknown method or path is a
 * 404 `{error, code: 'not_found'}` through {@link httpErrors}. (The router's own default throws
 * a middy HttpError, which `errorToHttp` does not know and answers with 500.)
 *
 * @example
 * ```ts
 * httpRouterHandler({ routes, notFoundResponse: notFoundRoute });
 * ```
 */
export function notFoundRoute({ method, path }: { method: string; path: string }): never {
  throw new NotFoundError(`no route ${method} ${path}`);
}

/**
 * The 401 response for a request that lacks `apiKey` (as `x-api-key` or `Authorization:
 * Bearer …`), or undefined when it carries it or no key is configured. Compared in constant time.
 *
 * @example
 * ```ts
 * const refused = apiKeyRefusal(event, process.env.MAAS_API_KEY);
 * if (refused) return refused;
 * ```
 */
export function apiKeyRefusal(event: HttpEvent, apiKey: string | undefined): HttpResult | undefined {
  if (!apiKey) return undefined;
  const given =
    header(event, 'x-api-key') ?? /^Bearer\s+(.+)$/i.exec(header(event, 'authorization') ?? '')?.[1] ?? '';
  const a = Buffer.from(given);
  const b = Buffer.from(apiKey);
  if (a.length !== b.length || !timingSafeEqual(a, b)) {
    return json(401, { error: 'missing or invalid API key (x-api-key header)', code: 'unauthorized' });
  }
  return undefined;
}

/** `MAAS_API_KEY` through the settings reader (unset or empty: no key required). */
const configuredApiKey = (): string | undefined =>
  getStringFromEnv({ key: 'MAAS_API_KEY', defaultValue: undefined });

/**
 * Wraps one route handler so that it needs the API key (`MAAS_API_KEY`, read per request)
 * when one is configured. For routers that mix reads and writes: the check sits on the route
 * the router actually chose, so it cannot disagree with the router about the request's method
 * (API Gateway payload 1.0 and 2.0 carry the method in different fields).
 *
 * @example
 * ```ts
 * const routes = [{ method: 'POST', path: '/things', handler: withApiKey(createThing) }];
 * ```
 */
export function withApiKey<R>(
  handler: (event: HttpEvent) => Promise<R>,
  opts: { apiKey?: () => string | undefined } = {},
): (event: HttpEvent) => Promise<R | HttpResult> {
  const apiKey = opts.apiKey ?? configuredApiKey;
  return async (event) => apiKeyRefusal(event, apiKey()) ?? handler(event);
}

/**
 * middy middleware: when `MAAS_API_KEY` is set, requests must carry it as `x-api-key` or
 * `Authorization: Bearer …` (local and key-protected stages; on AWS use IAM auth instead).
 */
export function apiKeyAuth(
  opts: { apiKey?: string | undefined } = {},
): MiddlewareObj<HttpEvent, APIGatewayProxyResultV2, Error, Context> {
  const apiKey = 'apiKey' in opts ? opts.apiKey : configuredApiKey();
  return {
    before: async (request) => apiKeyRefusal(request.event, apiKey),
  };
}

export { MaasError };
