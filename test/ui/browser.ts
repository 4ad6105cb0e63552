/**
 * Real headless Chromium for the dashboard's tests: Debian's `chromium` (installed with apt-get
 * when missing and we are root), driven by playwright-core; never a downloaded browser.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';

/** Installs Debian's chromium when it is missing (CI installs it up front, see .ci/run). */
export function ensureChromium(): void {
  if (existsSync(CHROMIUM)) return;
  if (process.getuid?.() !== 0)
    throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (as root)`);
  execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit' });
  execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'chromium'], {
    stdio: 'inherit',
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
}

export interface TestBrowser {
  context: BrowserContext;
  /** Console errors and uncaught page errors seen so far, in every page of the context. */
  errors: string[];
  /**
   * API answers with status >= 400 (`412 PUT /models/iris/aliases/production`), which Chromium
   * also logs to the console as "Failed to load resource": tests name the ones they expect.
   */
  failed: string[];
  newPage(): Promise<Page>;
  close(): Promise<void>;
}

/**
 * A fresh headless Chromium (own profile directory) that records console errors.
 *
 * @example
 * ```ts
 * const browser = await launchBrowser();
 * const page = await browser.newPage();
 * ```
 */
export async function launchBrowser(options: { colorScheme?: 'light' | 'dark' } = {}): Promise<TestBrowser> {
  ensureChromium();
  const profile = mkdtempSync(path.join(tmpdir(), 'maas-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 1280, height: 900 },
    colorScheme: options.colorScheme ?? 'light',
  });
  const errors: string[] = [];
  const failed: string[] = [];
  const watch = (page: Page) => {
    page.on('console', (m) => {
      // Failed HTTP answers are checked one by one in `failed` instead.
      if (
        m.type() === 'error' &&
        !m.text().startsWith('Failed to load resource: the server responded with a status of')
      )
        errors.push(`console: ${m.text()}`);
    });
    page.on('response', (r) => {
      if (r.status() >= 400)
        failed.push(`${r.status()} ${r.request().method()} ${new URL(r.url()).pathname}`);
    });
    page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
  };
  context.on('page', watch);
  for (const p of context.pages()) watch(p);
  return {
    context,
    errors,
    failed,
    newPage: () => context.newPage(),
    close: async () => {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** Waits until the dashboard finished rendering the current route. */
export async function rendered(page: Page): Promise<void> {
  await page.waitForSelector('main[aria-busy="false"]');
}

/**
 * The page globals `page.evaluate` callbacks use (tests compile without the DOM lib, and the
 * callbacks run in the page, so they reach them as `(globalThis as unknown as PageGlobals).document`).
 */
export interface PageGlobals {
  document: {
    getElementById(id: string): unknown;
    activeElement: { textContent: string | null } | null;
  };
}

export type { Browser, Page };
