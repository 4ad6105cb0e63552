/**
 * The S3 adapter's read-back after a lost conditional-put reply, through the fault proxy in front
 * of RGW: a reply lost after S3 applied the write is this write's success; an identical body put
 * there by another writer meanwhile is a conflict (412), not a success.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ObjectPreconditionError, S3ObjectStore, StoreError } from '../../shared/store';
import { type FaultProxy, startFaultProxy } from '../support/fault-proxy';
import { createTestBucket, s3TestConfig, type TestBucket } from '../support/s3';

let bucket: TestBucket;
let proxy: FaultProxy;
let faulty: S3ObjectStore;
let direct: S3ObjectStore;

beforeAll(async () => {
  const cfg = s3TestConfig();
  bucket = await createTestBucket('faults-s3-store');
  proxy = await startFaultProxy(cfg.endpoint);
  faulty = new S3ObjectStore({
    bucket: bucket.bucket,
    endpoint: proxy.endpoint,
    region: cfg.region,
    forcePathStyle: true,
    credentials: { accessKeyId: cfg.accessKeyId, secretAccessKey: cfg.secretAccessKey },
  });
  direct = new S3ObjectStore({ bucket: bucket.bucket, client: bucket.client });
});
afterAll(async () => {
  await proxy?.close();
  await bucket?.cleanup();
});

const puts = (key: string): string[] =>
  proxy.log.filter((r) => r.method === 'PUT' && r.path.includes(key)).map((r) => r.action);

describe('S3ObjectStore conditional put after a lost reply', () => {
  it('create-only: its own write that landed is a success with the etag S3 holds', async () => {
    proxy.inject({ method: 'PUT', path: /\/own-create\.json/, action: 'reset-after' });
    const put = await faulty.put('own-create.json', '{"v":1}', { ifNoneMatch: '*' });
    const head = await direct.head('own-create.json');
    expect(put.etag).toBe(head.etag);
    expect(puts('own-create')).toEqual(['reset-after', 'pass']); // applied, then 412 on the retry
    expect(head.metadata).toEqual({}); // the write token stays internal
  });

  it('create-only: another writer that put the identical body meanwhile wins; this write gets 412', async () => {
    const body = '{"v":"same bytes"}';
    proxy.inject({
      method: 'PUT',
      path: /\/theirs-create\.json/,
      action: 'reset-before',
      before: async () => void (await direct.put('theirs-create.json', body, { ifNoneMatch: '*' })),
    });
    await expect(faulty.put('theirs-create.json', body, { ifNoneMatch: '*' })).rejects.toBeInstanceOf(
      ObjectPreconditionError,
    );
    expect(puts('theirs-create')).toEqual(['reset-before', 'pass']);
  });

  it('compare-and-swap: its own landed replacement is a success; an identical one by another writer is 412', async () => {
    const first = await direct.put('cas.json', '{"n":0}');
    proxy.inject({ method: 'PUT', path: /\/cas\.json/, action: 'reset-after' });
    const mine = await faulty.put('cas.json', '{"n":1}', { ifMatch: first.etag });
    expect(mine.etag).toBe((await direct.head('cas.json')).etag);

    proxy.inject({
      method: 'PUT',
      path: /\/cas\.json/,
      action: 'reset-before',
      before: async () => void (await direct.put('cas.json', '{"n":2}', { ifMatch: mine.etag })),
    });
    await expect(faulty.put('cas.json', '{"n":2}', { ifMatch: mine.etag })).rejects.toBeInstanceOf(
      ObjectPreconditionError,
    );
  });

  it('503 SlowDown is retried to the true outcome', async () => {
    proxy.inject({ method: 'PUT', path: /\/throttled\.json/, action: 'slowdown', times: 2 });
    const put = await faulty.put('throttled.json', '{}', { ifNoneMatch: '*' });
    expect(put.etag).toBe((await direct.head('throttled.json')).etag);
    expect(puts('throttled')).toEqual(['slowdown', 'slowdown', 'pass']);
  });

  it('a stalled request completes with the right data once the stall ends', async () => {
    await direct.put('stalled.json', '{"slow":true}');
    proxy.stallMs = 300;
    proxy.inject({ method: 'GET', path: /\/stalled\.json/, action: 'stall' });
    const got = await faulty.get('stalled.json');
    expect(got.body.toString()).toBe('{"slow":true}');
    expect(proxy.log.filter((r) => r.path.includes('stalled')).map((r) => r.action)).toEqual(['stall']);
  });

  it('a body reset mid-way is a transient StoreError (503), and the next read is whole', async () => {
    const body = 'x'.repeat(100_000);
    await direct.put('cut.bin', body);
    const single = new S3ObjectStore({
      bucket: bucket.bucket,
      endpoint: proxy.endpoint,
      region: s3TestConfig().region,
      forcePathStyle: true,
      credentials: {
        accessKeyId: s3TestConfig().accessKeyId,
        secretAccessKey: s3TestConfig().secretAccessKey,
      },
      maxAttempts: 1,
    });
    proxy.inject({ method: 'GET', path: /\/cut\.bin/, action: 'reset-mid-body' });
    const failure = await single.get('cut.bin').catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(StoreError);
    expect((failure as StoreError).transient).toBe(true);
    expect((await single.get('cut.bin')).body.toString()).toBe(body);
  });
});
