import { Sha256 } from '@aws-crypto/sha256-js';
import { fromNodeProviderChain } from '@aws-sdk/credential-providers';
import { SignatureV4 } from '@smithy/signature-v4';
import { parseJsonWithNonFinite } from '../shared/inference/tensors';

/** Where and how the CLI talks to a maas API. */
export interface ClientOptions {
  /** e.g. `http://127.0.0.1:3000` or `https://abc.execute-api.eu-west-1.amazonaws.com`. */
  endpoint: string;
  /** Sent as `x-api-key` (stages protected by MAAS_API_KEY). */
  apiKey?: string;
  /** Sign with SigV4 (IAM auth); default: only when the endpoint is not loopback. */
  sigv4?: boolean;
  /** SigV4 region; default from the execute-api host name, else AWS_REGION, else us-east-1. */
  region?: string;
  /** SigV4 service; default `lambda` for a Function URL host (`*.lambda-url.*.on.aws`), else `execute-api`. */
  service?: string;
}

export interface ApiResponse {
  status: number;
  headers: Headers;
  body: Buffer;
  json<T>(): T;
}

/** The API answered with an error status; `body` is the maas error shape when it could be parsed. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly body: { error?: string; code?: string; details?: Record<string, unknown>; message?: string },
  ) {
    super(body.error ?? body.message ?? `HTTP ${status}`);
  }
}

export interface RequestOptions {
  /** Sent as JSON. */
  json?: unknown;
  body?: Uint8Array;
  headers?: Record<string, string>;
  query?: Record<string, string | number | undefined>;
  /** Return 3xx answers instead of following them (downloads read the presigned URL themselves). */
  manualRedirect?: boolean;
}

/**
 * True for 127.0.0.0/8, ::1 and localhost: the local server, which never wants SigV4.
 *
 * @example
 * ```ts
 * isLoopback(new URL(endpoint).hostname);
 * ```
 */
export function isLoopback(hostname: string): boolean {
  return (
    hostname === 'localhost' ||
    hostname === '[::1]' ||
    hostname === '::1' ||
    /^127\.\d+\.\d+\.\d+$/.test(hostname)
  );
}

/**
 * The region in an execute-api host name.
 *
 * @example
 * ```ts
 * regionOfEndpoint('abc.execute-api.eu-west-1.amazonaws.com'); // 'eu-west-1'
 * ```
 */
export function regionOfEndpoint(hostname: string): string | undefined {
  return (
    /\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$/.exec(hostname)?.[1] ??
    // Lambda Function URLs (the streaming generate function): abc.lambda-url.eu-west-1.on.aws
    /\.lambda-url\.([a-z0-9-]+)\.on\.aws$/.exec(hostname)?.[1]
  );
}

/**
 * A small HTTP client for the maas API: JSON in and out, the API key header, SigV4 signing
 * (service `execute-api`, default AWS credential chain) for deployed stages.
 *
 * @example
 * ```ts
 * const client = new MaasClient({ endpoint: 'http://127.0.0.1:3000' });
 * const models = (await client.request('GET', '/models')).json<{ items: unknown[] }>();
 * ```
 */
export class MaasClient {
  readonly endpoint: URL;
  private readonly options: ClientOptions;
  private signer: SignatureV4 | undefined;

  constructor(options: ClientOptions) {
    this.options = options;
    this.endpoint = new URL(`${options.endpoint.replace(/\/+$/, '')}/`);
  }

  get signs(): boolean {
    return this.options.sigv4 ?? !isLoopback(this.endpoint.hostname);
  }

  /** Absolute URL of an API path (keeps a stage prefix in the endpoint, e.g. `/dev`). */
  url(path: string, query: RequestOptions['query'] = {}): URL {
    const url = new URL(path.replace(/^\/+/, ''), this.endpoint);
    for (const [k, v] of Object.entries(query)) if (v !== undefined) url.searchParams.set(k, String(v));
    return url;
  }

  /** Sends a request; throws {@link ApiError} for 4xx/5xx answers. */
  async request(method: string, path: string, options: RequestOptions = {}): Promise<ApiResponse> {
    const url = this.url(path, options.query);
    const headers: Record<string, string> = { accept: 'application/json', ...options.headers };
    let body: Uint8Array | undefined = options.body;
    if (options.json !== undefined) {
      body = Buffer.from(JSON.stringify(options.json));
      headers['content-type'] = 'application/json';
    }
    const signed = await this.authorize(method, url, headers, body);
    let res: Response;
    try {
      res = await fetch(url, {
        method,
        headers: signed,
        ...(body ? { body } : {}),
        redirect: options.manualRedirect ? 'manual' : 'follow',
      });
    } catch (e) {
      // fetch says only "fetch failed"; the cause (ECONNREFUSED, ENOTFOUND…) is what helps.
      const cause = (e as { cause?: { code?: string; message?: string } }).cause;
      throw new Error(
        `cannot reach ${url.origin}: ${cause?.code ?? cause?.message ?? (e as Error).message}${isLoopback(url.hostname) ? ' (is the local server running? `npm start`)' : ''}`,
      );
    }
    const bytes = Buffer.from(await res.arrayBuffer());
    const response: ApiResponse = {
      status: res.status,
      headers: res.headers,
      body: bytes,
      // Predict writes non-finite floats as bare NaN/Infinity (docs/api/predict.md).
      json: <T>() => parseJsonWithNonFinite(bytes.toString('utf8')) as T,
    };
    if (res.status >= 400) {
      let parsed: ApiError['body'];
      try {
        parsed = JSON.parse(bytes.toString('utf8')) as ApiError['body'];
      } catch {
        parsed = { error: bytes.toString('utf8').slice(0, 500) || res.statusText };
      }
      throw new ApiError(res.status, parsed);
    }
    return response;
  }

  /**
   * Posts JSON and returns the response as it arrives (server-sent events): the body is not read.
   * Throws {@link ApiError} for 4xx/5xx answers, with OpenAI's `{error: {message, code}}` shape
   * flattened to maas's.
   */
  async stream(path: string, json: unknown): Promise<Response> {
    const url = this.url(path);
    const body = Buffer.from(JSON.stringify(json));
    const headers = await this.authorize(
      'POST',
      url,
      { accept: 'text/event-stream', 'content-type': 'application/json' },
      body,
    );
    let res: Response;
    try {
      res = await fetch(url, { method: 'POST', headers, body });
    } catch (e) {
      const cause = (e as { cause?: { code?: string; message?: string } }).cause;
      throw new Error(`cannot reach ${url.origin}: ${cause?.code ?? cause?.message ?? (e as Error).message}`);
    }
    if (res.status >= 400) {
      const text = await res.text();
      let parsed: ApiError['body'];
      try {
        const raw = JSON.parse(text) as { error?: unknown; code?: string; message?: string };
        const e = raw.error;
        parsed =
          typeof e === 'object' && e !== null
            ? {
                error: String((e as { message?: unknown }).message ?? text),
                ...((e as { code?: unknown }).code ? { code: String((e as { code?: unknown }).code) } : {}),
              }
            : (raw as ApiError['body']);
      } catch {
        parsed = { error: text.slice(0, 500) || res.statusText };
      }
      throw new ApiError(res.status, parsed);
    }
    return res;
  }

  /** Adds the API key and, when signing, the SigV4 headers for exactly this method, URL and body. */
  async authorize(
    method: string,
    url: URL,
    headers: Record<string, string>,
    body?: Uint8Array,
  ): Promise<Record<string, string>> {
    const out = { ...headers };
    if (this.options.apiKey) out['x-api-key'] = this.options.apiKey;
    if (!this.signs) return out;
    this.signer ??= new SignatureV4({
      service:
        this.options.service ??
        (/\.lambda-url\.[a-z0-9-]+\.on\.aws$/.test(this.endpoint.hostname) ? 'lambda' : 'execute-api'),
      region:
        this.options.region ??
        regionOfEndpoint(this.endpoint.hostname) ??
        process.env.AWS_REGION ??
        process.env.AWS_DEFAULT_REGION ??
        'us-east-1',
      credentials: fromNodeProviderChain(),
      sha256: Sha256,
    });
    const query: Record<string, string> = {};
    for (const [k, v] of url.searchParams) query[k] = v;
    const signed = await this.signer.sign({
      method,
      protocol: url.protocol,
      hostname: url.hostname,
      ...(url.port ? { port: Number(url.port) } : {}),
      path: url.pathname,
      query,
      headers: { ...out, host: url.host },
      ...(body ? { body } : {}),
    });
    // fetch sets Host itself; sending it twice would break the request.
    const { host: _host, ...rest } = signed.headers;
    return rest;
  }
}
