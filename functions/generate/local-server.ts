/**
 * A local stand-in for a Lambda Function URL in `RESPONSE_STREAM` mode: a node:http server that
 * turns each request into a Function URL event, invokes a streaming handler with a response
 * stream that speaks the runtime's framing (JSON prelude with status and headers, 8 NUL bytes,
 * then the body) and forwards the body to the client as it is written, so streamed responses
 * really stream locally and in tests (serverless-offline buffers streaming handlers).
 */
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Writable } from 'node:stream';
import type { Context, LambdaFunctionURLEvent } from 'aws-lambda';
import { ResponseStream } from 'lambda-stream';

const DELIMITER = Buffer.alloc(8);

/** A streaming handler as `streamifyResponse` returns it. */
export type StreamingHandler = (
  event: LambdaFunctionURLEvent,
  stream: ResponseStream,
  context?: Context,
) => unknown;

/**
 * Installs the runtime's `awslambda` global (streamifyResponse, HttpResponseStream.from) when
 * missing, with the runtime's wire framing, so handlers built with lambda-stream stream here too.
 * Call before building the handler.
 * @example
 * installLambdaStreamingShim();
 * const handler = createGenerateHandler(resolver);
 */
export function installLambdaStreamingShim(): void {
  // Other libraries put things on the global too (@aws/lambda-invoke-store: InvokeStore), so
  // add the two members rather than test for the object.
  const g = globalThis as { awslambda?: Record<string, unknown> };
  g.awslambda ??= {};
  const runtime = g.awslambda;
  runtime.streamifyResponse ??= <T>(handler: T): T => handler;
  runtime.HttpResponseStream ??= {
    from(stream: Writable, prelude: { statusCode: number; headers: Record<string, string> }): Writable {
      stream.write(JSON.stringify(prelude));
      stream.write(DELIMITER);
      return stream;
    },
  };
}

/** A response stream that parses the runtime framing, then forwards body bytes as they are written. */
class ForwardingStream extends ResponseStream {
  private head = Buffer.alloc(0);
  private headed = false;
  constructor(private readonly res: ServerResponse) {
    super();
  }
  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.res.destroyed) {
      callback(new Error('the client disconnected'));
      return;
    }
    if (this.headed) {
      this.res.write(chunk, (error) => callback(error ?? null));
      return;
    }
    this.head = Buffer.concat([this.head, Buffer.from(chunk)]);
    const at = this.head.indexOf(DELIMITER);
    if (at < 0) {
      callback();
      return;
    }
    const prelude = JSON.parse(this.head.subarray(0, at).toString('utf8')) as {
      statusCode: number;
      headers?: Record<string, string>;
    };
    this.res.writeHead(prelude.statusCode, prelude.headers ?? {});
    this.headed = true;
    const rest = this.head.subarray(at + DELIMITER.length);
    if (rest.length > 0) this.res.write(rest, (error) => callback(error ?? null));
    else callback();
  }
  override _final(callback: (error?: Error | null) => void): void {
    if (!this.headed) this.res.writeHead(200);
    this.res.end(() => callback());
  }
}

async function eventOf(req: IncomingMessage, url: URL): Promise<LambdaFunctionURLEvent> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string') headers[k] = v;
  const now = Date.now();
  return {
    version: '2.0',
    routeKey: '$default',
    rawPath: url.pathname,
    rawQueryString: url.search.slice(1),
    headers,
    requestContext: {
      accountId: 'anonymous',
      apiId: 'local',
      domainName: url.host,
      domainPrefix: 'local',
      http: {
        method: req.method ?? 'GET',
        path: url.pathname,
        protocol: 'HTTP/1.1',
        sourceIp: '127.0.0.1',
        userAgent: headers['user-agent'] ?? '',
      },
      requestId: `local-${now}`,
      routeKey: '$default',
      stage: '$default',
      time: new Date(now).toISOString(),
      timeEpoch: now,
    },
    isBase64Encoded: true,
    body: Buffer.concat(chunks).toString('base64'),
  };
}

/**
 * A node:http request listener that answers each request with a streaming handler, body bytes
 * forwarded as the handler writes them (for servers that route only some paths to it).
 * @example
 * const listener = streamingRequestListener(handler, { timeoutMs: 900_000 });
 * createServer((req, res) => (isGenerateRoute(req.url ?? '') ? listener(req, res) : other(req, res)));
 */
export function streamingRequestListener(
  handler: StreamingHandler,
  options: { timeoutMs?: number } = {},
): (req: IncomingMessage, res: ServerResponse) => void {
  const timeoutMs = options.timeoutMs ?? 900_000;
  return (req, res) => {
    const url = new URL(req.url ?? '/', `http://${req.headers.host ?? 'localhost'}`);
    const started = Date.now();
    const stream = new ForwardingStream(res);
    res.on('close', () => {
      if (!res.writableFinished) stream.destroy(); // the client went away: the handler sees 'close'
    });
    const context = { getRemainingTimeInMillis: () => timeoutMs - (Date.now() - started) } as Context;
    void (async () => {
      try {
        await handler(await eventOf(req, url), stream, context);
      } catch (error) {
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: `handler failed: ${(error as Error).message}` }));
      }
    })();
  };
}

/**
 * Serves a streaming handler on `host:port` (port 0: any free port).
 * @example
 * const { server, url } = await serveStreamingHandler(handler, { port: 0, timeoutMs: 900_000 });
 */
export async function serveStreamingHandler(
  handler: StreamingHandler,
  options: { port: number; host?: string; timeoutMs?: number },
): Promise<{ server: Server; url: string }> {
  const server = createServer(
    streamingRequestListener(
      handler,
      options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {},
    ),
  );
  server.listen(options.port, options.host ?? '127.0.0.1');
  await once(server, 'listening');
  return { server, url: `http://${options.host ?? '127.0.0.1'}:${(server.address() as AddressInfo).port}` };
}
