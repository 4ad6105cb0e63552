/**
 * Registration by dropping a file into the store: `incoming/{name}/{anything}.onnx`, or a bundle
 * as one archive `incoming/{name}/{anything}.tar` (see incoming-tar.ts).
 *
 * {@link ingestIncomingObject} is the one code path for it, called by the S3 ObjectCreated
 * trigger on AWS and by the local file watcher alike. It registers through
 * {@link ModelRegistry.registerVersion} (same validation, dedupe and history as the API), then:
 * - success: deletes the incoming object;
 * - validation failure (a 4xx kind: not ONNX, too large, bad name or metadata): moves the object to
 *   `rejected/{same path}` with `rejected/{same path}.error.json` beside it saying why, and
 *   registers nothing;
 * - transient failure: throws, leaving the object in place, so the event is retried.
 *
 * It is idempotent under at-least-once delivery: a repeated event for bytes already registered
 * yields the existing version (registry dedupe), and one for an object already handled finds it
 * gone and reports `missing`.
 *
 * Optional S3 user metadata on the object: `description`, `alias` (pointed at the new version),
 * `reason` (`x-amz-meta-description` etc. on upload).
 */
import { httpStatusOf, MaasError, PayloadTooLargeError } from '../errors';
import { type ErrorBody, errorToHttp } from '../http/errors';
import { ObjectNotFoundError, type ObjectStore, S3ObjectStore, type StoredObjectStream } from '../store';
import { registerIncoming } from './incoming-tar';
import type { ModelRegistry } from './model-registry';
import { assertModelName } from './names';

export const INCOMING_PREFIX = 'incoming/';
export const REJECTED_PREFIX = 'rejected/';

export type IngestOutcome =
  | { status: 'registered' | 'duplicate'; key: string; name: string; version: number }
  | { status: 'rejected'; key: string; rejectedKey: string; errorKey: string; error: ErrorBody }
  | { status: 'ignored' | 'missing'; key: string; reason: string };

export interface IngestOptions {
  /** Recorded as the version's source; default `{store.location}{key}` (e.g. `s3://bucket/prefix/incoming/…`). */
  source?: string;
  /** Recorded in history (default `s3-upload`). */
  actor?: string;
  now?: () => Date;
}

/** What `{key}.error.json` holds. */
export interface RejectionRecord {
  key: string;
  rejectedKey: string;
  time: string;
  error: ErrorBody;
}

/**
 * Encodes a key the way S3 event notifications do (form-URL-encoding: space → `+`); the
 * inverse of {@link decodeS3EventKey}, for whatever stands in for S3 locally.
 *
 * @example
 * ```ts
 * encodeS3EventKey('incoming/iris/my model.onnx'); // 'incoming/iris/my+model.onnx'
 * ```
 */
export function encodeS3EventKey(key: string): string {
  return encodeURIComponent(key).replace(/%2F/g, '/').replace(/%20/g, '+');
}

/**
 * Decodes an object key as S3 event notifications encode it: form-URL-encoding, where `+` is a
 * space and everything else non-ASCII or reserved is percent-encoded UTF-8.
 *
 * @example
 * ```ts
 * decodeS3EventKey('incoming/iris/my+model%C3%A9.onnx'); // 'incoming/iris/my modelé.onnx'
 * ```
 */
export function decodeS3EventKey(encoded: string): string {
  try {
    return decodeURIComponent(encoded.replace(/\+/g, ' '));
  } catch {
    throw new MaasError(
      'invalid_argument',
      `S3 event key is not valid percent-encoding: ${JSON.stringify(encoded)}`,
    );
  }
}

/**
 * Maps a bucket key from an S3 event to the store's own key space (the store may live under a
 * prefix). `undefined` when the event is about another bucket or outside the store's prefix.
 *
 * @example
 * ```ts
 * storeKeyOfBucketKey(store, record.s3.bucket.name, decodeS3EventKey(record.s3.object.key));
 * ```
 */
export function storeKeyOfBucketKey(
  store: ObjectStore,
  bucket: string,
  bucketKey: string,
): string | undefined {
  if (!(store instanceof S3ObjectStore)) return bucketKey;
  if (bucket !== store.bucket || !bucketKey.startsWith(store.prefix)) return undefined;
  return bucketKey.slice(store.prefix.length);
}

/**
 * Registers the object at `key` (a store key under `incoming/`), see the module comment.
 *
 * @example
 * ```ts
 * const outcome = await ingestIncomingObject(store, registry, 'incoming/iris/v2.onnx');
 * if (outcome.status === 'rejected') console.warn(outcome.error.error);
 * ```
 */
export async function ingestIncomingObject(
  store: ObjectStore,
  registry: ModelRegistry,
  key: string,
  options: IngestOptions = {},
): Promise<IngestOutcome> {
  if (!key.startsWith(INCOMING_PREFIX))
    return { status: 'ignored', key, reason: `not under ${INCOMING_PREFIX}` };
  if (key.endsWith('/')) return { status: 'ignored', key, reason: 'folder marker, not a file' };
  const rest = key.slice(INCOMING_PREFIX.length);
  const slash = rest.indexOf('/');
  const name = slash > 0 ? rest.slice(0, slash) : '';
  const now = options.now ?? (() => new Date());
  try {
    if (!name)
      throw new MaasError('invalid_argument', `expected ${INCOMING_PREFIX}{model-name}/{file}, got ${key}`);
    assertModelName(name);
    const found = await store.getStream(key);
    if (found.size > registry.maxModelBytes) {
      // Refuse from the object's size alone: reading up to the limit first would only waste time.
      found.body.destroy();
      throw new PayloadTooLargeError(
        `model is ${found.size} bytes, above the limit of ${registry.maxModelBytes} bytes`,
        { limit: registry.maxModelBytes, size: found.size },
      );
    }
    const meta = found.metadata;
    // `.tar`: a bundle in one archive (incoming-tar.ts); anything else: one ONNX file.
    const result = await registerIncoming(registry, key, name, found.body, {
      source: options.source ?? `${store.location.replace(/\/?$/, '/')}${key}`,
      actor: options.actor ?? 's3-upload',
      ...(meta.description !== undefined ? { description: meta.description } : {}),
      ...(meta.alias !== undefined ? { alias: meta.alias } : {}),
      ...(meta.reason !== undefined ? { reason: meta.reason } : {}),
    });
    await store.delete(key);
    return {
      status: result.created ? 'registered' : 'duplicate',
      key,
      name,
      version: result.version.version,
    };
  } catch (e) {
    if (e instanceof ObjectNotFoundError && e.key === key) {
      return { status: 'missing', key, reason: 'object no longer exists (already handled, or deleted)' };
    }
    // Only the caller's fault is final; store outages and bugs must be retried, not quarantined.
    const status = httpStatusOf(e);
    if (!(e instanceof MaasError) || status >= 500) throw e;
    return quarantine(store, key, errorToHttp(e).body, now);
  }
}

/** Moves the object to `rejected/…` and writes why beside it; the incoming object goes last. */
async function quarantine(
  store: ObjectStore,
  key: string,
  error: ErrorBody,
  now: () => Date,
): Promise<IngestOutcome> {
  const rejectedKey = REJECTED_PREFIX + key.slice(INCOMING_PREFIX.length);
  const errorKey = `${rejectedKey}.error.json`;
  let copy: StoredObjectStream;
  try {
    copy = await store.getStream(key);
  } catch (e) {
    if (e instanceof ObjectNotFoundError)
      return { status: 'missing', key, reason: 'object no longer exists (already handled, or deleted)' };
    throw e;
  }
  await store.put(rejectedKey, copy.body, { contentType: copy.contentType ?? 'application/octet-stream' });
  const record: RejectionRecord = { key, rejectedKey, time: now().toISOString(), error };
  await store.put(errorKey, JSON.stringify(record, null, 2), { contentType: 'application/json' });
  await store.delete(key);
  return { status: 'rejected', key, rejectedKey, errorKey, error };
}
