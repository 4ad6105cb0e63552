/**
 * Upload sessions through the real register-version handler, on RGW (presigned UploadPart URLs,
 * real multipart uploads) and on the file store (the local upload server of `npm start`): parts
 * PUT in any order, an incomplete session named part by part, completion registering the
 * version, a repeated complete, abort, expiry, and refusals that leave nothing behind.
 */
import { readdir } from 'node:fs/promises';
import * as path from 'node:path';
import { ListMultipartUploadsCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildMlp } from '../../dev/onnx-builder';
import { startUploadServer, type UploadServer } from '../../scripts/local-dev/upload-server';
import type { ModelVersion } from '../../shared/registry';
import type { UploadSession } from '../../shared/registry/upload-sessions';
import { buildBundle, editedGraph } from '../support/bundles';
import { tinyModel } from '../support/models';
import { STORE_PREFIX, type TestApi, useTestApi } from './runtime';

const MiB = 1024 * 1024;
type Registered = { created: boolean; version: ModelVersion };

/** PUTs one part's bytes where the session says. */
async function putPart(url: string, bytes: Uint8Array): Promise<Response> {
  return fetch(url, { method: 'PUT', body: bytes });
}

/** Uploads every part of every file (the files' bytes by name), optionally skipping some. */
async function uploadAll(
  session: UploadSession,
  files: Record<string, Uint8Array>,
  skip: (file: string, part: number) => boolean = () => false,
): Promise<void> {
  for (const f of session.files) {
    // Last part first: the order of arrival must not matter.
    for (const p of [...f.parts].reverse()) {
      if (skip(f.name, p.partNumber)) continue;
      const res = await putPart(p.url, files[f.name]!.subarray(p.offset, p.offset + p.size));
      expect(res.status, await res.clone().text()).toBe(200);
    }
  }
}

for (const kind of ['s3', 'file'] as const) {
  describe(`upload sessions on ${kind === 's3' ? 'S3 (RGW)' : 'the file store (npm start upload server)'}`, () => {
    let api: TestApi;
    let uploads: UploadServer | undefined;

    beforeAll(async () => {
      api = await useTestApi(kind, 'fn-sessions');
      if (kind === 'file') {
        uploads = await startUploadServer({ storeUrl: process.env.MAAS_STORE!, host: '127.0.0.1', port: 0 });
        api.reset({ MAAS_LOCAL_UPLOAD_URL: uploads.url });
      }
    });
    afterAll(async () => {
      await uploads?.close();
      await api?.cleanup();
    });

    /** Everything under uploads/ but completed session records, plus pending multipart uploads. */
    async function leftovers(): Promise<string[]> {
      if (kind === 'file') {
        const names = await readdir(path.join(api.dir!, 'uploads'), { recursive: true }).catch(() => []);
        const files: string[] = [];
        for (const n of names) if (/\.(p\d+|json)$/.test(n) || /\/f\d+$/.test(n)) files.push(n);
        return files.filter((f) => !f.endsWith('.session.json') || !isCompleted(f));
      }
      const { client, bucket } = api.bucket!;
      const objects = await client.send(
        new ListObjectsV2Command({ Bucket: bucket, Prefix: `${STORE_PREFIX}/uploads/` }),
      );
      const pending = await client.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
      return [
        ...(objects.Contents ?? []).map((o) => o.Key!).filter((k) => !completedKeys.has(k)),
        ...(pending.Uploads ?? []).map((u) => `multipart:${u.Key}`),
      ];
    }
    // Records of registered sessions stay (a repeated complete answers from them); track them.
    const completedKeys = new Set<string>();
    const completedFiles = new Set<string>();
    const isCompleted = (f: string): boolean => completedFiles.has(f);
    const markCompleted = (name: string, id: string): void => {
      completedKeys.add(`${STORE_PREFIX}/uploads/${name}/${id}.session.json`);
      completedFiles.add(`${name}/${id}.session.json`);
    };

    async function blobKeys(): Promise<string[]> {
      if (kind === 'file')
        return (await readdir(path.join(api.dir!, 'blobs'), { recursive: true }).catch(() => [])).sort();
      const { client, bucket } = api.bucket!;
      const listed = await client.send(
        new ListObjectsV2Command({ Bucket: bucket, Prefix: `${STORE_PREFIX}/blobs/` }),
      );
      return (listed.Contents ?? []).map((o) => o.Key!).sort();
    }

    async function open(name: string, body: unknown) {
      return api.call('POST', `/models/${name}/upload-sessions`, { body: body as object });
    }

    it('a model in two parts, PUT last part first: complete registers it, once', async () => {
      const mlp = buildMlp({ inputSize: 32, hiddenSizes: [40_000], outputSize: 2, seed: 5 }); // 5.3 MB
      const bytes = mlp.bytes;
      const partBytes = 5 * MiB;
      expect(bytes.length).toBeGreaterThan(partBytes);
      const opened = await open('sess', { files: [{ name: 'model.onnx', size: bytes.length }], partBytes });
      expect(opened.status, opened.body.toString()).toBe(201);
      const session = opened.json<UploadSession>();
      expect(session).toMatchObject({ name: 'sess', method: 'PUT', partBytes });
      const parts = session.files[0]!.parts;
      expect(parts.map((p) => [p.partNumber, p.offset, p.size])).toEqual([
        [1, 0, partBytes],
        [2, partBytes, bytes.length - partBytes],
      ]);
      if (kind === 'file')
        expect(parts[0]!.url.startsWith(`${uploads!.url}/upload-sessions/sess/`)).toBe(true);
      else expect(parts[0]!.url).toMatch(/uploadId=.*X-Amz-Signature=|X-Amz-Signature=.*uploadId=/);
      await uploadAll(session, { 'model.onnx': bytes });

      const done = await api.call('POST', `/models/sess/upload-sessions/${session.sessionId}/complete`, {
        body: { description: 'from parts', alias: 'staging' },
      });
      expect(done.status, done.body.toString()).toBe(201);
      expect(done.json<Registered>()).toMatchObject({
        created: true,
        version: {
          name: 'sess',
          version: 1,
          size: bytes.length,
          source: 'upload',
          description: 'from parts',
        },
      });
      expect(done.headers.location).toBe('/models/sess/versions/1');
      markCompleted('sess', session.sessionId);
      expect(await leftovers()).toEqual([]);
      // The registered bytes are the uploaded ones.
      const download = await api.call('GET', '/models/sess/versions/1/download');
      if (download.status === 200) expect(Buffer.compare(download.body, Buffer.from(bytes))).toBe(0);
      else expect(download.status).toBe(302);

      // A repeated complete (the reply was lost): the same version, nothing new.
      const again = await api.call('POST', `/models/sess/upload-sessions/${session.sessionId}/complete`, {});
      expect(again.status).toBe(200);
      expect(again.json<Registered>()).toMatchObject({ created: false, version: { version: 1 } });
    });

    for (const layout of ['single', 'per-tensor'] as const) {
      it(`a bundle (${layout === 'single' ? 'one data file' : 'one file per tensor'}) plus a companion registers as one version`, async () => {
        const bundle = buildBundle({ layout, mlp: { seed: layout === 'single' ? 11 : 12 } });
        const files: Record<string, Uint8Array> = Object.fromEntries(
          bundle.files.map((f) => [f.name, f.bytes]),
        );
        files['tokenizer.json'] = Buffer.from('{"version":"1.0"}');
        const name = `bundle-${layout}`;
        const session = (
          await open(name, { files: Object.entries(files).map(([n, b]) => ({ name: n, size: b.length })) })
        ).json<UploadSession>();
        await uploadAll(session, files);
        const done = await api.call('POST', `/models/${name}/upload-sessions/${session.sessionId}/complete`, {
          body: {},
        });
        expect(done.status, done.body.toString()).toBe(201);
        const version = done.json<Registered>().version;
        expect(version.files?.map((f) => [f.name, f.role]).sort()).toEqual(
          [
            ...bundle.files.map((f, i) => [f.name, i === 0 ? 'graph' : 'data']),
            ['tokenizer.json', 'companion'],
          ].sort(),
        );
        expect(version.files?.[0]?.name).toBe('model.onnx');
        expect(version.size).toBe(Object.values(files).reduce((n, b) => n + b.length, 0));
        markCompleted(name, session.sessionId);
        expect(await leftovers()).toEqual([]);
      });
    }

    it('a malicious bundle is refused with its 4xx and nothing is left (uploads, blobs, versions)', async () => {
      const bundle = buildBundle({ layout: 'single', mlp: { seed: 13 } });
      const [graph, data] = bundle.files;
      const escaping = editedGraph(bundle, (m) => {
        const t = m.graph!.initializer[0]!;
        t.externalData.find((e) => e.key === 'location')!.value = '../../etc/passwd';
      });
      const cases: [string, Record<string, Uint8Array>, RegExp][] = [
        [
          'unreferenced',
          { 'model.onnx': graph!.bytes, [data!.name]: data!.bytes, 'extra.bin': new Uint8Array(4) },
          /not referenced/,
        ],
        ['escaping', { 'model.onnx': escaping, [data!.name]: data!.bytes }, /\.\.\/\.\.\/etc\/passwd/],
        ['missing data', { 'model.onnx': graph!.bytes }, /model\.onnx\.data/],
        ['short data', { 'model.onnx': graph!.bytes, [data!.name]: data!.bytes.subarray(0, 16) }, /tensor/],
      ];
      const blobsBefore = await blobKeys();
      for (const [label, files, reason] of cases) {
        const session = (
          await open('evil', { files: Object.entries(files).map(([n, b]) => ({ name: n, size: b.length })) })
        ).json<UploadSession>();
        await uploadAll(session, files);
        const refused = await api.call('POST', `/models/evil/upload-sessions/${session.sessionId}/complete`, {
          body: {},
        });
        expect(refused.status, label).toBeGreaterThanOrEqual(400);
        expect(refused.status, label).toBeLessThan(500);
        expect(refused.json<{ error: string }>().error, label).toMatch(reason);
        expect(await leftovers(), label).toEqual([]);
      }
      expect(await blobKeys()).toEqual(blobsBefore);
      expect((await api.call('GET', '/models/evil/versions')).status).toBe(404);
    });

    it('concurrent completes register once: the other waits (503) or finds the version', async () => {
      const bundle = buildBundle({ layout: 'single', mlp: { seed: 14 } });
      const files = Object.fromEntries(bundle.files.map((f) => [f.name, f.bytes]));
      const session = (
        await open('race', { files: bundle.files.map((f) => ({ name: f.name, size: f.bytes.length })) })
      ).json<UploadSession>();
      await uploadAll(session, files);
      const complete = () =>
        api.call('POST', `/models/race/upload-sessions/${session.sessionId}/complete`, { body: {} });
      const statuses = (await Promise.all([complete(), complete(), complete()])).map((r) => r.status).sort();
      expect(statuses.filter((s) => s === 201)).toHaveLength(1);
      for (const s of statuses) expect([200, 201, 503]).toContain(s);
      const after = await complete();
      expect(after.status).toBe(200);
      expect(after.json<Registered>()).toMatchObject({ created: false, version: { version: 1 } });
      expect(
        (await api.call('GET', '/models/race/versions')).json<{ items: unknown[] }>().items,
      ).toHaveLength(1);
      markCompleted('race', session.sessionId);
      expect(await leftovers()).toEqual([]);
    });

    it('an incomplete session is a 409 naming the missing parts, and stays open for them', async () => {
      const bytes = buildMlp({ inputSize: 32, hiddenSizes: [40_000], outputSize: 2, seed: 6 }).bytes;
      const session = (
        await open('gap', { files: [{ name: 'model.onnx', size: bytes.length }], partBytes: 5 * MiB })
      ).json<UploadSession>();
      await uploadAll(session, { 'model.onnx': bytes }, (_f, part) => part === 1);
      const complete = () =>
        api.call('POST', `/models/gap/upload-sessions/${session.sessionId}/complete`, { body: {} });
      const missing = await complete();
      expect(missing.status).toBe(409);
      expect(missing.json<{ error: string }>().error).toMatch(/model\.onnx misses part\(s\) 1\b/);
      const p1 = session.files[0]!.parts[0]!;
      // A retried part replaces the earlier attempt (here: first a wrong body, then the right one).
      if (kind === 'file') {
        const short = await putPart(p1.url, bytes.subarray(0, 100));
        expect(short.status).toBe(400);
      } else {
        // S3 takes any part; the complete checks each one against the plan.
        expect((await putPart(p1.url, bytes.subarray(0, 100))).status).toBe(200);
        const wrong = await complete();
        expect(wrong.status).toBe(409);
        expect(wrong.json<{ error: string }>().error).toMatch(/has part\(s\) 1 of the wrong size/);
      }
      expect((await putPart(p1.url, bytes.subarray(p1.offset, p1.offset + p1.size))).status).toBe(200);
      expect((await putPart(p1.url, bytes.subarray(p1.offset, p1.offset + p1.size))).status).toBe(200);
      const done = await complete();
      expect(done.status, done.body.toString()).toBe(201);
      expect(done.json<Registered>().version.size).toBe(bytes.length);
      markCompleted('gap', session.sessionId);
      expect(await leftovers()).toEqual([]);
    });

    it('a refused model (not ONNX) is a 4xx and deletes the uploads and the session', async () => {
      const junk = Buffer.from('these are not weights, just text');
      const session = (
        await open('junk', { files: [{ name: 'model.onnx', size: junk.length }] })
      ).json<UploadSession>();
      await uploadAll(session, { 'model.onnx': junk });
      const refused = await api.call('POST', `/models/junk/upload-sessions/${session.sessionId}/complete`, {
        body: {},
      });
      expect(refused.status).toBeGreaterThanOrEqual(400);
      expect(refused.status).toBeLessThan(500);
      expect(await leftovers()).toEqual([]);
      expect(
        (await api.call('GET', '/models/junk/versions')).json<{ items: unknown[] }>().items ?? [],
      ).toEqual([]);
      const gone = await api.call('POST', `/models/junk/upload-sessions/${session.sessionId}/complete`, {
        body: {},
      });
      expect(gone.status).toBe(404);
    });

    it('abort deletes the parts and the multipart uploads; the session is gone', async () => {
      const bytes = tinyModel(3);
      const session = (
        await open('ab', { files: [{ name: 'model.onnx', size: bytes.length }] })
      ).json<UploadSession>();
      await uploadAll(session, { 'model.onnx': bytes });
      expect((await leftovers()).length).toBeGreaterThan(0);
      const aborted = await api.call('DELETE', `/models/ab/upload-sessions/${session.sessionId}`);
      expect(aborted.status).toBe(200);
      expect(await leftovers()).toEqual([]);
      expect((await api.call('DELETE', `/models/ab/upload-sessions/${session.sessionId}`)).status).toBe(404);
      expect(
        (await api.call('POST', `/models/ab/upload-sessions/${session.sessionId}/complete`, { body: {} }))
          .status,
      ).toBe(404);
    });

    it('an expired session cannot be completed and is cleaned up', async () => {
      api.reset({ MAAS_UPLOAD_SESSION_EXPIRES_SECONDS: '1' });
      try {
        const bytes = tinyModel(4);
        const session = (
          await open('late', { files: [{ name: 'model.onnx', size: bytes.length }] })
        ).json<UploadSession>();
        await uploadAll(session, { 'model.onnx': bytes });
        await new Promise((r) => setTimeout(r, 1200));
        const late = await api.call('POST', `/models/late/upload-sessions/${session.sessionId}/complete`, {
          body: {},
        });
        expect(late.status).toBe(404);
        expect(late.json<{ error: string }>().error).toMatch(/expired/);
        expect(await leftovers()).toEqual([]);
      } finally {
        api.reset({ MAAS_UPLOAD_SESSION_EXPIRES_SECONDS: undefined });
      }
    });

    it('refuses bad file lists with a 400/413 and opens nothing', async () => {
      const cases: [unknown, number, RegExp][] = [
        [{}, 400, /files/],
        [{ files: [] }, 400, /files/],
        [{ files: [{ name: '../model.onnx', size: 10 }] }, 400, /path separator|relative path|drive letter/],
        [{ files: [{ name: 'dir/model.onnx', size: 10 }] }, 400, /path separator|relative path|drive letter/],
        [{ files: [{ name: 'C:model.onnx', size: 10 }] }, 400, /path separator|relative path|drive letter/],
        [{ files: [{ name: 'model.onnx', size: 0 }] }, 400, /size/],
        [{ files: [{ name: 'model.onnx', size: 1.5 }] }, 400, /size/],
        [{ files: [{ name: 'w.bin', size: 10 }] }, 400, /exactly one \.onnx/],
        [
          {
            files: [
              { name: 'a.onnx', size: 10 },
              { name: 'b.onnx', size: 10 },
            ],
          },
          400,
          /exactly one \.onnx/,
        ],
        [
          {
            files: [
              { name: 'model.onnx', size: 10 },
              { name: 'model.onnx', size: 10 },
            ],
          },
          400,
          /twice/,
        ],
        [{ files: [{ name: 'model.onnx', size: 10 }], partBytes: 1024 }, 400, /partBytes/],
        [
          {
            files: [
              { name: 'model.onnx', size: 10 },
              { name: 'w', size: 600 * MiB },
            ],
          },
          413,
          /limit/,
        ],
      ];
      for (const [body, status, message] of cases) {
        const res = await open('bad', body);
        expect(res.status, JSON.stringify(body)).toBe(status);
        expect(res.json<{ error: string }>().error, JSON.stringify(body)).toMatch(message);
      }
      expect(await leftovers()).toEqual([]);
    });

    if (kind === 'file') {
      it('the upload server refuses a wrong token and a wrong part, storing nothing', async () => {
        const bytes = tinyModel(8);
        const session = (
          await open('tok', { files: [{ name: 'model.onnx', size: bytes.length }] })
        ).json<UploadSession>();
        const url = new URL(session.files[0]!.parts[0]!.url);
        url.searchParams.set('token', 'wrong');
        expect((await putPart(url.toString(), bytes)).status).toBe(404);
        const beyond = new URL(session.files[0]!.parts[0]!.url);
        beyond.pathname = beyond.pathname.replace(/\/1$/, '/2');
        expect((await putPart(beyond.toString(), bytes)).status).toBe(404);
        const tooLong = await putPart(
          session.files[0]!.parts[0]!.url,
          Buffer.concat([bytes, Buffer.from('x')]),
        );
        expect(tooLong.status).toBe(400);
        expect((await leftovers()).filter((f) => /\.p\d+$/.test(f))).toEqual([]);
        await api.call('DELETE', `/models/tok/upload-sessions/${session.sessionId}`);
      });
    }
  });
}
