/**
 * `npm start` end to end: starts the real serverless-offline server (the same command a user
 * runs) in a throw-away copy of the service, with no AWS credentials in its environment, and runs
 * the README's examples exactly as written (only the port changes), checking what each one did
 * through the API. Then the incoming-folder registration, and the monitor's schedule.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { irisReference } from '../../dev/demo/iris';
import { childEnv, freePort, LocalServer, ROOT, runShell, serviceCopy } from './local-server';
import { type ReadmeExample, readmeWithExamples } from './readme';

const API_KEY = randomBytes(12).toString('hex');
const { file: readmeFile, examples } = readmeWithExamples(ROOT);

let dir: string;
let server: LocalServer;
let base: string;
let httpPort: number;
let lambdaPort: number;
let env: NodeJS.ProcessEnv;

function example(id: string): ReadmeExample {
  const found = examples.find((e) => e.id === id);
  if (!found) throw new Error(`${readmeFile} has no example marked readme-test: ${id}`);
  return found;
}

/** Runs a README example as written, pointed at this test's ports; fails on a non-zero exit. */
async function runExample(id: string): Promise<string> {
  const code = example(id)
    .code.replaceAll('127.0.0.1:3000', `127.0.0.1:${httpPort}`)
    .replaceAll('127.0.0.1:3002', `127.0.0.1:${lambdaPort}`);
  const result = await runShell(code, dir, { ...env, MAAS_API_KEY: API_KEY });
  if (result.status !== 0)
    throw new Error(
      `example ${id} exited with ${result.status}\n--- stdout\n${result.stdout}\n--- stderr\n${result.stderr}\n--- server\n${server.output.slice(-3000)}`,
    );
  return result.stdout;
}

async function getJson<T = Record<string, unknown>>(route: string): Promise<T> {
  const response = await fetch(`${base}${route}`);
  expect(response.status, `GET ${route}`).toBe(200);
  return (await response.json()) as T;
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const started = Date.now();
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() - started > timeoutMs)
      throw new Error(`timed out waiting for ${what}\n${server.output.slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

beforeAll(async () => {
  // The README's examples are curl commands; without curl they cannot run as written.
  if (spawnSync('curl', ['--version']).status !== 0)
    throw new Error('curl is required to run the README examples (apt-get install curl)');
  dir = serviceCopy();
  httpPort = await freePort();
  lambdaPort = await freePort();
  base = `http://127.0.0.1:${httpPort}`;
  env = childEnv({
    MAAS_PORT: String(httpPort),
    MAAS_LAMBDA_PORT: String(lambdaPort),
    MAAS_API_KEY: API_KEY,
    // Every minute instead of every 5, so the scheduled run happens within the test.
    MAAS_MONITOR_SCHEDULE: 'rate(1 minute)',
    MAAS_INCOMING_POLL_MS: '500',
  });
  server = LocalServer.start(dir, env);
  const ms = await server.waitUntilReady(`${base}/v2/health/ready`, 170_000);
  console.log(`npm start: ready after ${(ms / 1000).toFixed(1)} s`);
}, 180_000);

afterAll(async () => {
  await server?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
}, 30_000);

describe('npm start', () => {
  it('serves on loopback only, with the store in .maas/ of the service folder', async () => {
    expect(server.output).toContain(`maas: ready on http://127.0.0.1:${httpPort}`);
    expect(fs.existsSync(path.join(dir, '.maas', 'models', 'iris'))).toBe(true);
    const external = Object.values(os.networkInterfaces())
      .flat()
      .find((i) => i && i.family === 'IPv4' && !i.internal);
    if (external) {
      // The port is open on loopback (above) but nothing listens on the machine's other address.
      const reached = await fetch(`http://${external.address}:${httpPort}/v2/health/live`).then(
        () => true,
        () => false,
      );
      expect(reached).toBe(false);
    }
  });

  it('has a README example for each step', () => {
    expect(examples.map((e) => e.id)).toEqual([
      'predict',
      'register',
      'promote',
      'rollback',
      'optimize',
      'drop-file',
      'drop-file-check',
      'monitor',
    ]);
  });

  it('predict: the demo model answers the first curl', async () => {
    const out = JSON.parse(await runExample('predict')) as {
      model_version: string;
      outputs: { name: string; shape: number[]; data: number[] }[];
    };
    const probabilities = out.outputs.find((o) => o.name === 'probabilities')!;
    const label = out.outputs.find((o) => o.name === 'label')!;
    expect(probabilities.shape).toEqual([3, 3]);
    const flowers: [number, number, number, number][] = [
      [5.1, 3.5, 1.4, 0.2],
      [7.0, 3.2, 4.7, 1.4],
      [6.3, 3.3, 6.0, 2.5],
    ];
    const expected = flowers.map(irisReference);
    expected.flat().forEach((p, i) => expect(probabilities.data[i]).toBeCloseTo(p, 5));
    expect(label.data).toEqual(expected.map((row) => row.indexOf(Math.max(...row))));
    expect(out.model_version).toBe('1');
  });

  it('mutating routes require the API key', async () => {
    const response = await fetch(`${base}/models/iris/aliases/production`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ version: 1 }),
    });
    expect(response.status).toBe(401);
    const wrong = await fetch(`${base}/models/iris/rollback`, {
      method: 'POST',
      headers: { 'x-api-key': 'wrong', 'content-type': 'application/json' },
      body: '{}',
    });
    expect(wrong.status).toBe(401);
    const summary = await getJson<{ aliases: Record<string, { revision: number }> }>('/models/iris');
    expect(summary.aliases.production?.revision).toBe(1); // nothing moved
  });

  it('register, promote, rollback: the README examples move the alias as described', async () => {
    const registered = JSON.parse((await runExample('register')).trim()) as {
      created: boolean;
      version: { version: number; description: string };
    };
    expect(registered.created).toBe(true);
    expect(registered.version.version).toBe(2);
    expect(registered.version.description).toBe('retrained');
    expect(fs.statSync(path.join(dir, 'iris.onnx')).size).toBeGreaterThan(0);

    const promoted = await runExample('promote');
    expect(JSON.parse(promoted)).toMatchObject({ alias: 'production', version: 2, previous: [1] });
    expect(
      (await getJson<{ aliases: Record<string, { version: number }> }>('/models/iris')).aliases.production
        ?.version,
      promoted,
    ).toBe(2);
    // Warm predict workers re-resolve aliases after MAAS_ALIAS_TTL_MS (5 s by default).
    const servedVersion = async (): Promise<string> => {
      const served = await fetch(`${base}/v2/models/iris/infer`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          inputs: [{ name: 'input', shape: [1, 4], datatype: 'FP32', data: [5.1, 3.5, 1.4, 0.2] }],
        }),
      });
      return ((await served.json()) as { model_version: string }).model_version;
    };
    await waitFor(
      'predict to serve version 2',
      async () => ((await servedVersion()) === '2' ? true : undefined),
      20_000,
    );

    const out = await runExample('rollback');
    expect(
      (await getJson<{ aliases: Record<string, { version: number }> }>('/models/iris')).aliases.production
        ?.version,
    ).toBe(1);
    expect(out).toContain('rolled_back');
    expect(out).toContain('version 2 misclassifies virginica');
    await waitFor(
      'predict to serve version 1 again',
      async () => ((await servedVersion()) === '1' ? true : undefined),
      20_000,
    );
  }, 60_000);

  it('optimize: the job is accepted and finishes', async () => {
    const out = await runExample('optimize');
    const job = JSON.parse(out) as { job: string; status: string; model: string; version: number };
    expect(job.model).toBe('iris');
    expect(job.version).toBe(1);
    const final = await waitFor(
      'the optimize job to finish',
      async () => {
        const record = await getJson<{ status: string }>(`/models/iris/optimizations/${job.job}`);
        return ['succeeded', 'rejected', 'failed'].includes(record.status) ? record : undefined;
      },
      120_000,
    );
    console.log(`optimize job ${job.job}: ${final.status}`);
    expect(['succeeded', 'rejected']).toContain(final.status); // 'failed' would mean the job itself broke
  }, 180_000);

  it('a file dropped into .maas/incoming/<name>/ is registered through the S3-trigger handler', async () => {
    await runExample('drop-file');
    const incoming = path.join(dir, '.maas', 'incoming', 'flowers', 'iris.onnx');
    // The watcher logs once the handler returned (registered, then the incoming object deleted).
    await server.waitForOutput(
      /maas: incoming incoming\/flowers\/iris\.onnx: registered flowers version 1/,
      30_000,
    );
    const versions = JSON.parse(await runExample('drop-file-check')) as {
      items: { version: number; source: string; actor: string }[];
    };
    expect(versions.items.map((v) => v.version)).toEqual([1]);
    expect(versions.items[0]!.source).toContain('incoming/flowers/iris.onnx');
    expect(versions.items[0]!.actor).toBe('s3-upload');
    expect(fs.existsSync(incoming)).toBe(false); // consumed

    // Not a model: quarantined with the reason, nothing registered.
    fs.mkdirSync(path.join(dir, '.maas', 'incoming', 'flowers'), { recursive: true }); // emptied folders are removed
    fs.writeFileSync(path.join(dir, '.maas', 'incoming', 'flowers', 'notes.onnx'), 'these are not weights');
    const errorFile = path.join(dir, '.maas', 'rejected', 'flowers', 'notes.onnx.error.json');
    await waitFor(
      'the broken file to be rejected',
      async () => (fs.existsSync(errorFile) ? true : undefined),
      30_000,
    );
    expect(JSON.parse(fs.readFileSync(errorFile, 'utf8')).error.error).toMatch(/ONNX/);
    expect((await getJson<{ items: unknown[] }>('/models/flowers/versions')).items).toHaveLength(1);
  }, 90_000);

  it('monitor: runs on demand through the Lambda endpoint, and on its schedule', async () => {
    const out = JSON.parse(await runExample('monitor')) as { runId: string; models: { model: string }[] };
    expect(out.runId).toMatch(/\S/);
    expect(out.models.map((m) => m.model)).toEqual(['iris']);
    // rate(1 minute) fires at the next minute boundary.
    await server.waitForOutput(/Successfully invoked scheduled function: \[monitor\]/, 75_000);
  }, 120_000);

  it('npm run package in the same folder meanwhile leaves the server serving', async () => {
    const infer = async (): Promise<number> => {
      const response = await fetch(`${base}/v2/models/iris/infer`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          inputs: [{ name: 'input', shape: [1, 4], datatype: 'FP32', data: [5.1, 3.5, 1.4, 0.2] }],
        }),
      });
      return response.status;
    };
    expect(await infer()).toBe(200);
    // The packaging run deletes its esbuild work folder when done; it must not be the server's.
    const packaged = await runShell('npm run package', dir, env, 400_000);
    if (packaged.status !== 0)
      throw new Error(`npm run package exited with ${packaged.status}
${packaged.stdout}
${packaged.stderr}`);
    expect(fs.existsSync(path.join(dir, '.serverless', 'predict.zip'))).toBe(true);
    // Sequential and concurrent requests (serverless-offline loads the handler afresh in new
    // workers), and a function this test had not called yet.
    for (let i = 0; i < 3; i++) expect(await infer()).toBe(200);
    expect(await Promise.all([infer(), infer(), infer(), infer()])).toEqual([200, 200, 200, 200]);
    expect((await fetch(`${base}/models/iris/versions`)).status).toBe(200);
    expect(server.output).not.toMatch(/Cannot find module/);
    expect(fs.existsSync(path.join(dir, '.esbuild', 'package'))).toBe(false); // cleaned up
    expect(fs.existsSync(path.join(dir, '.esbuild', 'offline'))).toBe(true); // the server's, untouched
  }, 420_000);
});
