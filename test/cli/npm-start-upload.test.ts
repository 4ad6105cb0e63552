/**
 * `maas register` against the real `npm start` (serverless-offline, file store): a model larger
 * than the emulated API Gateway's 10 MB body limit goes through the local upload server, is
 * registered and then served by predict with the reference computation's outputs.
 */
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildMlp, mlpReference, randomFloat32 } from '../../dev/onnx-builder';
import { mulberry32 } from '../../shared/util/random';
import { childEnv, freePort, LocalServer, serviceCopy } from '../start/local-server';

const BIN = path.resolve(__dirname, '../../bin/maas.cjs');
const MB = 1024 * 1024;

let dir: string;
let server: LocalServer;
let base: string;

function maas(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      { env: childEnv({ MAAS_ENDPOINT: base }), cwd: dir, timeout: 120_000, maxBuffer: 16 * MB },
      (error, stdout, stderr) =>
        resolve({ code: error ? (typeof error.code === 'number' ? error.code : -1) : 0, stdout, stderr }),
    );
  });
}

beforeAll(async () => {
  dir = serviceCopy();
  const httpPort = await freePort();
  base = `http://127.0.0.1:${httpPort}`;
  server = LocalServer.start(
    dir,
    childEnv({ MAAS_PORT: String(httpPort), MAAS_LAMBDA_PORT: String(await freePort()), MAAS_DEMO: 'false' }),
  );
  await server.waitUntilReady(`${base}/v2/health/live`, 170_000);
}, 180_000);

afterAll(async () => {
  await server?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
}, 30_000);

describe('npm start: maas register of a model over 10 MB', () => {
  it('uploads it through the local upload server, registers it and serves it', async () => {
    expect(server.output).toMatch(/uploads via http:\/\/127\.0\.0\.1:\d+/);
    const mlp = buildMlp({ inputSize: 64, hiddenSizes: [42_000], outputSize: 3, seed: 11 });
    expect(mlp.bytes.length).toBeGreaterThan(10.5 * MB);
    fs.writeFileSync(path.join(dir, 'big.onnx'), mlp.bytes);
    // The path the gateway refuses (what `maas register` did before the upload server).
    const direct = await fetch(`${base}/models/big/versions`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream' },
      body: mlp.bytes,
    });
    expect(direct.status).toBe(413);

    const r = await maas(['register', 'big', 'big.onnx', '--alias', 'production', '--json']);
    expect(r.code, `${r.stderr}\n${server.output.slice(-3000)}`).toBe(0);
    const out = JSON.parse(r.stdout) as { created: boolean; version: { version: number; size: number } };
    expect(out).toMatchObject({ created: true, version: { version: 1, size: mlp.bytes.length } });
    // Registered, then the upload and its ticket deleted (the emptied folder pruned with them).
    expect(fs.existsSync(path.join(dir, '.maas', 'uploads', 'big'))).toBe(false);

    const input = randomFloat32(mulberry32(3), 2 * 64, -1, 1);
    const res = await fetch(`${base}/v2/models/big/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        inputs: [{ name: 'input', shape: [2, 64], datatype: 'FP32', data: [...input] }],
      }),
    });
    expect(res.status, await res.clone().text()).toBe(200);
    const served = (await res.json()) as { model_version: string; outputs: { data: number[] }[] };
    expect(served.model_version).toBe('1');
    const expected = mlpReference(mlp.weights, input, 2);
    served.outputs[0]!.data.forEach((v, i) => expect(v).toBeCloseTo(expected[i]!, 4));
  }, 180_000);
});
