/**
 * Registration by dropping a file into the store: `incoming/{name}/{anything}.onnx`, or a bundle
 * as one archive `incoming/{name}/{anything}.tar` (see incoming-tar.ts).
 *
 * {@link ingestIncomingObject} is the one code path for it, called by the S3 ObjectCreated
 * trigger on AWS and by the local file watcher alike. It registers through
 * {@link ModelRegistry.registerVersion} (same validation, dedupe and history as the API), then:
 * - success: deletes the incoming object — exactly the object it registered: by the version id
 *   (versioned buckets) or under the condition that the key still holds the etag it read, so a
 *   re-upload under the same key while it was being processed stays for its own event;
 * - validation failure (a 4xx kind: not ONNX, too large, bad name or metadata): moves the object to
 *   `rejected/{same path}` with `rejected/{same path}.error.json` beside it saying why, and
 *   registers nothing;
 * - transient failure: throws, leaving the object in place, so the event is retried.
 *
 * It is idempotent under at-least-once delivery: a repeated event for bytes already registered
 * yields the existing version (registry dedupe), and one for an object already handled finds it
 * gone and reports `missing`. An event whose object was replaced before it could be read (its
 * etag no longer matches) reports `superseded`: the newer object's own event registers that one.
 * A key the store cannot address (e.g. an empty or `..` segment, which S3 allows) cannot be read
 * or moved: its reason alone is written under `rejected/_keys/` and the object is left to the
 * `incoming/` lifecycle rule, rather than failing the event forever.
 *
 * Optional S3 user metadata on the object: `description`, `alias` (pointed at the new version),
 * `reason` (`x-amz-meta-description` etc. on upload).
 */

import { createHash } from 'node:crypto';
import { httpStatusOf, MaasError, PayloadTooLargeError } from '../errors';
import { type ErrorBody, errorToHttp } from '../http/errors';
import {
  assertValidKey,
  ObjectNotFoundError,
  ObjectPreconditionError,
  type ObjectStore,
  type ReadOptions,
  S3ObjectStore,
  type StoredObjectStream,
} from '../store';
import { registerIncoming } from './incoming-tar';
import type { ModelRegistry } from './model-registry';
import { assertModelName } from './names';

export const INCOMING_PREFIX = 'incoming/';
export const REJECTED_PREFIX = 'rejected/';

/** Where reasons go for keys that cannot be copied under `rejected/` with the same path. */
export const UNADDRESSABLE_PREFIX = `${REJECTED_PREFIX}_keys/`;

export type IngestOutcome =
  | {
      status: 'registered' | 'duplicate';
      key: string;
      name: string;
      version: number;
      /** Set when the key was uploaded again while this object was processed: the newer one stays. */
      replacedDuringProcessing?: true;
    }
  | {
      status: 'rejected';
      key: string;
      /** Absent when the key cannot be addressed: the object then stays in `incoming/` until it expires. */
      rejectedKey?: string;
      errorKey: string;
      error: ErrorBody;
    }
  | { status: 'ignored' | 'missing' | 'superseded'; key: string; reason: string };

export interface IngestOptions {
  /** Recorded as the version's source; default `{store.location}{key}` (e.g. `s3://bucket/prefix/incoming/…`). */
  source?: string;
  /** Recorded in history (default `s3-upload`). */
  actor?: string;
  /** The event's etag (S3 `object.eTag`): only that object is registered and deleted. */
  etag?: string;
  /** The event's version id (S3 `object.versionId`, versioned buckets): preferred over `etag`. */
  versionId?: string;
  now?: () => Date;
}

/** What `{key}.error.json` holds. */
export interface RejectionRecord {
  key: string;
  /** Absent for keys that cannot be addressed (see {@link UNADDRESSABLE_PREFIX}). */
  rejectedKey?: string;
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
    assertValidKey(key);
  } catch (e) {
    return recordUnaddressable(store, key, (e as Error).message, now);
  }
  // Which object this event is about; once read, pinned to what was actually read.
  let target: ReadOptions =
    options.versionId !== undefined
      ? { versionId: options.versionId }
      : options.etag !== undefined
        ? { ifMatch: options.etag }
        : {};
  try {
    if (!name)
      throw new MaasError('invalid_argument', `expected ${INCOMING_PREFIX}{model-name}/{file}, got ${key}`);
    assertModelName(name);
    const found = await store.getStream(key, target);
    target = found.versionId !== undefined ? { versionId: found.versionId } : { ifMatch: found.etag };
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
    const deleted = await deleteExactly(store, key, target);
    return {
      status: result.created ? 'registered' : 'duplicate',
      key,
      name,
      version: result.version.version,
      ...(deleted ? {} : { replacedDuringProcessing: true as const }),
    };
  } catch (e) {
    if (e instanceof ObjectNotFoundError && e.key === key) return missing(key);
    if (e instanceof ObjectPreconditionError && e.key === key) return superseded(key);
    // Only the caller's fault is final; store outages and bugs must be retried, not quarantined.
    const status = httpStatusOf(e);
    if (!(e instanceof MaasError) || status >= 500) throw e;
    return quarantine(store, key, target, errorToHttp(e).body, now);
  }
}

const missing = (key: string): IngestOutcome => ({
  status: 'missing',
  key,
  reason: 'object no longer exists (already handled, or deleted)',
});

const superseded = (key: string): IngestOutcome => ({
  status: 'superseded',
  key,
  reason: "the key holds a newer object than the event's; that object's own event registers it",
});

/** Deletes the object `target` names; false when the key was replaced meanwhile (the newer object stays). */
async function deleteExactly(store: ObjectStore, key: string, target: ReadOptions): Promise<boolean> {
  try {
    await store.delete(key, target);
    return true;
  } catch (e) {
    if (e instanceof ObjectPreconditionError) return false;
    throw e;
  }
}

/** Moves the object to `rejected/…` and writes why beside it; the incoming object goes last. */
async function quarantine(
  store: ObjectStore,
  key: string,
  target: ReadOptions,
  error: ErrorBody,
  now: () => Date,
): Promise<IngestOutcome> {
  const rejectedKey = REJECTED_PREFIX + key.slice(INCOMING_PREFIX.length);
  const errorKey = errorKeyOf(key, rejectedKey);
  let copy: StoredObjectStream;
  try {
    copy = await store.getStream(key, target);
  } catch (e) {
    if (e instanceof ObjectNotFoundError) return missing(key);
    if (e instanceof ObjectPreconditionError) return superseded(key);
    throw e;
  }
  const pinned: ReadOptions =
    copy.versionId !== undefined ? { versionId: copy.versionId } : { ifMatch: copy.etag };
  await store.put(rejectedKey, copy.body, { contentType: copy.contentType ?? 'application/octet-stream' });
  const record: RejectionRecord = { key, rejectedKey, time: now().toISOString(), error };
  await store.put(errorKey, JSON.stringify(record, null, 2), { contentType: 'application/json' });
  await deleteExactly(store, key, pinned);
  return { status: 'rejected', key, rejectedKey, errorKey, error };
}

/** `{rejected key}.error.json`, or a fixed-length name under `rejected/_keys/` when that is too long a key. */
function errorKeyOf(key: string, rejectedKey: string): string {
  const natural = `${rejectedKey}.error.json`;
  try {
    assertValidKey(natural);
    return natural;
  } catch {
    return `${UNADDRESSABLE_PREFIX}${createHash('sha256').update(key).digest('hex')}.error.json`;
  }
}

/** Records why a key the store cannot address was not registered (the object itself cannot be moved). */
async function recordUnaddressable(
  store: ObjectStore,
  key: string,
  why: string,
  now: () => Date,
): Promise<IngestOutcome> {
  const error: ErrorBody = {
    error: `${why}: rename the file (no empty, "." or ".." path segments, at most 1024 bytes)`,
    code: 'invalid_argument',
  };
  const errorKey = `${UNADDRESSABLE_PREFIX}${createHash('sha256').update(key).digest('hex')}.error.json`;
  const record: RejectionRecord = { key, time: now().toISOString(), error };
  await store.put(errorKey, JSON.stringify(record, null, 2), { contentType: 'application/json' });
  return { status: 'rejected', key, errorKey, error };
}
