/**
 * The dashboard's files, built in memory by esbuild (the project's bundler) from `ui/src` on
 * first use: `index.html`, `ui/app.js` (the TypeScript app with uPlot) and `ui/app.css`. Nothing
 * is fetched from a network; `npm start` and `maas ui` serve the same bytes.
 */
import { readFile } from 'node:fs/promises';
import * as path from 'node:path';
import type * as Esbuild from 'esbuild';

/** One file of the dashboard. */
export interface DashboardAsset {
  contentType: string;
  body: Buffer;
}

const UI = __dirname;
let built: Promise<Map<string, DashboardAsset>> | undefined;

/** Options of {@link dashboardAssets}. */
export interface DashboardAssetsOptions {
  /**
   * The esbuild module to bundle with (default: `import('esbuild')`). Callers that load this file
   * through tsx's scoped `require` pass their own: esbuild finds its binary from its module path,
   * which tsx's namespacing garbles.
   */
  esbuild?: typeof Esbuild;
}

async function bundle(options: DashboardAssetsOptions): Promise<Map<string, DashboardAsset>> {
  const { build } = options.esbuild ?? (await import('esbuild'));
  const result = await build({
    entryPoints: { app: path.join(UI, 'src/main.ts') },
    bundle: true,
    write: false,
    outdir: '/ui',
    format: 'iife',
    target: 'es2022',
    minify: true,
    legalComments: 'none',
    logLevel: 'silent',
  });
  const assets = new Map<string, DashboardAsset>();
  assets.set('/', {
    contentType: 'text/html; charset=utf-8',
    body: await readFile(path.join(UI, 'index.html')),
  });
  for (const file of result.outputFiles) {
    const name = `/ui/${path.basename(file.path)}`;
    const contentType = name.endsWith('.css') ? 'text/css; charset=utf-8' : 'text/javascript; charset=utf-8';
    assets.set(name, { contentType, body: Buffer.from(file.contents) });
  }
  return assets;
}

/**
 * The dashboard's files by URL path (`/`, `/ui/app.js`, `/ui/app.css`), built once per process.
 *
 * @example
 * ```ts
 * const asset = (await dashboardAssets()).get(url.pathname);
 * if (asset) res.writeHead(200, { 'content-type': asset.contentType }).end(asset.body);
 * ```
 */
export function dashboardAssets(options: DashboardAssetsOptions = {}): Promise<Map<string, DashboardAsset>> {
  built ??= bundle(options).catch((e: unknown) => {
    built = undefined;
    throw e;
  });
  return built;
}

/**
 * True for the paths the dashboard owns (everything else is the API's).
 *
 * @example
 * ```ts
 * isDashboardPath('/ui/app.js'); // true; isDashboardPath('/models') is false
 * ```
 */
export function isDashboardPath(pathname: string): boolean {
  return pathname === '/' || pathname.startsWith('/ui/');
}
