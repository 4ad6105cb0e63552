/**
 * Two-step registration for models too big for a request body, and their export.
 *
 * Step 1 ({@link createUploadTicket}) hands the caller somewhere to put the bytes:
 * - S3 store: a presigned S3 POST (policy: exact key, `content-length-range` up to the registry's
 *   size limit, expiry), so the bytes go straight to S3 and never through Lambda;
 * - file store (local): there is no S3 to presign. Under `npm start` the ticket names a `PUT` on
 *   the local upload server (`scripts/local-dev/upload-server.ts`, its own port, no API Gateway
 *   body limit) with a one-time token in the URL, the stand-in for a presigned URL
 *   ({@link writeLocalUploadStream}); without one, a `PUT` on the maas API itself
 *   ({@link writeLocalUpload}, bodies up to what the gateway takes). A ticket object records the
 *   expiry, the size limit and the token's digest.
 *
 * Step 2 ({@link registerFromUpload}) registers the uploaded object through the registry's normal
 * path and deletes it. Uploads that are never registered stay under `uploads/`: give that prefix a
 * bucket lifecycle rule (e.g. expire after 1 day).
 *
 * Knows nothing of Lambda or HTTP: the handlers adapt requests to these calls.
 */

import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import { type Readable, Transform } from 'node:stream';
import { createPresignedPost } from '@aws-sdk/s3-presigned-post';
import {
  ConflictError,
  InvalidArgumentError,
  MaasError,
  NotFoundError,
  PayloadTooLargeError,
} from '../errors';
import { ObjectNotFoundError, type ObjectStore, S3ObjectStore, type StoredObjectStream } from '../store';
import { createJson, createObject, readJson } from '../store/documents';
import { type DownloadLinkOptions, presignBlobGet } from './downloads';
import type { ModelRegistry } from './model-registry';
import { assertModelName } from './names';
import type { ModelVersion, RegisterOptions, RegisterResult } from './types';

/** Where uploads wait to be registered. */
export const UPLOADS_PREFIX = 'uploads/';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** What the caller needs to upload the bytes, then to register them. */
export interface UploadTicket {
  /** Pass this back as `uploadKey` when registering. */
  uploadKey: string;
  /** `POST`: multipart form to `url` with `fields` first, then the file as field `file` (S3). `PUT`: raw bytes to `url`. */
  method: 'POST' | 'PUT';
  /** Absolute for S3; for the local file store a path on the maas API (resolve it against the endpoint). */
  url: string;
  /** Form fields of a presigned POST, in order. */
  fields?: Record<string, string>;
  /** Headers the upload request must carry. */
  headers?: Record<string, string>;
  maxBytes: number;
  expiresAt: string;
}

export interface UploadTicketOptions {
  /** Largest upload accepted (default: the registry's model size limit). */
  maxBytes?: number;
  /** Seconds the ticket stays valid (default 900, at most 7 days as S3 allows). */
  expiresInSeconds?: number;
  /** Path of the local upload route for a ticket id (file store only). */
  localUploadPath?: (name: string, id: string) => string;
  /**
   * Base URL of the local upload server (file store only), e.g. `http://127.0.0.1:3003`: the
   * ticket then names a `PUT` there, with a token, instead of the API route.
   */
  localUploadUrl?: string;
  now?: () => Date;
}

interface LocalTicketDoc {
  name: string;
  id: string;
  maxBytes: number;
  expiresAt: string;
  /** sha256 of the URL token of an upload-server ticket (the token itself is never stored). */
  tokenSha256?: string;
}

const ticketDefaults = {
  expiresInSeconds: 900,
  localUploadPath: (name: string, id: string): string => `/models/${encodeURIComponent(name)}/uploads/${id}`,
  now: (): Date => new Date(),
};

/**
 * Store key of an upload.
 *
 * @example
 * ```ts
 * uploadKeyOf('iris', id); // 'uploads/iris/{id}.onnx'
 * ```
 */
export function uploadKeyOf(name: string, id: string): string {
  return `${UPLOADS_PREFIX}${name}/${id}.onnx`;
}

function ticketKeyOf(name: string, id: string): string {
  return `${UPLOADS_PREFIX}${name}/${id}.ticket.json`;
}

/**
 * Checks that `uploadKey` is an upload slot of model `name` (so one model's caller cannot
 * register, and then delete, arbitrary store keys) and returns its id.
 *
 * @example
 * ```ts
 * const id = parseUploadKey('iris', body.uploadKey); // throws InvalidArgumentError for keys outside uploads/iris/
 * ```
 */
export function parseUploadKey(name: string, uploadKey: unknown): string {
  assertModelName(name);
  const prefix = `${UPLOADS_PREFIX}${name}/`;
  const id =
    typeof uploadKey === 'string' && uploadKey.startsWith(prefix)
      ? uploadKey.slice(prefix.length).replace(/\.onnx$/, '')
      : '';
  if (!UUID.test(id) || uploadKey !== uploadKeyOf(name, id)) {
    throw new InvalidArgumentError(
      `uploadKey must be ${prefix}{uuid}.onnx as returned by POST /models/${name}/uploads`,
      { field: 'uploadKey' },
    );
  }
  return id;
}

/**
 * Issues an upload ticket for model `name`.
 *
 * @example
 * ```ts
 * const ticket = await createUploadTicket(store, registry, 'iris');
 * // S3: POST ticket.url with ticket.fields + file; local: PUT ticket.url with the bytes
 * await registerFromUpload(store, registry, 'iris', ticket.uploadKey, { description: 'big one' });
 * ```
 */
export async function createUploadTicket(
  store: ObjectStore,
  registry: ModelRegistry,
  name: string,
  options: UploadTicketOptions = {},
): Promise<UploadTicket> {
  assertModelName(name);
  const o = { ...ticketDefaults, ...options };
  const maxBytes = Math.min(o.maxBytes ?? registry.maxModelBytes, registry.maxModelBytes);
  if (!Number.isSafeInteger(o.expiresInSeconds) || o.expiresInSeconds < 1 || o.expiresInSeconds > 604_800) {
    throw new InvalidArgumentError('expiresInSeconds must be an integer from 1 to 604800');
  }
  const id = randomUUID();
  const uploadKey = uploadKeyOf(name, id);
  const expiresAt = new Date(o.now().getTime() + o.expiresInSeconds * 1000).toISOString();
  if (store instanceof S3ObjectStore) {
    const post = await createPresignedPost(store.client, {
      Bucket: store.bucket,
      Key: store.full(uploadKey),
      Conditions: [['content-length-range', 1, maxBytes]],
      Fields: { 'Content-Type': 'application/octet-stream' },
      Expires: o.expiresInSeconds,
    });
    return { uploadKey, method: 'POST', url: post.url, fields: post.fields, maxBytes, expiresAt };
  }
  const token = o.localUploadUrl ? newUploadToken() : undefined;
  const doc: LocalTicketDoc = {
    name,
    id,
    maxBytes,
    expiresAt,
    ...(token ? { tokenSha256: tokenDigest(token) } : {}),
  };
  // A fresh UUID: the create-only write cannot lose a race, it only guards against a bug.
  if (!(await createJson(store, ticketKeyOf(name, id), doc, { readExisting: false })).created)
    throw new ConflictError(`upload ticket ${id} already exists`);
  return {
    uploadKey,
    method: 'PUT',
    url:
      o.localUploadUrl && token
        ? `${o.localUploadUrl.replace(/\/+$/, '')}${localUploadServerPath(name, id)}?token=${token}`
        : o.localUploadPath(name, id),
    headers: { 'content-type': 'application/octet-stream' },
    maxBytes,
    expiresAt,
  };
}

/**
 * Path of a single-file upload on the local upload server (the token goes in the query).
 *
 * @example
 * ```ts
 * localUploadServerPath('iris', id); // '/uploads/iris/{id}'
 * ```
 */
export function localUploadServerPath(name: string, id: string): string {
  return `/uploads/${encodeURIComponent(name)}/${id}`;
}

/** A random URL token: the capability a presigned URL carries, for the local upload server. */
export function newUploadToken(): string {
  return randomBytes(24).toString('base64url');
}

/** What is stored of a token: its sha256, so a reader of the store cannot upload with it. */
export function tokenDigest(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

/**
 * Checks a presented token against a stored digest in constant time.
 *
 * @example
 * ```ts
 * if (!tokenMatches(doc.tokenSha256, url.searchParams.get('token'))) throw new NotFoundError('no such upload');
 * ```
 */
export function tokenMatches(digest: string | undefined, token: string | null | undefined): boolean {
  if (!digest || !token) return false;
  const a = Buffer.from(tokenDigest(token), 'hex');
  const b = Buffer.from(digest, 'hex');
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * Counts the bytes flowing through and fails the stream with {@link PayloadTooLargeError} as
 * soon as they exceed `maxBytes`, so an oversized upload stops without being stored whole.
 *
 * @example
 * ```ts
 * const limited = limitBytes(request, 1024); await store.put(key, limited);
 * ```
 */
export function limitBytes(body: Readable, maxBytes: number): Transform & { bytes: number } {
  let bytes = 0;
  const limiter = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      bytes += chunk.length;
      limiter.bytes = bytes;
      if (bytes > maxBytes)
        return done(
          new PayloadTooLargeError(`upload is larger than the limit of ${maxBytes} bytes`, {
            limit: maxBytes,
          }),
        );
      done(null, chunk);
    },
  }) as Transform & { bytes: number };
  limiter.bytes = 0;
  body.on('error', (e) => limiter.destroy(e));
  body.pipe(limiter);
  return limiter;
}

/**
 * Writes a stream under `key` through {@link limitBytes} (create-only unless `overwrite`, as an
 * S3 part upload replaces the part); a refusal of the limiter (or of the source) surfaces as
 * that error, not as the store's wrapping of it.
 *
 * @example
 * ```ts
 * const { size, created } = await putLimited(store, 'uploads/iris/x.onnx', request, ticket.maxBytes);
 * ```
 */
export async function putLimited(
  store: ObjectStore,
  key: string,
  body: Readable,
  maxBytes: number,
  options: { overwrite?: boolean } = {},
): Promise<{ size: number; created: boolean }> {
  const limited = limitBytes(body, maxBytes);
  try {
    if (options.overwrite) {
      await store.put(key, limited, { contentType: 'application/octet-stream' });
      return { size: limited.bytes, created: true };
    }
    const created = (await createObject(store, key, limited)) !== undefined;
    return { size: limited.bytes, created };
  } catch (e) {
    const cause = (e as { cause?: unknown }).cause;
    if (cause instanceof MaasError) throw cause;
    throw e;
  }
}

/**
 * The local stand-in for a presigned upload: stores `bytes` under the ticket's key, once, if the
 * ticket exists, has not expired and the size is within its limit.
 *
 * @example
 * ```ts
 * await writeLocalUpload(store, 'iris', ticketId, bytes); // then registerFromUpload(...)
 * ```
 */
export async function writeLocalUpload(
  store: ObjectStore,
  name: string,
  id: string,
  bytes: Uint8Array,
  now: () => Date = () => new Date(),
): Promise<{ uploadKey: string; size: number }> {
  const uploadKey = uploadKeyOf(name, id);
  parseUploadKey(name, uploadKey);
  const ticket = (await readJson<LocalTicketDoc>(store, ticketKeyOf(name, id)))?.doc;
  if (!ticket) throw new NotFoundError(`no upload ticket ${id} for model ${name}`, { name, id });
  if (Date.parse(ticket.expiresAt) < now().getTime())
    throw new NotFoundError(`upload ticket ${id} expired at ${ticket.expiresAt}`, { name, id });
  if (bytes.byteLength === 0) throw new InvalidArgumentError('upload body is empty');
  if (bytes.byteLength > ticket.maxBytes) {
    throw new PayloadTooLargeError(`upload is larger than the limit of ${ticket.maxBytes} bytes`, {
      limit: ticket.maxBytes,
    });
  }
  if (!(await createObject(store, uploadKey, bytes)))
    throw new ConflictError(`upload ${id} was already written; request a new ticket`);
  return { uploadKey, size: bytes.byteLength };
}

/** Options of {@link writeLocalUploadStream}. */
export interface LocalUploadStreamOptions {
  /** The `token` of the ticket URL. */
  token?: string | null;
  /** The request's `content-length`, when sent: checked against the limit before reading. */
  contentLength?: number;
  now?: () => Date;
}

/**
 * What the local upload server does with a `PUT` of a ticket: checks the token, expiry and size
 * limit, then streams the body into the store under the ticket's key, once (bounded memory,
 * any size up to the limit). Nothing is stored when the body turns out too large.
 *
 * @example
 * ```ts
 * await writeLocalUploadStream(store, 'iris', id, request, { token: url.searchParams.get('token') });
 * ```
 */
export async function writeLocalUploadStream(
  store: ObjectStore,
  name: string,
  id: string,
  body: Readable,
  options: LocalUploadStreamOptions = {},
): Promise<{ uploadKey: string; size: number }> {
  assertModelName(name);
  const uploadKey = uploadKeyOf(name, id);
  parseUploadKey(name, uploadKey);
  const ticket = (await readJson<LocalTicketDoc>(store, ticketKeyOf(name, id)))?.doc;
  // A wrong token answers like a missing ticket: it tells a guesser nothing.
  if (!ticket || !tokenMatches(ticket.tokenSha256, options.token))
    throw new NotFoundError(`no upload ticket ${id} for model ${name}`, { name, id });
  if (Date.parse(ticket.expiresAt) < (options.now ?? (() => new Date()))().getTime())
    throw new NotFoundError(`upload ticket ${id} expired at ${ticket.expiresAt}`, { name, id });
  if (options.contentLength !== undefined && options.contentLength > ticket.maxBytes)
    throw new PayloadTooLargeError(`upload is larger than the limit of ${ticket.maxBytes} bytes`, {
      limit: ticket.maxBytes,
    });
  if (options.contentLength === 0) throw new InvalidArgumentError('upload body is empty');
  const { size, created } = await putLimited(store, uploadKey, body, ticket.maxBytes);
  if (!created) throw new ConflictError(`upload ${id} was already written; request a new ticket`);
  if (size === 0) {
    await store.delete(uploadKey);
    throw new InvalidArgumentError('upload body is empty');
  }
  return { uploadKey, size };
}

/**
 * Registers the bytes of an upload as the model's next version (or returns the version that
 * already holds them), then deletes the upload. The size limit is checked before reading.
 *
 * @example
 * ```ts
 * const { version, created } = await registerFromUpload(store, registry, 'iris', body.uploadKey, { actor, alias: 'staging' });
 * ```
 */
export async function registerFromUpload(
  store: ObjectStore,
  registry: ModelRegistry,
  name: string,
  uploadKey: string,
  options: RegisterOptions = {},
): Promise<RegisterResult> {
  const id = parseUploadKey(name, uploadKey);
  // One request: the stream's announced size is checked before any byte is read (no HEAD first).
  let found: StoredObjectStream;
  try {
    found = await store.getStream(uploadKey);
  } catch (e) {
    if (e instanceof ObjectNotFoundError)
      throw new NotFoundError(`nothing was uploaded to ${uploadKey} (or it was already registered)`, {
        uploadKey,
      });
    throw e;
  }
  const { body, size } = found;
  if (size > registry.maxModelBytes) {
    body.destroy();
    throw new PayloadTooLargeError(`model is larger than the limit of ${registry.maxModelBytes} bytes`, {
      limit: registry.maxModelBytes,
      size,
    });
  }
  const result = await registry.registerVersion(name, body, { source: 'upload', ...options });
  await Promise.all([store.delete(uploadKey), store.delete(ticketKeyOf(name, id))]);
  return result;
}

/**
 * A presigned GET for a version's bytes (on the file store, a link to the local upload server
 * when `options.local` is given), or `undefined` when the store cannot presign.
 * Check the blob first ({@link ModelRegistry.verifyModel}): the link hands out whatever is stored.
 *
 * @example
 * ```ts
 * const link = await createDownloadLink(store, version, { expiresInSeconds: 300 });
 * if (link) redirect(link.url);
 * ```
 */
export async function createDownloadLink(
  store: ObjectStore,
  version: ModelVersion,
  options: DownloadLinkOptions = {},
): Promise<{ url: string; expiresAt: string } | undefined> {
  return presignBlobGet(
    store,
    version.blobKey,
    downloadFileName(version),
    options.expiresInSeconds ?? 300,
    options,
  );
}

/**
 * `name-v3.onnx`: model names are already safe in a header and a file name.
 *
 * @example
 * ```ts
 * downloadFileName({ name: 'iris', version: 3 }); // 'iris-v3.onnx'
 * ```
 */
export function downloadFileName(version: Pick<ModelVersion, 'name' | 'version'>): string {
  return `${version.name}-v${version.version}.onnx`;
}
