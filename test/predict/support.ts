/**
 * Helpers for predict tests: API Gateway HTTP API (payload 2.0) events as AWS sends them, a
 * Lambda context, and an inference core on a fresh RGW-backed registry installed into the
 * handler's singleton.
 */

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, Context } from 'aws-lambda';
import { handler } from '../../functions/predict/handler';
import { setInferenceService } from '../../functions/predict/runtime';
import { InferenceService, type InferenceSettingsOverrides } from '../../shared/inference';
import { ModelRegistry } from '../../shared/registry';
import { MemoryRequestMetrics } from '../../shared/request-metrics';
import type { ObjectStore } from '../../shared/store';
import { createTestStore } from '../support/stores';

export interface EventOptions {
  body?: string | Uint8Array;
  /** Send the body base64-encoded, as API Gateway does for binary media. */
  base64?: boolean;
  headers?: Record<string, string>;
}

let requestCounter = 0;

/** An HTTP API v2 event for a route template such as `POST /v2/models/{name}/infer`. */
export function apiEvent(
  routeKey: string,
  params: Record<string, string> = {},
  options: EventOptions = {},
): APIGatewayProxyEventV2 {
  const [method = 'GET', template = '/'] = routeKey.split(' ');
  const rawPath = template.replace(/\{([^}]+)\}/g, (_, k: string) => encodeURIComponent(params[k] ?? ''));
  const bytes =
    options.body === undefined
      ? undefined
      : typeof options.body === 'string'
        ? Buffer.from(options.body)
        : Buffer.from(options.body);
  const base64 = options.base64 ?? (options.body !== undefined && typeof options.body !== 'string');
  const requestId = `req-${++requestCounter}`;
  const event: APIGatewayProxyEventV2 = {
    version: '2.0',
    routeKey,
    rawPath,
    rawQueryString: '',
    headers: {
      host: 'abc123.execute-api.eu-west-1.amazonaws.com',
      'user-agent': 'vitest',
      ...lower(options.headers ?? {}),
      ...(bytes ? { 'content-length': String(bytes.length) } : {}),
    },
    requestContext: {
      accountId: '123456789012',
      apiId: 'abc123',
      domainName: 'abc123.execute-api.eu-west-1.amazonaws.com',
      domainPrefix: 'abc123',
      http: { method, path: rawPath, protocol: 'HTTP/1.1', sourceIp: '198.51.100.7', userAgent: 'vitest' },
      requestId,
      routeKey,
      stage: '$default',
      time: new Date().toUTCString(),
      timeEpoch: Date.now(),
    },
    isBase64Encoded: base64,
    ...(Object.keys(params).length ? { pathParameters: { ...params } } : {}),
    ...(bytes ? { body: base64 ? bytes.toString('base64') : bytes.toString('utf8') } : {}),
  };
  return event;
}

function lower(h: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(h).map(([k, v]) => [k.toLowerCase(), v]));
}

export function lambdaContext(): Context {
  return {
    callbackWaitsForEmptyEventLoop: false,
    functionName: 'maas-predict',
    functionVersion: '$LATEST',
    invokedFunctionArn: 'arn:aws:lambda:eu-west-1:123456789012:function:maas-predict',
    memoryLimitInMB: '2048',
    awsRequestId: `aws-${++requestCounter}`,
    logGroupName: '/aws/lambda/maas-predict',
    logStreamName: 'stream',
    getRemainingTimeInMillis: () => 30_000,
    done: () => undefined,
    fail: () => undefined,
    succeed: () => undefined,
  };
}

/** Invokes the exported handler as Lambda would. */
export async function invoke(event: APIGatewayProxyEventV2): Promise<APIGatewayProxyStructuredResultV2> {
  return (await handler(event, lambdaContext())) as APIGatewayProxyStructuredResultV2;
}

/** JSON body of a response (decoding base64 when flagged). */
export function bodyJson(res: APIGatewayProxyStructuredResultV2): Record<string, unknown> {
  return JSON.parse(bodyBuffer(res).toString('utf8')) as Record<string, unknown>;
}

export function bodyBuffer(res: APIGatewayProxyStructuredResultV2): Buffer {
  return Buffer.from(res.body ?? '', res.isBase64Encoded ? 'base64' : 'utf8');
}

export interface PredictFixture {
  store: ObjectStore;
  registry: ModelRegistry;
  metrics: MemoryRequestMetrics;
  service: InferenceService;
  cacheDir: string;
  /** Replaces the core (new settings or store wrapper) keeping the registry. */
  reinstall(settings?: InferenceSettingsOverrides, store?: ObjectStore): Promise<InferenceService>;
  cleanup(): Promise<void>;
}

/** A registry on a fresh RGW bucket and an inference core on it, installed into the handler. */
export async function predictFixture(settings: InferenceSettingsOverrides = {}): Promise<PredictFixture> {
  const { store, cleanup } = await createTestStore('s3', 'predict');
  const cacheDir = await mkdtemp(path.join(tmpdir(), 'maas-models-'));
  const fixture: PredictFixture = {
    store,
    registry: new ModelRegistry(store),
    metrics: new MemoryRequestMetrics(),
    service: undefined as unknown as InferenceService,
    cacheDir,
    async reinstall(next = {}, other?: ObjectStore) {
      fixture.metrics = new MemoryRequestMetrics();
      const registry = other ? new ModelRegistry(other) : fixture.registry;
      fixture.service = new InferenceService({
        registry,
        store: other ?? store,
        metrics: fixture.metrics,
        settings: { modelCacheDir: cacheDir, ...settings, ...next },
      });
      await setInferenceService(fixture.service, other ?? store);
      return fixture.service;
    },
    async cleanup() {
      await setInferenceService(undefined);
      await rm(cacheDir, { recursive: true, force: true });
      await cleanup();
    },
  };
  await fixture.reinstall();
  return fixture;
}

/** An OIP JSON inference event. */
export function inferEvent(
  name: string,
  request: unknown,
  version?: string,
  headers: Record<string, string> = { 'content-type': 'application/json' },
): APIGatewayProxyEventV2 {
  return version === undefined
    ? apiEvent('POST /v2/models/{name}/infer', { name }, { body: JSON.stringify(request), headers })
    : apiEvent(
        'POST /v2/models/{name}/versions/{version}/infer',
        { name, version },
        { body: JSON.stringify(request), headers },
      );
}

/** A binary-extension request body: JSON header followed by the given chunks. */
export function binaryBody(
  header: unknown,
  chunks: ArrayBufferView[],
): { body: Buffer; headerLength: number } {
  const json = Buffer.from(JSON.stringify(header));
  return {
    body: Buffer.concat([json, ...chunks.map((c) => Buffer.from(c.buffer, c.byteOffset, c.byteLength))]),
    headerLength: json.length,
  };
}
