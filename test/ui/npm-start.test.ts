import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ModelDescription } from '../../functions/catalog/describe';
import type { ModelSummary, Page } from '../../shared/registry';
import { childEnv, freePort, LocalServer, serviceCopy } from '../start/local-server';
import { launchBrowser, rendered, type TestBrowser } from './browser';

const API_KEY = 'dashboard-key';

/** The dashboard as `npm start` serves it at `/`, beside the API, with an API key configured. */
describe('dashboard under npm start', () => {
  let dir: string;
  let server: LocalServer;
  let base: string;
  let browser: TestBrowser;

  beforeAll(async () => {
    dir = serviceCopy();
    const httpPort = await freePort();
    base = `http://127.0.0.1:${httpPort}`;
    const env = childEnv({
      MAAS_PORT: String(httpPort),
      MAAS_LAMBDA_PORT: String(await freePort()),
      MAAS_API_KEY: API_KEY,
    });
    server = LocalServer.start(dir, env);
    await server.waitUntilReady(`${base}/v2/health/ready`, 170_000);
    browser = await launchBrowser();
  }, 200_000);
  afterAll(async () => {
    await browser?.close();
    await server?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  }, 30_000);

  it('serves the page at / (no longer the route-not-found JSON), listing what the API lists', async () => {
    const res = await fetch(`${base}/`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/html/);
    const models = (await (await fetch(`${base}/models`)).json()) as Page<ModelSummary>;
    const page = await browser.newPage();
    await page.goto(`${base}/`);
    await rendered(page);
    expect(
      await page.$$eval('#models tbody tr td:first-child', (tds) => tds.map((td) => td.textContent)),
    ).toEqual(models.items.map((m) => m.name));
    expect(browser.errors).toEqual([]);
    await page.close();
  });

  it('asks for the API key for changes, sends it once entered, and the alias exists as the API reports', async () => {
    const page = await browser.newPage();
    await page.goto(`${base}/#/models/iris`);
    await rendered(page);
    const create = async () => {
      await page.click('button:has-text("New alias…")');
      await page.fill('dialog input[name="alias"]', 'staging');
      await page.fill('dialog textarea[name="reason"]', 'from the dashboard');
      await page.click('dialog button[value="ok"]');
    };
    await create();
    await page.waitForSelector('#alias-status .error:has-text("API key")');
    await expect(
      fetch(`${base}/models/iris`).then((r) => r.json() as Promise<ModelDescription>),
    ).resolves.not.toHaveProperty('aliases.staging');

    await page.click('#api-key');
    await page.fill('dialog input[name="key"]', API_KEY);
    await page.click('dialog button[value="ok"]');
    // The dialog's close event (which stores the key) fires asynchronously.
    await page.waitForSelector('#api-key[aria-pressed="true"]');
    expect(await page.textContent('#api-key')).toBe('API key: set');
    await create();
    await page.waitForSelector('#alias-status .ok:has-text("staging → v1")');
    const described = (await (await fetch(`${base}/models/iris`)).json()) as ModelDescription;
    expect(described.aliases.staging).toMatchObject({ version: 1, reason: 'from the dashboard' });
    expect(browser.errors).toEqual([]);
    // The demo model has no monitor report yet; the first create had no key.
    expect(browser.failed.sort()).toEqual(
      ['401 PUT /models/iris/aliases/staging', '404 GET /models/iris/reports/latest'].sort(),
    );
    await page.close();
  });
});
