import { createHash } from 'node:crypto';
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ModelVersion } from '../../shared/registry';
import type { UploadTicket } from '../../shared/registry/uploads';
import { tinyModel } from '../support/models';
import { octet, STORE_PREFIX, type TestApi, useTestApi } from './runtime';

type Registered = { created: boolean; version: ModelVersion };
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** The browser-style multipart POST a presigned S3 POST expects: policy fields first, file last. */
async function postToS3(ticket: UploadTicket, bytes: Uint8Array): Promise<Response> {
  const form = new FormData();
  for (const [k, v] of Object.entries(ticket.fields ?? {})) form.append(k, v);
  form.append('file', new Blob([bytes]), 'model.onnx');
  return fetch(ticket.url, { method: 'POST', body: form });
}

describe('register-version on S3 (RGW)', () => {
  let api: TestApi;
  beforeAll(async () => {
    api = await useTestApi('s3', 'fn-register');
  });
  afterAll(async () => api?.cleanup());

  it('registers an inline binary body: 201, then 200 for the same bytes, with metadata from the query', async () => {
    const bytes = tinyModel(1);
    const q = new URLSearchParams({
      description: 'first cut',
      alias: 'staging',
      reason: 'smoke',
      tags: JSON.stringify({ team: 'ml' }),
    });
    const first = await api.call('POST', `/models/iris/versions?${q}`, {
      headers: octet,
      body: bytes,
      iamUserArn: 'arn:aws:iam::1:user/alice',
    });
    expect(first.status).toBe(201);
    const body = first.json<Registered>();
    expect(body.created).toBe(true);
    expect(body.version).toMatchObject({
      name: 'iris',
      version: 1,
      sha256: sha(bytes),
      size: bytes.length,
      description: 'first cut',
      tags: { team: 'ml' },
      source: 'api',
      actor: 'arn:aws:iam::1:user/alice',
      status: 'active',
    });
    expect(first.headers.location).toBe('/models/iris/versions/1');

    const again = await api.call('POST', '/models/iris/versions', { headers: octet, body: bytes });
    expect(again.status).toBe(200);
    expect(again.json<Registered>()).toMatchObject({ created: false, version: { version: 1 } });

    const model = (await api.call('GET', '/models/iris')).json<{
      aliases: Record<string, { version: number }>;
    }>();
    expect(model.aliases.staging?.version).toBe(1);
  });

  it('registers JSON with modelBase64', async () => {
    const bytes = tinyModel(2);
    const res = await api.call('POST', '/models/iris/versions', {
      body: { modelBase64: Buffer.from(bytes).toString('base64'), description: 'b64' },
    });
    expect(res.status).toBe(201);
    expect(res.json<Registered>().version).toMatchObject({
      version: 2,
      sha256: sha(bytes),
      description: 'b64',
    });
  });

  it('refuses bad requests with the matching status and registers nothing', async () => {
    const cases: [string, Parameters<TestApi['call']>[2], number, string][] = [
      [
        '/models/broken/versions',
        { headers: octet, body: Buffer.from('definitely not onnx') },
        422,
        'unprocessable',
      ],
      ['/models/Bad%20Name/versions', { headers: octet, body: tinyModel(3) }, 400, 'invalid_argument'],
      [
        '/models/broken/versions',
        { headers: { 'content-type': 'text/plain' }, body: 'hello' },
        415,
        'unsupported_media_type',
      ],
      ['/models/broken/versions', { body: {} }, 400, 'invalid_argument'],
      [
        '/models/broken/versions',
        { body: { modelBase64: 'abc', uploadKey: 'uploads/broken/x.onnx' } },
        400,
        'invalid_argument',
      ],
      ['/models/broken/versions', { body: { modelBase64: '@@@not base64' } }, 400, 'invalid_argument'],
      [
        '/models/broken/versions',
        { headers: { 'content-type': 'application/json' }, body: '{"modelBase64":' },
        400,
        'invalid_argument',
      ],
      [
        '/models/broken/versions',
        { body: { modelBase64: Buffer.from(tinyModel(3)).toString('base64'), tags: 'x' } },
        400,
        'invalid_argument',
      ],
      [
        '/models/broken/versions',
        { body: { modelBase64: Buffer.from(tinyModel(3)).toString('base64'), alias: 'latest' } },
        400,
        'invalid_argument',
      ],
      ['/models/broken/versions', { headers: octet, body: Buffer.alloc(0) }, 400, 'invalid_argument'],
      ['/models/broken/versions', { body: { uploadKey: 'models/iris/head.json' } }, 400, 'invalid_argument'],
      [
        '/models/broken/versions',
        { body: { uploadKey: 'uploads/broken/00000000-0000-4000-8000-000000000000.onnx' } },
        404,
        'not_found',
      ],
    ];
    for (const [path, request, status, code] of cases) {
      const res = await api.call('POST', path, request);
      expect({ path, status: res.status, code: res.json().code }).toEqual({ path, status, code });
      expect(typeof res.json().error).toBe('string');
    }
    expect((await api.call('GET', '/models/broken')).status).toBe(404);
    expect((await api.call('GET', '/models/iris/versions')).json<{ items: unknown[] }>().items).toHaveLength(
      2,
    );
  });

  it('uploads through a presigned S3 POST, registers from the key and deletes the upload', async () => {
    const created = await api.call('POST', '/models/big/uploads');
    expect(created.status).toBe(201);
    const ticket = created.json<UploadTicket>();
    expect(ticket).toMatchObject({ method: 'POST' });
    expect(ticket.uploadKey).toMatch(/^uploads\/big\/[0-9a-f-]{36}\.onnx$/);
    expect(Date.parse(ticket.expiresAt) - Date.now()).toBeGreaterThan(800_000);
    const policy = JSON.parse(Buffer.from(ticket.fields!.Policy!, 'base64').toString('utf8')) as {
      conditions: unknown[];
    };
    expect(policy.conditions).toContainEqual(['content-length-range', 1, ticket.maxBytes]);

    const bytes = tinyModel(10);
    const upload = await postToS3(ticket, bytes);
    expect(upload.status, await upload.text()).toBeLessThan(300);
    const stored = await api.bucket!.client.send(
      new GetObjectCommand({ Bucket: api.bucket!.bucket, Key: `${STORE_PREFIX}/${ticket.uploadKey}` }),
    );
    expect(Buffer.from(await stored.Body!.transformToByteArray())).toEqual(Buffer.from(bytes));

    const res = await api.call('POST', '/models/big/versions', {
      body: { uploadKey: ticket.uploadKey, description: 'via upload', alias: 'staging' },
    });
    expect(res.status).toBe(201);
    expect(res.json<Registered>().version).toMatchObject({
      version: 1,
      sha256: sha(bytes),
      source: 'upload',
      description: 'via upload',
    });
    const left = await api.bucket!.client.send(
      new ListObjectsV2Command({ Bucket: api.bucket!.bucket, Prefix: `${STORE_PREFIX}/uploads/` }),
    );
    expect(left.KeyCount ?? 0).toBe(0);
    // The upload is consumed: registering it again is a 404, not a second version.
    expect(
      (await api.call('POST', '/models/big/versions', { body: { uploadKey: ticket.uploadKey } })).status,
    ).toBe(404);
    // …and another model cannot claim a key from this one's upload space.
    expect(
      (await api.call('POST', '/models/iris/versions', { body: { uploadKey: ticket.uploadKey } })).status,
    ).toBe(400);
  });

  it('enforces the size limit on the presigned POST (S3 refuses) and on registration (413)', async () => {
    api.reset({ MAAS_MAX_MODEL_BYTES: '300' });
    try {
      const ticket = (await api.call('POST', '/models/limited/uploads')).json<UploadTicket>();
      expect(ticket.maxBytes).toBe(300);
      const tooBig = await postToS3(ticket, new Uint8Array(301).fill(7));
      expect(tooBig.status).toBe(400);
      expect(await tooBig.text()).toMatch(/EntityTooLarge/);

      // An object that got there anyway (e.g. put with other credentials) is refused at registration.
      await api.bucket!.client.send(
        new PutObjectCommand({
          Bucket: api.bucket!.bucket,
          Key: `${STORE_PREFIX}/${ticket.uploadKey}`,
          Body: new Uint8Array(400),
        }),
      );
      const res = await api.call('POST', '/models/limited/versions', {
        body: { uploadKey: ticket.uploadKey },
      });
      expect(res.status).toBe(413);
      expect(res.json().code).toBe('too_large');

      const inline = await api.call('POST', '/models/limited/versions', {
        headers: octet,
        body: new Uint8Array(400),
      });
      expect(inline.status).toBe(413);
      expect((await api.call('GET', '/models/limited')).status).toBe(404);
    } finally {
      api.reset({ MAAS_MAX_MODEL_BYTES: undefined });
    }
  });

  it('presigned POSTs expire', async () => {
    api.reset({ MAAS_UPLOAD_EXPIRES_SECONDS: '1' });
    try {
      const ticket = (await api.call('POST', '/models/late/uploads')).json<UploadTicket>();
      await new Promise((r) => setTimeout(r, 2100));
      const res = await postToS3(ticket, tinyModel(11));
      expect(res.status).toBe(403);
    } finally {
      api.reset({ MAAS_UPLOAD_EXPIRES_SECONDS: undefined });
    }
  });

  it('answers 404 for unknown routes and 400 for an invalid name on uploads', async () => {
    expect((await api.call('POST', '/models/Bad%20Name/uploads')).status).toBe(400);
    // The local upload route has no ticket on an S3 store.
    expect(
      (
        await api.call('PUT', '/models/big/uploads/00000000-0000-4000-8000-000000000000', {
          headers: octet,
          body: tinyModel(1),
        })
      ).status,
    ).toBe(404);
  });
});

describe('register-version on the file store (local two-step upload)', () => {
  let api: TestApi;
  beforeAll(async () => {
    api = await useTestApi('file', 'fn-register-local');
  });
  afterAll(async () => api?.cleanup());

  it('issues a PUT ticket on the API itself, accepts the bytes once, then registers them', async () => {
    const ticket = (await api.call('POST', '/models/local/uploads')).json<UploadTicket>();
    expect(ticket.method).toBe('PUT');
    const id = /uploads\/local\/(.+)\.onnx$/.exec(ticket.uploadKey)![1]!;
    expect(ticket.url).toBe(`/models/local/uploads/${id}`);
    const bytes = tinyModel(20);
    const put = await api.call('PUT', ticket.url, { headers: octet, body: bytes });
    expect(put.status).toBe(200);
    expect(put.json()).toEqual({ uploadKey: ticket.uploadKey, size: bytes.length });
    expect((await api.call('PUT', ticket.url, { headers: octet, body: bytes })).status).toBe(409);
    const res = await api.call('POST', '/models/local/versions', { body: { uploadKey: ticket.uploadKey } });
    expect(res.status).toBe(201);
    expect(res.json<Registered>().version.sha256).toBe(sha(bytes));
    // The ticket went with the upload.
    expect((await api.call('PUT', ticket.url, { headers: octet, body: bytes })).status).toBe(404);
  });

  it('refuses local uploads over the limit (413), after expiry (404) and with a made-up id (400/404)', async () => {
    api.reset({ MAAS_MAX_MODEL_BYTES: '300' });
    const small = (await api.call('POST', '/models/local/uploads')).json<UploadTicket>();
    expect((await api.call('PUT', small.url, { headers: octet, body: new Uint8Array(301) })).status).toBe(
      413,
    );
    api.reset({ MAAS_MAX_MODEL_BYTES: undefined, MAAS_UPLOAD_EXPIRES_SECONDS: '1' });
    const late = (await api.call('POST', '/models/local/uploads')).json<UploadTicket>();
    await new Promise((r) => setTimeout(r, 1100));
    const expired = await api.call('PUT', late.url, { headers: octet, body: tinyModel(21) });
    expect(expired.status).toBe(404);
    expect(expired.json<{ error: string }>().error).toMatch(/expired/);
    api.reset({ MAAS_UPLOAD_EXPIRES_SECONDS: undefined });
    expect(
      (await api.call('PUT', '/models/local/uploads/not-a-uuid', { headers: octet, body: tinyModel(21) }))
        .status,
    ).toBe(400);
    expect(
      (
        await api.call('PUT', '/models/local/uploads/00000000-0000-4000-8000-000000000000', {
          headers: octet,
          body: tinyModel(21),
        })
      ).status,
    ).toBe(404);
  });
});
