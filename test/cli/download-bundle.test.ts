import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildMlp } from '../../dev/onnx-builder';
import { resetRuntime } from '../../functions/lib/runtime';
import type { ModelVersion } from '../../shared/registry';
import { FileObjectStore, type ObjectStore, S3ObjectStore } from '../../shared/store';
import { type BundleFiles, storeTestBundle, toBundle } from '../support/bundles';
import { runMaas } from '../support/cli';
import { type Gateway, loadRoutes, startGateway } from '../support/gateway';
import { createTestBucket, type TestBucket } from '../support/s3';

const maas = (args: string[], env: Record<string, string>, cwd: string) => runMaas(args, { env, cwd });

async function storeBundle(
  store: ObjectStore,
  name: string,
  seed: number,
  layout: 'single' | 'per-tensor',
): Promise<{ bundle: BundleFiles; version: ModelVersion }> {
  const mlp = buildMlp({ inputSize: 8, hiddenSizes: [32], outputSize: 3, seed });
  const bundle = toBundle(structuredClone(mlp.model), layout);
  return { bundle, version: await storeTestBundle(store, name, bundle) };
}

async function expectFolder(dir: string, bundle: BundleFiles): Promise<void> {
  expect((await readdir(dir)).sort()).toEqual(bundle.files.map((f) => f.name).sort());
  for (const f of bundle.files) expect(await readFile(path.join(dir, f.name))).toEqual(Buffer.from(f.bytes));
}

for (const kind of ['s3', 'file'] as const) {
  describe(`maas download of a bundle (${kind === 's3' ? 'RGW: presigned link per file' : 'file store: tar'})`, () => {
    let bucket: TestBucket | undefined;
    let storeDir: string | undefined;
    let store: ObjectStore;
    let gateway: Gateway;
    let dir: string;
    let env: Record<string, string>;

    beforeAll(async () => {
      if (kind === 's3') {
        bucket = await createTestBucket('cli-bundle');
        process.env.MAAS_STORE = `s3://${bucket.bucket}/maas`;
        store = new S3ObjectStore({ bucket: bucket.bucket, prefix: 'maas', client: bucket.client });
      } else {
        storeDir = await mkdtemp(path.join(tmpdir(), 'cli-bundle-store-'));
        process.env.MAAS_STORE = `file://${storeDir}`;
        store = new FileObjectStore(storeDir);
      }
      resetRuntime();
      gateway = await startGateway(await loadRoutes(['catalog']));
      dir = await mkdtemp(path.join(tmpdir(), 'cli-bundle-'));
      env = { MAAS_ENDPOINT: gateway.url };
    });
    afterAll(async () => {
      await gateway?.close();
      await bucket?.cleanup();
      if (storeDir) await rm(storeDir, { recursive: true, force: true });
      if (dir) await rm(dir, { recursive: true, force: true });
      delete process.env.MAAS_STORE;
      resetRuntime();
    });

    it('writes NAME:VERSION into a folder, every file byte-identical and verified', async () => {
      const { bundle } = await storeBundle(store, 'one', 31, 'single');
      const r = await maas(['--json', 'download', 'one:1', 'out-one'], env, dir);
      expect(r.code, r.stderr).toBe(0);
      const printed = JSON.parse(r.stdout) as { dir: string; files: string[] };
      expect(printed.files).toEqual(bundle.files.map((f) => f.name));
      await expectFolder(path.join(dir, 'out-one'), bundle);
    });

    it('one file per tensor, default folder NAME-vVERSION', async () => {
      const { bundle } = await storeBundle(store, 'many', 32, 'per-tensor');
      const r = await maas(['download', 'many', 'latest'], env, dir);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/every sha256 verified/);
      await expectFolder(path.join(dir, 'many-v1'), bundle);
    });

    it('a data file tampered with in the store is never written (and the command fails)', async () => {
      const { bundle, version } = await storeBundle(store, 'evil', 33, 'single');
      const data = version.files!.find((f) => f.role === 'data')!;
      const evil = Buffer.from(bundle.files.find((f) => f.name === data.name)!.bytes);
      evil[evil.length - 1] = evil[evil.length - 1]! ^ 0xff;
      await store.put(data.blobKey, evil);
      const r = await maas(['download', 'evil:1', 'out-evil'], env, dir);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/sha256|integrity/);
      const written = await readdir(path.join(dir, 'out-evil')).catch(() => [] as string[]);
      expect(written).not.toContain(data.name);
      expect(written.filter((n) => n.endsWith('.part'))).toEqual([]);
    });
  });
}
