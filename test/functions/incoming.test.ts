import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import type { S3Event, S3EventRecord } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { handler } from '../../functions/register-version/handler';
import type { S3EventReport } from '../../functions/register-version/s3-event';
import type { ModelVersion, Page } from '../../shared/registry';
import { decodeS3EventKey, encodeS3EventKey, type RejectionRecord } from '../../shared/registry/incoming';
import { tinyModel } from '../support/models';
import { STORE_PREFIX, type TestApi, useTestApi } from './runtime';

/** A record shaped exactly like the ones S3 delivers to Lambda (event version 2.1). */
function s3Record(
  bucket: string,
  key: string,
  size: number,
  eventName = 'ObjectCreated:Put',
  object: { eTag?: string; versionId?: string } = {},
): S3EventRecord {
  return {
    eventVersion: '2.1',
    eventSource: 'aws:s3',
    awsRegion: 'us-east-1',
    eventTime: new Date().toISOString(),
    eventName,
    userIdentity: { principalId: 'AWS:AIDAEXAMPLE' },
    requestParameters: { sourceIPAddress: '127.0.0.1' },
    responseElements: {
      'x-amz-request-id': 'C3D13FE58DE4C810',
      'x-amz-id-2': 'FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD',
    },
    s3: {
      s3SchemaVersion: '1.0',
      configurationId: 'maas-incoming',
      bucket: {
        name: bucket,
        ownerIdentity: { principalId: 'A3NL1KOZZKExample' },
        arn: `arn:aws:s3:::${bucket}`,
      },
      object: {
        key: encodeS3EventKey(key),
        size,
        eTag: object.eTag ?? 'd41d8cd98f00b204e9800998ecf8427e',
        ...(object.versionId ? { versionId: object.versionId } : {}),
        sequencer: '0055AED6DCD90281E5',
      },
    },
  } as S3EventRecord;
}

describe('S3 ObjectCreated trigger on incoming/ (RGW)', () => {
  let api: TestApi;
  let bucket: string;
  beforeAll(async () => {
    api = await useTestApi('s3', 'fn-incoming');
    bucket = api.bucket!.bucket;
  });
  afterAll(async () => api?.cleanup());

  // The record S3 sends for this very upload: its etag (S3 events carry it unquoted).
  const drop = async (key: string, body: Uint8Array, metadata?: Record<string, string>) => {
    const put = await api.bucket!.client.send(
      new PutObjectCommand({ Bucket: bucket, Key: `${STORE_PREFIX}/${key}`, Body: body, Metadata: metadata }),
    );
    return s3Record(bucket, `${STORE_PREFIX}/${key}`, body.length, 'ObjectCreated:Put', {
      eTag: put.ETag!.replace(/"/g, ''),
      ...(put.VersionId ? { versionId: put.VersionId } : {}),
    });
  };
  const deliver = (...records: S3EventRecord[]) =>
    handler({ Records: records } satisfies S3Event, {} as never) as Promise<S3EventReport>;
  const keys = async (prefix: string) =>
    (
      (
        await api.bucket!.client.send(
          new ListObjectsV2Command({ Bucket: bucket, Prefix: `${STORE_PREFIX}/${prefix}` }),
        )
      ).Contents ?? []
    ).map((o) => o.Key!.slice(STORE_PREFIX.length + 1));
  const versions = async (name: string) => {
    const res = await api.call('GET', `/models/${name}/versions`);
    return res.status === 404 ? [] : res.json<Page<ModelVersion>>().items;
  };

  it('decodes keys as S3 encodes them', () => {
    expect(decodeS3EventKey('incoming/iris/my+model+%2B+%C3%A9t%C3%A9+%E6%A8%A1%E5%9E%8B.onnx')).toBe(
      'incoming/iris/my model + été 模型.onnx',
    );
    expect(decodeS3EventKey(encodeS3EventKey('incoming/a/100% (final)&co.onnx'))).toBe(
      'incoming/a/100% (final)&co.onnx',
    );
    expect(() => decodeS3EventKey('incoming/a/%E0%A4%A.onnx')).toThrow(/percent-encoding/);
  });

  it('registers a file with an encoded unicode name through the registry, then removes it from incoming/', async () => {
    const key = 'incoming/iris/night build + été 模型.onnx';
    const record = await drop(key, tinyModel(1), { description: 'dropped in', alias: 'staging' });
    expect(record.s3.object.key).toBe(
      `${STORE_PREFIX}/incoming/iris/night+build+%2B+%C3%A9t%C3%A9+%E6%A8%A1%E5%9E%8B.onnx`,
    );
    const report = await deliver(record);
    expect(report.outcomes).toEqual([{ status: 'registered', key, name: 'iris', version: 1 }]);
    const [v] = await versions('iris');
    expect(v).toMatchObject({
      version: 1,
      source: `s3://${bucket}/${STORE_PREFIX}/${key}`,
      description: 'dropped in',
      actor: 's3-upload',
    });
    expect(
      (await api.call('GET', '/models/iris')).json<{ aliases: Record<string, { version: number }> }>().aliases
        .staging?.version,
    ).toBe(1);
    expect(await keys('incoming/')).toEqual([]);
  });

  it('creates no duplicate version on duplicate delivery (sequential, concurrent, or the same bytes again)', async () => {
    const record = await drop('incoming/dup/a.onnx', tinyModel(2));
    const [a, b] = await Promise.all([deliver(record), deliver(record)]);
    const statuses = [...a.outcomes, ...b.outcomes].map((o) => o.status).sort();
    // Concurrent twins: one registers; the other either dedupes to the same version or finds the object gone.
    expect(statuses[1]).toBe('registered');
    expect(['duplicate', 'missing']).toContain(statuses[0]);
    expect((await deliver(record)).outcomes[0]).toMatchObject({ status: 'missing' });
    const again = await drop('incoming/dup/a-copy.onnx', tinyModel(2));
    expect((await deliver(again)).outcomes[0]).toEqual({
      status: 'duplicate',
      key: 'incoming/dup/a-copy.onnx',
      name: 'dup',
      version: 1,
    });
    expect((await versions('dup')).map((v) => v.version)).toEqual([1]);
    expect(await keys('incoming/')).toEqual([]);
  });

  it('quarantines an invalid file in rejected/ with its reason beside it, and registers nothing', async () => {
    const bad = Buffer.from('this is not an onnx model');
    const report = await deliver(await drop('incoming/broken/model v1.onnx', bad));
    expect(report.outcomes[0]).toMatchObject({
      status: 'rejected',
      rejectedKey: 'rejected/broken/model v1.onnx',
      errorKey: 'rejected/broken/model v1.onnx.error.json',
    });
    expect(await keys('rejected/broken/')).toEqual([
      'rejected/broken/model v1.onnx',
      'rejected/broken/model v1.onnx.error.json',
    ]);
    const moved = await api.bucket!.client.send(
      new GetObjectCommand({ Bucket: bucket, Key: `${STORE_PREFIX}/rejected/broken/model v1.onnx` }),
    );
    expect(Buffer.from(await moved.Body!.transformToByteArray())).toEqual(bad);
    const why = await api.bucket!.client.send(
      new GetObjectCommand({
        Bucket: bucket,
        Key: `${STORE_PREFIX}/rejected/broken/model v1.onnx.error.json`,
      }),
    );
    const record = JSON.parse(await why.Body!.transformToString()) as RejectionRecord;
    expect(record).toMatchObject({ key: 'incoming/broken/model v1.onnx', error: { code: 'unprocessable' } });
    expect(record.error.error).toMatch(/ONNX|protobuf|model/i);
    expect(await versions('broken')).toEqual([]);
    expect((await api.call('GET', '/models/broken')).status).toBe(404);
    expect(await keys('incoming/')).toEqual([]);
  });

  it('quarantines a file above the size limit (413 reason), registering nothing', async () => {
    api.reset({ MAAS_MAX_MODEL_BYTES: '300' });
    try {
      const report = await deliver(await drop('incoming/huge/h.onnx', tinyModel(5)));
      expect(report.outcomes[0]).toMatchObject({
        status: 'rejected',
        error: { code: 'too_large', details: { limit: 300 } },
      });
    } finally {
      api.reset({ MAAS_MAX_MODEL_BYTES: undefined });
    }
    expect(await keys('rejected/huge/')).toEqual(['rejected/huge/h.onnx', 'rejected/huge/h.onnx.error.json']);
    expect(await versions('huge')).toEqual([]);
  });

  it('quarantines files whose path names no valid model, or whose metadata is invalid', async () => {
    const report = await deliver(
      await drop('incoming/Not A Name/x.onnx', tinyModel(3)),
      await drop('incoming/loose.onnx', tinyModel(3)),
      await drop('incoming/okname/y.onnx', tinyModel(3), { alias: 'latest' }),
    );
    expect(report.outcomes.map((o) => [o.status, 'error' in o ? o.error.code : undefined])).toEqual([
      ['rejected', 'invalid_argument'],
      ['rejected', 'invalid_argument'],
      ['rejected', 'invalid_argument'],
    ]);
    expect(await keys('rejected/')).toEqual(
      expect.arrayContaining([
        'rejected/Not A Name/x.onnx.error.json',
        'rejected/loose.onnx.error.json',
        'rejected/okname/y.onnx.error.json',
      ]),
    );
    expect(await versions('okname')).toEqual([]);
  });

  it('ignores, and leaves alone, objects outside incoming/, other buckets, other event types', async () => {
    const outside = await drop('elsewhere/iris/z.onnx', tinyModel(4));
    const otherBucket = s3Record('some-other-bucket', `${STORE_PREFIX}/incoming/iris/z.onnx`, 10);
    const noPrefix = s3Record(bucket, 'incoming/iris/z.onnx', 10);
    const removed = s3Record(bucket, `${STORE_PREFIX}/incoming/iris/z.onnx`, 0, 'ObjectRemoved:Delete');
    const folder = s3Record(bucket, `${STORE_PREFIX}/incoming/iris/`, 0);
    const report = await deliver(outside, otherBucket, noPrefix, removed, folder);
    expect(report.outcomes.map((o) => o.status)).toEqual([
      'ignored',
      'ignored',
      'ignored',
      'ignored',
      'ignored',
    ]);
    for (const o of report.outcomes) expect((o as { reason: string }).reason.length).toBeGreaterThan(5);
    expect(await keys('elsewhere/')).toEqual(['elsewhere/iris/z.onnx']);
    expect((await versions('iris')).map((v) => v.version)).toEqual([1]);
  });

  it('an event for an object replaced since registers nothing of the old one and leaves the new one to its own event', async () => {
    const stale = await drop('incoming/swap/a.onnx', tinyModel(11));
    const fresh = await drop('incoming/swap/a.onnx', tinyModel(12));
    expect(stale.s3.object.eTag).not.toBe(fresh.s3.object.eTag);
    expect((await deliver(stale)).outcomes[0]).toMatchObject({
      status: 'superseded',
      key: 'incoming/swap/a.onnx',
    });
    expect(await keys('incoming/swap/')).toEqual(['incoming/swap/a.onnx']);
    expect(await versions('swap')).toEqual([]);
    expect((await deliver(fresh)).outcomes[0]).toMatchObject({ status: 'registered', version: 1 });
    expect(await keys('incoming/swap/')).toEqual([]);
  });

  it('fails the invocation (so Lambda retries) when the store is unreachable, quarantining nothing', async () => {
    const record = await drop('incoming/retry/a.onnx', tinyModel(9));
    const { S3_ENDPOINT } = process.env;
    api.reset({ S3_ENDPOINT: 'http://127.0.0.1:1' });
    try {
      await expect(deliver(record)).rejects.toThrow(/1 of 1 records failed/);
    } finally {
      api.reset({ S3_ENDPOINT });
    }
    expect(await keys('incoming/retry/')).toEqual(['incoming/retry/a.onnx']);
    expect(await keys('rejected/retry/')).toEqual([]);
    // The retry, with the store back, registers it.
    expect((await deliver(record)).outcomes[0]).toMatchObject({
      status: 'registered',
      name: 'retry',
      version: 1,
    });
  });
});
