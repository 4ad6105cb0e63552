import { afterEach, describe, expect, it } from 'vitest';
import { ModelRegistry } from '../../shared/registry';
import {
  ingestIncomingObject,
  type RejectionRecord,
  storeKeyOfBucketKey,
} from '../../shared/registry/incoming';
import { S3ObjectStore } from '../../shared/store';
import { tinyModel } from '../support/models';
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
