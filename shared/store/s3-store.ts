import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
  UploadPartCopyCommand,
} from '@aws-sdk/client-s3';
import { MaasError } from '../errors';
import { backoffDelay, sleep } from '../util/backoff';
import {
  assertValidKey,
  type CopyOptions,
  clampRange,
  type ListOptions,
  type ListPage,
  type ObjectInfo,
  ObjectNotFoundError,
  ObjectPreconditionError,
  type ObjectStore,
  type PutBody,
  type PutOptions,
  type PutResult,
  type ReadOptions,
  type StoredObject,
  type StoredObjectStream,
  StoreError,
} from './object-store';

export interface S3ObjectStoreOptions {
  bucket: string;
  /** Key prefix inside the bucket, e.g. `maas/` (a trailing slash is added when missing). */
  prefix?: string;
  /** A ready client; otherwise one is built from the fields below. */
  client?: S3Client;
  /** S3-compatible endpoint (RGW, MinIO…); unset for AWS. */
  endpoint?: string;
  region?: string;
  forcePathStyle?: boolean;
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** Attempts per request, with the SDK's exponential backoff on throttling, 5xx and network errors. */
  maxAttempts?: number;
  /** Bodies at least this large (and streams of unknown size) go up as multipart uploads. */
  multipartThresholdBytes?: number;
  /**
   * `copy` of an object larger than this uses multipart UploadPartCopy instead of one CopyObject
   * (S3 refuses CopyObject above 5 GiB, the default). Tests lower it to exercise the multipart path.
   */
  copyMultipartThresholdBytes?: number;
  /** Part size of a multipart copy (S3: 5 MiB..5 GiB, at most 10,000 parts). */
  copyPartSizeBytes?: number;
  /**
   * Send `If-Match` etags in quotes. Off by default: Ceph RGW only matches unquoted etags,
   * and AWS S3 accepts both.
   */
  quoteIfMatch?: boolean;
}

const defaults = {
  prefix: '',
  maxAttempts: 4,
  multipartThresholdBytes: 16 * 1024 * 1024,
  copyMultipartThresholdBytes: 5 * 1024 ** 3,
  copyPartSizeBytes: 512 * 1024 * 1024,
  quoteIfMatch: false,
};

/** S3's limits on multipart uploads: part count and the smallest part but the last. */
const MAX_PARTS = 10_000;
const MIN_PART_BYTES = 5 * 1024 * 1024;
/** Server-side part copies in flight at once: each is one request that moves bytes inside S3. */
const COPY_CONCURRENCY = 4;

/** How often to retry a conditional write that S3 answered with 409 ConditionalRequestConflict. */
const CONFLICT_RETRIES = 6;

/**
 * User metadata key (`x-amz-meta-maas-write`) holding a random token unique to one conditional
 * put. When a retried put gets 412, the object carries this write's token only if an earlier
 * attempt of this very write landed: equal bytes could be another writer's. Internal: never
 * shown in {@link ObjectInfo.metadata}.
 */
const WRITE_TOKEN = 'maas-write';

/**
 * {@link ObjectStore} on Amazon S3 or any S3-compatible server (AWS SDK v3).
 *
 * @example
 * ```ts
 * const store = new S3ObjectStore({ bucket: 'models', prefix: 'maas', endpoint: 'http://127.0.0.1:7480', forcePathStyle: true });
 * await store.put('models/x/head.json', '{}', { ifNoneMatch: '*' });
 * ```
 */
export class S3ObjectStore implements ObjectStore {
  readonly client: S3Client;
  readonly bucket: string;
  readonly prefix: string;
  readonly location: string;
  private readonly options: typeof defaults & S3ObjectStoreOptions;

  constructor(options: S3ObjectStoreOptions) {
    this.options = { ...defaults, ...options };
    this.bucket = options.bucket;
    this.prefix = normalizePrefix(this.options.prefix);
    this.location = `s3://${this.bucket}/${this.prefix}`;
    this.client = options.client ?? new S3Client(clientConfig(this.options));
  }

  async get(key: string): Promise<StoredObject> {
    const { body, ...info } = await this.getStream(key);
    const chunks: Buffer[] = [];
    try {
      for await (const chunk of body) chunks.push(chunk as Buffer);
    } catch (e) {
      // The connection broke mid-body (a reset, a timeout): as transient as a failed request.
      throw new StoreError(`S3 body of ${key} cut off: ${(e as Error).message}`, true, { cause: e });
    }
    if (info.size !== 0 && chunks.reduce((n, c) => n + c.length, 0) !== info.size)
      throw new StoreError(`S3 body of ${key} is shorter than its Content-Length ${info.size}`, true);
    return { ...info, body: Buffer.concat(chunks) };
  }

  async getStream(key: string, options: ReadOptions = {}): Promise<StoredObjectStream> {
    const out = await this.send(
      key,
      () =>
        this.client.send(
          new GetObjectCommand({
            Bucket: this.bucket,
            Key: this.full(key),
            IfMatch: this.ifMatchHeader(options.ifMatch),
            VersionId: options.versionId,
          }),
        ),
      'if-match',
    );
    const info = toInfo(key, out);
    if (!(out.Body instanceof Readable)) throw new StoreError(`unexpected body type for ${key}`, false);
    return { ...info, body: out.Body };
  }

  async getRange(key: string, start: number, endInclusive: number): Promise<StoredObjectStream> {
    clampRange(key, start, endInclusive, Number.MAX_SAFE_INTEGER); // shape only; S3 knows the size
    const out = await this.send(key, () =>
      this.client.send(
        new GetObjectCommand({
          Bucket: this.bucket,
          Key: this.full(key),
          Range: `bytes=${start}-${endInclusive}`,
        }),
      ),
    ).catch((e: unknown) => {
      if (e instanceof StoreError && /\(416\)|InvalidRange/.test(e.message))
        throw new StoreError(`range ${start}-${endInclusive} starts past the end of ${key}`, false, {
          cause: e,
        });
      throw e;
    });
    if (!(out.Body instanceof Readable)) throw new StoreError(`unexpected body type for ${key}`, false);
    // Content-Length is the range's length; the object's size is the total in Content-Range.
    const total = /\/(\d+)$/.exec(out.ContentRange ?? '')?.[1];
    const info = toInfo(key, out);
    if (total !== undefined) info.size = Number(total);
    return { ...info, body: out.Body };
  }

  async head(key: string): Promise<ObjectInfo> {
    const out = await this.send(key, () =>
      this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.full(key) })),
    );
    return toInfo(key, out);
  }

  async put(key: string, body: PutBody, options: PutOptions = {}): Promise<PutResult> {
    const conditional = options.ifNoneMatch !== undefined || options.ifMatch !== undefined;
    const size = body instanceof Readable ? undefined : Buffer.byteLength(body);
    const common = {
      Bucket: this.bucket,
      Key: this.full(key),
      ContentType: options.contentType,
      Metadata: options.metadata,
    };
    if (!conditional && (size === undefined || size >= this.options.multipartThresholdBytes)) {
      // Multipart: callers never rely on conditions here (RGW ignores them on completion);
      // large blobs live under content-addressed keys and are committed by a small conditional put.
      // Loaded on first use: it costs ~60 ms of cold start, and predict never uploads.
      const { Upload } = await import('@aws-sdk/lib-storage');
      const upload = new Upload({
        client: this.client,
        params: { ...common, Body: body },
        partSize: 8 * 1024 * 1024,
        queueSize: 4,
      });
      const out = await this.send(key, () => upload.done());
      return { etag: unquote(out.ETag ?? '') };
    }
    const bytes = body instanceof Readable ? await collect(body) : body;
    const ifMatch = this.ifMatchHeader(options.ifMatch);
    const condition = options.ifMatch !== undefined ? 'if-match' : 'if-none-match';
    const token = conditional ? randomBytes(16).toString('hex') : undefined;
    const metadata = token === undefined ? options.metadata : { ...options.metadata, [WRITE_TOKEN]: token };
    // Set once any attempt of this write may have reached S3 and been applied without us seeing
    // the answer (an SDK retry after a 5xx or timeout, or our own retry below).
    let retried = false;
    for (let attempt = 0; ; attempt++) {
      try {
        const out = await this.client.send(
          new PutObjectCommand({
            ...common,
            Metadata: metadata,
            Body: bytes,
            IfNoneMatch: options.ifNoneMatch,
            IfMatch: ifMatch,
          }),
        );
        return { etag: unquote(out.ETag ?? '') };
      } catch (raw) {
        retried ||= ((raw as SdkError).$metadata?.attempts ?? 1) > 1;
        const e = translate(raw, key, condition);
        // A 412 after a retry may be our own earlier attempt that landed (its reply was lost):
        // the write succeeded exactly when the object carries this write's token.
        if (e instanceof ObjectPreconditionError && retried && token !== undefined) {
          const landed = await this.client
            .send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.full(key) }))
            .catch((h: unknown) => {
              const failure = translate(h, key);
              if (failure instanceof ObjectNotFoundError) return undefined; // gone since: not ours
              // Whether this write landed is unknown: say so (transient), never "someone else won".
              throw new StoreError(
                `conditional put of ${key}: could not check whether an earlier attempt landed (${failure.message})`,
                true,
                { cause: h },
              );
            });
          if (landed?.Metadata?.[WRITE_TOKEN] === token) return { etag: unquote(landed.ETag ?? '') };
        }
        // AWS: 409 ConditionalRequestConflict means a concurrent conditional write was in flight;
        // the documented answer is to retry, which then resolves to success or a real 412.
        // RGW answers a CAS that lost a race with 500 (ECANCELED) and never applies it: retrying
        // likewise turns into the true outcome.
        const raced = e instanceof ConditionalConflict || (e instanceof StoreError && e.transient);
        if (!raced) throw e;
        if (attempt >= CONFLICT_RETRIES)
          throw e instanceof ConditionalConflict ? new ObjectPreconditionError(key, condition) : e;
        retried = true;
        await sleep(backoffDelay(attempt, { baseMs: 20, maxMs: 1000 }));
      }
    }
  }

  async copy(fromKey: string, toKey: string, options: CopyOptions = {}): Promise<PutResult> {
    // The size picks CopyObject or multipart, and the source's metadata is needed for a multipart
    // copy (CreateMultipartUpload does not inherit it); a missing source is reported by its key.
    const source = await this.head(fromKey);
    if (options.sourceEtag !== undefined && source.etag !== options.sourceEtag)
      throw new ObjectPreconditionError(fromKey, 'if-match');
    const replace = options.contentType !== undefined || options.metadata !== undefined;
    const copySource = `${this.bucket}/${encodeKey(this.full(fromKey))}`;
    // The bytes copied are those whose size was just read: a source replaced meanwhile fails (412;
    // RGW checks this on CopyObject only, not on UploadPartCopy).
    const sourceEtag = this.options.quoteIfMatch ? `"${source.etag}"` : source.etag;
    if (source.size <= this.options.copyMultipartThresholdBytes) {
      const out = await this.send(toKey, () =>
        this.client.send(
          new CopyObjectCommand({
            Bucket: this.bucket,
            Key: this.full(toKey),
            CopySource: copySource,
            CopySourceIfMatch: sourceEtag,
            ...(replace
              ? { MetadataDirective: 'REPLACE', ContentType: options.contentType, Metadata: options.metadata }
              : {}),
          }),
        ),
      );
      return { etag: unquote(out.CopyObjectResult?.ETag ?? '') };
    }
    return this.copyMultipart(source, sourceEtag, copySource, toKey, {
      contentType: replace ? options.contentType : source.contentType,
      metadata: replace ? options.metadata : source.metadata,
    });
  }

  /** UploadPartCopy in ranges of `copyPartSizeBytes` (a few in parallel); aborted on any failure. */
  private async copyMultipart(
    source: ObjectInfo,
    sourceEtag: string,
    copySource: string,
    toKey: string,
    target: CopyOptions,
  ): Promise<PutResult> {
    const partSize = Math.max(
      this.options.copyPartSizeBytes,
      MIN_PART_BYTES,
      Math.ceil(source.size / MAX_PARTS),
    );
    const created = await this.send(toKey, () =>
      this.client.send(
        new CreateMultipartUploadCommand({
          Bucket: this.bucket,
          Key: this.full(toKey),
          ContentType: target.contentType,
          Metadata: target.metadata,
        }),
      ),
    );
    const uploadId = created.UploadId ?? '';
    try {
      const count = Math.ceil(source.size / partSize);
      const etags: string[] = new Array(count);
      let next = 0;
      const worker = async (): Promise<void> => {
        while (next < count) {
          const index = next++;
          const start = index * partSize;
          const end = Math.min(start + partSize, source.size) - 1;
          const out = await this.send(toKey, () =>
            this.client.send(
              new UploadPartCopyCommand({
                Bucket: this.bucket,
                Key: this.full(toKey),
                UploadId: uploadId,
                PartNumber: index + 1,
                CopySource: copySource,
                CopySourceIfMatch: sourceEtag,
                CopySourceRange: `bytes=${start}-${end}`,
              }),
            ),
          );
          etags[index] = out.CopyPartResult?.ETag ?? '';
        }
      };
      await Promise.all(Array.from({ length: Math.min(COPY_CONCURRENCY, count) }, worker));
      const done = await this.send(toKey, () =>
        this.client.send(
          new CompleteMultipartUploadCommand({
            Bucket: this.bucket,
            Key: this.full(toKey),
            UploadId: uploadId,
            MultipartUpload: { Parts: etags.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) },
          }),
        ),
      );
      // RGW answers CompleteMultipartUpload without an ETag: read it back then.
      if (done.ETag) return { etag: unquote(done.ETag) };
      return { etag: (await this.head(toKey)).etag };
    } catch (e) {
      // Parts of an unfinished upload are billed and invisible to listings: never leave one.
      await this.client
        .send(
          new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: this.full(toKey), UploadId: uploadId }),
        )
        .catch(() => undefined);
      throw e;
    }
  }

  async delete(key: string, options: ReadOptions = {}): Promise<void> {
    if (options.versionId === undefined && options.ifMatch !== undefined) {
      // AWS S3 enforces If-Match on DeleteObject; Ceph RGW 16 ignores it and deletes whatever is
      // there. Checking first keeps RGW to a window of one round trip instead of the whole
      // processing time; on AWS the header below makes it atomic.
      const current = await this.head(key).catch((e: unknown) => {
        if (e instanceof ObjectNotFoundError) return undefined;
        throw e;
      });
      if (current === undefined) return;
      if (current.etag !== options.ifMatch) throw new ObjectPreconditionError(key, 'if-match');
    }
    try {
      await this.send(
        key,
        () =>
          this.client.send(
            new DeleteObjectCommand({
              Bucket: this.bucket,
              Key: this.full(key),
              // A version id names exactly one object: deleting it cannot touch a newer upload.
              VersionId: options.versionId,
              IfMatch: options.versionId === undefined ? this.ifMatchHeader(options.ifMatch) : undefined,
            }),
          ),
        'if-match',
      );
    } catch (e) {
      if (e instanceof ObjectNotFoundError) return; // gone already: deleting a missing key is no error
      throw e;
    }
  }

  private ifMatchHeader(etag: string | undefined): string | undefined {
    if (etag === undefined) return undefined;
    return this.options.quoteIfMatch ? `"${etag}"` : etag;
  }

  async list(options: ListOptions = {}): Promise<ListPage> {
    const out = await this.send(options.prefix ?? '', () =>
      this.client.send(
        new ListObjectsV2Command({
          Bucket: this.bucket,
          Prefix: this.prefix + (options.prefix ?? ''),
          Delimiter: options.delimiter,
          StartAfter: options.startAfter === undefined ? undefined : this.prefix + options.startAfter,
          ContinuationToken: options.continuationToken,
          MaxKeys: Math.min(Math.max(options.maxKeys ?? 1000, 1), 1000),
        }),
      ),
    );
    const strip = (k: string): string => k.slice(this.prefix.length);
    const page: ListPage = {
      objects: (out.Contents ?? []).map((o) => ({
        key: strip(o.Key ?? ''),
        etag: unquote(o.ETag ?? ''),
        size: o.Size ?? 0,
        lastModified: o.LastModified ?? new Date(0),
      })),
      commonPrefixes: (out.CommonPrefixes ?? []).map((p) => strip(p.Prefix ?? '')),
    };
    if (out.IsTruncated && out.NextContinuationToken) page.nextToken = out.NextContinuationToken;
    return page;
  }

  /**
   * A presigned GET of `key`, valid `expiresIn` seconds. The presigner is imported on first use:
   * most functions never presign, and it would otherwise be evaluated in every cold start.
   * @example
   * const url = await store.presignGet('blobs/sha256/…', { expiresIn: 300, contentType: 'application/octet-stream' });
   */
  async presignGet(
    key: string,
    options: { expiresIn: number; contentType?: string; contentDisposition?: string },
  ): Promise<string> {
    const { getSignedUrl } = await import('@aws-sdk/s3-request-presigner');
    return getSignedUrl(
      this.client,
      new GetObjectCommand({
        Bucket: this.bucket,
        Key: this.full(key),
        ...(options.contentType ? { ResponseContentType: options.contentType } : {}),
        ...(options.contentDisposition ? { ResponseContentDisposition: options.contentDisposition } : {}),
      }),
      { expiresIn: options.expiresIn },
    );
  }

  /** The bucket key for a store key. */
  full(key: string): string {
    assertValidKey(key);
    return this.prefix + key;
  }

  /** Runs one SDK call and translates its failure into the store's typed errors. */
  private async send<T>(
    key: string,
    call: () => Promise<T>,
    condition?: 'if-match' | 'if-none-match',
  ): Promise<T> {
    try {
      return await call();
    } catch (e) {
      throw translate(e, key, condition);
    }
  }
}

/** Internal: S3 said 409 ConditionalRequestConflict; `put` retries it. */
class ConditionalConflict extends Error {}

interface SdkError {
  name?: string;
  Code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number; attempts?: number };
  $retryable?: unknown;
}

function translate(e: unknown, key: string, condition?: 'if-match' | 'if-none-match'): Error {
  if (e instanceof MaasError) return e;
  const err = (e ?? {}) as SdkError;
  const status = err.$metadata?.httpStatusCode;
  const name = err.name ?? err.Code ?? '';
  // A missing bucket is a configuration error, not a missing object: let it surface.
  if (name === 'NoSuchBucket')
    return new StoreError(`S3 bucket does not exist (${key}): ${err.message ?? ''}`, false, { cause: e });
  if (status === 404 || name === 'NoSuchKey' || name === 'NotFound' || name === 'NoSuchVersion')
    return new ObjectNotFoundError(key);
  if (status === 412 || name === 'PreconditionFailed')
    return new ObjectPreconditionError(key, condition ?? 'if-match');
  if (status === 409 && name === 'ConditionalRequestConflict') return new ConditionalConflict();
  const transient =
    status === undefined ||
    status >= 500 ||
    status === 429 ||
    err.$retryable !== undefined ||
    name === 'SlowDown';
  return new StoreError(
    `S3 ${name || 'error'} (${status ?? 'network'}) on ${key}: ${err.message ?? String(e)}`,
    transient,
    { cause: e },
  );
}

function toInfo(
  key: string,
  out: {
    ETag?: string;
    ContentLength?: number;
    LastModified?: Date;
    ContentType?: string;
    Metadata?: Record<string, string>;
    VersionId?: string;
  },
): ObjectInfo {
  const info: ObjectInfo = {
    key,
    etag: unquote(out.ETag ?? ''),
    size: out.ContentLength ?? 0,
    lastModified: out.LastModified ?? new Date(0),
    metadata: withoutWriteToken(out.Metadata ?? {}),
  };
  if (out.ContentType) info.contentType = out.ContentType;
  if (out.VersionId && out.VersionId !== 'null') info.versionId = out.VersionId;
  return info;
}

function withoutWriteToken(metadata: Record<string, string>): Record<string, string> {
  if (!(WRITE_TOKEN in metadata)) return metadata;
  const { [WRITE_TOKEN]: _, ...rest } = metadata;
  return rest;
}

function clientConfig(o: S3ObjectStoreOptions & typeof defaults): S3ClientConfig {
  const config: S3ClientConfig = {
    maxAttempts: o.maxAttempts,
    retryMode: 'standard',
    // RGW (and other S3-compatibles) reject the SDK's default CRC checksums on some calls.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  };
  if (o.region) config.region = o.region;
  if (o.endpoint) config.endpoint = o.endpoint;
  if (o.forcePathStyle !== undefined) config.forcePathStyle = o.forcePathStyle;
  if (o.credentials) config.credentials = o.credentials;
  return config;
}

function normalizePrefix(prefix: string): string {
  const trimmed = prefix.replace(/^\/+|\/+$/g, '');
  return trimmed ? `${trimmed}/` : '';
}

/** CopySource is a URL path: encode each key segment, keep the slashes. */
function encodeKey(key: string): string {
  return key.split('/').map(encodeURIComponent).join('/');
}

function unquote(etag: string): string {
  return etag.replace(/^W\//, '').replace(/^"|"$/g, '');
}

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk as Uint8Array));
  return Buffer.concat(chunks);
}
