import { createHash } from 'node:crypto';
import { PutBucketVersioningCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { afterEach, describe, expect, it } from 'vitest';
import { ModelRegistry } from '../../shared/registry';
import {
  ingestIncomingObject,
  type RejectionRecord,
  storeKeyOfBucketKey,
} from '../../shared/registry/incoming';
import { type ObjectStore, S3ObjectStore } from '../../shared/store';
import { tinyModel } from '../support/models';
import { createTestBucket, type TestBucket } from '../support/s3';
import { createTestStore, storeKinds, type TestStore } from '../support/stores';

// The core the S3 trigger and the local `npm start` watcher share, on both store adapters.
describe.each(storeKinds)('ingestIncomingObject on the %s store', (kind) => {
  let t: TestStore | undefined;
  afterEach(async () => t?.cleanup());

  it('registers, dedupes, quarantines and ignores', async () => {
    t = await createTestStore(kind, 'incoming-core');
    const { store } = t;
    const registry = new ModelRegistry(store);
    await store.put('incoming/iris/a b.onnx', tinyModel(1));
    const first = await ingestIncomingObject(store, registry, 'incoming/iris/a b.onnx');
    expect(first).toEqual({ status: 'registered', key: 'incoming/iris/a b.onnx', name: 'iris', version: 1 });
    expect((await registry.getVersion('iris', 1)).source).toBe(
      `${store.location.replace(/\/?$/, '/')}incoming/iris/a b.onnx`,
    );
    expect((await ingestIncomingObject(store, registry, 'incoming/iris/a b.onnx')).status).toBe('missing');

    await store.put('incoming/iris/again.onnx', tinyModel(1));
    expect(
      await ingestIncomingObject(store, registry, 'incoming/iris/again.onnx', {
        source: 'watcher',
        actor: 'me',
      }),
    ).toMatchObject({ status: 'duplicate', version: 1 });

    await store.put('incoming/iris/bad.onnx', 'garbage');
    const bad = await ingestIncomingObject(store, registry, 'incoming/iris/bad.onnx');
    expect(bad).toMatchObject({
      status: 'rejected',
      rejectedKey: 'rejected/iris/bad.onnx',
      error: { code: 'unprocessable' },
    });
    const why = JSON.parse(
      (await store.get('rejected/iris/bad.onnx.error.json')).body.toString('utf8'),
    ) as RejectionRecord;
    expect(why.key).toBe('incoming/iris/bad.onnx');
    expect((await store.get('rejected/iris/bad.onnx')).body.toString()).toBe('garbage');
    expect(await registry.getLatestVersionNumber('iris')).toBe(1);

    await store.put('other/iris/x.onnx', tinyModel(2));
    expect(await ingestIncomingObject(store, registry, 'other/iris/x.onnx')).toMatchObject({
      status: 'ignored',
    });
    expect((await store.head('other/iris/x.onnx')).size).toBeGreaterThan(0);
    expect((await store.list({ prefix: 'incoming/' })).objects).toEqual([]);
  });

  /** A registry whose registration of `key` ends with another upload landing under that same key. */
  const reuploadDuring = (store: ObjectStore, key: string, body: Uint8Array): ModelRegistry => {
    const registry = new ModelRegistry(store);
    const register = registry.registerVersion.bind(registry);
    registry.registerVersion = async (...args) => {
      const result = await register(...args);
      await store.put(key, body); // the user uploads a fix while the first one is being registered
      return result;
    };
    return registry;
  };

  it('never deletes a re-upload that landed under the same key while the first was registered', async () => {
    t = await createTestStore(kind, 'incoming-core');
    const { store } = t;
    const key = 'incoming/iris/model.onnx';
    const first = await store.put(key, tinyModel(1));
    const outcome = await ingestIncomingObject(store, reuploadDuring(store, key, tinyModel(2)), key, {
      etag: first.etag,
    });
    expect(outcome).toMatchObject({ status: 'registered', version: 1, replacedDuringProcessing: true });
    // The second upload is still there, unregistered, for its own event.
    expect((await store.get(key)).body).toEqual(Buffer.from(tinyModel(2)));
    const registry = new ModelRegistry(store);
    const second = await ingestIncomingObject(store, registry, key, { etag: (await store.head(key)).etag });
    expect(second).toEqual({ status: 'registered', key, name: 'iris', version: 2 });
    expect((await store.list({ prefix: 'incoming/' })).objects).toEqual([]);
  });

  it('without an event etag, pins the object it read (the local watcher, a replayed event)', async () => {
    t = await createTestStore(kind, 'incoming-core');
    const { store } = t;
    const key = 'incoming/iris/model.onnx';
    await store.put(key, tinyModel(1));
    const outcome = await ingestIncomingObject(store, reuploadDuring(store, key, tinyModel(2)), key);
    expect(outcome).toMatchObject({ status: 'registered', replacedDuringProcessing: true });
    expect((await store.get(key)).body).toEqual(Buffer.from(tinyModel(2)));
  });

  it('quarantines nothing of an object replaced while it was judged: the re-upload stays for its own event', async () => {
    t = await createTestStore(kind, 'incoming-core');
    const { store } = t;
    const key = 'incoming/iris/bad.onnx';
    const bad = await store.put(key, 'garbage');
    const registry = new ModelRegistry(store);
    const register = registry.registerVersion.bind(registry);
    registry.registerVersion = async (...args) => {
      await store.put(key, tinyModel(3)); // replaced while the garbage is being validated
      return register(...args);
    };
    // The judged bytes are no longer under the key (no versions here): there is nothing to move.
    const outcome = await ingestIncomingObject(store, registry, key, { etag: bad.etag });
    expect(outcome).toMatchObject({ status: 'superseded', key });
    expect((await store.list({ prefix: 'rejected/' })).objects).toEqual([]);
    expect((await store.get(key)).body).toEqual(Buffer.from(tinyModel(3)));
  });

  it('reports an event whose object was replaced before it was read as superseded, touching nothing', async () => {
    t = await createTestStore(kind, 'incoming-core');
    const { store } = t;
    const key = 'incoming/iris/model.onnx';
    const old = await store.put(key, tinyModel(1));
    await store.put(key, tinyModel(2));
    const registry = new ModelRegistry(store);
    expect(await ingestIncomingObject(store, registry, key, { etag: old.etag })).toMatchObject({
      status: 'superseded',
      key,
    });
    expect((await store.get(key)).body).toEqual(Buffer.from(tinyModel(2)));
    expect(await registry.getLatestVersionNumber('iris').catch(() => 0)).toBe(0);
  });

  it('maps bucket keys into the store', async () => {
    t = await createTestStore(kind, 'incoming-core');
    if (t.store instanceof S3ObjectStore) {
      expect(storeKeyOfBucketKey(t.store, t.store.bucket, `${t.store.prefix}incoming/a/b.onnx`)).toBe(
        'incoming/a/b.onnx',
      );
      expect(storeKeyOfBucketKey(t.store, t.store.bucket, 'incoming/a/b.onnx')).toBeUndefined();
      expect(storeKeyOfBucketKey(t.store, 'elsewhere', `${t.store.prefix}incoming/a/b.onnx`)).toBeUndefined();
    } else {
      // The file store is its own bucket: keys pass through (the local watcher's events).
      expect(storeKeyOfBucketKey(t.store, 'maas-local', 'incoming/a/b.onnx')).toBe('incoming/a/b.onnx');
    }
  });
});

describe('ingestIncomingObject on a versioned RGW bucket (as deployed)', () => {
  let bucket: TestBucket | undefined;
  afterEach(async () => bucket?.cleanup());

  it("registers and deletes exactly the event's version; a newer upload under the key stays current", async () => {
    bucket = await createTestBucket('incoming-versions');
    const { client } = bucket;
    await client.send(
      new PutBucketVersioningCommand({
        Bucket: bucket.bucket,
        VersioningConfiguration: { Status: 'Enabled' },
      }),
    );
    const store = new S3ObjectStore({ bucket: bucket.bucket, prefix: 'p1', client });
    const key = 'incoming/iris/model.onnx';
    const upload = (body: Uint8Array) =>
      client.send(new PutObjectCommand({ Bucket: bucket!.bucket, Key: `p1/${key}`, Body: body }));
    const v1 = await upload(tinyModel(1));
    const v2 = await upload(tinyModel(2)); // lands before v1's event is handled
    const registry = new ModelRegistry(store);
    const first = await ingestIncomingObject(store, registry, key, {
      versionId: v1.VersionId!,
      etag: v1.ETag!,
    });
    expect(first).toEqual({ status: 'registered', key, name: 'iris', version: 1 });
    expect((await registry.getVersion('iris', 1)).sha256).toBe(
      createHash('sha256').update(tinyModel(1)).digest('hex'),
    );
    const current = await store.get(key);
    expect(current.versionId).toBe(v2.VersionId);
    expect(current.body).toEqual(Buffer.from(tinyModel(2)));
    const second = await ingestIncomingObject(store, registry, key, { versionId: v2.VersionId! });
    expect(second).toEqual({ status: 'registered', key, name: 'iris', version: 2 });
    await expect(store.head(key)).rejects.toThrow(/not found/);
    // A replayed event for a version already handled finds it gone.
    expect((await ingestIncomingObject(store, registry, key, { versionId: v1.VersionId! })).status).toBe(
      'missing',
    );
  });

  it('records why a key the store cannot address was not registered, instead of failing forever', async () => {
    bucket = await createTestBucket('incoming-keys');
    const store = new S3ObjectStore({ bucket: bucket.bucket, prefix: 'p1', client: bucket.client });
    const key = 'incoming/iris//model.onnx'; // S3 allows an empty segment; the store does not
    await bucket.client.send(
      new PutObjectCommand({ Bucket: bucket.bucket, Key: `p1/${key}`, Body: tinyModel(1) }),
    );
    const outcome = await ingestIncomingObject(store, new ModelRegistry(store), key);
    expect(outcome).toMatchObject({ status: 'rejected', key, error: { code: 'invalid_argument' } });
    const errorKey = (outcome as { errorKey: string }).errorKey;
    expect(errorKey).toMatch(/^rejected\/_keys\/[0-9a-f]{64}\.error\.json$/);
    const record = JSON.parse((await store.get(errorKey)).body.toString('utf8')) as RejectionRecord;
    expect(record.key).toBe(key);
    expect(record.error.error).toMatch(/invalid object key/);
  });
});
