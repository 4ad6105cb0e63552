import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { Sha256 } from '@aws-crypto/sha256-js';
import { SignatureV4 } from '@smithy/signature-v4';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildMlp, mlpReference } from '../../dev/onnx-builder';
import { resetRuntime } from '../../functions/lib/runtime';
import type { AliasRecord, HistoryEvent, ModelSummary, ModelVersion, Page } from '../../shared/registry';
import { runMaas } from '../support/cli';
import { type Gateway, loadRoutes, startGateway } from '../support/gateway';
import { createTestBucket, type TestBucket } from '../support/s3';

const API_KEY = 'cli-test-key';

const maas = (args: string[], env: Record<string, string | undefined> = {}, cwd?: string) =>
  runMaas(args, { env, ...(cwd ? { cwd } : {}) });

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

describe('maas CLI against a running local API (real handlers, RGW store)', () => {
  let bucket: TestBucket;
  let gateway: Gateway;
  let dir: string;
  let env: Record<string, string>;
  const mlps = [1, 2, 3].map((seed) => buildMlp({ inputSize: 4, hiddenSizes: [3], outputSize: 2, seed }));
  const files: string[] = [];
  const run = (...args: string[]) => maas(args, env, dir);
  const runJson = async <T>(...args: string[]): Promise<T> => {
    const r = await run('--json', ...args);
    expect(r.code, r.stderr).toBe(0);
    return JSON.parse(r.stdout) as T;
  };

  beforeAll(async () => {
    bucket = await createTestBucket('cli');
    process.env.MAAS_STORE = `s3://${bucket.bucket}/maas`;
    // apiKeyAuth() reads MAAS_API_KEY when the handlers load: set it first.
    process.env.MAAS_API_KEY = API_KEY;
    resetRuntime();
    gateway = await startGateway(await loadRoutes());
    dir = await mkdtemp(path.join(tmpdir(), 'maas-cli-'));
    for (const [i, m] of mlps.entries()) {
      files.push(path.join(dir, `model-${i + 1}.onnx`));
      await writeFile(files[i]!, m.bytes);
    }
    env = { MAAS_ENDPOINT: gateway.url, MAAS_API_KEY: API_KEY };
  });
  afterAll(async () => {
    await gateway?.close();
    delete process.env.MAAS_API_KEY;
    await bucket?.cleanup();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('registers a small file inline, with alias, description and tags', async () => {
    const r = await run(
      'register',
      'iris',
      files[0]!,
      '--alias',
      'staging',
      '--description',
      'first cut',
      '--tag',
      'team=ml',
      '--tag',
      'data=2024',
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('registered iris v1');
    expect(r.stdout).toMatch(new RegExp(`sha256:\\s+${sha(mlps[0]!.bytes)}`));
    expect(r.stdout).toMatch(/inputs:\s+input:FP32\[-1,4\]/);
    const v = await runJson<ModelVersion>('show', 'iris', 'staging');
    expect(v).toMatchObject({
      version: 1,
      description: 'first cut',
      tags: { team: 'ml', data: '2024' },
      source: 'api',
    });
    const again = await run('register', 'iris', files[0]!);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('already registered as iris v1 (same bytes)');
  });

  it('registers through a presigned S3 POST to RGW with a progress line', async () => {
    const r = await run('register', 'iris', files[1]!, '--upload', '--description', 'uploaded');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/uploading model-2\.onnx \[#+\] 100% .* in [0-9.]+ s/);
    expect(r.stdout).toContain('registered iris v2');
    const v = await runJson<ModelVersion>('show', 'iris', '2');
    expect(v).toMatchObject({ source: 'upload', description: 'uploaded', sha256: sha(mlps[1]!.bytes) });
    await runJson('register', 'iris', files[2]!);
  });

  it('lists models and versions as tables and as JSON', async () => {
    const models = await run('models');
    expect(models.code).toBe(0);
    expect(models.stdout.split('\n')[0]).toMatch(/^NAME\s+LATEST\s+ALIASES$/);
    expect(models.stdout).toMatch(/iris\s+3\s+staging=v1/);
    expect((await runJson<Page<ModelSummary>>('models')).items).toEqual([
      { name: 'iris', latestVersion: 3, aliases: { staging: 1 } },
    ]);
    const versions = await run('versions', 'iris');
    expect(versions.stdout.trim().split('\n')).toHaveLength(4);
    expect(versions.stdout).toMatch(/\n2\s+active\s+\S+ \S+\s+[0-9a-f]{12}\s/);
    expect((await runJson<Page<ModelVersion>>('versions', 'iris', '--limit', '2')).nextCursor).toBeDefined();
  });

  it('promotes (with --if-match), rolls back, and refuses stale or invalid moves with exit code 1', async () => {
    const p1 = await runJson<AliasRecord>('promote', 'iris', 'production', '1', '--reason', 'launch');
    expect(p1).toMatchObject({ version: 1, revision: 1 });
    const p2 = await run('promote', 'iris', 'production', '2', '--if-match', p1.etag);
    expect(p2.code, p2.stderr).toBe(0);
    expect(p2.stdout).toMatch(/^iris production -> v2 \(was v1\)/);
    const stale = await run('promote', 'iris', 'production', '3', '--if-match', p1.etag);
    expect(stale.code).toBe(1);
    expect(stale.stderr).toMatch(/HTTP 412 precondition_failed/);
    const rb = await run('rollback', 'iris', '--reason', 'v2 regressed');
    expect(rb.code, rb.stderr).toBe(0);
    expect(rb.stdout).toMatch(/^iris production rolled back to v1/);
    const status = await run('status', 'iris', '3', 'rejected', '--reason', 'bias');
    expect(status.stdout).toContain('iris v3 is rejected (bias)');
    const refused = await run('promote', 'iris', 'production', '3');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/HTTP 409 conflict/);
    expect((await run('rollback', 'nosuch')).stderr).toMatch(/HTTP 404 not_found/);
  });

  it('shows history', async () => {
    const h = await run('history', 'iris');
    expect(h.code).toBe(0);
    expect(h.stdout).toMatch(/rolled_back\s+production: v2 -> v1\s+local\s+v2 regressed/);
    expect(h.stdout).toMatch(/status_changed\s+v3 -> rejected/);
    const events = await runJson<Page<HistoryEvent>>('history', 'iris');
    expect(events.items.filter((e) => e.type === 'registered')).toHaveLength(3);
  });

  it('downloads inline and via a presigned S3 GET, verified', async () => {
    const a = await run('download', 'iris', 'production', '-o', 'prod.onnx');
    expect(a.code, a.stderr).toBe(0);
    expect(a.stdout).toContain('wrote prod.onnx');
    expect(await readFile(path.join(dir, 'prod.onnx'))).toEqual(Buffer.from(mlps[0]!.bytes));
    process.env.MAAS_DOWNLOAD_INLINE_MAX_BYTES = '10'; // the gateway runs the handlers in this process
    try {
      const b = await run('download', 'iris', '2');
      expect(b.code, b.stderr).toBe(0);
      expect(await readFile(path.join(dir, 'iris-v2.onnx'))).toEqual(Buffer.from(mlps[1]!.bytes));
    } finally {
      delete process.env.MAAS_DOWNLOAD_INLINE_MAX_BYTES;
    }
    expect((await run('download', 'iris', '99')).code).toBe(1);
  });

  it('predicts from an OIP request file through the predict function', async () => {
    const input = [0.5, -1, 2, 0.25, 1, 1, -0.5, 0];
    await writeFile(
      path.join(dir, 'request.json'),
      JSON.stringify({ inputs: [{ name: 'input', datatype: 'FP32', shape: [2, 4], data: input }] }),
    );
    const r = await runJson<{ outputs: { name: string; shape: number[]; data: number[] }[] }>(
      'predict',
      'iris',
      '--input',
      'request.json',
      '--model-version',
      '1',
    );
    const expected = mlpReference(mlps[0]!.weights, Float32Array.from(input), 2, {
      softmax: mlps[0]!.softmax,
    });
    expect(r.outputs[0]!.shape).toEqual([2, 2]);
    r.outputs[0]!.data.forEach((v, i) => expect(v).toBeCloseTo(expected[i]!, 5));
    const table = await run('predict', 'iris', '-i', 'request.json');
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout).toMatch(/OUTPUT\s+DATATYPE\s+SHAPE\s+DATA\noutput\s+FP32\s+\[2,2\]/);
    const bad = await run('predict', 'iris', '-i', files[0]!);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/is not JSON/);
  });

  it('optimizes a version and waits for the measured verdict', async () => {
    const job = await runJson<{
      job: string;
      status: string;
      summary: string[];
      model: string;
      version: number;
    }>('optimize', 'iris', '1', '-t', 'fp16', 'int8');
    expect(job).toMatchObject({ model: 'iris', version: 1 });
    expect(['succeeded', 'rejected']).toContain(job.status);
    expect(job.summary).toHaveLength(2);
    expect(job.summary.join('\n')).toMatch(/^fp16: /m);
    const queued = await run('optimize', 'iris', '1', '--no-wait');
    expect(queued.code, queued.stderr).toBe(0);
    expect(queued.stdout).toMatch(/^job opt-\S+: (queued|running|succeeded|rejected)/);
    const refused = await run('optimize', 'iris', '1', '-t', 'nonsense');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/nonsense/);
  });

  it('sends files above 4 MiB through the presigned upload on its own, and fetches them back through the presigned GET', async () => {
    const big = buildMlp({ inputSize: 1024, hiddenSizes: [1100], outputSize: 2, seed: 7 }).bytes;
    expect(big.length).toBeGreaterThan(4 * 1024 * 1024);
    await writeFile(path.join(dir, 'big.onnx'), big);
    const r = await run('register', 'big', 'big.onnx');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/uploading big\.onnx \[#{30}\] 100% 4\.\d\/4\.\d MiB/);
    expect((await runJson<ModelVersion>('show', 'big', 'latest')).source).toBe('upload');
    const d = await run('download', 'big', 'latest', '-o', 'big-copy.onnx');
    expect(d.code, d.stderr).toBe(0);
    expect(d.stdout).toMatch(/wrote big-copy\.onnx \(4\.\d MiB, sha256 [0-9a-f]{64} verified\)/);
    expect(sha(await readFile(path.join(dir, 'big-copy.onnx')))).toBe(sha(big));
  });

  it('needs the API key for changes (401 without), not for reads; reports usage errors with exit code 2', async () => {
    const noKey = await maas(
      ['promote', 'iris', 'production', '2'],
      { MAAS_ENDPOINT: gateway.url, MAAS_API_KEY: undefined },
      dir,
    );
    expect(noKey.code).toBe(1);
    expect(noKey.stderr).toMatch(/HTTP 401 unauthorized/);
    expect((await maas(['models'], { MAAS_ENDPOINT: gateway.url, MAAS_API_KEY: undefined }, dir)).code).toBe(
      0,
    );
    expect((await run('register', 'iris')).code).toBe(2);
    // A port that was just free: nothing listens there.
    const probe = http.createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const port = (probe.address() as AddressInfo).port;
    await new Promise((r) => probe.close(r));
    const down = await maas(['models', '--endpoint', `http://127.0.0.1:${port}`], {}, dir);
    expect(down.code).toBe(1);
    expect(down.stderr).toContain(
      `cannot reach http://127.0.0.1:${port}: ECONNREFUSED (is the local server running?`,
    );
  });
});

describe('maas CLI SigV4 signing', () => {
  it('signs for execute-api with the default credential chain, over exactly the bytes it sends', async () => {
    const seen: { ok: boolean; authorization: string }[] = [];
    const credentials = {
      accessKeyId: 'AKIDEXAMPLE',
      secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY',
    };
    // A loopback stand-in for API Gateway's IAM check: recompute the signature from what arrived.
    const server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        void (async () => {
          if (!req.headers.authorization) {
            seen.push({ ok: false, authorization: 'none' });
            res.writeHead(403, { 'content-type': 'application/json' });
            return res.end(JSON.stringify({ message: 'Missing Authentication Token' }));
          }
          const url = new URL(req.url!, `http://${req.headers.host}`);
          const amzDate = String(req.headers['x-amz-date']);
          const signedHeaders =
            /SignedHeaders=([^,]+)/.exec(String(req.headers.authorization))?.[1]?.split(';') ?? [];
          const headers = Object.fromEntries(signedHeaders.map((h) => [h, String(req.headers[h])]));
          const verifier = new SignatureV4({
            service: 'execute-api',
            region: 'eu-west-1',
            credentials,
            sha256: Sha256,
          });
          const expected = await verifier.sign(
            {
              method: req.method!,
              protocol: 'http:',
              hostname: url.hostname,
              port: Number(url.port),
              path: url.pathname,
              query: Object.fromEntries(url.searchParams),
              headers,
              body: Buffer.concat(chunks),
            },
            {
              signingDate: new Date(
                amzDate.replace(/^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/, '$1-$2-$3T$4:$5:$6Z'),
              ),
            },
          );
          seen.push({
            ok: expected.headers.authorization === req.headers.authorization,
            authorization: String(req.headers.authorization),
          });
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(
            JSON.stringify({
              name: 'iris',
              version: 1,
              previous: [],
              revision: 1,
              alias: 'production',
              etag: 'e',
            }),
          );
        })();
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const env = {
        AWS_ACCESS_KEY_ID: credentials.accessKeyId,
        AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey,
        AWS_REGION: 'eu-west-1',
        AWS_PROFILE: undefined,
        MAAS_API_KEY: undefined,
      };
      const r = await maas(
        ['--endpoint', url, '--sigv4', 'promote', 'iris', 'production', '1', '--reason', 'signed'],
        env,
      );
      expect(r.code, r.stderr).toBe(0);
      expect(seen).toHaveLength(1);
      expect(seen[0]!.authorization).toMatch(
        /^AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE\/\d{8}\/eu-west-1\/execute-api\/aws4_request/,
      );
      expect(seen[0]!.ok).toBe(true);
      // Loopback without --sigv4: not signed.
      const unsigned = await maas(['--endpoint', url, 'rollback', 'iris'], env);
      expect(seen[1]!.authorization).toBe('none');
      expect(unsigned.code).toBe(1);
      expect(unsigned.stderr).toMatch(/Missing Authentication Token \(HTTP 403\)/);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });
});

describe('maas optimize waiting limits', () => {
  it('gives up after --timeout with the job id and its last status (exit 1); refuses a bad --interval or --timeout (exit 2)', async () => {
    const polls: string[] = [];
    // A job that never finishes (a worker that died) cannot be made on demand by the real
    // handlers, so a loopback stand-in answers: queued on POST, then running forever.
    const server = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        if (req.method === 'GET') polls.push(req.url!);
        res.writeHead(req.method === 'POST' ? 202 : 200, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({
            job: 'opt-stuck-0001',
            model: 'iris',
            version: 1,
            status: req.method === 'POST' ? 'queued' : 'running',
          }),
        );
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const env = { MAAS_API_KEY: undefined };
      const stuck = await maas(
        ['--endpoint', url, 'optimize', 'iris', '1', '--interval', '0.3', '--timeout', '1.5'],
        env,
      );
      expect(stuck.code).toBe(1);
      expect(stuck.stderr).toMatch(/gave up waiting after 1\.5 s: job opt-stuck-0001 is still running/);
      expect(polls.length).toBeGreaterThanOrEqual(2);
      expect(polls.every((p) => p === '/models/iris/optimizations/opt-stuck-0001')).toBe(true);
      polls.length = 0;
      for (const bad of [
        ['--interval', 'abc'],
        ['--interval', '0'],
        ['--interval', '-1'],
        ['--timeout', 'soon'],
        ['--timeout', '0'],
      ]) {
        const r = await maas(['--endpoint', url, 'optimize', 'iris', '1', ...bad], env);
        expect(r.code, bad.join(' ')).toBe(2);
        expect(r.stderr).toMatch(/positive number of seconds/);
      }
      expect(polls).toHaveLength(0); // usage errors send nothing
    } finally {
      await new Promise((r) => server.close(r));
    }
  });
});
