import { createHash } from 'node:crypto';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { extract as tarExtract } from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildMlp } from '../../dev/onnx-builder';
import type { ModelDescription } from '../../functions/catalog/describe';
import { setInferenceService } from '../../functions/predict/runtime';
import type { HistoryEvent, ModelSummary, ModelVersion, Page } from '../../shared/registry';
import type { BundleListing } from '../../shared/registry/downloads';
import { FileObjectStore, type ObjectStore, S3ObjectStore } from '../../shared/store';
import { type BundleFiles, storeTestBundle, toBundle } from '../support/bundles';
import { invoke, loadRoutes } from '../support/gateway';
import { tinyModel } from '../support/models';
import { octet, STORE_PREFIX, type TestApi, useTestApi } from './runtime';

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** A generated MLP as a bundle (one file per tensor), stored in `store` as version 1 of `name`. */
async function bundleIn(store: ObjectStore, name: string, seed: number): Promise<BundleFiles> {
  const mlp = buildMlp({ inputSize: 8, hiddenSizes: [16], outputSize: 2, seed });
  const bundle = toBundle(structuredClone(mlp.model), 'per-tensor');
  await storeTestBundle(store, name, bundle);
  return bundle;
}

/** The entries of a tar archive, by name. */
async function untar(tar: Buffer): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  const extract = tarExtract();
  const done = (async () => {
    for await (const entry of extract) {
      const chunks: Buffer[] = [];
      for await (const c of entry) chunks.push(c as Buffer);
      out.set(entry.header.name, Buffer.concat(chunks));
    }
  })();
  extract.end(tar);
  await done;
  return out;
}

describe('catalog function on S3 (RGW)', () => {
  let api: TestApi;
  const models: Record<string, Uint8Array[]> = {
    alpha: [tinyModel(1), tinyModel(2), tinyModel(3)],
    beta: [tinyModel(4)],
    gamma: [tinyModel(5)],
  };
  beforeAll(async () => {
    api = await useTestApi('s3', 'fn-catalog');
    for (const [name, list] of Object.entries(models))
      for (const b of list)
        expect((await api.call('POST', `/models/${name}/versions`, { headers: octet, body: b })).status).toBe(
          201,
        );
    expect((await api.call('PUT', '/models/alpha/aliases/production', { body: { version: 2 } })).status).toBe(
      201,
    );
    expect(
      (
        await api.call('POST', '/models/alpha/versions/3/status', {
          body: { status: 'rejected', reason: 'bad' },
        })
      ).status,
    ).toBe(200);
  });
  afterAll(async () => api?.cleanup());

  it('lists models page by page', async () => {
    const first = (await api.call('GET', '/models?limit=2')).json<Page<ModelSummary>>();
    expect(first.items.map((m) => m.name)).toEqual(['alpha', 'beta']);
    expect(first.items[0]).toEqual({ name: 'alpha', latestVersion: 3, aliases: { production: 2 } });
    const second = (await api.call('GET', `/models?limit=2&cursor=${first.nextCursor}`)).json<
      Page<ModelSummary>
    >();
    expect(second.items.map((m) => m.name)).toEqual(['gamma']);
    expect(second.nextCursor).toBeUndefined();
    expect((await api.call('GET', '/models?limit=0')).status).toBe(400);
    expect((await api.call('GET', '/models?limit=abc')).status).toBe(400);
    expect((await api.call('GET', '/models?cursor=bm9wZQ')).status).toBe(400);
  });

  it('describes a model: aliases, latest, counts', async () => {
    const d = (await api.call('GET', '/models/alpha')).json<ModelDescription>();
    expect(d).toMatchObject({
      name: 'alpha',
      latestVersion: 3,
      latestActiveVersion: 2,
      counts: { versions: 3, active: 2, rejected: 1, archived: 0 },
    });
    expect(d.aliases.production).toMatchObject({ alias: 'production', version: 2, revision: 1 });
    expect(d.latest).toMatchObject({ version: 3, status: 'rejected', statusReason: 'bad' });
    expect((await api.call('GET', '/models/nosuch')).status).toBe(404);
    expect((await api.call('GET', '/models/NO%20SUCH')).status).toBe(400);
  });

  it('lists versions with pagination, and reads one by number, alias or latest', async () => {
    const p1 = (await api.call('GET', '/models/alpha/versions?limit=2')).json<Page<ModelVersion>>();
    expect(p1.items.map((v) => v.version)).toEqual([1, 2]);
    const p2 = (await api.call('GET', `/models/alpha/versions?limit=2&cursor=${p1.nextCursor}`)).json<
      Page<ModelVersion>
    >();
    expect(p2.items.map((v) => [v.version, v.status])).toEqual([[3, 'rejected']]);
    expect((await api.call('GET', '/models/nosuch/versions')).status).toBe(404);
    expect((await api.call('GET', '/models/alpha/versions/1')).json<ModelVersion>().sha256).toBe(
      createHash('sha256').update(models.alpha![0]!).digest('hex'),
    );
    expect((await api.call('GET', '/models/alpha/versions/production')).json<ModelVersion>().version).toBe(2);
    // v3 is rejected: `latest` is the newest active version (the highest number is latestVersion).
    expect((await api.call('GET', '/models/alpha/versions/latest')).json<ModelVersion>().version).toBe(2);
    expect((await api.call('GET', '/models/alpha/versions/9')).status).toBe(404);
    expect((await api.call('GET', '/models/alpha/versions/nosuch')).status).toBe(404);
    expect((await api.call('GET', '/models/alpha/versions/0')).status).toBe(400);
  });

  it('`latest` names the same version in catalog and predict when the newest version is rejected', async () => {
    const predict = await loadRoutes(['predict']);
    try {
      const catalog = (await api.call('GET', '/models/alpha/versions/latest')).json<ModelVersion>();
      const metadata = await invoke(predict, 'GET', '/v2/models/alpha/versions/latest');
      expect(metadata.status).toBe(200);
      const meta = metadata.json<{ versions: string[]; inputs: { name: string; shape: number[] }[] }>();
      const input = meta.inputs[0]!;
      const inferred = await invoke(predict, 'POST', '/v2/models/alpha/versions/latest/infer', {
        body: { inputs: [{ name: input.name, shape: [1, 4], datatype: 'FP32', data: [0.1, 0.2, 0.3, 0.4] }] },
      });
      expect(inferred.status).toBe(200);
      expect({
        catalog: catalog.version,
        metadata: meta.versions,
        infer: inferred.json<{ model_version: string }>().model_version,
      }).toEqual({ catalog: 2, metadata: ['2'], infer: '2' });
    } finally {
      await setInferenceService();
    }
  });

  it('returns history oldest first', async () => {
    const h = (await api.call('GET', '/models/alpha/history')).json<Page<HistoryEvent>>();
    expect(h.items.map((e) => e.type)).toEqual([
      'registered',
      'registered',
      'registered',
      'alias_moved',
      'status_changed',
    ]);
    const one = (await api.call('GET', '/models/alpha/history?limit=1')).json<Page<HistoryEvent>>();
    expect(one.items).toHaveLength(1);
    expect(one.nextCursor).toBeDefined();
    expect((await api.call('GET', '/models/nosuch/history')).status).toBe(404);
  });

  it('downloads small models inline, verified, with their sha256', async () => {
    const res = await api.call('GET', '/models/alpha/versions/production/download');
    expect(res.status).toBe(200);
    expect(res.body).toEqual(Buffer.from(models.alpha![1]!));
    expect(res.headers['x-maas-sha256']).toBe(createHash('sha256').update(res.body).digest('hex'));
    expect(res.headers['content-disposition']).toBe('attachment; filename="alpha-v2.onnx"');
    expect((await api.call('GET', '/models/alpha/versions/12/download')).status).toBe(404);
  });

  it('redirects large models to a presigned S3 GET that serves the same bytes', async () => {
    api.reset({ MAAS_DOWNLOAD_INLINE_MAX_BYTES: '10' });
    try {
      const res = await api.call('GET', '/models/beta/versions/1/download');
      expect(res.status).toBe(302);
      const body = res.json<{ url: string; sha256: string; size: number; expiresAt: string }>();
      expect(res.headers.location).toBe(body.url);
      expect(body.url).toMatch(/X-Amz-Signature=/);
      const fetched = Buffer.from(await (await fetch(body.url)).arrayBuffer());
      expect(fetched).toEqual(Buffer.from(models.beta![0]!));
      expect(body.sha256).toBe(createHash('sha256').update(fetched).digest('hex'));
    } finally {
      api.reset({ MAAS_DOWNLOAD_INLINE_MAX_BYTES: undefined });
    }
  });

  it('refuses to export bytes that no longer match the recorded sha256 (500, not the bytes)', async () => {
    const v = (await api.call('GET', '/models/gamma/versions/1')).json<ModelVersion>();
    const tampered = Buffer.from(models.gamma![0]!);
    tampered[tampered.length - 1] = tampered[tampered.length - 1]! ^ 0xff;
    await api.bucket!.client.send(
      new PutObjectCommand({
        Bucket: api.bucket!.bucket,
        Key: `${STORE_PREFIX}/${v.blobKey}`,
        Body: tampered,
      }),
    );
    const res = await api.call('GET', '/models/gamma/versions/1/download');
    expect(res.status).toBe(500);
    expect(res.json()).toEqual({
      error: expect.stringMatching(/gamma version 1 failed its integrity check/),
      code: 'integrity_error',
    });
    api.reset({ MAAS_DOWNLOAD_INLINE_MAX_BYTES: '10' });
    try {
      expect((await api.call('GET', '/models/gamma/versions/1/download')).status).toBe(500);
    } finally {
      api.reset({ MAAS_DOWNLOAD_INLINE_MAX_BYTES: undefined });
    }
  });

  it('lists a bundle with one presigned GET per file; each serves the exact bytes the manifest records', async () => {
    const store = new S3ObjectStore({
      bucket: api.bucket!.bucket,
      prefix: STORE_PREFIX,
      client: api.bucket!.client,
    });
    const bundle = await bundleIn(store, 'bundled', 21);
    const res = await api.call('GET', '/models/bundled/versions/1/download');
    expect(res.status).toBe(200);
    expect(res.headers['x-maas-bundle']).toBe('links');
    const listing = res.json<BundleListing>();
    // Graph first (the registry orders the rest by name).
    expect(listing.files[0]?.name).toBe('model.onnx');
    expect(listing.files.map((f) => f.name).sort()).toEqual(bundle.files.map((f) => f.name).sort());
    expect(res.headers['x-maas-sha256']).toBe(listing.sha256);
    for (const f of listing.files) {
      expect(f.url).toMatch(/X-Amz-Signature=/);
      const got = Buffer.from(await (await fetch(f.url)).arrayBuffer());
      expect(got).toEqual(Buffer.from(bundle.files.find((b) => b.name === f.name)!.bytes));
      expect(f.sha256).toBe(sha(got));
      expect(f.size).toBe(got.length);
    }
  });
});

describe('catalog function on the file store: bundles download as a tar', () => {
  let api: TestApi;
  beforeAll(async () => {
    api = await useTestApi('file', 'fn-catalog-file');
  });
  afterAll(async () => api?.cleanup());

  it('answers a tar of the verified files, named as in the manifest, byte-identical', async () => {
    const bundle = await bundleIn(new FileObjectStore(api.dir!), 'tarred', 22);
    const res = await api.call('GET', '/models/tarred/versions/latest/download');
    expect(res.status).toBe(200);
    expect(res.headers['x-maas-bundle']).toBe('tar');
    expect(res.headers['content-type']).toBe('application/x-tar');
    const entries = await untar(res.body);
    expect([...entries.keys()][0]).toBe('model.onnx');
    expect([...entries.keys()].sort()).toEqual(bundle.files.map((f) => f.name).sort());
    for (const f of bundle.files) expect(entries.get(f.name)).toEqual(Buffer.from(f.bytes));
  });

  it('refuses the tar (500 integrity_error) when a data file no longer matches', async () => {
    const store = new FileObjectStore(api.dir!);
    const bundle = await bundleIn(store, 'tarred-bad', 23);
    const v = (await api.call('GET', '/models/tarred-bad/versions/1')).json<ModelVersion>();
    const data = v.files!.find((f) => f.role === 'data')!;
    const evil = Buffer.from(bundle.files.find((f) => f.name === data.name)!.bytes);
    evil[0] = evil[0]! ^ 0xff;
    await store.put(data.blobKey, evil);
    const res = await api.call('GET', '/models/tarred-bad/versions/1/download');
    expect(res.status).toBe(500);
    expect(res.json<{ code: string }>().code).toBe('integrity_error');
  });
});
