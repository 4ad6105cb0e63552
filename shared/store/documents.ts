import { ConflictError } from '../errors';
import { type BackoffOptions, backoffDelay, sleep } from '../util/backoff';
import { ObjectNotFoundError, ObjectPreconditionError, type ObjectStore, type PutBody } from './object-store';

/**
 * The document layer: JSON objects in an {@link ObjectStore} with the three ways maas writes
 * them — read, create-only, and read-change-compare-and-swap. Everything that keeps state in
 * the store (registry heads, aliases, dedupe claims, monitor watermarks, baselines, optimize
 * jobs) goes through these, so the retry loop and the handling of a lost condition exist once.
 *
 * Documents are parsed, not validated: callers that read documents written by other code check
 * the fields they rely on.
 */

const JSON_TYPE = 'application/json';

/** A document as stored, with the etag a later compare-and-swap must match. */
export interface StoredDocument<T> {
  doc: T;
  etag: string;
}

/**
 * Reads a JSON document with its etag, or undefined when the key does not exist. Other store
 * errors and malformed JSON propagate: a missing document is an expected state (first run, no
 * override), a broken one is not.
 *
 * @example
 * ```ts
 * const found = await readJson<HeadDoc>(store, layout.head('iris'));
 * const latest = found?.doc.latestVersion ?? 0;
 * ```
 */
export async function readJson<T>(store: ObjectStore, key: string): Promise<StoredDocument<T> | undefined> {
  try {
    const { body, etag } = await store.get(key);
    return { doc: JSON.parse(body.toString('utf8')) as T, etag };
  } catch (e) {
    if (e instanceof ObjectNotFoundError) return undefined;
    throw e;
  }
}

/** What {@link createJson} did: created the document, or found one already there. */
export type CreateResult<T> =
  | { created: true; etag: string }
  | { created: false; existing: StoredDocument<T> | undefined };

/** Options of {@link createJson}. */
export interface CreateJsonOptions {
  /**
   * Read the existing document back when the key is taken (default true). Callers that only
   * need to know the key was taken (e.g. to try the next version number) save that request.
   */
  readExisting?: boolean;
}

/**
 * Writes a document only if the key does not exist yet (`If-None-Match: *`). A key that exists
 * is not an error: the result says so and carries the existing document (undefined when it
 * was deleted again between the failed write and the read-back, or `readExisting` is false).
 *
 * @example
 * ```ts
 * const result = await createJson(store, layout.version('iris', 3), manifest);
 * if (!result.created) continue; // number taken by a concurrent registration: try the next
 * ```
 */
export async function createJson<T>(
  store: ObjectStore,
  key: string,
  doc: T,
  options: CreateJsonOptions = {},
): Promise<CreateResult<T>> {
  const etag = await createObject(store, key, JSON.stringify(doc), JSON_TYPE);
  if (etag !== undefined) return { created: true, etag };
  if (options.readExisting === false) return { created: false, existing: undefined };
  return { created: false, existing: await readJson<T>(store, key) };
}

/**
 * Writes any object (e.g. uploaded model bytes) only if the key does not exist yet: its etag,
 * or undefined when the key was taken. The create-only write under {@link createJson}.
 *
 * @example
 * ```ts
 * if (!(await createObject(store, uploadKey, bytes))) throw new ConflictError('already uploaded');
 * ```
 */
export async function createObject(
  store: ObjectStore,
  key: string,
  body: PutBody,
  contentType = 'application/octet-stream',
): Promise<string | undefined> {
  try {
    return (await store.put(key, body, { contentType, ifNoneMatch: '*' })).etag;
  } catch (e) {
    if (e instanceof ObjectPreconditionError) return undefined;
    throw e;
  }
}

/** Returned by an {@link updateJson} change function: leave the document as it is. */
export const KEEP: unique symbol = Symbol('keep');
/** Returned by an {@link updateJson} change function: back off, read again and ask again. */
export const RETRY: unique symbol = Symbol('retry');

/**
 * Computes the next document from the current one (undefined when the key does not exist).
 * Return the new document to write it, {@link KEEP} to stop without writing, {@link RETRY} to wait
 * for another writer (e.g. a claim held by someone else), or throw to abort with that error.
 * It may be called several times: keep it free of side effects.
 */
export type DocumentChange<T> = (
  current: StoredDocument<T> | undefined,
  attempt: number,
) => T | typeof KEEP | typeof RETRY | Promise<T | typeof KEEP | typeof RETRY>;

export interface UpdateJsonOptions<T = unknown> extends BackoffOptions {
  /** Rounds of read-change-write before giving up with {@link DocumentConflictError} (default 50). */
  attempts?: number;
  /** Give up after this many milliseconds, whatever the attempt count. */
  timeoutMs?: number;
  /**
   * The document as the caller just read it (`null`: it read none): the first attempt starts
   * from it instead of reading again. Its etag still guards the write, so a stale one only
   * costs a lost race and a fresh read.
   */
  known?: StoredDocument<T> | null;
}

/** What {@link updateJson} left in the store. */
export interface UpdateResult<T> {
  /** The document now stored (the current one when the change said {@link KEEP}). */
  doc: T | undefined;
  /** Its etag (undefined only when {@link KEEP} was returned for a missing key). */
  etag: string | undefined;
  /** Whether this call wrote it. */
  written: boolean;
  /** The document the change was computed from. */
  previous: StoredDocument<T> | undefined;
}

/** Every attempt of an {@link updateJson} lost its race (or kept being asked to retry). */
export class DocumentConflictError<T = unknown> extends ConflictError {
  constructor(
    readonly key: string,
    /** The document as last read: what kept winning. */
    readonly existing: StoredDocument<T> | undefined,
    attempts: number,
  ) {
    super(`${key} kept changing concurrently; gave up after ${attempts} attempts`, { key });
  }
}

/**
 * The compare-and-swap loop: read the document, compute the next one, write it on condition that
 * nobody else wrote in between (`If-Match` the etag read, or `If-None-Match: *` for a new key),
 * and on a lost race back off with jitter and start over from a fresh read.
 *
 * @example
 * ```ts
 * const { doc } = await updateJson<Watermark>(store, key, (current) =>
 *   current && current.doc.until >= until ? KEEP : { until },
 * );
 * ```
 */
export async function updateJson<T>(
  store: ObjectStore,
  key: string,
  change: DocumentChange<T>,
  options: UpdateJsonOptions<T> = {},
): Promise<UpdateResult<T>> {
  const attempts = options.attempts ?? 50;
  const deadline = options.timeoutMs === undefined ? Infinity : Date.now() + options.timeoutMs;
  let current: StoredDocument<T> | undefined;
  for (let attempt = 0; attempt < attempts; attempt++) {
    if (attempt > 0) {
      if (Date.now() >= deadline) break;
      await sleep(backoffDelay(attempt - 1, options));
    }
    current =
      attempt === 0 && options.known !== undefined
        ? (options.known ?? undefined)
        : await readJson<T>(store, key);
    const next = await change(current, attempt);
    if (next === KEEP) return { doc: current?.doc, etag: current?.etag, written: false, previous: current };
    if (next === RETRY) continue;
    try {
      const { etag } = await store.put(key, JSON.stringify(next), {
        contentType: JSON_TYPE,
        ...(current ? { ifMatch: current.etag } : { ifNoneMatch: '*' as const }),
      });
      return { doc: next, etag, written: true, previous: current };
    } catch (e) {
      // Precondition: someone wrote first. Not found: the key was deleted under our If-Match.
      if (!(e instanceof ObjectPreconditionError) && !(e instanceof ObjectNotFoundError)) throw e;
    }
  }
  throw new DocumentConflictError<T>(key, current, attempts);
}

/**
 * Writes a document unconditionally (last writer wins): for documents that have one writer by
 * construction, such as a report named after the run that produced it.
 */
export async function putJson(store: ObjectStore, key: string, doc: unknown): Promise<string> {
  return (await store.put(key, JSON.stringify(doc), { contentType: JSON_TYPE })).etag;
}
