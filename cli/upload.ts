import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import type { ModelVersion } from '../shared/registry';
import type { UploadSession } from '../shared/registry/upload-sessions';
import type { UploadTicket } from '../shared/registry/uploads';
import type { MaasClient } from './client';
import { ApiError } from './client';
import type { ProgressBar } from './progress';

/**
 * Sends a file to where an upload ticket says, streaming it from disk (no buffering) and
 * reporting progress: a multipart form POST for presigned S3 uploads, a raw PUT to the local
 * upload server (`npm start`) or to the local API's upload route (which carries the API's auth).
 *
 * @example
 * ```ts
 * const ticket = (await client.request('POST', '/models/iris/uploads')).json<UploadTicket>();
 * await uploadFile(client, ticket, './big.onnx', size, new ProgressBar('uploading', size));
 * ```
 */
export async function uploadFile(
  client: MaasClient,
  ticket: UploadTicket,
  file: string,
  size: number,
  progress?: ProgressBar,
): Promise<void> {
  if (ticket.method === 'POST') {
    const boundary = `----maas${randomBytes(12).toString('hex')}`;
    const head = Buffer.from(
      Object.entries(ticket.fields ?? {})
        .map(([k, v]) => `--${boundary}\r\nContent-Disposition: form-data; name="${k}"\r\n\r\n${v}\r\n`)
        .join('') +
        `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="model.onnx"\r\nContent-Type: application/octet-stream\r\n\r\n`,
    );
    const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
    await send(
      new URL(ticket.url),
      'POST',
      { 'content-type': `multipart/form-data; boundary=${boundary}` },
      head,
      file,
      size,
      tail,
      progress,
    );
    return;
  }
  // An absolute URL is the local upload server's: the token in it is the permission, like a
  // presigned URL (no API credentials sent there). A path is the API's own upload route: same
  // auth; the body is not signed (streamed), so SigV4 stages use presigned S3 POSTs instead.
  const absolute = /^https?:\/\//.test(ticket.url);
  const url = absolute ? new URL(ticket.url) : client.url(ticket.url);
  const headers = absolute
    ? { ...ticket.headers }
    : await client.authorize('PUT', url, { ...ticket.headers });
  await send(url, 'PUT', headers, Buffer.alloc(0), file, size, Buffer.alloc(0), progress);
}

function send(
  url: URL,
  method: string,
  headers: Record<string, string>,
  head: Buffer,
  file: string,
  size: number,
  tail: Buffer,
  progress?: ProgressBar,
): Promise<void> {
  const transport = url.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = transport.request(
      url,
      { method, headers: { ...headers, 'content-length': String(head.length + size + tail.length) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const status = res.statusCode ?? 0;
          if (status < 300) return resolve();
          const body = errorBody(Buffer.concat(chunks).toString('utf8'));
          reject(new ApiError(status, body));
        });
      },
    );
    req.on('error', reject);
    req.write(head);
    const stream = createReadStream(file);
    stream.on('data', (chunk) => progress?.tick(chunk.length));
    stream.on('error', (e) => req.destroy(e));
    stream.on('end', () => req.end(tail));
    stream.pipe(req, { end: false });
  });
}

/** Options of {@link uploadSession}. */
export interface SessionUploadOptions {
  /** Parts in flight at once (default 4). */
  parallel?: number;
  /** Attempts per part (default 5): network errors, 5xx, 408 and 429 are retried with backoff. */
  attempts?: number;
  /** Part size to ask the server for (default: the server's). */
  partBytes?: number;
  /** Fields of the final commit (`description`, `alias`, `tags`, …). */
  meta?: Record<string, unknown>;
  progress?: ProgressBar;
  /** Called before each retry of a part (for a log line). */
  onRetry?: (file: string, part: number, attempt: number, error: Error) => void;
  /** How long the final commit is retried on transient failures (default 30 min). */
  commitTimeoutMs?: number;
  /** Backoff before retry n (ms); default 250·2ⁿ⁻¹ up to 8 s. */
  backoffMs?: (attempt: number) => number;
}

const transient = (e: unknown): boolean =>
  !(e instanceof ApiError) || e.status >= 500 || e.status === 408 || e.status === 429;

/**
 * Uploads a bundle through an upload session: opens it with the file list, `PUT`s every part
 * (from disk, `parallel` at a time, each retried on transient failures), then commits it, which
 * registers the version. Any failure that is not retried away aborts the session, so nothing is
 * left in the store; the commit itself is retried (it is idempotent on the server, and a
 * concurrent one answers 503 until the first is done).
 *
 * @example
 * ```ts
 * const { created, version } = await uploadSession(client, 'llm', files, { parallel: 4, progress: bar });
 * ```
 */
export async function uploadSession(
  client: MaasClient,
  name: string,
  files: readonly { name: string; path: string; size: number }[],
  options: SessionUploadOptions = {},
): Promise<{ created: boolean; version: ModelVersion }> {
  const base = `/models/${encodeURIComponent(name)}/upload-sessions`;
  const session = (
    await client.request('POST', base, {
      json: {
        files: files.map((f) => ({ name: f.name, size: f.size })),
        ...(options.partBytes ? { partBytes: options.partBytes } : {}),
      },
    })
  ).json<UploadSession>();
  const byName = new Map(files.map((f) => [f.name, f]));
  const jobs = session.files.flatMap((f) => f.parts.map((part) => ({ file: byName.get(f.name)!, part })));
  const attempts = options.attempts ?? 5;
  const backoff = options.backoffMs ?? ((n: number) => Math.min(250 * 2 ** (n - 1), 8000));
  const agents = keepAliveAgents();
  const agentOf = agents.of;
  try {
    await settledPool(jobs, options.parallel ?? 4, async ({ file, part }) => {
      for (let attempt = 1; ; attempt++) {
        let sent = 0;
        try {
          await sendRange(new URL(part.url), file.path, part.offset, part.size, agentOf, (n) => {
            sent += n;
            options.progress?.tick(n);
          });
          return;
        } catch (e) {
          options.progress?.tick(-sent);
          if (attempt >= attempts || !transient(e)) throw e;
          options.onRetry?.(file.name, part.partNumber, attempt, e as Error);
          await new Promise((r) => setTimeout(r, backoff(attempt)));
        }
      }
    });
  } catch (e) {
    await client.request('DELETE', `${base}/${session.sessionId}`).catch(() => undefined);
    throw e;
  } finally {
    agents.destroy();
  }
  // The commit registers the bundle, which takes minutes for big ones: a gateway timeout or a
  // 503 (another request is completing it) is retried until it answers, for up to `commitTimeoutMs`.
  const deadline = Date.now() + (options.commitTimeoutMs ?? 30 * 60 * 1000);
  for (let attempt = 1; ; attempt++) {
    try {
      return (
        await client.request('POST', `${base}/${session.sessionId}/complete`, { json: options.meta ?? {} })
      ).json<{ created: boolean; version: ModelVersion }>();
    } catch (e) {
      // A refusal (4xx) already cleaned the session up on the server.
      if (!transient(e) || Date.now() >= deadline) throw e;
      await new Promise((r) => setTimeout(r, backoff(attempt)));
    }
  }
}

/** One keep-alive agent per protocol: parts reuse connections. */
function keepAliveAgents(): { of: (url: URL) => http.Agent; destroy: () => void } {
  const plain = new http.Agent({ keepAlive: true });
  const tls = new https.Agent({ keepAlive: true });
  return {
    of: (url) => (url.protocol === 'https:' ? tls : plain),
    destroy: () => {
      plain.destroy();
      tls.destroy();
    },
  };
}

/**
 * Runs `fn` over `items`, `limit` at a time; after the first failure no new item starts, and it
 * rejects with that failure only once the calls in flight have settled (so an abort that
 * follows does not race parts still being written).
 */
async function settledPool<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  let failure: { error: unknown } | undefined;
  const worker = async (): Promise<void> => {
    while (!failure && next < items.length) {
      const item = items[next++] as T;
      try {
        await fn(item);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  if (failure) throw failure.error;
}

/** `PUT`s bytes `[offset, offset + size)` of a file, streaming from disk. */
function sendRange(
  url: URL,
  file: string,
  offset: number,
  size: number,
  agentOf: (url: URL) => http.Agent,
  onBytes: (n: number) => void,
): Promise<void> {
  const transport = url.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = transport.request(
      url,
      { method: 'PUT', agent: agentOf(url), headers: { 'content-length': String(size) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const status = res.statusCode ?? 0;
          if (status < 300) return resolve();
          reject(new ApiError(status, errorBody(Buffer.concat(chunks).toString('utf8'))));
        });
      },
    );
    req.on('error', reject);
    const stream = size > 0 ? createReadStream(file, { start: offset, end: offset + size - 1 }) : undefined;
    if (!stream) return req.end();
    stream.on('data', (chunk) => onBytes(chunk.length));
    stream.on('error', (e) => req.destroy(e));
    stream.pipe(req);
  });
}

/** The maas error body, or S3's XML error as one. */
function errorBody(text: string): ApiError['body'] {
  try {
    return JSON.parse(text) as ApiError['body'];
  } catch {
    const code = /<Code>([^<]*)<\/Code>/.exec(text)?.[1];
    const message = /<Message>([^<]*)<\/Message>/.exec(text)?.[1];
    return {
      error: `upload refused: ${[code, message].filter(Boolean).join(': ') || text.slice(0, 300)}`,
      ...(code ? { code } : {}),
    };
  }
}
