/**
 * Runs test/support/serve-models-child.ts: a predict container in a process of its own, so that
 * what it holds is measured apart from the test runner.
 */
import { execFile } from 'node:child_process';
import * as path from 'node:path';
import { promisify } from 'node:util';
import type { ServedLine } from './serve-models-child';

const CHILD = path.join(__dirname, 'serve-models-child.ts');

/** What {@link serveModels} runs. */
export interface ServeModelsOptions {
  /** Root of the file store the models are registered in. */
  storeRoot: string;
  cacheDir: string;
  /** Shape of the one float32 input `x` each model is served with. */
  shape: readonly number[];
  names: readonly string[];
  /**
   * The container's environment beside PATH and HOME: nothing of the caller's `MAAS_*` settings
   * (or allocator variables) leaks in, so the numbers depend on what is asked here only.
   */
  env: Record<string, string>;
}

/** After the first model, per further model: RSS growth and the session cache's estimate. */
export interface ServedGrowth {
  lines: ServedLine[];
  rssPerModel: number;
  estimatePerModel: number;
}

/**
 * Serves each model once in a fresh container and returns its lines and growth per model.
 * @example
 * const { rssPerModel } = await serveModels({ storeRoot, cacheDir, shape: [1, 3, 640, 640], names, env: {} });
 */
export async function serveModels(o: ServeModelsOptions): Promise<ServedGrowth> {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ['--expose-gc', '--import', 'tsx', CHILD, o.storeRoot, o.cacheDir, JSON.stringify(o.shape), ...o.names],
    {
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', MAAS_METRICS: 'off', ...o.env },
      maxBuffer: 1 << 20,
      timeout: 120_000,
    },
  );
  const lines = stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as ServedLine);
  const first = lines[0]!;
  const last = lines.at(-1)!;
  const further = Math.max(1, lines.length - 1);
  return {
    lines,
    rssPerModel: (last.rssBytes - first.rssBytes) / further,
    estimatePerModel: (last.sessionBytes - first.sessionBytes) / further,
  };
}
