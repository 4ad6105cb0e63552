import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { FileObjectStore, type ObjectStore, S3ObjectStore } from '../../shared/store';
import { createTestBucket } from './s3';

export interface TestStore {
  store: ObjectStore;
  cleanup(): Promise<void>;
}

/** The two adapters every store-backed suite runs against. */
export const storeKinds = ['file', 's3'] as const;
export type StoreKind = (typeof storeKinds)[number];

/** A fresh, empty store of the given kind (S3: a new bucket on the test RGW, with a key prefix). */
export async function createTestStore(kind: StoreKind, label = 'maas'): Promise<TestStore> {
  if (kind === 'file') {
    const dir = await mkdtemp(path.join(tmpdir(), `${label}-`));
    return { store: new FileObjectStore(dir), cleanup: () => rm(dir, { recursive: true, force: true }) };
  }
  const bucket = await createTestBucket(label);
  return {
    store: new S3ObjectStore({ bucket: bucket.bucket, prefix: 'p1', client: bucket.client }),
    cleanup: bucket.cleanup,
  };
}
