import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildMlp } from '../../dev/onnx-builder';
import type { ModelVersion } from '../../shared/registry';
import type { UploadTicket } from '../../shared/registry/uploads';
import { runMaas } from '../support/cli';
import type { Gateway } from '../support/gateway';
import { type LocalApi, startLocalApi } from '../support/local-api';

const MB = 1024 * 1024;

const maas = (args: string[], env: Record<string, string>, cwd: string) => runMaas(args, { env, cwd });

async function ticket(gateway: Gateway, name: string): Promise<UploadTicket> {
  const res = await fetch(`${gateway.url}/models/${name}/uploads`, { method: 'POST' });
  expect(res.status).toBe(201);
  return (await res.json()) as UploadTicket;
}

describe('the local upload server (npm start) with the register-version handler', () => {
  let api: LocalApi;
  let work: string;
  const uploadedFiles = async (): Promise<string[]> =>
    (
      await readdir(path.join(api.storeDir, 'uploads'), { recursive: true }).catch(() => [] as string[])
    ).filter((f) => !f.endsWith('.ticket.json') && f.includes('.'));

  beforeAll(async () => {
    work = await mkdtemp(path.join(tmpdir(), 'maas-upload-work-'));
    // Bundles go through upload sessions: the npm start upload server stands in for S3 here.
    api = await startLocalApi({ MAAS_MAX_MODEL_BYTES: String(64 * MB) });
  });
  afterAll(async () => {
    await api?.close();
    await rm(work, { recursive: true, force: true });
  });

  it('maas register uploads an 11 MB model past the gateway, registers it, leaves no upload', async () => {
    // 64·42000 + 42000·3 weights: 11.4 MB, above serverless-offline's 10 MB body limit.
    const mlp = buildMlp({ inputSize: 64, hiddenSizes: [42_000], outputSize: 3, seed: 7 });
    expect(mlp.bytes.length).toBeGreaterThan(10.5 * MB);
    await writeFile(path.join(work, 'big.onnx'), mlp.bytes);
    const r = await maas(['register', 'big', 'big.onnx', '--json'], { MAAS_ENDPOINT: api.gateway.url }, work);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/uploading big\.onnx \[#+\] 100%/);
    const out = JSON.parse(r.stdout) as { created: boolean; version: ModelVersion };
    expect(out).toMatchObject({
      created: true,
      version: { name: 'big', version: 1, source: 'upload', size: mlp.bytes.length },
    });
    expect(await readdir(path.join(api.storeDir, 'uploads', 'big')).catch(() => [])).toEqual([]);
  });

  it('the ticket names the upload server with a token; the API key is not needed there', async () => {
    const t = await ticket(api.gateway, 'tok');
    expect(t.method).toBe('PUT');
    expect(t.url.startsWith(`${api.uploads.url}/uploads/tok/`)).toBe(true);
    const url = new URL(t.url);
    expect(url.searchParams.get('token')).toMatch(/^[A-Za-z0-9_-]{32}$/);
    // The token is not in the store (only its digest).
    const ticketDoc = await readdir(path.join(api.storeDir, 'uploads', 'tok'));
    expect(ticketDoc).toHaveLength(1);

    const wrong = new URL(t.url);
    wrong.searchParams.set('token', 'x'.repeat(32));
    const refused = await fetch(wrong, { method: 'PUT', body: new Uint8Array(10) });
    expect(refused.status).toBe(404);
    const missing = new URL(t.url);
    missing.searchParams.delete('token');
    expect((await fetch(missing, { method: 'PUT', body: new Uint8Array(10) })).status).toBe(404);
    expect(await uploadedFiles()).toEqual([]);

    const ok = await fetch(t.url, { method: 'PUT', body: new Uint8Array(10).fill(1) });
    expect(ok.status).toBe(200);
    expect(await ok.json()).toEqual({ uploadKey: t.uploadKey, size: 10 });
    // Written once: a second PUT to the same ticket is a conflict and keeps the first bytes.
    const again = await fetch(t.url, { method: 'PUT', body: new Uint8Array(20) });
    expect(again.status).toBe(409);
    expect(await uploadedFiles()).toEqual([`tok/${t.uploadKey.split('/').pop()}`]);
    expect((await fetch(t.url, { method: 'GET' })).status).toBe(405);
  });

  it('refuses an upload over the limit (announced or streamed) and stores nothing', async () => {
    const t = await ticket(api.gateway, 'huge');
    expect(t.maxBytes).toBe(64 * MB);
    const announced = await fetch(t.url, {
      method: 'PUT',
      body: new Uint8Array(64 * MB + 1),
    });
    expect(announced.status).toBe(413);
    // Chunked (no content-length): refused while streaming, once past the limit.
    const chunk = new Uint8Array(4 * MB);
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent > 70 * MB) return controller.close();
        sent += chunk.length;
        controller.enqueue(chunk);
      },
    });
    const streamed = await fetch(t.url, { method: 'PUT', body, duplex: 'half' } as RequestInit).then(
      async (r) => r.status,
      () => 'reset',
    );
    // The server answers 413 and closes; the client may see the answer or the closed socket.
    expect([413, 'reset']).toContain(streamed);
    expect((await uploadedFiles()).filter((f) => f.startsWith('huge/'))).toEqual([]);
    // The same ticket still takes a proper upload.
    expect((await fetch(t.url, { method: 'PUT', body: new Uint8Array(5) })).status).toBe(200);
  });
});
