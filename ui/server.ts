/**
 * `maas ui`'s local server: serves the dashboard on loopback and forwards its API calls to a maas
 * endpoint through {@link MaasClient} (SigV4-signed from the user's AWS credentials for a deployed
 * stage, as `kubectl proxy` does), so nothing public is added to the stack and IAM stays the way in.
 *
 * Anything that can reach the port acts with the user's credentials, so the forwarder takes only
 * what the dashboard itself sends: API paths (`/models…`, `/v2…`), a `Host` naming this server
 * (no DNS rebinding), no foreign `Origin`, and the `x-maas-ui` header, which a cross-site page
 * cannot add without a CORS preflight this server never grants.
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { MaasClient } from '../cli/client';
import { dashboardAssets, isDashboardPath } from './assets';

/** Options of {@link startDashboardServer}. */
export interface DashboardServerOptions {
  /** The client API calls are forwarded through (its endpoint, signing and API key). */
  client: MaasClient;
  /** Port on 127.0.0.1 (default 0: any free port). */
  port?: number;
  /** Largest request body forwarded (default 6 MiB, Lambda's limit). */
  maxBodyBytes?: number;
}

export interface DashboardServer {
  url: string;
  close(): Promise<void>;
}

/** Request headers worth forwarding; the rest (cookies, browser noise) stay here. */
const FORWARD_REQUEST = ['accept', 'content-type', 'if-match', 'if-none-match', 'x-api-key'];
/** Response headers passed back to the page. */
const FORWARD_RESPONSE = [
  'content-type',
  'etag',
  'location',
  'content-disposition',
  'x-maas-sha256',
  'x-maas-version',
];

function reply(res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

/**
 * Serves the dashboard and forwards API calls until closed.
 *
 * @example
 * ```ts
 * const ui = await startDashboardServer({ client: new MaasClient({ endpoint: 'https://abc.execute-api.eu-west-1.amazonaws.com' }), port: 8080 });
 * console.log(`dashboard on ${ui.url}`);
 * ```
 */
export async function startDashboardServer(options: DashboardServerOptions): Promise<DashboardServer> {
  const { client } = options;
  const maxBody = options.maxBodyBytes ?? 6 * 1024 * 1024;
  const assets = await dashboardAssets();
  let origin = '';
  // The names a browser on this machine may use for the server (anything else: DNS rebinding).
  let hosts = new Set<string>();

  const forward = async (
    req: http.IncomingMessage,
    res: http.ServerResponse,
    body: Buffer,
  ): Promise<void> => {
    const incoming = new URL(req.url ?? '/', origin);
    const url = client.url(incoming.pathname, Object.fromEntries(incoming.searchParams));
    const headers: Record<string, string> = {};
    for (const name of FORWARD_REQUEST) {
      const v = req.headers[name];
      if (typeof v === 'string') headers[name] = v;
    }
    const method = req.method ?? 'GET';
    const signed = await client.authorize(method, url, headers, body.length ? body : undefined);
    const upstream = await fetch(url, {
      method,
      headers: signed,
      ...(body.length ? { body } : {}),
      redirect: 'manual',
    });
    const out: Record<string, string> = {};
    for (const name of FORWARD_RESPONSE) {
      const v = upstream.headers.get(name);
      if (v !== null) out[name] = v;
    }
    const bytes = Buffer.from(await upstream.arrayBuffer());
    res.writeHead(upstream.status, { ...out, 'content-length': String(bytes.length) });
    res.end(bytes);
  };

  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', origin);
    if (!hosts.has(req.headers.host ?? ''))
      return reply(res, 421, { error: `unexpected Host ${req.headers.host}` });
    if (req.method === 'GET' && isDashboardPath(url.pathname)) {
      const asset = assets.get(url.pathname);
      if (!asset) return reply(res, 404, { error: `no file ${url.pathname}`, code: 'not_found' });
      res.writeHead(200, {
        'content-type': asset.contentType,
        'cache-control': 'no-cache',
        'x-content-type-options': 'nosniff',
      });
      return res.end(asset.body);
    }
    if (!/^\/(models|v2)(\/|$)/.test(url.pathname))
      return reply(res, 404, { error: `no route ${url.pathname}`, code: 'not_found' });
    if (req.headers.origin !== undefined && !hosts.has(req.headers.origin.replace(/^http:\/\//, '')))
      return reply(res, 403, { error: 'cross-origin requests are not forwarded', code: 'forbidden' });
    if (req.headers['x-maas-ui'] !== '1')
      return reply(res, 403, { error: 'only the dashboard may use this forwarder', code: 'forbidden' });
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > maxBody) {
        reply(res, 413, { error: `request body is larger than ${maxBody} bytes`, code: 'too_large' });
        req.destroy();
      } else chunks.push(c);
    });
    req.on('end', () => {
      forward(req, res, Buffer.concat(chunks)).catch((e: unknown) => {
        const cause = (e as { cause?: { code?: string } }).cause?.code;
        reply(res, 502, {
          error: `cannot reach ${client.endpoint.origin}: ${cause ?? (e as Error).message}`,
          code: 'unavailable',
        });
      });
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', resolve);
  });
  const { port } = server.address() as AddressInfo;
  origin = `http://127.0.0.1:${port}`;
  hosts = new Set([`127.0.0.1:${port}`, `localhost:${port}`]);
  return {
    url: origin,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((e) => (e ? reject(e) : resolve()));
      }),
  };
}
