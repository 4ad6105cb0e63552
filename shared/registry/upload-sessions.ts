/**
 * Upload sessions: how a bundle of any size (files over 5 GB included) reaches the registry
 * without passing through a request body.
 *
 * 1. {@link createUploadSession} takes the file list (`{name, size}` each) and plans every file
 *    as parts of `partBytes`: on S3 one `CreateMultipartUpload` per file under `uploads/` and a
 *    presigned `UploadPart` URL per part; on the file store (`npm start`) URLs of the local
 *    upload server with a token ({@link writeLocalSessionPart}). The caller `PUT`s the parts, in
 *    parallel and in any order, retrying any that failed (a part upload replaces the part).
 * 2. {@link completeUploadSession} checks that every part is there with its planned size,
 *    completes the multipart uploads, and registers the files as one version with
 *    `ModelRegistry.registerBundle` (a single `.onnx` registers like `registerVersion`). Then the
 *    uploads are deleted and the session record keeps only the version number, so a repeated
 *    complete (a lost reply) answers with the same version.
 * 3. {@link abortUploadSession} (or expiry) discards everything.
 *
 * Nothing half-written: a refusal of the bundle (4xx) deletes the uploads and the session; a
 * missing or wrong-sized part is a `409` naming them that leaves the session open for the
 * retry; a transient failure (5xx) leaves everything for the retry of the complete. Sessions
 * never completed are removed by the bucket's lifecycle rules (`uploads/` objects expire, and
 * incomplete multipart uploads are aborted a day after they began).
 *
 * Knows nothing of Lambda or HTTP: the handlers adapt requests to these calls.
 */

import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  type CompletedPart,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  ListPartsCommand,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import {
  ConflictError,
  httpStatusOf,
  InvalidArgumentError,
  MaasError,
  NotFoundError,
  PayloadTooLargeError,
} from '../errors';
import { ObjectNotFoundError, type ObjectStore, S3ObjectStore, StoreError } from '../store';
import { createJson, KEEP, putJson, readJson, updateJson } from '../store/documents';
import { mapLimit } from '../util/concurrency';
import { assertBundleFileNames, bundleFileRole } from './bundle';
import type { BundleSource, ModelRegistry } from './model-registry';
import { assertModelName } from './names';
import type { RegisterOptions, RegisterResult } from './types';
import { newUploadToken, putLimited, tokenDigest, tokenMatches, UPLOADS_PREFIX } from './uploads';

const MiB = 1024 * 1024;
/** S3's smallest part (all but the last part of a multipart upload). */
export const MIN_PART_BYTES = 5 * MiB;
/** S3's largest part. */
export const MAX_PART_BYTES = 5 * 1024 * MiB;
/** S3's most parts per multipart upload. */
export const MAX_PARTS_PER_FILE = 10_000;
/** Files per session: a bundle saved with one file per tensor has one per initializer. */
export const MAX_SESSION_FILES = 1000;
/**
 * Parts per session: every part is a URL in the answer, which must stay under Lambda's 6 MB
 * response (a presigned URL signed with a role's session token is ~1.3 KB).
 */
export const MAX_SESSION_PARTS = 4000;

/** Requests to S3 in flight at once while creating, checking, completing or aborting. */
const STORE_CONCURRENCY = 8;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** One file the caller is about to upload. */
export interface UploadSessionFileRequest {
  /** Plain file name in the bundle (`model.onnx`, `model.onnx.data`, `tokenizer.json`, …). */
  name: string;
  /** Exact size in bytes. */
  size: number;
}

/** The body of `POST /models/{name}/upload-sessions`. */
export interface UploadSessionRequest {
  files: UploadSessionFileRequest[];
  /** Part size the caller wants (default: the server's, `MAAS_UPLOAD_PART_BYTES`). */
  partBytes?: number;
}

/** Options of {@link createUploadSession}. */
export interface UploadSessionOptions {
  /**
   * Seconds the session and its part URLs stay valid (default 3600, at most a day: the bucket's
   * lifecycle rule aborts multipart uploads one day after they began).
   */
  expiresInSeconds?: number;
  /** Default part size (default 64 MiB); a request may ask for another within S3's bounds. */
  partBytes?: number;
  /** Base URL of the local upload server (file store only), e.g. `http://127.0.0.1:3003`. */
  localUploadUrl?: string;
  now?: () => Date;
}

/** Where to `PUT` one part: the bytes `[offset, offset + size)` of the file. */
export interface UploadPartTarget {
  partNumber: number;
  offset: number;
  size: number;
  url: string;
}

/** One file of a session and its parts. */
export interface UploadSessionFile {
  name: string;
  size: number;
  parts: UploadPartTarget[];
}

/** What `POST /models/{name}/upload-sessions` answers. */
export interface UploadSession {
  sessionId: string;
  name: string;
  /** Every part URL takes a `PUT` of the part's raw bytes (no other headers needed). */
  method: 'PUT';
  partBytes: number;
  expiresAt: string;
  files: UploadSessionFile[];
}

/** The session record `uploads/{name}/{id}.session.json`. */
interface SessionDoc {
  name: string;
  id: string;
  createdAt: string;
  expiresAt: string;
  partBytes: number;
  /** File store: sha256 of the URL token of the upload server's part URLs. */
  tokenSha256?: string;
  files: { name: string; size: number; key: string; uploadId?: string }[];
  /** Set once registered: a repeated complete answers with this version. */
  completed?: { version: number };
  /** Held by the complete in progress (a big bundle takes minutes): others answer 503 until then. */
  completingUntil?: string;
}

/**
 * How long a complete holds its session: the function's longest run (a complete that died
 * mid-way frees the session after it); concurrent completes meanwhile get a 503 to retry.
 */
const COMPLETE_LEASE_MS = 15 * 60 * 1000;

const sessionKeyOf = (name: string, id: string): string => `${UPLOADS_PREFIX}${name}/${id}.session.json`;
/** S3: the multipart upload's object. */
const fileKeyOf = (name: string, id: string, index: number): string =>
  `${UPLOADS_PREFIX}${name}/${id}/f${index}`;
/** File store: one object per part (no multipart there; concatenated when registering). */
const partKeyOf = (name: string, id: string, index: number, part: number): string =>
  `${UPLOADS_PREFIX}${name}/${id}/f${index}.p${part}`;

const defaults = { expiresInSeconds: 3600, partBytes: 64 * MiB, now: (): Date => new Date() };

const isInteger = (v: unknown, min: number, max = Number.MAX_SAFE_INTEGER): v is number =>
  typeof v === 'number' && Number.isSafeInteger(v) && v >= min && v <= max;

/**
 * Validates the body of `POST /models/{name}/upload-sessions`.
 *
 * @example
 * ```ts
 * const request = parseUploadSessionRequest(jsonBody(event)); // { files: [{ name: 'model.onnx', size: 1234 }] }
 * ```
 */
export function parseUploadSessionRequest(body: Record<string, unknown>): UploadSessionRequest {
  const files = body.files;
  if (!Array.isArray(files) || files.length === 0)
    throw new InvalidArgumentError('files must be a non-empty array of {name, size}', { field: 'files' });
  if (files.length > MAX_SESSION_FILES)
    throw new InvalidArgumentError(`at most ${MAX_SESSION_FILES} files per upload session`, {
      field: 'files',
    });
  const parsed = files.map((f: unknown, i) => {
    const file = (typeof f === 'object' && f !== null ? f : {}) as Record<string, unknown>;
    if (!isInteger(file.size, 1))
      throw new InvalidArgumentError(`files[${i}].size must be a positive integer (bytes)`, {
        field: `files[${i}].size`,
      });
    return { name: file.name as string, size: file.size };
  });
  // Plain names, no duplicates (case-insensitively too): the registry's own rules, up front.
  assertBundleFileNames(parsed.map((f) => f.name));
  const graphs = parsed.filter((f) => bundleFileRole(f.name) === 'graph');
  if (graphs.length !== 1)
    throw new InvalidArgumentError(
      `a bundle has exactly one .onnx file (the graph), got ${graphs.length}: ${graphs.map((g) => g.name).join(', ') || 'none'}`,
      { field: 'files' },
    );
  if (body.partBytes !== undefined && !isInteger(body.partBytes, MIN_PART_BYTES, MAX_PART_BYTES))
    throw new InvalidArgumentError(
      `partBytes must be an integer from ${MIN_PART_BYTES} to ${MAX_PART_BYTES}`,
      { field: 'partBytes' },
    );
  return { files: parsed, ...(body.partBytes !== undefined ? { partBytes: body.partBytes as number } : {}) };
}

/** Parts of a file of `size` bytes: sizes `partBytes`, the last one the rest. */
function planParts(size: number, partBytes: number): { partNumber: number; offset: number; size: number }[] {
  const count = Math.max(1, Math.ceil(size / partBytes));
  return Array.from({ length: count }, (_, i) => ({
    partNumber: i + 1,
    offset: i * partBytes,
    size: Math.min(partBytes, size - i * partBytes),
  }));
}

/**
 * Opens an upload session for model `name`: the files are planned as parts and every part gets
 * a URL to `PUT` its bytes to (presigned `UploadPart` on S3, the local upload server on the
 * file store). The total is checked against the registry's size limit up front (`413`).
 *
 * @example
 * ```ts
 * const session = await createUploadSession(store, registry, 'llm', {
 *   files: [{ name: 'model.onnx', size: 81_234 }, { name: 'model.onnx.data', size: 7_000_000_000 }],
 * });
 * // PUT each session.files[i].parts[j].url, then completeUploadSession(store, registry, 'llm', session.sessionId)
 * ```
 */
export async function createUploadSession(
  store: ObjectStore,
  registry: ModelRegistry,
  name: string,
  request: UploadSessionRequest,
  options: UploadSessionOptions = {},
): Promise<UploadSession> {
  assertModelName(name);
  const o = { ...defaults, ...options };
  if (!isInteger(o.expiresInSeconds, 1, 86_400))
    throw new InvalidArgumentError('expiresInSeconds must be an integer from 1 to 86400');
  const total = request.files.reduce((sum, f) => sum + f.size, 0);
  if (total > registry.maxModelBytes)
    throw new PayloadTooLargeError(
      `the files total ${total} bytes, above the limit of ${registry.maxModelBytes} bytes`,
      { limit: registry.maxModelBytes, size: total },
    );
  const largest = Math.max(...request.files.map((f) => f.size));
  // Parts grow when a file would need more than S3's 10,000 (a default size fits 640 GB).
  const partBytes = Math.max(
    request.partBytes ?? o.partBytes,
    Math.ceil(largest / MAX_PARTS_PER_FILE / MiB) * MiB,
  );
  const plans = request.files.map((f) => planParts(f.size, partBytes));
  const partCount = plans.reduce((n, p) => n + p.length, 0);
  if (partCount > MAX_SESSION_PARTS)
    throw new InvalidArgumentError(
      `the files need ${partCount} parts of ${partBytes} bytes, more than ${MAX_SESSION_PARTS} per session: ask for a larger partBytes`,
      { field: 'partBytes' },
    );
  const id = randomUUID();
  const now = o.now();
  const expiresAt = new Date(now.getTime() + o.expiresInSeconds * 1000).toISOString();
  const doc: SessionDoc = {
    name,
    id,
    createdAt: now.toISOString(),
    expiresAt,
    partBytes,
    files: request.files.map((f, i) => ({ name: f.name, size: f.size, key: fileKeyOf(name, id, i) })),
  };
  let urls: (p: { partNumber: number }, index: number) => Promise<string>;
  if (store instanceof S3ObjectStore) {
    try {
      await mapLimit(doc.files, STORE_CONCURRENCY, async (file) => {
        const out = await store.client.send(
          new CreateMultipartUploadCommand({
            Bucket: store.bucket,
            Key: store.full(file.key),
            ContentType: 'application/octet-stream',
          }),
        );
        file.uploadId = out.UploadId;
      });
      await writeNewSession(store, doc);
    } catch (e) {
      await discard(store, doc).catch(() => undefined);
      throw asStoreError(e);
    }
    urls = (p, i) =>
      getSignedUrl(
        store.client,
        new UploadPartCommand({
          Bucket: store.bucket,
          Key: store.full(doc.files[i]!.key),
          UploadId: doc.files[i]!.uploadId,
          PartNumber: p.partNumber,
        }),
        { expiresIn: o.expiresInSeconds },
      );
  } else {
    if (!o.localUploadUrl)
      throw new InvalidArgumentError(
        'upload sessions on the file store need the local upload server (npm start sets MAAS_LOCAL_UPLOAD_URL)',
      );
    const token = newUploadToken();
    doc.tokenSha256 = tokenDigest(token);
    await writeNewSession(store, doc);
    const base = o.localUploadUrl.replace(/\/+$/, '');
    urls = async (p, i) =>
      `${base}/upload-sessions/${encodeURIComponent(name)}/${id}/${i}/${p.partNumber}?token=${token}`;
  }
  const files: UploadSessionFile[] = [];
  for (const [i, file] of request.files.entries()) {
    const parts: UploadPartTarget[] = [];
    for (const p of plans[i]!) parts.push({ ...p, url: await urls(p, i) });
    files.push({ name: file.name, size: file.size, parts });
  }
  return { sessionId: id, name, method: 'PUT', partBytes, expiresAt, files };
}

async function writeNewSession(store: ObjectStore, doc: SessionDoc): Promise<void> {
  // A fresh UUID: the create-only write cannot lose a race, it only guards against a bug.
  if (!(await createJson(store, sessionKeyOf(doc.name, doc.id), doc, { readExisting: false })).created)
    throw new ConflictError(`upload session ${doc.id} already exists`);
}

async function readSession(store: ObjectStore, name: string, id: string): Promise<SessionDoc> {
  assertModelName(name);
  const doc = UUID.test(id) ? (await readJson<SessionDoc>(store, sessionKeyOf(name, id)))?.doc : undefined;
  if (!doc)
    throw new NotFoundError(`no upload session ${id} for model ${name} (aborted, expired or never opened)`, {
      name,
      id,
    });
  return doc;
}

const expired = (doc: SessionDoc, now: () => Date): boolean => Date.parse(doc.expiresAt) < now().getTime();

/** Options of {@link writeLocalSessionPart}. */
export interface LocalPartOptions {
  /** The `token` of the part URL. */
  token?: string | null;
  /** The request's `content-length`, when sent. */
  contentLength?: number;
  now?: () => Date;
}

/**
 * What the local upload server does with a `PUT` of a session part (file store): checks the
 * token, expiry and the part's planned size, then streams the bytes into the store. Like an S3
 * part upload, a repeated `PUT` replaces the part (a client retrying after a lost reply).
 *
 * @example
 * ```ts
 * await writeLocalSessionPart(store, 'llm', sessionId, 1, 3, request, { token });
 * ```
 */
export async function writeLocalSessionPart(
  store: ObjectStore,
  name: string,
  id: string,
  fileIndex: number,
  partNumber: number,
  body: Readable,
  options: LocalPartOptions = {},
): Promise<{ partNumber: number; size: number }> {
  const doc = await readSession(store, name, id);
  // A wrong token answers like a missing session: it tells a guesser nothing.
  if (!tokenMatches(doc.tokenSha256, options.token) || doc.completed)
    throw new NotFoundError(`no upload session ${id} for model ${name}`, { name, id });
  if (expired(doc, options.now ?? (() => new Date())))
    throw new NotFoundError(`upload session ${id} expired at ${doc.expiresAt}`, { name, id });
  const file = doc.files[fileIndex];
  const part = file ? planParts(file.size, doc.partBytes)[partNumber - 1] : undefined;
  if (!file || !part)
    throw new NotFoundError(`upload session ${id} has no part ${partNumber} of file ${fileIndex}`, {
      fileIndex,
      partNumber,
    });
  if (options.contentLength !== undefined && options.contentLength !== part.size)
    throw new InvalidArgumentError(
      `part ${partNumber} of ${file.name} is ${part.size} bytes, the request announces ${options.contentLength}`,
      { file: file.name, partNumber, expected: part.size },
    );
  const key = partKeyOf(name, id, fileIndex, partNumber);
  const { size } = await putLimited(store, key, body, part.size, { overwrite: true });
  if (size !== part.size) {
    await store.delete(key);
    throw new InvalidArgumentError(`part ${partNumber} of ${file.name} is ${part.size} bytes, got ${size}`, {
      file: file.name,
      partNumber,
      expected: part.size,
      size,
    });
  }
  return { partNumber, size };
}

/** Parts of one file that are missing or not of their planned size. */
interface PartProblem {
  file: string;
  missing: number[];
  wrongSize: number[];
}

/** S3: the parts uploaded so far (ListParts, every page). */
async function listParts(
  store: S3ObjectStore,
  key: string,
  uploadId: string,
): Promise<(CompletedPart & { size?: number })[]> {
  const parts: (CompletedPart & { size?: number })[] = [];
  let marker: string | undefined;
  for (;;) {
    const page = await store.client.send(
      new ListPartsCommand({
        Bucket: store.bucket,
        Key: store.full(key),
        UploadId: uploadId,
        ...(marker ? { PartNumberMarker: marker } : {}),
      }),
    );
    for (const p of page.Parts ?? [])
      parts.push({
        PartNumber: p.PartNumber,
        ETag: p.ETag,
        ...(p.Size !== undefined ? { size: p.Size } : {}),
      });
    if (!page.IsTruncated || !page.NextPartNumberMarker) return parts;
    marker = page.NextPartNumberMarker;
  }
}

const isNoSuchUpload = (e: unknown): boolean =>
  (e as { name?: string }).name === 'NoSuchUpload' ||
  (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404;

/** S3: completes one file's multipart upload (or finds it completed by an earlier attempt). */
async function completeS3File(
  store: S3ObjectStore,
  file: SessionDoc['files'][number],
  partBytes: number,
): Promise<PartProblem | undefined> {
  const plan = planParts(file.size, partBytes);
  let parts: (CompletedPart & { size?: number })[];
  try {
    parts = await listParts(store, file.key, file.uploadId!);
  } catch (e) {
    if (!isNoSuchUpload(e)) throw asStoreError(e);
    // Completed by an earlier attempt of this complete (its reply lost), or gone.
    const info = await store.head(file.key).catch((err: unknown) => {
      if (err instanceof ObjectNotFoundError) return undefined;
      throw err;
    });
    if (info?.size === file.size) return undefined;
    return { file: file.name, missing: plan.map((p) => p.partNumber), wrongSize: [] };
  }
  const byNumber = new Map(parts.map((p) => [p.PartNumber, p]));
  const problem: PartProblem = { file: file.name, missing: [], wrongSize: [] };
  for (const p of plan) {
    const got = byNumber.get(p.partNumber);
    if (!got) problem.missing.push(p.partNumber);
    else if (got.size !== undefined && got.size !== p.size) problem.wrongSize.push(p.partNumber);
  }
  // Parts beyond the plan would make S3 assemble a different file: never listed in the complete.
  if (problem.missing.length || problem.wrongSize.length) return problem;
  try {
    await store.client.send(
      new CompleteMultipartUploadCommand({
        Bucket: store.bucket,
        Key: store.full(file.key),
        UploadId: file.uploadId,
        MultipartUpload: {
          Parts: plan.map((p) => ({ PartNumber: p.partNumber, ETag: byNumber.get(p.partNumber)!.ETag })),
        },
      }),
    );
  } catch (e) {
    // A concurrent complete may have won: the object is then there with the right size.
    if (!isNoSuchUpload(e)) throw asStoreError(e);
    if ((await store.head(file.key)).size !== file.size) throw asStoreError(e);
  }
  return undefined;
}

/** File store: which parts are missing or of the wrong size. */
async function checkLocalFile(
  store: ObjectStore,
  doc: SessionDoc,
  index: number,
): Promise<PartProblem | undefined> {
  const file = doc.files[index]!;
  const problem: PartProblem = { file: file.name, missing: [], wrongSize: [] };
  await mapLimit(planParts(file.size, doc.partBytes), STORE_CONCURRENCY, async (p) => {
    const info = await store.head(partKeyOf(doc.name, doc.id, index, p.partNumber)).catch((e: unknown) => {
      if (e instanceof ObjectNotFoundError) return undefined;
      throw e;
    });
    if (!info) problem.missing.push(p.partNumber);
    else if (info.size !== p.size) problem.wrongSize.push(p.partNumber);
  });
  return problem.missing.length || problem.wrongSize.length ? problem : undefined;
}

/** File store: a file's parts read back to back, each opened only when the previous one ended. */
function concatParts(store: ObjectStore, doc: SessionDoc, index: number): Readable {
  const plan = planParts(doc.files[index]!.size, doc.partBytes);
  return Readable.from(
    (async function* () {
      for (const p of plan) {
        const { body } = await store.getStream(partKeyOf(doc.name, doc.id, index, p.partNumber));
        yield* body as AsyncIterable<Buffer>;
      }
    })(),
  );
}

/**
 * Completes a session: checks every part (a `409` naming the missing or wrong-sized ones keeps
 * the session open for their upload), completes the multipart uploads and registers the files
 * as one version through `registerBundle`. A refusal of the bundle (a 4xx: not ONNX, an external
 * data location outside the bundle, …) deletes the uploads and the session. A second complete
 * of a registered session answers `{created: false}` with its version.
 *
 * @example
 * ```ts
 * const { created, version } = await completeUploadSession(store, registry, 'llm', sessionId, { alias: 'staging' });
 * ```
 */
export async function completeUploadSession(
  store: ObjectStore,
  registry: ModelRegistry,
  name: string,
  id: string,
  options: RegisterOptions & { now?: () => Date } = {},
): Promise<RegisterResult> {
  const { now = () => new Date(), ...registerOptions } = options;
  const doc = await readSession(store, name, id);
  if (doc.completed)
    return { created: false, version: await registry.getVersion(name, doc.completed.version) };
  if (expired(doc, now)) {
    await discard(store, doc);
    throw new NotFoundError(`upload session ${id} expired at ${doc.expiresAt}; its uploads were deleted`, {
      name,
      id,
    });
  }
  const claimed = await claimCompletion(store, doc, now);
  if (claimed.completed)
    return { created: false, version: await registry.getVersion(name, claimed.completed.version) };
  const problems = (
    store instanceof S3ObjectStore
      ? await mapLimit(doc.files, STORE_CONCURRENCY, (f) => completeS3File(store, f, doc.partBytes))
      : await mapLimit(doc.files, STORE_CONCURRENCY, (_f, i) => checkLocalFile(store, doc, i))
  ).filter((p): p is PartProblem => p !== undefined);
  if (problems.length > 0) {
    await releaseCompletion(store, doc);
    throw new ConflictError(
      `upload session ${id} is incomplete: ${problems
        .map(
          (p) =>
            `${p.file}${p.missing.length ? ` misses part(s) ${p.missing.join(', ')}` : ''}${p.wrongSize.length ? ` has part(s) ${p.wrongSize.join(', ')} of the wrong size` : ''}`,
        )
        .join('; ')}`,
      { problems },
    );
  }
  const sources: BundleSource[] = doc.files.map((f, i) =>
    store instanceof S3ObjectStore
      ? { name: f.name, storeKey: f.key, size: f.size }
      : { name: f.name, body: concatParts(store, doc, i), size: f.size },
  );
  let result: RegisterResult;
  try {
    result = await registry.registerBundle(name, sources, { source: 'upload', ...registerOptions });
  } catch (e) {
    // The bundle itself was refused: nothing of it may stay. Transient failures keep it for a retry.
    if (e instanceof MaasError && httpStatusOf(e) < 500) await discard(store, doc);
    else await releaseCompletion(store, doc).catch(() => undefined);
    throw e;
  }
  const { completingUntil: _lease, ...done } = doc;
  await putJson(store, sessionKeyOf(name, id), { ...done, completed: { version: result.version.version } });
  await discardData(store, doc);
  return result;
}

/**
 * Takes the session's completion lease (compare-and-swap on its record), or finds it completed
 * meanwhile; a lease held by another complete is a 503 (retry: it answers once that one is done).
 */
async function claimCompletion(store: ObjectStore, doc: SessionDoc, now: () => Date): Promise<SessionDoc> {
  const { doc: claimed } = await updateJson<SessionDoc>(
    store,
    sessionKeyOf(doc.name, doc.id),
    (current) => {
      if (!current)
        throw new NotFoundError(`no upload session ${doc.id} for model ${doc.name} (aborted meanwhile)`);
      if (current.doc.completed) return KEEP;
      if (current.doc.completingUntil && Date.parse(current.doc.completingUntil) > now().getTime())
        throw new MaasError(
          'unavailable',
          `upload session ${doc.id} is being completed by another request; retry in a moment`,
        );
      return { ...current.doc, completingUntil: new Date(now().getTime() + COMPLETE_LEASE_MS).toISOString() };
    },
    { attempts: 10 },
  );
  return claimed ?? doc;
}

/** Frees the lease, so a retry may complete the session at once. */
async function releaseCompletion(store: ObjectStore, doc: SessionDoc): Promise<void> {
  const { completingUntil: _lease, ...free } = doc;
  await putJson(store, sessionKeyOf(doc.name, doc.id), free);
}

/**
 * Aborts a session: the multipart uploads, the uploaded parts and the session record are
 * deleted. A registered session's record is removed too (its version stays).
 *
 * @example
 * ```ts
 * await abortUploadSession(store, 'llm', sessionId);
 * ```
 */
export async function abortUploadSession(store: ObjectStore, name: string, id: string): Promise<void> {
  await discard(store, await readSession(store, name, id));
}

/** Deletes the session's uploads and then its record. */
async function discard(store: ObjectStore, doc: SessionDoc): Promise<void> {
  await discardData(store, doc);
  await store.delete(sessionKeyOf(doc.name, doc.id));
}

/** Deletes the session's uploads: S3 multipart uploads (aborted) and objects, or local parts. */
async function discardData(store: ObjectStore, doc: SessionDoc): Promise<void> {
  if (store instanceof S3ObjectStore) {
    await mapLimit(doc.files, STORE_CONCURRENCY, async (f) => {
      if (f.uploadId)
        await store.client
          .send(
            new AbortMultipartUploadCommand({
              Bucket: store.bucket,
              Key: store.full(f.key),
              UploadId: f.uploadId,
            }),
          )
          .catch((e: unknown) => {
            if (!isNoSuchUpload(e)) throw asStoreError(e);
          });
      await store.delete(f.key);
    });
    return;
  }
  const keys = doc.files.flatMap((f, i) =>
    planParts(f.size, doc.partBytes).map((p) => partKeyOf(doc.name, doc.id, i, p.partNumber)),
  );
  await mapLimit(keys, STORE_CONCURRENCY, (key) => store.delete(key));
}

/** SDK errors of the multipart calls (made outside the store adapter) as the store's own. */
function asStoreError(e: unknown): unknown {
  if (e instanceof MaasError) return e;
  const status = (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
  return new StoreError(
    `S3 multipart request failed: ${(e as Error).message}`,
    status === undefined || status >= 500,
    {
      cause: e,
    },
  );
}
