import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { ListMultipartUploadsCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resetRuntime } from '../../functions/lib/runtime';
import type { ModelVersion } from '../../shared/registry';
import { type BuiltBundle, buildBundle } from '../support/bundles';
import { runMaas } from '../support/cli';
import { type FaultProxy, startFaultProxy } from '../support/fault-proxy';
import { type Gateway, loadRoutes, startGateway } from '../support/gateway';
import { type LocalApi, startLocalApi } from '../support/local-api';
import { createTestBucket, type TestBucket } from '../support/s3';

const _MB = 1024 * 1024;
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

const maas = (args: string[], env: Record<string, string>, cwd: string) => runMaas(args, { env, cwd });

async function writeBundle(
  dir: string,
  bundle: BuiltBundle,
  extra: Record<string, string> = {},
): Promise<void> {
  await mkdir(dir, { recursive: true });
  for (const f of bundle.files) await writeFile(path.join(dir, f.name), f.bytes);
  for (const [name, text] of Object.entries(extra)) await writeFile(path.join(dir, name), text);
}

/** A bundle whose one data file (6.1 MB) takes two parts of 5 MiB. */
const bigBundle = (seed: number): BuiltBundle =>
  buildBundle({ layout: 'single', mlp: { inputSize: 64, hiddenSizes: [24_000], outputSize: 2, seed } });

describe('maas register of a bundle on S3 (RGW), parts through a fault proxy', () => {
  let bucket: TestBucket;
  let proxy: FaultProxy;
  let gateway: Gateway;
  let work: string;
  const saved = process.env.S3_ENDPOINT;

  beforeAll(async () => {
    bucket = await createTestBucket('cli-bundle');
    proxy = await startFaultProxy(process.env.S3_ENDPOINT!);
    // Presigned part URLs name the store's endpoint: the proxy, which forwards to RGW.
    process.env.S3_ENDPOINT = proxy.endpoint;
    process.env.MAAS_STORE = `s3://${bucket.bucket}/maas`;
    delete process.env.MAAS_API_KEY;
    resetRuntime();
    gateway = await startGateway(await loadRoutes(['register-version', 'catalog']));
    work = await mkdtemp(path.join(tmpdir(), 'maas-cli-bundle-'));
  });
  afterAll(async () => {
    await gateway?.close();
    await proxy?.close();
    process.env.S3_ENDPOINT = saved;
    resetRuntime();
    await bucket?.cleanup();
    await rm(work, { recursive: true, force: true });
  });

  async function leftovers(): Promise<string[]> {
    const objects = await bucket.client.send(
      new ListObjectsV2Command({ Bucket: bucket.bucket, Prefix: 'maas/uploads/' }),
    );
    const pending = await bucket.client.send(new ListMultipartUploadsCommand({ Bucket: bucket.bucket }));
    return [
      ...(objects.Contents ?? []).map((o) => o.Key!).filter((k) => !k.endsWith('.session.json')),
      ...(pending.Uploads ?? []).map((u) => `multipart:${u.Key}`),
    ];
  }

  it('uploads a folder in parallel parts, retries the part whose first PUT failed, registers it', async () => {
    const bundle = bigBundle(1);
    const dir = path.join(work, 'export');
    const tokenizer = '{"version":"1.0","model":{}}';
    await writeBundle(dir, bundle, { 'tokenizer.json': tokenizer, 'notes.txt': 'not part of the model' });
    proxy.inject({ method: 'PUT', path: /[?&]partNumber=2&/, action: 'reset-before' });
    proxy.inject({ method: 'PUT', path: /[?&]partNumber=1&/, action: 'slowdown' });
    const r = await maas(
      [
        'register',
        'big',
        './export/',
        '--part-size',
        '5',
        '--parallel',
        '3',
        '--description',
        'bundle',
        '--json',
      ],
      { MAAS_ENDPOINT: gateway.url },
      work,
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/not sent .*notes\.txt/);
    expect(r.stderr).toMatch(/retrying part 2 of model\.onnx\.data/);
    expect(r.stderr).toMatch(/retrying part 1 of /);
    expect(r.stderr).toMatch(/uploading 3 files \[#+\] 100%/);
    const out = JSON.parse(r.stdout) as { created: boolean; version: ModelVersion };
    expect(out.created).toBe(true);
    expect(out.version.description).toBe('bundle');
    expect(out.version.files?.map((f) => [f.name, f.sha256])).toEqual([
      ['model.onnx', sha(bundle.files[0]!.bytes)],
      ['model.onnx.data', sha(bundle.files[1]!.bytes)],
      ['tokenizer.json', sha(Buffer.from(tokenizer))],
    ]);
    // Both failed PUTs were sent again: the proxy saw each of these parts twice.
    const partPuts = proxy.log.filter((e) => e.method === 'PUT' && /partNumber=2&/.test(e.path));
    expect(partPuts.map((e) => e.action)).toContain('reset-before');
    expect(partPuts.filter((e) => e.action === 'pass').length).toBeGreaterThanOrEqual(1);
    expect(await leftovers()).toEqual([]);
  });

  it('a part that keeps failing aborts the session: the CLI fails and nothing is left', async () => {
    const bundle = bigBundle(2);
    const dir = path.join(work, 'doomed');
    await writeBundle(dir, bundle);
    proxy.inject({ method: 'PUT', path: /[?&]partNumber=2&/, action: 'reset-before', times: 50 });
    try {
      const r = await maas(
        ['register', 'doomed', './doomed/', '--part-size', '5'],
        { MAAS_ENDPOINT: gateway.url },
        work,
      );
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/retrying part 2 of model\.onnx\.data \(attempt 5\)/);
    } finally {
      proxy.calm();
    }
    expect(await leftovers()).toEqual([]);
    const versions = await fetch(`${gateway.url}/models/doomed/versions`);
    expect(versions.status).toBe(404);
  }, 90_000);
});

describe('maas register of a bundle on the file store (npm start upload server)', () => {
  let api: LocalApi;
  let work: string;

  beforeAll(async () => {
    work = await mkdtemp(path.join(tmpdir(), 'maas-cli-bundle-work-'));
    // Bundles go through upload sessions: the npm start upload server stands in for S3 here.
    api = await startLocalApi();
  });
  afterAll(async () => {
    await api?.close();
    await rm(work, { recursive: true, force: true });
  });

  const uploadFiles = async (): Promise<string[]> =>
    (
      await readdir(path.join(api.storeDir, 'uploads'), { recursive: true }).catch(() => [] as string[])
    ).filter((f) => /\.p\d+$/.test(f));

  it('maas register NAME model.onnx sends the tensor files it references (one per tensor), not the rest', async () => {
    const bundle = buildBundle({ layout: 'per-tensor', mlp: { seed: 4 } });
    const dir = path.join(work, 'per-tensor');
    await writeBundle(dir, bundle, { 'README.md': '# my model', 'config.json': '{"hidden":16}' });
    const r = await maas(
      ['register', 'tensors', 'per-tensor/model.onnx', '--json'],
      { MAAS_ENDPOINT: api.gateway.url },
      work,
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/not sent .*README\.md/);
    const out = JSON.parse(r.stdout) as { created: boolean; version: ModelVersion };
    expect(out.version.files?.map((f) => f.name).sort()).toEqual(
      [...bundle.files.map((f) => f.name), 'config.json'].sort(),
    );
    expect(out.version.files?.find((f) => f.name === 'config.json')?.role).toBe('companion');
    expect(out.version.source).toBe('upload');
    expect(await uploadFiles()).toEqual([]);
    // The same folder again: the existing version.
    const again = await maas(
      ['register', 'tensors', 'per-tensor/', '--json'],
      { MAAS_ENDPOINT: api.gateway.url },
      work,
    );
    expect(again.code, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ created: false, version: { version: 1 } });
  });

  it('refuses a graph whose data file is missing before uploading anything', async () => {
    const bundle = buildBundle({ layout: 'single', mlp: { seed: 5 } });
    const dir = path.join(work, 'incomplete');
    await writeBundle(dir, { ...bundle, files: [bundle.files[0]!] }, { 'other.bin': 'x' });
    const r = await maas(
      ['register', 'incomplete', 'incomplete/model.onnx'],
      { MAAS_ENDPOINT: api.gateway.url },
      work,
    );
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/external data file "model\.onnx\.data" not found next to/);
    expect(await readdir(path.join(api.storeDir, 'uploads', 'incomplete')).catch(() => [])).toEqual([]);
  });

  it('a folder with two graphs is refused with the names', async () => {
    const dir = path.join(work, 'two');
    await mkdir(dir, { recursive: true });
    const a = buildBundle({ mlp: { seed: 6 } }).files[0]!.bytes;
    await writeFile(path.join(dir, 'a.onnx'), a);
    await writeFile(path.join(dir, 'b.onnx'), a);
    const r = await maas(['register', 'two', 'two/'], { MAAS_ENDPOINT: api.gateway.url }, work);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/2 \.onnx files \(a\.onnx, b\.onnx\)/);
  });
});
