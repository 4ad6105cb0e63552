import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildMlp } from '../../dev/onnx-builder';
import { resetRuntime } from '../../functions/lib/runtime';
import type { ModelVersion } from '../../shared/registry';
import { signLocalDownload } from '../../shared/registry/local-links';
import { FileObjectStore, type ObjectStore, S3ObjectStore } from '../../shared/store';
import { type BundleFiles, storeTestBundle, toBundle } from '../support/bundles';
import { runMaas } from '../support/cli';
import { type Gateway, loadRoutes, startGateway } from '../support/gateway';
import { type LocalApi, startLocalApi } from '../support/local-api';
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

const TITLES = {
  s3: 'RGW: presigned link per file',
  local: 'file store under npm start: signed link per file to the local upload server',
  file: 'file store without the local upload server: tar',
};

for (const kind of ['s3', 'local', 'file'] as const) {
  describe(`maas download of a bundle (${TITLES[kind]})`, () => {
    let bucket: TestBucket | undefined;
    let storeDir: string | undefined;
    let store: ObjectStore;
    let gateway: Gateway;
    let api: LocalApi | undefined;
    let dir: string;
    let env: Record<string, string>;

    beforeAll(async () => {
      if (kind === 'local') {
        api = await startLocalApi();
        gateway = api.gateway;
        store = new FileObjectStore(api.storeDir);
        dir = await mkdtemp(path.join(tmpdir(), 'cli-bundle-'));
        env = { MAAS_ENDPOINT: gateway.url };
        return;
      }
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
      if (api) {
        await api.close();
        if (dir) await rm(dir, { recursive: true, force: true });
        return;
      }
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
      // What the catalog answers: links (S3, or the local upload server) or a tar.
      const answer = await fetch(`${gateway.url}/models/one/versions/1/download`, { redirect: 'manual' });
      expect(answer.headers.get('x-maas-bundle')).toBe(kind === 'file' ? 'tar' : 'links');
      if (kind === 'local') {
        const listing = (await answer.json()) as { files: { url: string }[] };
        for (const f of listing.files) expect(f.url.startsWith(`${api!.uploads.url}/downloads/`)).toBe(true);
        // The link is the permission: a forged signature or a link to another key is a 404.
        const forged = new URL(listing.files[0]!.url);
        forged.searchParams.set('sig', '0'.repeat(64));
        const refused = await fetch(forged);
        expect(refused.status).toBe(404);
        expect(await refused.json()).toMatchObject({ error: 'no such download link' });
      } else await answer.arrayBuffer();
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

describe('maas download of a single file above the inline limit (file store under npm start)', () => {
  let api: LocalApi;
  let dir: string;
  let env: Record<string, string>;
  beforeAll(async () => {
    api = await startLocalApi();
    dir = await mkdtemp(path.join(tmpdir(), 'cli-single-'));
    env = { MAAS_ENDPOINT: api.gateway.url };
  });
  afterAll(async () => {
    await api?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('302 to a signed link on the local upload server, which streams the bytes and expires', async () => {
    const mlp = buildMlp({ inputSize: 4, hiddenSizes: [3], outputSize: 2, seed: 7 });
    await writeFile(path.join(dir, 'single.onnx'), mlp.bytes);
    const reg = await maas(['register', 'single', 'single.onnx'], env, dir);
    expect(reg.code, reg.stderr).toBe(0);
    process.env.MAAS_DOWNLOAD_INLINE_MAX_BYTES = '10'; // the gateway runs the handlers in this process
    try {
      const answer = await fetch(`${api.gateway.url}/models/single/versions/1/download`, {
        redirect: 'manual',
      });
      expect(answer.status).toBe(302);
      const location = answer.headers.get('location')!;
      expect(location.startsWith(`${api.uploads.url}/downloads/`)).toBe(true);
      const got = await fetch(location);
      expect(got.status).toBe(200);
      expect(got.headers.get('content-length')).toBe(String(mlp.bytes.length));
      expect(Buffer.from(await got.arrayBuffer())).toEqual(Buffer.from(mlp.bytes));
      // The same link signed an hour ago with the same secret has expired: 404.
      const blobKey = Buffer.from(new URL(location).pathname.split('/')[2]!, 'base64url').toString('utf8');
      const expired = signLocalDownload(
        { baseUrl: api.uploads.url, secret: process.env.MAAS_LOCAL_LINK_SECRET! },
        blobKey,
        'single-v1.onnx',
        60,
        new Date(Date.now() - 3600_000),
      );
      const refused = await fetch(expired.url);
      expect(refused.status).toBe(404);
      expect(((await refused.json()) as { error: string }).error).toMatch(/expired/);
      const r = await maas(['download', 'single', '1', '-o', 'single-out.onnx'], env, dir);
      expect(r.code, r.stderr).toBe(0);
      expect(await readFile(path.join(dir, 'single-out.onnx'))).toEqual(Buffer.from(mlp.bytes));
    } finally {
      delete process.env.MAAS_DOWNLOAD_INLINE_MAX_BYTES;
    }
  });
});
