// Smoke test for the S3 test endpoint (Ceph RGW 16 unless S3_ENDPOINT points
// elsewhere) and a record of how it implements conditional writes, which the
// object store relies on for create-only puts and compare-and-swap:
//
// * PutObject IfNoneMatch: '*' on an existing key -> 412 PreconditionFailed.
// * PutObject IfMatch must carry the ETag UNQUOTED. RGW 16 compares the header
//   verbatim with its stored (unquoted) etag, so the quoted form that
//   PutObject/HeadObject return ('"abc…"') never matches: 412 even when current.
// * Stale IfMatch -> 412, also when the key does not exist (AWS: 404).
// * Concurrent IfMatch puts with the same etag: exactly one wins, but the
//   losers get HTTP 500 (RGW op status -ECANCELED, SDK error name
//   'UnknownError'), not 412, and the SDK's default retry then often turns it
//   into a 412 on the 2nd attempt. Nothing of a loser is written either way.
// The SDK v3 surfaces a 412 as S3ServiceException with name/Code
// 'PreconditionFailed' and $metadata.httpStatusCode 412 (message 'UnknownError'
// because RGW sends an empty <Message>).
import {
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  type S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createS3TestClient, createTestBucket, s3TestConfig, type TestBucket } from '../support/s3';

const unquote = (etag: string | undefined): string => (etag ?? '').replace(/^"|"$/g, '');

async function putError(client: S3Client, input: ConstructorParameters<typeof PutObjectCommand>[0]) {
  try {
    await client.send(new PutObjectCommand(input));
  } catch (err) {
    expect(err).toBeInstanceOf(S3ServiceException);
    const e = err as S3ServiceException;
    return { name: e.name, status: e.$metadata.httpStatusCode };
  }
  throw new Error(`PutObject ${input.Key} unexpectedly succeeded`);
}

async function read(client: S3Client, bucket: string, key: string): Promise<string> {
  const res = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return res.Body!.transformToString();
}

describe('S3 test endpoint (RGW) smoke', () => {
  let tb: TestBucket;
  beforeAll(async () => {
    tb = await createTestBucket('rgw-smoke');
  });
  afterAll(async () => {
    await tb?.cleanup();
  });

  it('gets its configuration from the global setup through the environment', () => {
    expect(process.env.MAAS_TEST_S3).toBe('1');
    expect(s3TestConfig().endpoint).toMatch(/^https?:\/\//);
    expect(tb.bucket).toMatch(/^rgw-smoke-[a-z0-9-]+$/);
  });

  it('create-only put: IfNoneMatch "*" succeeds once, then 412', async () => {
    const { client, bucket } = tb;
    const first = await client.send(
      new PutObjectCommand({ Bucket: bucket, Key: 'create-only', Body: 'v1', IfNoneMatch: '*' }),
    );
    expect(first.ETag).toMatch(/^"[0-9a-f]{32}"$/); // returned quoted

    expect(
      await putError(client, { Bucket: bucket, Key: 'create-only', Body: 'v2', IfNoneMatch: '*' }),
    ).toEqual({
      name: 'PreconditionFailed',
      status: 412,
    });
    expect(await read(client, bucket, 'create-only')).toBe('v1');
  });

  it('compare-and-swap: IfMatch wants the etag unquoted; stale etag gives 412', async () => {
    const { client, bucket } = tb;
    const v1 = await client.send(
      new PutObjectCommand({ Bucket: bucket, Key: 'cas', Body: 'v1', IfNoneMatch: '*' }),
    );
    const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: 'cas' }));
    expect(head.ETag).toBe(v1.ETag);

    // Quoted, as returned by the SDK: RGW 16 never matches it, even though it is current.
    expect(await putError(client, { Bucket: bucket, Key: 'cas', Body: 'quoted', IfMatch: v1.ETag })).toEqual({
      name: 'PreconditionFailed',
      status: 412,
    });
    expect(await read(client, bucket, 'cas')).toBe('v1');

    // Unquoted and current: the swap happens.
    const v2 = await client.send(
      new PutObjectCommand({ Bucket: bucket, Key: 'cas', Body: 'v2', IfMatch: unquote(v1.ETag) }),
    );
    expect(v2.$metadata.httpStatusCode).toBe(200);
    expect(v2.ETag).not.toBe(v1.ETag);
    expect(await read(client, bucket, 'cas')).toBe('v2');

    // Unquoted but stale: 412, nothing written.
    expect(
      await putError(client, { Bucket: bucket, Key: 'cas', Body: 'stale', IfMatch: unquote(v1.ETag) }),
    ).toEqual({
      name: 'PreconditionFailed',
      status: 412,
    });
    expect(await read(client, bucket, 'cas')).toBe('v2');

    // IfMatch on a key that does not exist: RGW says 412 (AWS S3 says 404 NoSuchKey).
    expect(
      await putError(client, { Bucket: bucket, Key: 'cas-missing', Body: 'x', IfMatch: unquote(v2.ETag) }),
    ).toEqual({
      name: 'PreconditionFailed',
      status: 412,
    });
  });

  it('concurrent create-only and compare-and-swap puts: exactly one winner each', async () => {
    const { bucket } = tb;
    // No SDK retries, to see what RGW itself answers to the losers.
    const client = createS3TestClient({ maxAttempts: 1 });
    try {
      const N = 8;
      const creates = await Promise.allSettled(
        Array.from({ length: N }, (_, i) =>
          client.send(new PutObjectCommand({ Bucket: bucket, Key: 'race', Body: `c${i}`, IfNoneMatch: '*' })),
        ),
      );
      const created = creates.flatMap((r, i) =>
        r.status === 'fulfilled' ? [{ i, etag: r.value.ETag }] : [],
      );
      expect(created).toHaveLength(1);
      for (const r of creates)
        if (r.status === 'rejected')
          expect((r.reason as S3ServiceException).$metadata.httpStatusCode).toBe(412);
      expect(await read(client, bucket, 'race')).toBe(`c${created[0]!.i}`);

      const swaps = await Promise.allSettled(
        Array.from({ length: N }, (_, i) =>
          client.send(
            new PutObjectCommand({
              Bucket: bucket,
              Key: 'race',
              Body: `s${i}`,
              IfMatch: unquote(created[0]!.etag),
            }),
          ),
        ),
      );
      const swapped = swaps.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []));
      expect(swapped).toHaveLength(1);
      // Losers: 412 PreconditionFailed, or (RGW 16 race) 500 UnknownError.
      for (const r of swaps) {
        if (r.status === 'fulfilled') continue;
        const e = r.reason as S3ServiceException;
        expect([412, 500]).toContain(e.$metadata.httpStatusCode);
        expect(e.name).toBe(e.$metadata.httpStatusCode === 412 ? 'PreconditionFailed' : 'UnknownError');
      }
      expect(await read(client, bucket, 'race')).toBe(`s${swapped[0]}`);
    } finally {
      client.destroy();
    }
  });
});
