import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  listAll,
  ObjectNotFoundError,
  ObjectPreconditionError,
  type ObjectStore,
  readWithSha256,
  S3ObjectStore,
  StoreError,
} from '../../shared/store';
import { createS3TestClient } from '../support/s3';
import { createTestStore, storeKinds, type TestStore } from '../support/stores';

describe.each(storeKinds)('ObjectStore contract: %s', (kind) => {
  let t: TestStore;
  let store: ObjectStore;
  beforeAll(async () => {
    t = await createTestStore(kind, 'contract');
    store = t.store;
  });
  afterAll(() => t.cleanup());

  it('puts, gets, heads and deletes with content type and metadata', async () => {
    const put = await store.put('crud/a.json', '{"a":1}', {
      contentType: 'application/json',
      metadata: { Owner: 'team-x' },
    });
    const got = await store.get('crud/a.json');
    expect(got.body.toString()).toBe('{"a":1}');
    expect(got.etag).toBe(put.etag);
    expect(got.size).toBe(7);
    expect(got.contentType).toBe('application/json');
    expect(got.metadata).toEqual({ owner: 'team-x' });
    const head = await store.head('crud/a.json');
    expect(head.etag).toBe(put.etag);
    expect(head.size).toBe(7);
    await store.delete('crud/a.json');
    await expect(store.get('crud/a.json')).rejects.toBeInstanceOf(ObjectNotFoundError);
    await store.delete('crud/a.json'); // deleting a missing key is fine
  });

  it('readWithSha256 returns the bytes and their sha256 in one read; a missing key is not found', async () => {
    const bytes = Buffer.from(Array.from({ length: 200_003 }, (_, i) => (i * 31 + 7) % 256));
    await store.put('hashed/blob.bin', bytes);
    const { body, sha256 } = await readWithSha256(store, 'hashed/blob.bin');
    expect(body.equals(bytes)).toBe(true);
    expect(sha256).toBe(createHash('sha256').update(bytes).digest('hex'));
    await expect(readWithSha256(store, 'hashed/missing.bin')).rejects.toBeInstanceOf(ObjectNotFoundError);
  });

  it('replacing an object changes its etag', async () => {
    const first = await store.put('crud/b', 'one');
    const second = await store.put('crud/b', 'two');
    expect(second.etag).not.toBe(first.etag);
    expect((await store.get('crud/b')).body.toString()).toBe('two');
  });

  it('streams bodies in and out (binary safe)', async () => {
    const bytes = Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 7919) % 256));
    await store.put('stream/bin', Readable.from([bytes.subarray(0, 1000), bytes.subarray(1000)]));
    const { body, size } = await store.getStream('stream/bin');
    const chunks: Buffer[] = [];
    for await (const c of body) chunks.push(c as Buffer);
    expect(size).toBe(bytes.length);
    expect(Buffer.concat(chunks).equals(bytes)).toBe(true);
  });

  it('missing keys raise ObjectNotFoundError on get, getStream and head', async () => {
    await expect(store.get('nope/x')).rejects.toBeInstanceOf(ObjectNotFoundError);
    await expect(store.getStream('nope/x')).rejects.toBeInstanceOf(ObjectNotFoundError);
    await expect(store.head('nope/x')).rejects.toBeInstanceOf(ObjectNotFoundError);
  });

  it('create-only put (If-None-Match: *) succeeds once', async () => {
    await store.put('cond/create', 'first', { ifNoneMatch: '*' });
    await expect(store.put('cond/create', 'second', { ifNoneMatch: '*' })).rejects.toBeInstanceOf(
      ObjectPreconditionError,
    );
    expect((await store.get('cond/create')).body.toString()).toBe('first');
  });

  it('concurrent create-only puts: exactly one wins', async () => {
    const results = await Promise.allSettled(
      Array.from({ length: 12 }, (_, i) => store.put('cond/race', `writer-${i}`, { ifNoneMatch: '*' })),
    );
    const won = results.filter((r) => r.status === 'fulfilled');
    expect(won).toHaveLength(1);
    for (const r of results)
      if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(ObjectPreconditionError);
  });

  it('compare-and-swap put (If-Match) replaces only the expected version', async () => {
    const v1 = await store.put('cond/cas', 'v1');
    const v2 = await store.put('cond/cas', 'v2', { ifMatch: v1.etag });
    await expect(store.put('cond/cas', 'stale', { ifMatch: v1.etag })).rejects.toBeInstanceOf(
      ObjectPreconditionError,
    );
    expect((await store.get('cond/cas')).body.toString()).toBe('v2');
    await store.put('cond/cas', 'v3', { ifMatch: v2.etag });
    expect((await store.get('cond/cas')).body.toString()).toBe('v3');
    await expect(store.put('cond/absent', 'x', { ifMatch: v1.etag })).rejects.toSatisfy(
      (e) => e instanceof ObjectNotFoundError || e instanceof ObjectPreconditionError,
    );
  });

  it('concurrent compare-and-swap: exactly one of the racers on one etag wins', async () => {
    const base = await store.put('cond/cas-race', '0');
    const results = await Promise.allSettled(
      Array.from({ length: 8 }, (_, i) => store.put('cond/cas-race', `w${i}`, { ifMatch: base.etag })),
    );
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
  });

  it('lists with prefix, delimiter, start-after and pagination in byte order', async () => {
    const keys = ['list/a/1', 'list/a/2', 'list/b', 'list/c/x/y', 'list/d', 'list/é', 'list/Z', 'lista'];
    await Promise.all(keys.map((k) => store.put(k, k)));
    const flat = await listAll(store, { prefix: 'list/' });
    expect(flat.objects.map((o) => o.key)).toEqual([
      'list/Z',
      'list/a/1',
      'list/a/2',
      'list/b',
      'list/c/x/y',
      'list/d',
      'list/é',
    ]);
    expect(flat.objects.find((o) => o.key === 'list/b')?.size).toBe(6);

    const grouped = await store.list({ prefix: 'list/', delimiter: '/' });
    expect(grouped.objects.map((o) => o.key)).toEqual(['list/Z', 'list/b', 'list/d', 'list/é']);
    expect(grouped.commonPrefixes).toEqual(['list/a/', 'list/c/']);

    const seen: string[] = [];
    let token: string | undefined;
    let pages = 0;
    do {
      const page = await store.list({
        prefix: 'list/',
        maxKeys: 2,
        ...(token ? { continuationToken: token } : {}),
      });
      expect(page.objects.length).toBeLessThanOrEqual(2);
      seen.push(...page.objects.map((o) => o.key));
      token = page.nextToken;
      pages++;
    } while (token);
    expect(seen).toEqual(flat.objects.map((o) => o.key));
    expect(pages).toBe(4);

    const after = await store.list({ prefix: 'list/', startAfter: 'list/b' });
    expect(after.objects.map((o) => o.key)).toEqual(['list/c/x/y', 'list/d', 'list/é']);
    expect((await store.list({ prefix: 'missing/' })).objects).toEqual([]);
  });
});

describe('S3ObjectStore specifics', () => {
  it('a missing bucket is a store error, not a missing object', async () => {
    const store = new S3ObjectStore({ bucket: 'maas-no-such-bucket-0000', client: createS3TestClient() });
    const error = await store.get('any/key').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StoreError);
    expect(error).not.toBeInstanceOf(ObjectNotFoundError);
  });

  it('a conditional put whose first attempt landed but whose answer was lost still succeeds', async () => {
    const t = await createTestStore('s3', 'lostreply');
    try {
      const store = t.store as S3ObjectStore;
      let failures = 0;
      // Inside the SDK's retry loop: let the first PutObject reach RGW, then report a 503 as a
      // lost reply would; the SDK retries, and the retry meets its own committed write (412).
      store.client.middlewareStack.add(
        (next, context) => async (args) => {
          const result = await next(args);
          if (context.commandName === 'PutObjectCommand' && failures === 0) {
            failures++;
            throw Object.assign(new Error('injected: reply lost'), {
              name: 'ServiceUnavailable',
              $fault: 'server',
              $metadata: { httpStatusCode: 503 },
            });
          }
          return result;
        },
        { step: 'deserialize', name: 'loseFirstReply' },
      );
      const put = await store.put('lost/reply.json', '{"writer":"me"}', { ifNoneMatch: '*' });
      expect(failures).toBe(1);
      expect(put.etag).toBe((await store.head('lost/reply.json')).etag);
      // A genuinely lost race is still a precondition failure.
      failures = 1;
      await expect(
        store.put('lost/reply.json', '{"writer":"other"}', { ifNoneMatch: '*' }),
      ).rejects.toBeInstanceOf(ObjectPreconditionError);
    } finally {
      await t.cleanup();
    }
  });

  it('a retried conditional put that meets equal bytes from another writer is still a lost race', async () => {
    const t = await createTestStore('s3', 'samebytes');
    try {
      const store = t.store as S3ObjectStore;
      const other = new S3ObjectStore({
        bucket: store.bucket,
        prefix: store.prefix,
        client: createS3TestClient(),
      });
      const body = '{"n":4}'; // two compare-and-swap writers that read n=3 both compute this
      let failures = 0;
      // The first attempt never reaches RGW (a 503 before sending) while another writer stores
      // the same bytes; the SDK's retry then meets that writer's object (412).
      store.client.middlewareStack.add(
        (next, context) => async (args) => {
          if (context.commandName === 'PutObjectCommand' && failures === 0) {
            failures++;
            await other.put('same/bytes.json', body, { ifNoneMatch: '*' });
            throw Object.assign(new Error('injected: unavailable'), {
              name: 'ServiceUnavailable',
              $fault: 'server',
              $metadata: { httpStatusCode: 503 },
            });
          }
          return next(args);
        },
        { step: 'deserialize', name: 'otherWriterFirst' },
      );
      await expect(store.put('same/bytes.json', body, { ifNoneMatch: '*' })).rejects.toBeInstanceOf(
        ObjectPreconditionError,
      );
      expect(failures).toBe(1);
      // The adapter's write id stays out of the caller's metadata.
      expect((await store.head('same/bytes.json')).metadata).toEqual({});
    } finally {
      await t.cleanup();
    }
  });
});
