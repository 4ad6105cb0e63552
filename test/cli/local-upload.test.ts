import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resetRuntime } from '../../functions/lib/runtime';
import type { ModelVersion } from '../../shared/registry';
import { runMaas } from '../support/cli';
import { type Gateway, loadRoutes, startGateway } from '../support/gateway';
import { tinyModel } from '../support/models';

const maas = (args: string[], env: Record<string, string>, cwd: string) => runMaas(args, { env, cwd });

describe('maas register --upload against the local file store (no S3 to presign)', () => {
  let gateway: Gateway;
  let storeDir: string;
  let work: string;
  beforeAll(async () => {
    storeDir = await mkdtemp(path.join(tmpdir(), 'maas-cli-store-'));
    work = await mkdtemp(path.join(tmpdir(), 'maas-cli-work-'));
    process.env.MAAS_STORE = `file://${storeDir}`;
    delete process.env.MAAS_API_KEY;
    resetRuntime();
    gateway = await startGateway(await loadRoutes(['register-version', 'rollback', 'catalog']));
  });
  afterAll(async () => {
    await gateway?.close();
    await rm(storeDir, { recursive: true, force: true });
    await rm(work, { recursive: true, force: true });
  });

  it('PUTs the bytes to the API upload route, registers them and leaves no upload behind', async () => {
    const bytes = tinyModel(42);
    await writeFile(path.join(work, 'm.onnx'), bytes);
    const r = await maas(
      ['register', 'local', 'm.onnx', '--upload', '--json'],
      { MAAS_ENDPOINT: gateway.url },
      work,
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/uploading m\.onnx \[#+\] 100%/);
    const out = JSON.parse(r.stdout) as { created: boolean; version: ModelVersion };
    expect(out).toMatchObject({
      created: true,
      version: { name: 'local', version: 1, source: 'upload', size: bytes.length },
    });
    expect(await readdir(path.join(storeDir, 'uploads')).catch(() => [])).toEqual([]);
  });
});
