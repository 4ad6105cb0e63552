import * as fs from 'node:fs';
import * as path from 'node:path';
import { pack } from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildMlp, mlpReference, randomFloat32 } from '../../dev/onnx-builder';
import { mulberry32 } from '../../shared/util/random';
import { childEnv, freePort, LocalServer, serviceCopy } from '../start/local-server';
import { buildBundle } from '../support/bundles';
import { runMaas } from '../support/cli';

const MB = 1024 * 1024;

let dir: string;
let server: LocalServer;
let base: string;

const maas = (args: string[]) => runMaas(args, { baseEnv: childEnv({ MAAS_ENDPOINT: base }), cwd: dir });

beforeAll(async () => {
  dir = serviceCopy();
  const httpPort = await freePort();
  base = `http://127.0.0.1:${httpPort}`;
  server = LocalServer.start(
    dir,
    childEnv({
      MAAS_PORT: String(httpPort),
      MAAS_LAMBDA_PORT: String(await freePort()),
      MAAS_DEMO: 'false',
      MAAS_INCOMING_POLL_MS: '300',
    }),
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

  it('registers bundles (a folder with maas register, a .tar dropped into incoming/) and serves them', async () => {
    const bundle = buildBundle({ layout: 'single', mlp: { seed: 8 } });
    const folder = path.join(dir, 'export');
    fs.mkdirSync(folder);
    for (const f of bundle.files) fs.writeFileSync(path.join(folder, f.name), f.bytes);
    fs.writeFileSync(path.join(folder, 'tokenizer.json'), '{"version":"1.0"}');
    const r = await maas(['register', 'folder', 'export/', '--json']);
    expect(r.code, `${r.stderr}\n${server.output.slice(-3000)}`).toBe(0);
    const registered = JSON.parse(r.stdout) as { version: { files: { name: string }[] } };
    expect(registered.version.files.map((f) => f.name)).toEqual([
      'model.onnx',
      'model.onnx.data',
      'tokenizer.json',
    ]);

    const perTensor = buildBundle({ layout: 'per-tensor', mlp: { seed: 9 } });
    const archive = pack();
    const chunks: Buffer[] = [];
    archive.on('data', (c: unknown) => {
      chunks.push(c as Buffer);
    });
    for (const f of perTensor.files) archive.entry({ name: f.name }, Buffer.from(f.bytes));
    archive.finalize();
    await new Promise<void>((resolve) => archive.on('end', () => resolve()));
    const incoming = path.join(dir, '.maas', 'incoming', 'dropped');
    fs.mkdirSync(incoming, { recursive: true });
    // Written elsewhere, then renamed in: the poller never sees a half-written archive.
    fs.writeFileSync(path.join(dir, 'bundle.tar'), Buffer.concat(chunks));
    fs.renameSync(path.join(dir, 'bundle.tar'), path.join(incoming, 'bundle.tar'));
    await server.waitForOutput(
      /maas: incoming incoming\/dropped\/bundle\.tar: registered dropped version 1/,
      60_000,
    );
    const version = (await (await fetch(`${base}/models/dropped/versions/1`)).json()) as {
      files: { name: string }[];
    };
    expect(version.files.map((f) => f.name).sort()).toEqual(perTensor.files.map((f) => f.name).sort());
    expect(fs.existsSync(path.join(incoming, 'bundle.tar'))).toBe(false);

    // Both are served, with the reference computation's outputs.
    for (const [model, built] of [
      ['folder', bundle],
      ['dropped', perTensor],
    ] as const) {
      const input = randomFloat32(mulberry32(5), 2 * 8, -1, 1);
      const res = await fetch(`${base}/v2/models/${model}/versions/1/infer`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          inputs: [{ name: 'input', shape: [2, 8], datatype: 'FP32', data: [...input] }],
        }),
      });
      expect(res.status, `${model}: ${await res.clone().text()}`).toBe(200);
      const served = (await res.json()) as { outputs: { data: number[] }[] };
      const expected = mlpReference(built.mlp.weights, input, 2);
      served.outputs[0]!.data.forEach((v, i) => expect(v).toBeCloseTo(expected[i]!, 4));
    }
  }, 120_000);
});
