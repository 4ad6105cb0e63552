// S3 helpers for tests. The endpoint comes from the environment, which
// test/setup/global-setup.ts fills in (either from the caller's S3_* variables
// or from the local Ceph RGW it starts). Tests must never silently skip
// because S3 is missing: s3TestConfig() throws instead.
import { randomBytes } from 'node:crypto';
import {
  AbortMultipartUploadCommand,
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectsCommand,
  ListMultipartUploadsCommand,
  ListObjectVersionsCommand,
  S3Client,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';

export interface S3TestConfig {
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  region: string;
}

const VARS = ['S3_ENDPOINT', 'S3_ACCESS_KEY', 'S3_SECRET_KEY', 'S3_REGION'] as const;

/** S3 connection settings of the test run; throws if the global setup did not provide them. */
export function s3TestConfig(): S3TestConfig {
  const missing = VARS.filter((name) => !process.env[name]);
  if (missing.length > 0) {
    throw new Error(
      `S3 test configuration missing: ${missing.join(', ')} not set. ` +
        'Run the tests through vitest with vitest.config.ts (its globalSetup, test/setup/global-setup.ts, ' +
        'starts a local Ceph RGW or uses S3_ENDPOINT/S3_ACCESS_KEY/S3_SECRET_KEY/S3_REGION from the environment).',
    );
  }
  const env = process.env as Record<(typeof VARS)[number], string>;
  return {
    endpoint: env.S3_ENDPOINT,
    accessKeyId: env.S3_ACCESS_KEY,
    secretAccessKey: env.S3_SECRET_KEY,
    region: env.S3_REGION,
  };
}

/**
 * An S3Client for the test endpoint, configured the way RGW needs it:
 * path-style addressing (RGW has no wildcard DNS here) and checksums only where
 * the API requires them (RGW 16 predates the SDK's default CRC32 trailers).
 */
export function createS3TestClient(overrides: Partial<S3ClientConfig> = {}): S3Client {
  const cfg = s3TestConfig();
  return new S3Client({
    endpoint: cfg.endpoint,
    region: cfg.region,
    credentials: { accessKeyId: cfg.accessKeyId, secretAccessKey: cfg.secretAccessKey },
    forcePathStyle: true,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    ...overrides,
  });
}

/**
 * A valid, unique bucket name: lowercase letters, digits and '-', 3..63 chars,
 * starting and ending with a letter or digit. The prefix is sanitised and cut
 * so that the random suffix always fits.
 */
export function uniqueBucketName(prefix: string): string {
  const suffix = `${Date.now().toString(36)}-${randomBytes(5).toString('hex')}`; // ~8 + 1 + 10 chars
  const clean = prefix
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/-{2,}/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 63 - suffix.length - 1)
    .replace(/-+$/g, '');
  return clean ? `${clean}-${suffix}` : `t-${suffix}`;
}

export interface TestBucket {
  bucket: string;
  client: S3Client;
  /** Deletes every object version, delete marker and pending multipart upload, then the bucket. Idempotent. */
  cleanup(): Promise<void>;
}

/** Creates a fresh bucket named `<prefix>-<time>-<random>` on the test endpoint. */
export async function createTestBucket(prefix: string): Promise<TestBucket> {
  const client = createS3TestClient();
  const bucket = uniqueBucketName(prefix);
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  let cleaned = false;
  return {
    bucket,
    client,
    async cleanup() {
      if (cleaned) return;
      try {
        await emptyBucket(client, bucket);
        await client.send(new DeleteBucketCommand({ Bucket: bucket }));
      } catch (err) {
        if ((err as { name?: string }).name !== 'NoSuchBucket') throw err;
      }
      cleaned = true;
      client.destroy();
    },
  };
}

/**
 * Removes everything from a bucket. ListObjectVersions also covers unversioned
 * buckets (VersionId "null") and buckets a test switched versioning on for,
 * where a plain DeleteObject would only add delete markers.
 */
export async function emptyBucket(client: S3Client, bucket: string): Promise<void> {
  let KeyMarker: string | undefined;
  let VersionIdMarker: string | undefined;
  for (;;) {
    const page = await client.send(
      new ListObjectVersionsCommand({ Bucket: bucket, KeyMarker, VersionIdMarker, MaxKeys: 1000 }),
    );
    const objects = [...(page.Versions ?? []), ...(page.DeleteMarkers ?? [])]
      .filter((o) => o.Key !== undefined)
      .map((o) => ({ Key: o.Key!, VersionId: o.VersionId }));
    if (objects.length > 0) {
      const res = await client.send(
        new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: objects, Quiet: true } }),
      );
      if (res.Errors && res.Errors.length > 0) {
        const first = res.Errors[0]!;
        throw new Error(
          `emptyBucket(${bucket}): ${res.Errors.length} deletes failed, e.g. ${first.Key}: ${first.Code} ${first.Message ?? ''}`,
        );
      }
    }
    if (!page.IsTruncated) break;
    KeyMarker = page.NextKeyMarker;
    VersionIdMarker = page.NextVersionIdMarker;
  }

  let UploadIdMarker: string | undefined;
  let MpuKeyMarker: string | undefined;
  for (;;) {
    const page = await client.send(
      new ListMultipartUploadsCommand({ Bucket: bucket, KeyMarker: MpuKeyMarker, UploadIdMarker }),
    );
    await Promise.all(
      (page.Uploads ?? []).map((u) =>
        client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: u.Key!, UploadId: u.UploadId! })),
      ),
    );
    if (!page.IsTruncated) break;
    MpuKeyMarker = page.NextKeyMarker;
    UploadIdMarker = page.NextUploadIdMarker;
  }
}
