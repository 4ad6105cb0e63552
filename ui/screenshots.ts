/**
 * `npm run screenshots`: regenerates docs/screenshots/*.png from a real run — a throw-away file
 * store seeded with models, traffic, feedback and monitor windows (test/ui/fixture.ts), one
 * optimization job, the real handlers behind the test gateway, the dashboard through the same
 * forwarder as `maas ui`, and Debian's headless Chromium.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { MaasClient } from '../cli/client';
import { resetRuntime } from '../functions/lib/runtime';
import { createObjectStore } from '../shared/store';
import { loadRoutes, startGateway } from '../test/support/gateway';
import { launchBrowser, rendered } from '../test/ui/browser';
import { seedDashboardData } from '../test/ui/fixture';
import { startDashboardServer } from './server';

const OUT = path.resolve(__dirname, '../docs/screenshots');
const PAGES: { file: string; hash: string; scheme?: 'dark' }[] = [
  { file: 'models.png', hash: '#/' },
  { file: 'model.png', hash: '#/models/iris' },
  { file: 'monitoring.png', hash: '#/models/iris/monitoring?range=1h&alias=production' },
  { file: 'monitoring-dark.png', hash: '#/models/iris/monitoring?range=1h&alias=production', scheme: 'dark' },
  { file: 'optimizations.png', hash: '#/models/digits/optimizations' },
  { file: 'lineage.png', hash: '#/models/digits' },
  { file: 'try.png', hash: '#/models/iris/try' },
];

async function main(): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), 'maas-screenshots-'));
  process.env.MAAS_STORE = `file://${dir}`;
  delete process.env.MAAS_API_KEY;
  delete process.env.MAAS_OPTIMIZE_WORKER_FUNCTION;
  resetRuntime();
  await seedDashboardData(createObjectStore(process.env.MAAS_STORE), { windows: 6, requests: 60 });
  const gateway = await startGateway(await loadRoutes());
  const api = new MaasClient({ endpoint: gateway.url });
  // digits keeps its fp16 variant (a lineage to draw); iris's candidates are all rejected.
  for (const model of ['digits', 'iris']) {
    const { job } = (
      await api.request('POST', `/models/${model}/versions/1/optimize`, {
        json: { techniques: ['fp16', 'int8'] },
      })
    ).json<{ job: string }>();
    for (let i = 0; i < 120; i++) {
      const { status } = (await api.request('GET', `/models/${model}/optimizations/${job}`)).json<{
        status: string;
      }>();
      if (!['queued', 'running'].includes(status)) break;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  const ui = await startDashboardServer({ client: new MaasClient({ endpoint: gateway.url }) });
  await mkdir(OUT, { recursive: true });
  try {
    for (const scheme of ['light', 'dark'] as const) {
      const browser = await launchBrowser({ colorScheme: scheme });
      try {
        for (const p of PAGES.filter((x) => (x.scheme ?? 'light') === scheme)) {
          const page = await browser.newPage();
          await page.setViewportSize({ width: 1280, height: 800 });
          await page.goto(`${ui.url}/${p.hash}`);
          await rendered(page);
          await page.waitForTimeout(400); // charts draw on the next animation frame
          await page.screenshot({ path: path.join(OUT, p.file), fullPage: p.file.startsWith('monitoring') });
          process.stdout.write(`wrote docs/screenshots/${p.file}\n`);
          await page.close();
        }
        if (browser.errors.length) throw new Error(`console errors: ${browser.errors.join('; ')}`);
      } finally {
        await browser.close();
      }
    }
  } finally {
    await ui.close();
    await gateway.close();
    await rm(dir, { recursive: true, force: true });
  }
}

void main().catch((e: unknown) => {
  process.stderr.write(`${String((e as Error)?.stack ?? e)}\n`);
  process.exitCode = 1;
});
