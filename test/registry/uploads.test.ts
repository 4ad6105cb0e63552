import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NotFoundError, PayloadTooLargeError } from '../../shared/errors';
import { ModelRegistry } from '../../shared/registry';
import { registerFromUpload, uploadKeyOf } from '../../shared/registry/uploads';
import { countingStore } from '../support/counting-store';
import { tinyModel } from '../support/models';
import { createTestStore, storeKinds, type TestStore } from '../support/stores';

describe.each(storeKinds)('registerFromUpload on the %s store', (kind) => {
  let t: TestStore;
  beforeAll(async () => {
    t = await createTestStore(kind, 'uploads');
  });
  afterAll(() => t.cleanup());

  it('reads the upload once (no HEAD before the GET), registers it and deletes it', async () => {
    const counting = countingStore(t.store);
    const registry = new ModelRegistry(counting.store);
    const uploadKey = uploadKeyOf('uploaded', randomUUID());
    await t.store.put(uploadKey, tinyModel(900));
    counting.reset();
    const { version, created } = await registerFromUpload(counting.store, registry, 'uploaded', uploadKey);
    expect(created).toBe(true);
    expect(version.version).toBe(1);
    const onUpload = counting.calls.filter((c) => c.endsWith(` ${uploadKey}`));
    expect(onUpload).toEqual([`getStream ${uploadKey}`, `delete ${uploadKey}`]);
    await expect(t.store.head(uploadKey)).rejects.toThrow();
  });

  it('refuses an upload over the size limit from its announced size, leaving it and the registry untouched', async () => {
    const bytes = tinyModel(901);
    const registry = new ModelRegistry(t.store, { maxModelBytes: bytes.length - 1 });
    const uploadKey = uploadKeyOf('too-big', randomUUID());
    await t.store.put(uploadKey, bytes);
    const error = await registerFromUpload(t.store, registry, 'too-big', uploadKey).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PayloadTooLargeError);
    expect((error as PayloadTooLargeError).details).toMatchObject({
      limit: bytes.length - 1,
      size: bytes.length,
    });
    expect((await t.store.head(uploadKey)).size).toBe(bytes.length);
    expect(await registry.getLatestVersionNumber('too-big')).toBe(0);
  });

  it('an upload that is not there (or was already registered) is a 404', async () => {
    const registry = new ModelRegistry(t.store);
    await expect(
      registerFromUpload(t.store, registry, 'nothing', uploadKeyOf('nothing', randomUUID())),
    ).rejects.toBeInstanceOf(NotFoundError);
  });
});
