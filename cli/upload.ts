import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
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
          const text = Buffer.concat(chunks).toString('utf8');
          let body: ApiError['body'];
          try {
            body = JSON.parse(text) as ApiError['body'];
          } catch {
            // S3 answers in XML: keep its code and message.
            const code = /<Code>([^<]*)<\/Code>/.exec(text)?.[1];
            const message = /<Message>([^<]*)<\/Message>/.exec(text)?.[1];
            body = {
              error: `upload refused: ${[code, message].filter(Boolean).join(': ') || text.slice(0, 300)}`,
              ...(code ? { code } : {}),
            };
          }
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
