import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { MaasClient } from '../../cli/client';
import type { ModelDescription } from '../../functions/catalog/describe';
import { resetRuntime } from '../../functions/lib/runtime';
import type { MonitorReport } from '../../shared/monitor/report';
import type { OptimizationJob } from '../../shared/optimize/jobs';
import type { Page as ApiPage, HistoryEvent, ModelSummary } from '../../shared/registry';
import { createObjectStore } from '../../shared/store';
import { type DashboardServer, startDashboardServer } from '../../ui/server';
import { type Gateway, loadRoutes, startGateway } from '../support/gateway';
import { createTestBucket, type TestBucket } from '../support/s3';
import { launchBrowser, type Page, type PageGlobals, rendered, type TestBrowser } from './browser';
import { seedDashboardData } from './fixture';

/**
 * The dashboard in real headless Chromium, against the real handlers (test gateway over the RGW
 * store) through the same forwarder `maas ui` runs, on data the real monitor produced.
 */
describe('dashboard in Chromium', () => {
  let bucket: TestBucket;
  let gateway: Gateway;
  let ui: DashboardServer;
  let browser: TestBrowser;
  let api: MaasClient;
  let optimization: OptimizationJob;
  const get = async <T>(path: string, query: Record<string, string | number | undefined> = {}) =>
    (await api.request('GET', path, { query })).json<T>();

  beforeAll(async () => {
    bucket = await createTestBucket('ui');
    process.env.MAAS_STORE = `s3://${bucket.bucket}/maas`;
    delete process.env.MAAS_API_KEY;
    resetRuntime();
    await seedDashboardData(createObjectStore(process.env.MAAS_STORE), { windows: 4, requests: 50 });
    gateway = await startGateway(await loadRoutes());
    api = new MaasClient({ endpoint: gateway.url });
    // One optimization job through the real optimize handler (run in-process, as under npm start).
    const { job } = (
      await api.request('POST', '/models/iris/versions/1/optimize', {
        json: { techniques: ['fp16', 'int8'] },
      })
    ).json<{ job: string }>();
    for (let i = 0; i < 240; i++) {
      optimization = (await api.request('GET', `/models/iris/optimizations/${job}`)).json<OptimizationJob>();
      if (!['queued', 'running'].includes(optimization.status)) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    const digits = (
      await api.request('POST', '/models/digits/versions/1/optimize', {
        json: { techniques: ['fp16', 'int8'] },
      })
    ).json<{ job: string }>();
    for (let i = 0; i < 240; i++) {
      const { status } = (
        await api.request('GET', `/models/digits/optimizations/${digits.job}`)
      ).json<OptimizationJob>();
      if (!['queued', 'running'].includes(status)) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    ui = await startDashboardServer({ client: new MaasClient({ endpoint: gateway.url }) });
    browser = await launchBrowser();
  }, 120_000);
  afterAll(async () => {
    await browser?.close();
    await ui?.close();
    await gateway?.close();
    await bucket?.cleanup();
  });
  /** The failed API answers a test expects; checked (and reset) after it. */
  let expectedFailures: string[] = [];
  afterEach(() => {
    // No console errors, on any page, in any test; no failed request but the expected ones.
    expect(browser.errors).toEqual([]);
    expect(browser.failed.sort()).toEqual(expectedFailures.sort());
    browser.failed.length = 0;
    expectedFailures = [];
  });

  const open = async (hash: string): Promise<Page> => {
    const page = await browser.newPage();
    await page.goto(`${ui.url}/${hash}`);
    await rendered(page);
    return page;
  };

  it('the model list shows what the API says', async () => {
    const models = await get<ApiPage<ModelSummary>>('/models');
    const page = await open('#/');
    const rows = await page.$$eval('#models tbody tr', (trs) =>
      trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent ?? '')),
    );
    expect(rows.map((r) => r[0])).toEqual(models.items.map((m) => m.name));
    for (const [i, m] of models.items.entries()) {
      expect(rows[i]![1]).toBe(String(m.latestVersion));
      for (const [alias, v] of Object.entries(m.aliases)) expect(rows[i]![2]).toContain(`${alias} → v${v}`);
    }
    const iris = rows[models.items.findIndex((m) => m.name === 'iris')]!;
    const latest = await get<MonitorReport>('/models/iris/reports/latest');
    const requests = Object.values(latest.versions).reduce((s, v) => s + v.requests, 0);
    expect(requests).toBe(50);
    expect(iris[3]).toBe(String(requests));
    // Inputs were shifted well away from the first window's baseline: the drift flag is up.
    expect(iris[5]).toBe('drift');
    // flowers has no traffic, so no report (the one 404 the page meets).
    expectedFailures = ['404 GET /models/digits/reports/latest', '404 GET /models/flowers/reports/latest'];
    const flowers = rows[models.items.findIndex((m) => m.name === 'flowers')]!;
    expect([flowers[3], flowers[5]]).toEqual(['–', 'no report']);
    await page.close();
  });

  it('promoting and rolling back from the page move the alias as the API then reports', async () => {
    const page = await open('#/models/iris');
    await page.click('tr[data-alias="staging"] button[data-action="Promote"]');
    await page.selectOption('dialog select[name="version"]', '1');
    await page.fill('dialog textarea[name="reason"]', 'staging back to the hand-made one');
    await page.keyboard.press('Tab');
    await page.click('dialog button[value="ok"]');
    await page.waitForSelector('#alias-status .ok:has-text("staging → v1")');
    const staging = await get<ModelDescription>('/models/iris');
    expect(staging.aliases.staging).toMatchObject({
      version: 1,
      reason: 'staging back to the hand-made one',
    });
    expect(await page.textContent('tr[data-alias="staging"] .alias-version')).toBe('v1');

    await page.click('tr[data-alias="staging"] button[data-action="Roll back"]');
    await page.fill('dialog textarea[name="reason"]', 'no, keep the retrained one');
    await page.click('dialog button[value="ok"]');
    await page.waitForSelector('#alias-status .ok:has-text("staging → v2")');
    const back = await get<ModelDescription>('/models/iris');
    expect(back.aliases.staging).toMatchObject({ version: 2, reason: 'no, keep the retrained one' });
    const history = await get<ApiPage<HistoryEvent>>('/models/iris/history', { limit: 1000 });
    expect(history.items.at(-1)).toMatchObject({ type: 'rolled_back', alias: 'staging', version: 2 });
    // The timeline shows it first.
    expect(await page.textContent('#history li:first-child')).toContain('staging rolled back from v1 to v2');
    await page.close();
  });

  it('a cancelled dialog changes nothing; a concurrent alias move shows the conflict and is not overwritten', async () => {
    const page = await open('#/models/iris');
    const before = await get<ModelDescription>('/models/iris');
    await page.click('tr[data-alias="production"] button[data-action="Promote"]');
    await page.keyboard.press('Escape');
    await page.waitForSelector('dialog', { state: 'detached' });
    expect((await get<ModelDescription>('/models/iris')).aliases.production!.etag).toBe(
      before.aliases.production!.etag,
    );

    // Someone else moves production (dropping the canary) while the page shows the old state.
    await api.request('PUT', '/models/iris/aliases/production', {
      json: { version: 2, reason: 'moved from the CLI' },
    });
    await page.click('tr[data-alias="production"] button[data-action="Promote"]');
    await page.selectOption('dialog select[name="version"]', '1');
    await page.fill('dialog textarea[name="reason"]', 'from the page');
    await page.click('dialog button[value="ok"]');
    const conflict = await page.waitForSelector('.conflict');
    expectedFailures = ['412 PUT /models/iris/aliases/production'];
    const text = (await conflict.textContent()) ?? '';
    expect(text).toContain('production was moved by someone else first');
    const now = await get<ModelDescription>('/models/iris');
    expect(now.aliases.production).toMatchObject({ version: 2, reason: 'moved from the CLI' });
    expect(text).toContain(`now points at v2`);
    expect(text).toContain(now.aliases.production!.etag);
    // The table now shows the current state.
    expect(await page.textContent('tr[data-alias="production"] .alias-version')).toBe('v2');
    await page.close();
  });

  it('sets and removes a canary weight from the page, by keyboard alone', async () => {
    const page = await open('#/models/iris');
    const before = (await get<ModelDescription>('/models/iris')).aliases.production!;
    expect(before.canary).toBeUndefined();
    await page.focus('tr[data-alias="production"] button[data-action="Add canary"]');
    await page.keyboard.press('Enter');
    // The dialog takes the focus; fields are reached with Tab.
    await page.waitForSelector('dialog[open]');
    await page.focus('dialog select[name="canary"]');
    await page.keyboard.press('End');
    await page.keyboard.press('Tab');
    await page.keyboard.press('Control+A');
    await page.keyboard.type('0.25');
    await page.keyboard.press('Tab');
    await page.keyboard.type('a quarter to v1');
    await page.keyboard.press('Tab');
    await page.keyboard.press('Enter');
    await page.waitForSelector('#alias-status .ok:has-text("canary v1 at 0.25")');
    const withCanary = (await get<ModelDescription>('/models/iris')).aliases.production!;
    expect(withCanary).toMatchObject({
      version: before.version,
      canary: { version: 1, weight: 0.25 },
      reason: 'a quarter to v1',
    });
    expect(await page.textContent('tr[data-alias="production"] td:nth-child(3)')).toBe('v1 at 25%');

    await page.click('tr[data-alias="production"] button[data-action="Remove canary"]');
    await page.fill('dialog textarea[name="reason"]', 'enough');
    await page.click('dialog button[value="ok"]');
    await page.waitForSelector(
      `#alias-status .ok:text-is("production → v${before.version} (revision ${withCanary.revision + 1})")`,
    );
    const removed = (await get<ModelDescription>('/models/iris')).aliases.production!;
    expect(removed.canary).toBeUndefined();
    expect(removed.revision).toBe(withCanary.revision + 1);
    await page.close();
  });

  it("charts plot the monitor's numbers as the report API returns them", async () => {
    const reports: MonitorReport[] = [];
    let cursor: string | undefined;
    do {
      const p = await get<{ items: MonitorReport[]; nextCursor?: string }>('/models/iris/reports', {
        limit: 2,
        cursor,
      });
      reports.push(...p.items);
      cursor = p.nextCursor;
    } while (cursor);
    expect(reports).toHaveLength(4);
    const page = await open('#/models/iris/monitoring?range=1h&alias=production');
    await page.waitForFunction(() =>
      ['requests', 'error-rate', 'latency', 'psi', 'feature-psi', 'accuracy'].every(
        (id) =>
          (
            (globalThis as unknown as PageGlobals).document.getElementById(`chart-${id}`) as {
              uplot?: unknown;
            } | null
          )?.uplot,
      ),
    );
    const plotted = await page.evaluate(() => {
      const chart = (id: string) => {
        const u = (
          (globalThis as unknown as PageGlobals).document.getElementById(`chart-${id}`) as unknown as {
            uplot: { data: (number | null)[][]; series: { label: string }[] };
          }
        ).uplot;
        return Object.fromEntries(u.series.map((s, i) => [s.label, u.data[i]]));
      };
      return {
        requests: chart('requests'),
        errorRate: chart('error-rate'),
        latency: chart('latency'),
        psi: chart('psi'),
        accuracy: chart('accuracy'),
        features: chart('feature-psi'),
      };
    });
    const role = (r: MonitorReport, which: 'primary' | 'canary') => {
      const e = r.evaluations.find((x) => x.alias === 'production' && x.role === which)!;
      return r.versions[String(e.version)];
    };
    const value = (x: number | null | undefined) => (typeof x === 'number' && Number.isFinite(x) ? x : null);
    expect(plotted.requests.time).toEqual(reports.map((r) => Date.parse(r.window.to) / 1000));
    expect(plotted.requests.primary).toEqual(reports.map((r) => role(r, 'primary')?.requests ?? null));
    expect(plotted.requests.canary).toEqual(reports.map((r) => role(r, 'canary')?.requests ?? null));
    // 50 requests per window, split between primary and canary.
    expect(
      reports.map((r) => (role(r, 'primary')?.requests ?? 0) + (role(r, 'canary')?.requests ?? 0)),
    ).toEqual([50, 50, 50, 50]);
    expect(plotted.latency['primary p99']).toEqual(
      reports.map((r) => value(role(r, 'primary')?.latencyMs.p99)),
    );
    expect(plotted.latency['canary p50']).toEqual(
      reports.map((r) => value(role(r, 'canary')?.latencyMs.p50)),
    );
    expect(plotted.errorRate['rollback threshold']).toEqual(
      reports.map((r) => r.policy.thresholds.errorRate),
    );
    expect(plotted.psi['primary input']).toEqual(
      reports.map((r) => value(role(r, 'primary')?.drift.maxInputPsi)),
    );
    expect(plotted.psi['rollback threshold']).toEqual(reports.map((r) => r.policy.thresholds.psi));
    expect(plotted.accuracy.primary).toEqual(
      reports.map((r) => value(role(r, 'primary')?.quality?.accuracy)),
    );
    expect(Object.keys(plotted.features).filter((k) => k.startsWith('input:')).length).toBeGreaterThan(0);
    for (const [label, values] of Object.entries(plotted.features)) {
      if (label === 'time') continue;
      const [kind, name] = [label.slice(0, label.indexOf(':')), label.slice(label.indexOf(':') + 1)];
      expect(values).toEqual(
        reports.map((r) =>
          value(
            (kind === 'input' ? role(r, 'primary')?.drift.inputs : role(r, 'primary')?.drift.outputs)?.[name]
              ?.psi,
          ),
        ),
      );
    }
    // Real drift after the first window (a traffic baseline needs that window), growing with the shift.
    const psi = plotted.psi['primary input']!.slice(1) as number[];
    expect(psi.every((x) => x > 0)).toBe(true);
    expect(psi.at(-1)!).toBeGreaterThan(psi[0]!);
    // Accuracy from the joined feedback: 9 in 10 agree.
    expect(plotted.accuracy.primary!.every((x) => x !== null && x > 0.8 && x < 1)).toBe(true);
    await page.close();
  });

  it('the report series route pages by time range and refuses bad parameters with 400', async () => {
    const all = await get<{ items: MonitorReport[] }>('/models/iris/reports');
    const middle = all.items[1]!.window.to;
    const later = await get<{ items: MonitorReport[] }>('/models/iris/reports', { from: middle });
    expect(later.items.map((r) => r.runId)).toEqual(all.items.slice(1).map((r) => r.runId));
    const earlier = await get<{ items: MonitorReport[] }>('/models/iris/reports', { to: middle });
    expect(earlier.items.map((r) => r.runId)).toEqual(all.items.slice(0, 2).map((r) => r.runId));
    for (const query of [
      { limit: '0' },
      { limit: '501' },
      { from: 'yesterday' },
      { cursor: '../x' },
      { from: middle, to: all.items[0]!.window.to },
    ]) {
      await expect(api.request('GET', '/models/iris/reports', { query })).rejects.toMatchObject({
        status: 400,
      });
    }
    await expect(api.request('GET', '/models/nope/reports')).rejects.toMatchObject({ status: 404 });
    await expect(api.request('GET', '/models/flowers/reports/latest')).rejects.toMatchObject({ status: 404 });
    expect((await get<{ items: unknown[] }>('/models/flowers/reports')).items).toEqual([]);
  });

  it('the model page lists versions and lineage; try-it predicts from the signature; keyboard reaches the controls', async () => {
    const page = await open('#/models/iris');
    const versions = await page.$$eval('#versions tbody tr', (trs) =>
      trs.map((tr) => tr.querySelector('td')?.textContent),
    );
    expect(versions).toEqual(['v2', 'v1']);
    expect(
      await page.$$eval('#lineage > li', (lis) => lis.map((li) => li.getAttribute('data-version'))),
    ).toEqual(['1', '2']);
    // Tab from the top reaches the tabs and the alias buttons.
    const focused: string[] = [];
    for (let i = 0; i < 12; i++) {
      await page.keyboard.press('Tab');
      focused.push(
        await page.evaluate(
          () => (globalThis as unknown as PageGlobals).document.activeElement?.textContent ?? '',
        ),
      );
    }
    expect(focused).toContain('monitoring');
    expect(focused).toContain('Promote…');

    await page.goto(`${ui.url}/#/models/iris/try`);
    await rendered(page);
    await page.fill('textarea[name="input.data"]', '5.1, 3.5, 1.4, 0.2');
    await page.click('#try-form button[type="submit"]');
    await page.waitForSelector('#try-result table');
    const text = (await page.textContent('#try-result')) ?? '';
    expect(text).toMatch(/answered by version [12]/);
    const meta = await get<{ outputs: { name: string }[] }>('/v2/models/iris');
    for (const o of meta.outputs) expect(text).toContain(o.name);
    await page.close();
  });

  it('the optimization page shows each candidate against its parent and why it was kept or rejected, as the API does', async () => {
    const listed = await get<{ items: OptimizationJob[] }>('/models/iris/optimizations');
    expect(listed.items.map((j) => j.job)).toEqual([optimization.job]);
    const candidates = optimization.report!.candidates;
    expect(candidates.map((c) => c.technique)).toEqual(['fp16', 'int8']);
    const page = await open('#/models/iris/optimizations');
    const rows = await page.$$eval(`section[data-job="${optimization.job}"] tbody tr`, (trs) =>
      trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent ?? '')),
    );
    expect(rows.map((r) => r[0])).toEqual(candidates.map((c) => c.technique));
    for (const [i, c] of candidates.entries()) {
      const ev = c.evaluation!;
      expect(rows[i]![1]).toBe(c.status === 'registered' ? `kept as v${c.version}` : c.status);
      expect(rows[i]![2]).toContain(`${ev.size.candidate} B vs ${ev.size.parent} B`);
      expect(rows[i]![5]).toBe(c.gate!.passed ? 'passed every check' : c.gate!.reasons.join('; '));
    }
    await page.close();
  });

  it('the lineage tree draws an optimized variant under the version it came from', async () => {
    const versions =
      await get<ApiPage<{ version: number; parentVersion?: number; optimization?: { technique: string } }>>(
        '/models/digits/versions',
      );
    const derived = versions.items.filter((v) => v.parentVersion !== undefined);
    expect(derived.length).toBeGreaterThan(0);
    const page = await open('#/models/digits');
    for (const v of derived) {
      const node = page.locator(
        `#lineage li[data-version="${v.parentVersion}"] > ul > li[data-version="${v.version}"] > .node`,
      );
      expect(await node.textContent()).toBe(`v${v.version} ${v.optimization!.technique}`);
    }
    await page.close();
  });
});
