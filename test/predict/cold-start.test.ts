/**
 * What predict's cold start loads: the deployed bundle (esbuild, as bench/support.ts builds it)
 * serves a first infer request without evaluating the AWS SDK packages that only rare paths use
 * (asynchronous dispatch, event publishing, presigned links, multipart uploads). Each is ~50–150
 * KB of module code a Lambda cold start would otherwise run; `npm run bench -- predict` measures
 * the cold start itself.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeColdPredictHandler } from '../../bench/support';
import { buildMlp } from '../../dev/onnx-builder';
import { ModelRegistry } from '../../shared/registry';
import { createObjectStore } from '../../shared/store';

const ON_DEMAND = [
  '@aws-sdk/client-eventbridge',
  '@aws-sdk/client-lambda',
  '@aws-sdk/lib-storage',
  '@aws-sdk/s3-presigned-post',
  '@aws-sdk/s3-request-presigner',
];

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'maas-cold-start-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function run(script: string, env: Record<string, string>): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [script, 'cold', '8'], {
      env: { ...process.env, ...env, POWERTOOLS_LOG_LEVEL: 'ERROR' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
    });
    child.stderr.on('data', (c: Buffer) => {
      out += c.toString();
    });
    child.on('exit', (code) => resolve({ code, out }));
  });
}

describe('predict cold start', () => {
  it('answers its first infer request without loading the SDK packages of rare paths', async () => {
    const storeUrl = `file://${path.join(dir, 'store')}`;
    const model = buildMlp({ inputSize: 8, hiddenSizes: [4], outputSize: 2, seed: 3 });
    await new ModelRegistry(createObjectStore(storeUrl)).registerVersion('cold', model.bytes, {
      alias: 'production',
      actor: 'test',
    });
    const script = await writeColdPredictHandler(dir, { watch: ON_DEMAND });
    const { code, out } = await run(script, {
      MAAS_STORE: storeUrl,
      MAAS_MODEL_CACHE_DIR: path.join(dir, 'cache'),
      MAAS_CAPTURE: 'false',
    });
    expect(code, out).toBe(0);
    const loaded = JSON.parse(/^LOADED (.*)$/m.exec(out)?.[1] ?? 'null') as string[];
    // onnxruntime-node is watched the same way: the hook sees what the cold start requires.
    expect(loaded).toEqual(['onnxruntime-node']);
  }, 60_000);
});
