/**
 * The front server of `npm start`: what listens on MAAS_HOST:MAAS_PORT. serverless-offline can
 * neither stream a response (it buffers streaming handlers) nor serve Function URLs, so the
 * text-generation routes (`/v1/*`, `/v2/models/{name}[/versions/{v}]/generate[_stream]`) go
 * in-process to the real generate handler (functions/generate/lambda.ts) through the Function URL
 * adapter (functions/generate/local-server.ts), streamed as on AWS; every other request is
 * proxied byte for byte, bodies streamed both ways with no size limit of ours, to
 * serverless-offline's HTTP server, which listens on an internal loopback port.
 */
import { once } from 'node:events';
import { createServer, type IncomingMessage, request, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type StreamingHandler, streamingRequestListener } from '../../functions/generate/local-server';
import { isGenerateRoute } from '../../shared/generate/routes';

/** Options of {@link startFrontServer}. */
export interface FrontServerOptions {
  host: string;
  /** 0: any free port. */
  port: number;
  /** serverless-offline's internal HTTP port (on 127.0.0.1). */
  upstreamPort: number;
  /** The generate function's streaming handler. */
  generate: StreamingHandler;
  /** The generate function's timeout (ms), as its Lambda `context` reports it (default 900 s). */
  timeoutMs?: number;
}

/** A running front server. */
export interface FrontServer {
  url: string;
  server: Server;
  close(): Promise<void>;
}

/** Hop-by-hop headers: they describe one connection, not the message, and are not forwarded. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'upgrade']);

function rawHeadersWithout(raw: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2)
    if (!HOP_BY_HOP.has(raw[i]!.toLowerCase())) out.push(raw[i]!, raw[i + 1]!);
  return out;
}

/** Forwards one request to 127.0.0.1:`port` and its response back, both bodies streamed. */
function proxy(port: number, req: IncomingMessage, res: ServerResponse): void {
  const headers = rawHeadersWithout(req.rawHeaders);
  const upstream = request(
    { host: '127.0.0.1', port, method: req.method, path: req.url, headers },
    (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.statusMessage, rawHeadersWithout(answer.rawHeaders));
      answer.pipe(res);
      answer.on('error', () => res.destroy());
    },
  );
  upstream.on('error', (error) => {
    if (res.headersSent) return void res.destroy();
    res.writeHead(502, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: `local API unreachable: ${error.message}`, code: 'bad_gateway' }));
  });
  // The client went away: abort the upstream request rather than let it run to the end.
  res.on('close', () => {
    if (!res.writableFinished) upstream.destroy();
  });
  req.pipe(upstream);
}

/**
 * Starts the front server; `close()` stops listening and ends open connections.
 *
 * @example
 * ```ts
 * const front = await startFrontServer({ host: '127.0.0.1', port: 3000, upstreamPort: 41234, generate: handler });
 * await front.close();
 * ```
 */
export async function startFrontServer(options: FrontServerOptions): Promise<FrontServer> {
  const generate = streamingRequestListener(options.generate, { timeoutMs: options.timeoutMs ?? 900_000 });
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    if (isGenerateRoute(path)) generate(req, res);
    else proxy(options.upstreamPort, req, res);
  });
  // Uploads through the proxy may take longer than Node's default 5 minutes to arrive.
  server.requestTimeout = 0;
  server.listen(options.port, options.host);
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  const shown = options.host.includes(':') ? `[${options.host}]` : options.host;
  return {
    url: `http://${shown}:${port}`,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
