import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { ListMultipartUploadsCommand } from '@aws-sdk/client-s3';
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

  it('getRange streams exactly the inclusive range, clamps the end, and reports the whole size', async () => {
    const bytes = Buffer.from(Array.from({ length: 100_000 }, (_, i) => (i * 131 + 17) % 256));
    await store.put('range/bin', bytes);
    const read = async (start: number, end: number): Promise<{ bytes: Buffer; size: number }> => {
      const { body, size } = await store.getRange('range/bin', start, end);
      const chunks: Buffer[] = [];
      for await (const c of body) chunks.push(c as Buffer);
      return { bytes: Buffer.concat(chunks), size };
    };
    const middle = await read(12_345, 54_320);
    expect(middle.size).toBe(bytes.length);
    expect(middle.bytes.equals(bytes.subarray(12_345, 54_321))).toBe(true);
    expect((await read(0, 0)).bytes.equals(bytes.subarray(0, 1))).toBe(true);
    expect((await read(99_999, 99_999)).bytes.equals(bytes.subarray(99_999))).toBe(true);
    expect((await read(90_000, 10_000_000)).bytes.equals(bytes.subarray(90_000))).toBe(true);
    await expect(store.getRange('range/bin', 100_000, 100_010)).rejects.toBeInstanceOf(StoreError);
    await expect(store.getRange('range/bin', 10, 5)).rejects.toBeInstanceOf(StoreError);
    await expect(store.getRange('range/bin', -1, 5)).rejects.toBeInstanceOf(StoreError);
    await expect(store.getRange('range/missing', 0, 5)).rejects.toBeInstanceOf(ObjectNotFoundError);
  });

  it('copy duplicates bytes, keeps or replaces content type and metadata, and reports a missing source', async () => {
    const bytes = Buffer.from(Array.from({ length: 70_001 }, (_, i) => (i * 7 + 3) % 256));
    await store.put('copy/src', bytes, { contentType: 'application/x-test', metadata: { origin: 'one' } });
    const kept = await store.copy('copy/src', 'copy/kept');
    const head = await store.head('copy/kept');
    expect(head.etag).toBe(kept.etag);
    expect(head.size).toBe(bytes.length);
    expect(head.contentType).toBe('application/x-test');
    expect(head.metadata).toEqual({ origin: 'one' });
    expect((await store.get('copy/kept')).body.equals(bytes)).toBe(true);

    await store.copy('copy/src', 'copy/replaced', {
      contentType: 'application/octet-stream',
      metadata: { Sha: 'x' },
    });
    const replaced = await store.head('copy/replaced');
    expect(replaced.contentType).toBe('application/octet-stream');
    expect(replaced.metadata).toEqual({ sha: 'x' });
    // Copying over an existing key replaces it; the source is untouched.
    await store.put('copy/other', 'small');
    await store.copy('copy/other', 'copy/kept');
    expect((await store.get('copy/kept')).body.toString()).toBe('small');
    expect((await store.get('copy/src')).body.equals(bytes)).toBe(true);

    // A source replaced since the caller read it is not copied.
    const read = await store.head('copy/src');
    await expect(store.copy('copy/src', 'copy/checked', { sourceEtag: read.etag })).resolves.toBeDefined();
    await store.put('copy/src', 'replaced');
    await expect(store.copy('copy/src', 'copy/stale', { sourceEtag: read.etag })).rejects.toBeInstanceOf(
      ObjectPreconditionError,
    );
    await expect(store.head('copy/stale')).rejects.toBeInstanceOf(ObjectNotFoundError);

    const missing = await store.copy('copy/missing', 'copy/never').catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(ObjectNotFoundError);
    expect((missing as ObjectNotFoundError).key).toBe('copy/missing');
    await expect(store.head('copy/never')).rejects.toBeInstanceOf(ObjectNotFoundError);
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
  it('copy above the multipart threshold goes through UploadPartCopy and yields the same bytes and metadata', async () => {
    const t = await createTestStore('s3', 'copymp');
    try {
      const base = t.store as S3ObjectStore;
      const store = new S3ObjectStore({
        bucket: base.bucket,
        prefix: base.prefix,
        client: base.client,
        copyMultipartThresholdBytes: 6 * 1024 * 1024,
        copyPartSizeBytes: 5 * 1024 * 1024,
      });
      const commands: string[] = [];
      store.client.middlewareStack.add(
        (next, context) => async (args) => {
          commands.push(context.commandName ?? '');
          return next(args);
        },
        { step: 'initialize', name: 'recordCommands' },
      );
      const bytes = Buffer.alloc(12 * 1024 * 1024 + 17);
      for (let i = 0; i < bytes.length; i += 4096) bytes.writeUInt32LE((i * 2654435761) >>> 0, i);
      await store.put('mp/src', bytes, { contentType: 'application/x-big', metadata: { kind: 'weights' } });
      commands.length = 0;
      const copied = await store.copy('mp/src', 'mp/dst');
      expect(commands.filter((c) => c === 'UploadPartCopyCommand')).toHaveLength(3);
      expect(commands).not.toContain('CopyObjectCommand');
      const head = await store.head('mp/dst');
      expect(copied.etag).toBe(head.etag);
      expect(head.size).toBe(bytes.length);
      expect(head.contentType).toBe('application/x-big');
      expect(head.metadata).toEqual({ kind: 'weights' });
      const { sha256 } = await readWithSha256(store, 'mp/dst', { keepBody: false });
      expect(sha256).toBe(createHash('sha256').update(bytes).digest('hex'));

      // Small objects take one CopyObject.
      await store.put('mp/small', 'tiny');
      commands.length = 0;
      await store.copy('mp/small', 'mp/small-copy');
      expect(commands).toContain('CopyObjectCommand');
      expect(commands).not.toContain('UploadPartCopyCommand');

      // A failed multipart copy (here: the second part copy breaks) leaves no pending upload.
      const failing = new S3ObjectStore({
        bucket: base.bucket,
        prefix: base.prefix,
        client: createS3TestClient({ maxAttempts: 1 }),
        copyMultipartThresholdBytes: 6 * 1024 * 1024,
        copyPartSizeBytes: 5 * 1024 * 1024,
      });
      let parts = 0;
      failing.client.middlewareStack.add(
        (next, context) => async (args) => {
          if (context.commandName === 'UploadPartCopyCommand' && ++parts === 2)
            throw Object.assign(new Error('injected: part copy failed'), {
              $metadata: { httpStatusCode: 400 },
            });
          return next(args);
        },
        { step: 'initialize', name: 'failSecondPart' },
      );
      await expect(failing.copy('mp/src', 'mp/failed')).rejects.toBeInstanceOf(StoreError);
      await expect(store.head('mp/failed')).rejects.toBeInstanceOf(ObjectNotFoundError);
      const pending = await store.client.send(new ListMultipartUploadsCommand({ Bucket: base.bucket }));
      expect(pending.Uploads ?? []).toEqual([]);
      failing.client.destroy();
    } finally {
      await t.cleanup();
    }
  });

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
