/**
 * The local stand-in for S3's presigned uploads under `npm start`: a small HTTP server on its own
 * port (`MAAS_UPLOAD_PORT`, default any free one, same host as the API) that streams `PUT` bodies into
 * the file store. serverless-offline's emulated API Gateway buffers request bodies and refuses
 * those over 10 MB; this server takes any size the ticket allows, with bounded memory.
 *
 * Every URL it serves was handed out by the register-version function (an upload ticket or an
 * upload session's part) and carries a random token whose digest the ticket records: like a
 * presigned URL, the URL itself is the permission, so the API key is not needed here.
 *
 * It also serves the file store's download links (`GET /downloads/…`, signed by the catalog with
 * `MAAS_LOCAL_LINK_SECRET`, shared/registry/local-links.ts): model bytes stream from disk to the
 * client as from a presigned S3 GET, whatever their size.
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { pipeline } from 'node:stream/promises';
import { NotFoundError } from '../../shared/errors';
import { errorToHttp } from '../../shared/http/errors';
import { isLocalDownloadPath, verifyLocalDownload } from '../../shared/registry/local-links';
import { writeLocalSessionPart } from '../../shared/registry/upload-sessions';
import { writeLocalUploadStream } from '../../shared/registry/uploads';
import { createObjectStore, type ObjectStore } from '../../shared/store';

/** Options of {@link startUploadServer}. */
export interface UploadServerOptions {
  storeUrl: string;
  host: string;
  /** 0: any free port. */
  port: number;
  /** Secret of the download links (`MAAS_LOCAL_LINK_SECRET`); without it no GET is served. */
  linkSecret?: string;
  log?: (line: string) => void;
}

/** A running upload server. */
export interface UploadServer {
  /** `http://host:port`, what tickets name (`MAAS_LOCAL_UPLOAD_URL`). */
  url: string;
  port: number;
  close(): Promise<void>;
}

/** One upload route: the path pattern and what to do with a matching `PUT`. */
type UploadRoute = {
  pattern: RegExp;
  write: (
    store: ObjectStore,
    match: RegExpExecArray,
    request: http.IncomingMessage,
    url: URL,
  ) => Promise<unknown>;
};

const contentLength = (request: http.IncomingMessage): number | undefined => {
  const raw = request.headers['content-length'];
  return raw !== undefined && /^\d+$/.test(raw) ? Number(raw) : undefined;
};

const ROUTES: UploadRoute[] = [
  {
    // A single-file upload ticket (POST /models/{name}/uploads).
    pattern: /^\/uploads\/([^/]+)\/([^/]+)$/,
    write: (store, m, request, url) => {
      const length = contentLength(request);
      return writeLocalUploadStream(store, decodeURIComponent(m[1]!), m[2]!, request, {
        token: url.searchParams.get('token'),
        ...(length !== undefined ? { contentLength: length } : {}),
      });
    },
  },
  {
    // A part of an upload session (POST /models/{name}/upload-sessions): file index, part number.
    pattern: /^\/upload-sessions\/([^/]+)\/([^/]+)\/(\d{1,4})\/(\d{1,5})$/,
    write: (store, m, request, url) => {
      const length = contentLength(request);
      return writeLocalSessionPart(
        store,
        decodeURIComponent(m[1]!),
        m[2]!,
        Number(m[3]),
        Number(m[4]),
        request,
        { token: url.searchParams.get('token'), ...(length !== undefined ? { contentLength: length } : {}) },
      );
    },
  },
];

/**
 * Starts the upload server; `close()` stops it (connections in flight are cut).
 *
 * @example
 * ```ts
 * const server = await startUploadServer({ storeUrl: 'file:///app/.maas', host: '127.0.0.1', port: 0 });
 * process.env.MAAS_LOCAL_UPLOAD_URL = server.url;
 * ```
 */
export async function startUploadServer(options: UploadServerOptions): Promise<UploadServer> {
  const store = createObjectStore(options.storeUrl);
  const server = http.createServer((request, response) => {
    if (request.method === 'GET' && isLocalDownloadPath(new URL(request.url ?? '/', 'http://x').pathname))
      void serveDownload(store, options.linkSecret, request, response, options.log);
    else void handle(store, request, response, options.log);
  });
  // Uploads of gigabytes take minutes: no request timeout, only the idle one between bytes.
  server.requestTimeout = 0;
  server.headersTimeout = 60_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => resolve());
  });
  // serverless-offline keeps `npm start` alive; if its start fails, this server must not.
  server.unref();
  const { port } = server.address() as AddressInfo;
  const connectHost = options.host === '0.0.0.0' || options.host === '::' ? '127.0.0.1' : options.host;
  return {
    url: `http://${connectHost.includes(':') ? `[${connectHost}]` : connectHost}:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

async function handle(
  store: ObjectStore,
  request: http.IncomingMessage,
  response: http.ServerResponse,
  log?: (line: string) => void,
): Promise<void> {
  const url = new URL(request.url ?? '/', 'http://upload.local');
  const route = ROUTES.map((r) => ({ r, m: r.pattern.exec(url.pathname) })).find((x) => x.m);
  let status = 200;
  let body: unknown;
  if (!route) {
    status = 404;
    body = { error: `no upload at ${url.pathname}`, code: 'not_found' };
  } else if (request.method !== 'PUT') {
    status = 405;
    body = { error: `use PUT to upload, not ${request.method}`, code: 'method_not_allowed' };
  } else {
    try {
      body = await route.r.write(store, route.m!, request, url);
    } catch (e) {
      const mapped = errorToHttp(e);
      status = mapped.status;
      body = mapped.body;
      if (status >= 500) log?.(`maas: upload ${url.pathname} failed: ${(e as Error).message}`);
    }
  }
  const text = JSON.stringify(body);
  // A refused body was not read to its end: close the connection rather than drain gigabytes.
  const unread = !request.readableEnded;
  response.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    ...(unread ? { connection: 'close' } : {}),
  });
  response.end(text, () => {
    if (unread) request.destroy();
  });
}

/** Streams one linked blob from the store (404 for a bad or expired link, or a missing blob). */
async function serveDownload(
  store: ObjectStore,
  secret: string | undefined,
  request: http.IncomingMessage,
  response: http.ServerResponse,
  log?: (line: string) => void,
): Promise<void> {
  try {
    if (!secret) throw new NotFoundError('download links are not enabled (no MAAS_LOCAL_LINK_SECRET)');
    const { blobKey, fileName } = verifyLocalDownload(secret, new URL(request.url ?? '/', 'http://x'));
    const { body, size } = await store.getStream(blobKey);
    response.writeHead(200, {
      'content-type': 'application/octet-stream',
      'content-length': size,
      'content-disposition': `attachment; filename="${fileName.replace(/["\\]/g, '_')}"`,
    });
    await pipeline(body, response);
  } catch (e) {
    if (response.headersSent) {
      response.destroy(); // mid-body: the client sees a cut transfer, never a short "complete" one
      return;
    }
    const mapped = errorToHttp(e);
    if (mapped.status >= 500) log?.(`maas: download failed: ${(e as Error).message}`);
    const text = JSON.stringify(mapped.body);
    response.writeHead(mapped.status, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(text),
    });
    response.end(text);
  }
}
