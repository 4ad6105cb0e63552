import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { Sha256 } from '@aws-crypto/sha256-js';
import { SignatureV4 } from '@smithy/signature-v4';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildIrisClassifier } from '../../dev/demo/iris';
import type { ModelDescription } from '../../functions/catalog/describe';
import { resetRuntime } from '../../functions/lib/runtime';
import { ModelRegistry } from '../../shared/registry';
import { createObjectStore } from '../../shared/store';
import { type Gateway, loadRoutes, startGateway } from '../support/gateway';
import { createTestBucket, type TestBucket } from '../support/s3';
import { launchBrowser, rendered, type TestBrowser } from './browser';

const BIN = path.resolve(__dirname, '../../bin/maas.cjs');
const credentials = {
  accessKeyId: 'AKIDEXAMPLE',
  secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY',
};

/**
 * A loopback stand-in for API Gateway's IAM check in front of the real handlers: recomputes each
 * request's SigV4 signature from what arrived and forwards only correctly signed requests.
 */
async function startSigV4Gateway(
  upstream: string,
): Promise<{ url: string; seen: { path: string; ok: boolean }[]; close(): Promise<void> }> {
  const seen: { path: string; ok: boolean }[] = [];
  const verifier = new SignatureV4({
    service: 'execute-api',
    region: 'eu-west-1',
    credentials,
    sha256: Sha256,
  });
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      void (async () => {
        const url = new URL(req.url!, `http://${req.headers.host}`);
        const body = Buffer.concat(chunks);
        const authorization = String(req.headers.authorization ?? '');
        const signedHeaders = /SignedHeaders=([^,]+)/.exec(authorization)?.[1]?.split(';') ?? [];
        const amzDate = String(req.headers['x-amz-date'] ?? '');
        const expected = authorization
          ? await verifier.sign(
              {
                method: req.method!,
                protocol: 'http:',
                hostname: url.hostname,
                port: Number(url.port),
                path: url.pathname,
                query: Object.fromEntries(url.searchParams),
                headers: Object.fromEntries(signedHeaders.map((h) => [h, String(req.headers[h])])),
                body,
              },
              {
                signingDate: new Date(
                  amzDate.replace(/^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/, '$1-$2-$3T$4:$5:$6Z'),
                ),
              },
            )
          : undefined;
        const ok =
          !!expected &&
          expected.headers.authorization === authorization &&
          authorization.includes('/eu-west-1/execute-api/');
        seen.push({ path: `${req.method} ${url.pathname}`, ok });
        if (!ok) {
          res.writeHead(403, { 'content-type': 'application/json' });
          return res.end(JSON.stringify({ message: 'The request signature we calculated does not match' }));
        }
        const headers: Record<string, string> = {};
        for (const h of ['content-type', 'if-match', 'if-none-match', 'accept'])
          if (req.headers[h]) headers[h] = String(req.headers[h]);
        const r = await fetch(`${upstream}${url.pathname}${url.search}`, {
          method: req.method!,
          headers: { ...headers, 'x-maas-test-principal': 'signed' },
          ...(body.length ? { body } : {}),
        });
        const out = Buffer.from(await r.arrayBuffer());
        res.writeHead(r.status, { 'content-type': r.headers.get('content-type') ?? 'application/json' });
        res.end(out);
      })();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

/** Spawns `maas ui` and resolves with the URL it prints. */
function startMaasUi(endpoint: string): Promise<{ child: ChildProcess; url: string }> {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    AWS_ACCESS_KEY_ID: credentials.accessKeyId,
    AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey,
    AWS_REGION: 'eu-west-1',
  };
  delete env.AWS_PROFILE;
  delete env.AWS_SESSION_TOKEN;
  delete env.MAAS_API_KEY;
  const child = spawn(process.execPath, [BIN, '--endpoint', endpoint, '--sigv4', 'ui', '--port', '0'], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return new Promise((resolve, reject) => {
    let output = '';
    const timer = setTimeout(() => reject(new Error(`maas ui did not start:\n${output}`)), 60_000);
    const onData = (d: Buffer) => {
      output += d.toString('utf8');
      const url = /dashboard on (http:\/\/127\.0\.0\.1:\d+)\//.exec(output)?.[1];
      if (url) {
        clearTimeout(timer);
        resolve({ child, url });
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`maas ui exited with ${code}:\n${output}`)));
  });
}

describe('maas ui against a SigV4-verifying gateway', () => {
  let bucket: TestBucket;
  let gateway: Gateway;
  let front: Awaited<ReturnType<typeof startSigV4Gateway>>;
  let ui: { child: ChildProcess; url: string };
  let browser: TestBrowser;

  beforeAll(async () => {
    bucket = await createTestBucket('ui-sigv4');
    process.env.MAAS_STORE = `s3://${bucket.bucket}/maas`;
    delete process.env.MAAS_API_KEY;
    resetRuntime();
    const registry = new ModelRegistry(createObjectStore(process.env.MAAS_STORE));
    const bytes = buildIrisClassifier().bytes;
    await registry.registerVersion('iris', bytes, { actor: 'alice' });
    await registry.registerVersion('iris', bytes, {
      actor: 'alice',
      force: true,
      description: 'same bytes, again',
    });
    await registry.setAlias('iris', 'production', 1, { actor: 'alice' });
    gateway = await startGateway(await loadRoutes(['catalog', 'rollback', 'predict']));
    front = await startSigV4Gateway(gateway.url);
    ui = await startMaasUi(front.url);
    browser = await launchBrowser({ colorScheme: 'dark' });
  }, 120_000);
  afterAll(async () => {
    await browser?.close();
    if (ui && ui.child.exitCode === null) {
      const exited = new Promise((r) => ui.child.once('exit', r));
      ui.child.kill('SIGINT');
      await exited;
    }
    await front?.close();
    await gateway?.close();
    await bucket?.cleanup();
  });

  it('serves the dashboard, signs every call it forwards, and a promotion lands', async () => {
    const page = await browser.newPage();
    await page.goto(`${ui.url}/`);
    await rendered(page);
    expect(await page.textContent('#models tbody tr td a')).toBe('iris');
    await page.goto(`${ui.url}/#/models/iris`);
    await rendered(page);
    await page.click('tr[data-alias="production"] button[data-action="Promote"]');
    await page.selectOption('dialog select[name="version"]', '2');
    await page.fill('dialog textarea[name="reason"]', 'through maas ui');
    await page.click('dialog button[value="ok"]');
    await page.waitForSelector('#alias-status .ok:has-text("production → v2")');
    const signedGet = await fetch(`${gateway.url}/models/iris`).then(
      (r) => r.json() as Promise<ModelDescription>,
    );
    expect(signedGet.aliases.production).toMatchObject({ version: 2, reason: 'through maas ui' });
    // Every request reached the gateway correctly signed; none went unsigned.
    expect(front.seen.length).toBeGreaterThan(4);
    expect(front.seen.filter((s) => !s.ok)).toEqual([]);
    expect(front.seen.map((s) => s.path)).toContain('PUT /models/iris/aliases/production');
    expect(browser.errors).toEqual([]);
    // iris has no monitor report: the one failed answer.
    expect(browser.failed).toEqual(['404 GET /models/iris/reports/latest']);
    await page.close();
  });

  it('forwards only the dashboard: other paths, foreign origins and requests without its header are refused', async () => {
    expect(
      (
        await fetch(`${ui.url}/2015-03-31/functions/x/invocations`, {
          method: 'POST',
          headers: { 'x-maas-ui': '1' },
        })
      ).status,
    ).toBe(404);
    expect((await fetch(`${ui.url}/models`)).status).toBe(403);
    expect(
      (await fetch(`${ui.url}/models`, { headers: { 'x-maas-ui': '1', origin: 'http://evil.example' } }))
        .status,
    ).toBe(403);
    const rebinding = await new Promise<number>((resolve) => {
      const u = new URL(ui.url);
      http.get(
        {
          host: u.hostname,
          port: u.port,
          path: '/models',
          headers: { host: 'evil.example', 'x-maas-ui': '1' },
        },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
    });
    expect(rebinding).toBe(421);
    // A bad --port is a usage error (exit 2), before anything listens.
    const bad = spawnSync(process.execPath, [BIN, 'ui', '--port', '99999'], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/expected a port number/);
    const before = front.seen.length;
    expect((await fetch(`${ui.url}/models`, { headers: { 'x-maas-ui': '1' } })).status).toBe(200);
    expect(front.seen.length).toBe(before + 1);
  });
});
