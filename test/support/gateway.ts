/**
 * A small, real stand-in for API Gateway (HTTP API, payload format 2.0) in tests.
 *
 * - {@link invoke}: builds the event API Gateway would send for a request and calls the real
 *   Lambda handler that owns the route, in process (handler tests);
 * - {@link startGateway}: a node:http server on 127.0.0.1 (port 0) doing the same for real HTTP
 *   requests, so spawned clients (the `maas` CLI) talk to the real handlers.
 *
 * Binary request bodies are base64-encoded with `isBase64Encoded` as API Gateway does, and
 * base64 responses are decoded on the way out.
 */

import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import type { APIGatewayProxyEventV2, APIGatewayProxyResultV2, Context } from 'aws-lambda';

export type HttpLambda = (
  event: APIGatewayProxyEventV2,
  context: Context,
) => Promise<APIGatewayProxyResultV2 | unknown>;

export interface GatewayRoute {
  /** `METHOD /path/{param}` as in the API's route table. */
  routeKey: string;
  handler: HttpLambda;
}

const FUNCTIONS = path.resolve(__dirname, '../../functions');

/**
 * `METHOD /path` route keys by function folder, read from serverless.yml's `httpApi` events so a
 * route added there reaches the tests without a second table to keep in step. A line scan, not a
 * YAML parser: the file's CloudFormation tags (`!Ref`, `!Sub`) make plain parsers reject it.
 */
function routesFromServerlessYml(): Record<string, string[]> {
  const routes: Record<string, string[]> = {};
  let fn: string | undefined;
  for (const line of readFileSync(path.join(FUNCTIONS, '..', 'serverless.yml'), 'utf8').split('\n')) {
    const handler = /^\s+handler:\s*functions\/([^/]+)\/handler\.handler\s*$/.exec(line);
    if (handler) fn = handler[1]!;
    // A new function key (or top-level section) ends the previous function's events.
    else if (/^(\S| {2}[\w-]+:\s*$)/.test(line)) fn = undefined;
    const event = /^\s+- httpApi:\s*\{\s*method:\s*(\w+),\s*path:\s*'?([^',\s]+)'?/.exec(line);
    if (fn && event) {
      const fnRoutes = routes[fn] ?? [];
      routes[fn] = fnRoutes;
      fnRoutes.push(`${event[1]!.toUpperCase()} ${event[2]!}`);
    }
    // A route written another way must not silently vanish from the tests (they would 404).
    else if (fn && /^\s+- httpApi\b/.test(line))
      throw new Error(
        `test/support/gateway.ts cannot read this serverless.yml route (write it as \`- httpApi: { method: X, path: Y, ... }\`): ${line.trim()}`,
      );
  }
  return routes;
}

const ROUTES_BY_FUNCTION = routesFromServerlessYml();

/**
 * The route table of every function whose handler exists in this tree (functions are written by
 * different people at different times; a missing one simply has no routes yet).
 *
 * @example
 * ```ts
 * const routes = await loadRoutes(['catalog']);
 * ```
 */
export async function loadRoutes(functions = Object.keys(ROUTES_BY_FUNCTION)): Promise<GatewayRoute[]> {
  const routes: GatewayRoute[] = [];
  for (const fn of functions) {
    const file = path.join(FUNCTIONS, fn, 'handler.ts');
    if (!existsSync(file)) continue;
    const mod = (await import(file)) as { handler: HttpLambda };
    for (const routeKey of ROUTES_BY_FUNCTION[fn] ?? []) routes.push({ routeKey, handler: mod.handler });
  }
  return routes;
}

interface Match {
  route: GatewayRoute;
  pathParameters: Record<string, string>;
}

/** API Gateway's matching: the most specific route (most literal segments) wins. */
function match(routes: GatewayRoute[], method: string, rawPath: string): Match | undefined {
  const segments = rawPath.split('/').filter(Boolean);
  let best: (Match & { literals: number }) | undefined;
  for (const route of routes) {
    const [m, p] = route.routeKey.split(' ') as [string, string];
    if (m !== method && m !== 'ANY') continue;
    const parts = p.split('/').filter(Boolean);
    if (parts.length !== segments.length) continue;
    const params: Record<string, string> = {};
    let literals = 0;
    const ok = parts.every((part, i) => {
      const param = /^\{(.+)\}$/.exec(part)?.[1];
      if (param) {
        params[param] = segments[i]!;
        return true;
      }
      literals++;
      return part === segments[i];
    });
    if (ok && (!best || literals > best.literals)) best = { route, pathParameters: params, literals };
  }
  return best;
}

export interface GatewayRequest {
  headers?: Record<string, string>;
  /** Objects are sent as JSON. */
  body?: Buffer | Uint8Array | string | object;
  /** Marks the caller as an IAM principal (what `actorOf` reads on AWS). */
  iamUserArn?: string;
}

export interface GatewayResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
  json<T = Record<string, unknown>>(): T;
}

function isText(contentType: string | undefined): boolean {
  return !!contentType && /^(text\/|application\/(.+\+)?json)/i.test(contentType);
}

/**
 * The payload-2.0 event API Gateway builds for this request.
 *
 * @example
 * ```ts
 * buildEvent('GET /models/{name}', 'GET', new URL('http://127.0.0.1/models/iris'), {}, undefined, { name: 'iris' });
 * ```
 */
export function buildEvent(
  routeKey: string,
  method: string,
  url: URL,
  headers: Record<string, string>,
  body: Buffer | undefined,
  pathParameters: Record<string, string>,
  iamUserArn?: string,
): APIGatewayProxyEventV2 {
  const query: Record<string, string> = {};
  for (const [k, v] of url.searchParams) query[k] = k in query ? `${query[k]},${v}` : v; // API Gateway joins repeats with commas
  const text = isText(headers['content-type']);
  const now = Date.now();
  return {
    version: '2.0',
    routeKey,
    rawPath: url.pathname,
    rawQueryString: url.search.replace(/^\?/, ''),
    headers,
    ...(Object.keys(query).length ? { queryStringParameters: query } : {}),
    ...(Object.keys(pathParameters).length ? { pathParameters } : {}),
    requestContext: {
      accountId: '000000000000',
      apiId: 'local',
      domainName: url.host,
      domainPrefix: 'local',
      http: {
        method,
        path: url.pathname,
        protocol: 'HTTP/1.1',
        sourceIp: '127.0.0.1',
        userAgent: headers['user-agent'] ?? '',
      },
      requestId: randomUUID(),
      routeKey,
      stage: '$default',
      time: new Date(now).toUTCString(),
      timeEpoch: now,
      ...(iamUserArn ? { authorizer: { iam: { userArn: iamUserArn } } } : {}),
    },
    ...(body && body.length > 0
      ? { body: text ? body.toString('utf8') : body.toString('base64'), isBase64Encoded: !text }
      : { isBase64Encoded: false }),
  } as APIGatewayProxyEventV2;
}

function lambdaContext(): Context {
  const deadline = Date.now() + 30_000;
  return {
    callbackWaitsForEmptyEventLoop: false,
    functionName: 'gateway-test',
    functionVersion: '$LATEST',
    invokedFunctionArn: 'arn:aws:lambda:us-east-1:000000000000:function:gateway-test',
    memoryLimitInMB: '1024',
    awsRequestId: randomUUID(),
    logGroupName: '/aws/lambda/gateway-test',
    logStreamName: 'local',
    getRemainingTimeInMillis: () => deadline - Date.now(),
    done: () => undefined,
    fail: () => undefined,
    succeed: () => undefined,
  };
}

async function dispatch(
  routes: GatewayRoute[],
  method: string,
  url: URL,
  headers: Record<string, string>,
  body: Buffer | undefined,
  iamUserArn?: string,
): Promise<GatewayResponse> {
  const found = match(routes, method, url.pathname);
  if (!found)
    return response(
      404,
      { 'content-type': 'application/json' },
      Buffer.from(JSON.stringify({ message: 'Not Found' })),
    );
  const event = buildEvent(
    found.route.routeKey,
    method,
    url,
    headers,
    body,
    found.pathParameters,
    iamUserArn,
  );
  const result = (await found.route.handler(event, lambdaContext())) as APIGatewayProxyResultV2;
  if (
    typeof result === 'string' ||
    result === undefined ||
    result === null ||
    !('statusCode' in (result as object))
  ) {
    return response(200, { 'content-type': 'application/json' }, Buffer.from(JSON.stringify(result)));
  }
  const r = result as Exclude<APIGatewayProxyResultV2, string>;
  const out =
    r.body === undefined ? Buffer.alloc(0) : Buffer.from(r.body, r.isBase64Encoded ? 'base64' : 'utf8');
  const h = Object.fromEntries(Object.entries(r.headers ?? {}).map(([k, v]) => [k.toLowerCase(), String(v)]));
  return response(r.statusCode ?? 200, h, out);
}

function response(status: number, headers: Record<string, string>, body: Buffer): GatewayResponse {
  return { status, headers, body, json: <T>() => JSON.parse(body.toString('utf8')) as T };
}

/**
 * Calls the handler owning `METHOD path` with the event API Gateway would build.
 *
 * @example
 * ```ts
 * const res = await invoke(routes, 'POST', '/models/iris/versions', { headers: { 'content-type': 'application/octet-stream' }, body: bytes });
 * expect(res.status).toBe(201);
 * ```
 */
export async function invoke(
  routes: GatewayRoute[],
  method: string,
  pathAndQuery: string,
  request: GatewayRequest = {},
): Promise<GatewayResponse> {
  const headers = Object.fromEntries(
    Object.entries(request.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]),
  );
  let body: Buffer | undefined;
  if (request.body instanceof Uint8Array) body = Buffer.from(request.body);
  else if (typeof request.body === 'string') body = Buffer.from(request.body, 'utf8');
  else if (request.body !== undefined) {
    body = Buffer.from(JSON.stringify(request.body), 'utf8');
    headers['content-type'] ??= 'application/json';
  }
  return dispatch(
    routes,
    method,
    new URL(pathAndQuery, 'http://127.0.0.1'),
    headers,
    body,
    request.iamUserArn,
  );
}

export interface Gateway {
  url: string;
  close(): Promise<void>;
}

/**
 * Serves `routes` on 127.0.0.1 (a free port) until closed.
 *
 * @example
 * ```ts
 * const gw = await startGateway(await loadRoutes());
 * spawn('node', ['bin/maas.cjs', 'models', '--endpoint', gw.url]);
 * ```
 */
export async function startGateway(routes: GatewayRoute[]): Promise<Gateway> {
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers))
        if (v !== undefined) headers[k] = Array.isArray(v) ? v.join(',') : v;
      const url = new URL(req.url ?? '/', `http://${req.headers.host ?? '127.0.0.1'}`);
      dispatch(routes, req.method ?? 'GET', url, headers, chunks.length ? Buffer.concat(chunks) : undefined)
        .then((r) => {
          res.writeHead(r.status, { ...r.headers, 'content-length': String(r.body.length) });
          res.end(r.body);
        })
        .catch((e: unknown) => {
          // What API Gateway answers when the function itself fails.
          process.stderr.write(`[gateway] handler threw: ${String((e as Error)?.stack ?? e)}\n`);
          res.writeHead(500, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ message: 'Internal Server Error' }));
        });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((resolve, reject) => server.close((e) => (e ? reject(e) : resolve()))),
  };
}
