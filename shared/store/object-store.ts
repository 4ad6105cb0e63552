import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { MaasError, NotFoundError, PreconditionFailedError } from '../errors';

/**
 * The storage port every maas component uses: a flat key space of immutable-or-CAS objects.
 *
 * Semantics are those of S3 with conditional writes, so the S3 adapter is a thin mapping and
 * the file adapter reproduces them locally:
 * - `put` with `ifNoneMatch: '*'` creates the key only if it does not exist (else
 *   {@link PreconditionFailedError});
 * - `put` with `ifMatch: etag` replaces the object only if its current etag is `etag`
 *   (compare-and-swap; else {@link PreconditionFailedError}, or {@link ObjectNotFoundError}
 *   when the key is gone);
 * - `list` returns keys in ascending UTF-8 byte order, paginated by an opaque token.
 *
 * @example
 * ```ts
 * const store = createObjectStore('file://./.maas');
 * await store.put('a/b.json', '{}', { contentType: 'application/json', ifNoneMatch: '*' });
 * const { body, etag } = await store.get('a/b.json');
 * ```
 */
export interface ObjectStore {
  /** Where the store lives, e.g. `s3://bucket/prefix` or `file:///abs/dir` (for logs). */
  readonly location: string;
  get(key: string): Promise<StoredObject>;
  /**
   * Streams the body: for large blobs that should not be buffered. With `ifMatch` it reads only
   * the object of that etag ({@link ObjectPreconditionError} when the key now holds another), with
   * `versionId` exactly that version of a versioned S3 bucket.
   */
  getStream(key: string, options?: ReadOptions): Promise<StoredObjectStream>;
  /**
   * Streams the bytes `start..endInclusive` of an object (HTTP `Range: bytes=start-end`), so a
   * large file can be fetched in parallel parts or read at random. `endInclusive` past the end is
   * clamped to the last byte; `start` must lie inside the object (an empty object has no range).
   * The returned `size` is the whole object's size (the range's length is `end - start + 1`
   * after clamping), so one call also tells how much is left to read.
   *
   * @example
   * ```ts
   * const { body, size } = await store.getRange('blobs/sha256/ab.bin', 0, 8 * 1024 * 1024 - 1);
   * ```
   */
  getRange(key: string, start: number, endInclusive: number): Promise<StoredObjectStream>;
  head(key: string): Promise<ObjectInfo>;
  put(key: string, body: PutBody, options?: PutOptions): Promise<PutResult>;
  /**
   * Copies an object inside the store without passing its bytes through this process (S3:
   * server-side CopyObject, or multipart UploadPartCopy for objects over 5 GiB). The copy keeps
   * the source's content type and metadata unless `options` gives new ones (then both are
   * replaced). A missing source raises {@link ObjectNotFoundError} naming `fromKey`.
   *
   * @example
   * ```ts
   * await store.copy('staging/upload-1', 'blobs/sha256/ab.bin', { contentType: 'application/octet-stream' });
   * ```
   */
  copy(fromKey: string, toKey: string, options?: CopyOptions): Promise<PutResult>;
  /**
   * Deletes the key; deleting a missing key is not an error (as in S3). With `ifMatch` only while
   * it still holds the object of that etag (else {@link ObjectPreconditionError}), with `versionId`
   * only that version (a newer one under the key stays): for consumers that must never delete an
   * object they have not processed (the `incoming/` trigger).
   */
  delete(key: string, options?: ReadOptions): Promise<void>;
  list(options?: ListOptions): Promise<ListPage>;
}

export type PutBody = Uint8Array | string | Readable;

export interface ObjectInfo {
  key: string;
  /** Opaque entity tag (without quotes); changes whenever the object is replaced. */
  etag: string;
  size: number;
  lastModified: Date;
  contentType?: string;
  metadata: Record<string, string>;
  /** The S3 version id, in versioned buckets only. */
  versionId?: string;
}

export interface StoredObject extends ObjectInfo {
  body: Buffer;
}

export interface StoredObjectStream extends ObjectInfo {
  body: Readable;
}

/** Which object a conditional read or delete is about. */
export interface ReadOptions {
  /** Only the object with this etag (unquoted). */
  ifMatch?: string;
  /** Only this version (S3 buckets with versioning; the file store has no versions and refuses it). */
  versionId?: string;
}

export interface PutOptions {
  contentType?: string;
  /** User metadata; keys are lower-cased (S3 does so too). ASCII values only. */
  metadata?: Record<string, string>;
  /** `'*'`: create only if the key does not exist yet. */
  ifNoneMatch?: '*';
  /** Replace only if the current etag equals this one. */
  ifMatch?: string;
}

export interface CopyOptions {
  /** Content type of the copy (replaces the source's; with `metadata` unset, metadata is cleared). */
  contentType?: string;
  /** User metadata of the copy (replaces the source's); keys are lower-cased. ASCII values only. */
  metadata?: Record<string, string>;
  /**
   * Copy only if the source still has this etag (the bytes the caller read and checked), else
   * {@link ObjectPreconditionError}: a source replaced since it was read is never copied.
   */
  sourceEtag?: string;
}

export interface PutResult {
  etag: string;
}

export interface ListOptions {
  prefix?: string;
  /** Groups keys sharing the prefix up to this delimiter into `commonPrefixes`. */
  delimiter?: string;
  /** List keys strictly after this one (S3 StartAfter). */
  startAfter?: string;
  /** Token from a previous page's `nextToken`. */
  continuationToken?: string;
  /** Page size, 1..1000 (default 1000). */
  maxKeys?: number;
}

export interface ListPage {
  objects: ObjectInfoSummary[];
  commonPrefixes: string[];
  /** Present when more keys follow. */
  nextToken?: string;
}

export type ObjectInfoSummary = Pick<ObjectInfo, 'key' | 'etag' | 'size' | 'lastModified'>;

/** The key does not exist. */
export class ObjectNotFoundError extends NotFoundError {
  constructor(readonly key: string) {
    super(`object not found: ${key}`, { key });
  }
}

/** A conditional write lost: the key exists (create-only) or changed (compare-and-swap). */
export class ObjectPreconditionError extends PreconditionFailedError {
  constructor(
    readonly key: string,
    condition: 'if-none-match' | 'if-match',
  ) {
    super(`conditional write (${condition}) failed for ${key}`, { key, condition });
  }
}

/** The store failed; `transient` says whether retrying later may succeed. */
export class StoreError extends MaasError {
  constructor(
    message: string,
    readonly transient: boolean,
    options?: { cause?: unknown },
  ) {
    super(transient ? 'unavailable' : 'internal', message, undefined, options);
  }
}

/**
 * Checks a `getRange` request against the object's size and returns the clamped inclusive end.
 * Shared by the adapters so both refuse the same ranges with the same error.
 */
export function clampRange(key: string, start: number, endInclusive: number, size: number): number {
  if (
    !Number.isSafeInteger(start) ||
    !Number.isSafeInteger(endInclusive) ||
    start < 0 ||
    endInclusive < start
  )
    throw new StoreError(`invalid range ${start}-${endInclusive} for ${key}`, false);
  if (start >= size)
    throw new StoreError(
      `range ${start}-${endInclusive} starts past the end of ${key} (${size} bytes)`,
      false,
    );
  return Math.min(endInclusive, size - 1);
}

/** Keys are the S3 subset we can mirror on a file system: no empty segments, no `.`/`..`. */
export function assertValidKey(key: string): void {
  if (
    key.length === 0 ||
    Buffer.byteLength(key) > 1024 ||
    key.startsWith('/') ||
    key.split('/').some((s) => s === '.' || s === '..') ||
    key.includes('//') ||
    key.includes('\0')
  ) {
    throw new StoreError(`invalid object key: ${JSON.stringify(key)}`, false);
  }
}

/** Reads every page of a listing (use only where the result is known to be small). */
export async function listAll(
  store: ObjectStore,
  options: Omit<ListOptions, 'continuationToken'>,
): Promise<ListPage> {
  const objects: ObjectInfoSummary[] = [];
  const commonPrefixes: string[] = [];
  let continuationToken: string | undefined;
  do {
    const page = await store.list({ ...options, ...(continuationToken ? { continuationToken } : {}) });
    objects.push(...page.objects);
    commonPrefixes.push(...page.commonPrefixes);
    continuationToken = page.nextToken;
  } while (continuationToken);
  return { objects, commonPrefixes };
}

/**
 * Reads an object into one buffer of its announced size while hashing each chunk as it arrives,
 * so checking a blob's sha256 overlaps the download instead of adding a pass over the bytes.
 * With `keepBody: false` the bytes are hashed and dropped (`body` is empty, `size` counts them).
 * The store-level primitive under the registry's verified reads (`ModelRegistry.readModel`).
 *
 * @example
 * ```ts
 * const { body, sha256 } = await readWithSha256(store, version.blobKey);
 * if (sha256 !== version.sha256) throw new Error('tampered');
 * ```
 */
export async function readWithSha256(
  store: ObjectStore,
  key: string,
  options: { keepBody?: boolean } = {},
): Promise<{ body: Buffer; sha256: string; size: number }> {
  const { body: stream, size } = await store.getStream(key);
  const hash = createHash('sha256');
  if (options.keepBody === false) {
    // Hash only (e.g. checking a large blob before handing out a link to it): constant memory.
    let total = 0;
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      hash.update(chunk);
      total += chunk.length;
    }
    return { body: Buffer.alloc(0), sha256: hash.digest('hex'), size: total };
  }
  let body = Buffer.allocUnsafe(size);
  let offset = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    hash.update(chunk);
    if (offset + chunk.length > body.length) {
      // More bytes than announced (a racing overwrite): grow; the caller's hash check decides.
      const grown = Buffer.allocUnsafe(Math.max(body.length * 2, offset + chunk.length));
      body.copy(grown, 0, 0, offset);
      body = grown;
    }
    chunk.copy(body, offset);
    offset += chunk.length;
  }
  return { body: body.subarray(0, offset), sha256: hash.digest('hex'), size: offset };
}
