/**
 * The shared HTTP pieces of the handlers (functions/lib/http.ts) as the functions use them:
 * one not-found route for every router, and one JSON body parser.
 */
import type { Context } from 'aws-lambda';
import { describe, expect, it } from 'vitest';
import { handler as catalog } from '../../functions/catalog/handler';
import { handler as feedback } from '../../functions/feedback/handler';
import { type HttpEvent, type HttpResult, jsonBody, withApiKey } from '../../functions/lib/http';
import { handler as optimize } from '../../functions/optimize/handler';
import { httpHandler as registerVersion } from '../../functions/register-version/handler';
import { handler as rollback } from '../../functions/rollback/handler';

function event(method: string, path: string, extra: Partial<HttpEvent> = {}): HttpEvent {
  return {
    version: '2.0',
    routeKey: '$default',
    rawPath: path,
    rawQueryString: '',
    headers: {},
    isBase64Encoded: false,
    requestContext: {
      http: { method, path, protocol: 'HTTP/1.1', sourceIp: '127.0.0.1', userAgent: 'test' },
    },
    ...extra,
  } as HttpEvent;
}

type Lambda = (e: HttpEvent, c: Context) => Promise<unknown>;
const call = async (fn: Lambda, e: HttpEvent): Promise<{ status: number; body: Record<string, unknown> }> => {
  const r = (await fn(e, {} as Context)) as HttpResult;
  return { status: r.statusCode ?? 0, body: JSON.parse(String(r.body)) as Record<string, unknown> };
};

describe('notFoundRoute', () => {
  it.each([
    ['catalog', catalog as Lambda, 'POST', '/models'],
    ['rollback', rollback as Lambda, 'GET', '/models/iris/aliases/production'],
    ['register-version', registerVersion as Lambda, 'DELETE', '/models/iris/versions'],
    ['optimize', optimize as Lambda, 'GET', '/models/iris/versions/1/optimize'],
  ])('%s answers an unknown route with 404 not_found, not 500', async (_name, fn, method, path) => {
    const res = await call(fn, event(method, path));
    expect(res.status).toBe(404);
    expect(res.body).toEqual({ error: `no route ${method} ${path}`, code: 'not_found' });
  });
});

describe('jsonBody', () => {
  const json = (body: string, type = 'application/json') =>
    event('POST', '/x', { body, headers: { 'content-type': type } });
  it('parses objects; {} when empty; refuses arrays unless allowed, other JSON shapes, malformed JSON and other types', () => {
    expect(jsonBody(json('{"a":1}'))).toEqual({ a: 1 });
    expect(jsonBody(event('POST', '/x'))).toEqual({});
    expect(() => jsonBody(json('[1]'))).toThrow(/must be an object$/);
    expect(jsonBody(json('[1,2]'), { allowArray: true })).toEqual([1, 2]);
    expect(jsonBody(json('{"a":1}'), { allowArray: true })).toEqual({ a: 1 });
    expect(() => jsonBody(json('"s"'), { allowArray: true })).toThrow(/must be an object or an array/);
    expect(() => jsonBody(json('{oops'))).toThrow(/malformed JSON body/);
    expect(() => jsonBody(json('{}', 'text/plain'))).toThrow(/expected application\/json/);
    expect(jsonBody(json('{}', 'application/vnd.api+json'))).toEqual({});
    expect(() => jsonBody(json('  '), { required: true })).toThrow(/request body is empty/);
  });

  it('is what feedback parses with: an empty body is a 400, a bare array reaches validation, other types 415', async () => {
    const post = (body: string | undefined, type = 'application/json') =>
      call(
        feedback as Lambda,
        event('POST', '/models/clf/feedback', {
          pathParameters: { name: 'clf' },
          headers: { 'content-type': type },
          ...(body !== undefined ? { body } : {}),
        }),
      );
    expect(await post(undefined)).toMatchObject({
      status: 400,
      body: { code: 'invalid_argument', error: 'request body is empty' },
    });
    expect((await post('[]')).body.error).toMatch(/empty/); // parsed, then refused by parseFeedback
    expect((await post('[{"id":"a","target":"cat"}]')).body.error).toMatch(/feedback\[0\]\.target/);
    expect((await post('{bad')).body.error).toMatch(/malformed JSON/);
    expect((await post('[]', 'text/plain')).status).toBe(415);
  });
});

describe('withApiKey', () => {
  it('guards one route handler with the key read per request', async () => {
    let key: string | undefined = 'k';
    const guarded = withApiKey(async () => ({ statusCode: 200 }), { apiKey: () => key });
    expect(await guarded(event('POST', '/x'))).toMatchObject({ statusCode: 401 });
    expect(await guarded(event('POST', '/x', { headers: { 'x-api-key': 'k' } }))).toEqual({
      statusCode: 200,
    });
    expect(await guarded(event('POST', '/x', { headers: { authorization: 'Bearer k' } }))).toEqual({
      statusCode: 200,
    });
    expect(await guarded(event('POST', '/x', { headers: { 'x-api-key': 'kk' } }))).toMatchObject({
      statusCode: 401,
    });
    key = undefined;
    expect(await guarded(event('POST', '/x'))).toEqual({ statusCode: 200 });
  });
});
