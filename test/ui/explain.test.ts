import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { MaasClient } from '../../cli/client';
import { buildConvNet, buildMlp, mulberry32 } from '../../dev/onnx-builder';
import { resetRuntime } from '../../functions/lib/runtime';
import type { Explanation } from '../../shared/explain/service';
import { ModelRegistry } from '../../shared/registry';
import { createObjectStore } from '../../shared/store';
import { type DashboardServer, startDashboardServer } from '../../ui/server';
import { type Gateway, loadRoutes, startGateway } from '../support/gateway';
import { createTestBucket, type TestBucket } from '../support/s3';
import { launchBrowser, type Page, rendered, type TestBrowser } from './browser';

/**
 * The "try it" panel's explanations in real headless Chromium, against the real predict handler
 * (test gateway over RGW) through `maas ui`'s forwarder: what the page shows is what the explain
 * route answers for the same request, for Kernel SHAP (bars) and occlusion (heat map).
 */
describe('try it: explanations in Chromium', () => {
  let bucket: TestBucket;
  let gateway: Gateway;
  let ui: DashboardServer;
  let browser: TestBrowser;
  let api: MaasClient;
  const conv = buildConvNet({ seed: 21, imageSize: 8, inputChannels: 1, channels: [2, 4], numClasses: 3 });

  beforeAll(async () => {
    bucket = await createTestBucket('ui-explain');
    process.env.MAAS_STORE = `s3://${bucket.bucket}/maas`;
    delete process.env.MAAS_API_KEY;
    resetRuntime();
    const registry = new ModelRegistry(createObjectStore(process.env.MAAS_STORE));
    await registry.registerVersion(
      'mlp',
      buildMlp({ inputSize: 5, hiddenSizes: [8], outputSize: 2, seed: 5 }).bytes,
    );
    await registry.registerVersion('conv', conv.bytes);
    gateway = await startGateway(await loadRoutes(['predict']));
    api = new MaasClient({ endpoint: gateway.url });
    ui = await startDashboardServer({ client: new MaasClient({ endpoint: gateway.url }) });
    browser = await launchBrowser();
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
    await ui?.close();
    await gateway?.close();
    await bucket?.cleanup();
  });
  afterEach(() => {
    expect(browser.errors).toEqual([]);
    expect(browser.failed).toEqual([]);
  });

  const open = async (name: string): Promise<Page> => {
    const page = await browser.newPage();
    await page.goto(`${ui.url}/#/models/${name}/try`);
    await rendered(page);
    return page;
  };
  const explainApi = async (name: string, shape: number[], data: number[], parameters: object) =>
    (
      await api.request('POST', `/v2/models/${name}/explain`, {
        json: { inputs: [{ name: 'input', datatype: 'FP32', shape, data }], parameters },
      })
    ).json<{ model_version: string; explanation: Explanation }>();
  const close = (shown: string, exact: number) =>
    expect(Math.abs(Number(shown) - exact)).toBeLessThanOrEqual(1e-3 * Math.max(1, Math.abs(exact)));

  it('Kernel SHAP: one bar per feature, sorted by |attribution|, with the expected value and additivity the API gives', async () => {
    const data = [0.5, -1, 2, 0.3, 1.5];
    const page = await open('mlp');
    await page.fill('textarea[name="input.data"]', data.join(', '));
    await page.check('#explain');
    await page.selectOption('select[name="baseline"]', 'zeros');
    await page.click('#try-form button[type="submit"]');
    await page.waitForSelector('#explanation');
    const shown = await page.$$eval('#attributions li', (lis) =>
      lis.map((li) => ({
        feature: Number(li.getAttribute('data-feature')),
        value: Number(li.getAttribute('data-value')),
        text: li.querySelector('.value')?.textContent ?? '',
        label: li.querySelector('.feature')?.textContent ?? '',
        width: (li.querySelector('.bar') as unknown as { style: { width: string } }).style.width,
      })),
    );
    const facts = Object.fromEntries(
      await page.$$eval('.facts dd', (dds) =>
        dds.map((dd) => [dd.getAttribute('data-fact'), dd.textContent ?? '']),
      ),
    ) as Record<string, string>;
    const { explanation: e } = await explainApi('mlp', [1, 5], data, { explain_baseline: 'zeros' });
    expect(e.method).toBe('kernel_shap');
    expect(e.exact).toBe(true);
    const expectedOrder = e.attributions.data
      .map((v, j) => ({ v, j }))
      .sort((a, b) => Math.abs(b.v) - Math.abs(a.v))
      .map((x) => x.j);
    expect(shown.map((s) => s.feature)).toEqual(expectedOrder);
    for (const s of shown) {
      expect(s.value).toBe(e.attributions.data[s.feature]);
      close(s.text, e.attributions.data[s.feature]!);
      expect(s.label).toBe(`input[${s.feature}] = ${data[s.feature]}`);
    }
    // The largest bar is full width; the others in proportion.
    expect(shown[0]!.width).toBe('100%');
    const largest = Math.abs(e.attributions.data[expectedOrder[0]!]!);
    for (const s of shown)
      expect(Number.parseFloat(s.width)).toBeCloseTo((Math.abs(s.value) / largest) * 100, 0);
    close(facts.prediction!, e.prediction);
    close(facts.expected!, e.expected_value);
    expect(facts.additivity).toMatch(/ok\)$/);
    close(facts.additivity!.split(' ')[0]!, e.additivity!.sum);
    expect(e.additivity!.ok).toBe(true);
    // The outputs table shows the same prediction the explanation explains.
    const answer = await explainApi('mlp', [1, 5], data, { explain_baseline: 'zeros' });
    expect(await page.textContent('#try-result')).toContain(`answered by version ${answer.model_version}`);
    await page.close();
  });

  it('occlusion: a heat map whose strongest patch and listed values are the API’s', async () => {
    const rand = mulberry32(3);
    const data = Array.from({ length: 64 }, () => Number((rand() * 2 - 1).toFixed(3)));
    const page = await open('conv');
    await page.fill('textarea[name="input.data"]', data.join(' '));
    await page.check('#explain');
    await page.selectOption('select[name="baseline"]', 'zeros');
    await page.fill('input[name="patch"]', '2');
    await page.click('#try-form button[type="submit"]');
    await page.waitForSelector('#heatmap');
    const patches = await page.$$eval('#top-patches li', (lis) =>
      lis.map((li) => ({
        row: Number(li.getAttribute('data-row')),
        col: Number(li.getAttribute('data-col')),
        value: Number(li.getAttribute('data-value')),
      })),
    );
    const { explanation: e } = await explainApi('conv', [1, 1, 8, 8], data, {
      explain_baseline: 'zeros',
      explain_patch: 2,
    });
    expect(e.method).toBe('occlusion');
    expect(e.patch).toBe(2);
    // Patch values straight from the API's map (1 channel: element (r, c) is index r * 8 + c).
    const cells: { row: number; col: number; value: number }[] = [];
    for (let r = 0; r < 4; r++)
      for (let c = 0; c < 4; c++)
        cells.push({ row: r, col: c, value: e.attributions.data[r * 2 * 8 + c * 2]! });
    cells.sort((a, b) => Math.abs(b.value) - Math.abs(a.value));
    expect(patches).toEqual(cells.slice(0, 5));
    // The canvas: each pixel's opacity is |attribution| / max, red or blue by its sign.
    const pixels = await page.evaluate(() => {
      const c = (
        globalThis as unknown as { document: { getElementById(id: string): unknown } }
      ).document.getElementById('heatmap') as {
        getContext(k: string): {
          getImageData(x: number, y: number, w: number, h: number): { data: number[] };
        };
      };
      return Array.from(c.getContext('2d').getImageData(0, 0, 8, 8).data);
    });
    const largest = Math.abs(cells[0]!.value);
    for (let i = 0; i < 64; i++) {
      const v = e.attributions.data[i]!;
      expect(pixels[i * 4 + 3]).toBe(Math.round((Math.abs(v) / largest) * 255));
      // Red over blue where occluding lowers the value (canvas colours are premultiplied: compare, not equal).
      if (pixels[i * 4 + 3]! >= 32) expect(pixels[i * 4]! > pixels[i * 4 + 2]!).toBe(v > 0);
    }
    await page.close();
  });
});
