/**
 * Scale benchmark (issue #13): many models and sustained load.
 *
 * 1. A monitor run over 100 and 1,000 models (each with a few captured alias requests), in a fresh
 *    process each: the scheduled run as `npm start` runs it (every batch in-process), and one
 *    worker invocation of 100 models (what a Lambda batch does): wall time and peak RSS.
 * 2. `npm start` on a store of 1,000 models: every model served twice, then the server's RSS.
 * 3. The load test (test/load/driver.ts) against that server for 60 s: 50 connections on predict
 *    with registrations, alias moves and rollbacks at the same time: throughput, p50/p99, errors.
 *
 * Run: `npx tsx bench/scale.ts`, or `npm run bench -- scale`. Takes a few minutes.
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { mapLimit } from '../shared/util/concurrency';
import {
  churnRegistry,
  groupRss,
  IRIS_REQUEST,
  mb,
  runLoad,
  SEED_REQUEST,
  sampleRss,
  seedModels,
  startServer,
} from '../test/load/driver';

const SIZES = [100, 1000];
const SERVED_MODELS = 1000;
const LOAD_SECONDS = 60;

/** Child mode: one monitor run on MAAS_STORE, printed as JSON. */
async function monitorChild(models?: string[]): Promise<void> {
  const { handler } = await import('../functions/monitor/handler.js');
  const context = { getRemainingTimeInMillis: () => 240_000, functionName: 'bench' } as never;
  const started = Date.now();
  const result = (await handler((models ? { action: 'run', models } : {}) as never, context)) as {
    results?: { processed: number; failed: unknown[] };
    models?: unknown;
  };
  const ms = Date.now() - started;
  const processed = result.results?.processed ?? (Array.isArray(result.models) ? result.models.length : 0);
  console.log(JSON.stringify({ ms, maxRssBytes: process.resourceUsage().maxRSS * 1024, processed }));
}

function runChild(store: string, args: string[]): { ms: number; maxRssBytes: number; processed: number } {
  const tsx = path.join(__dirname, '..', 'node_modules', 'tsx', 'dist', 'cli.mjs');
  const run = spawnSync(process.execPath, [tsx, __filename, ...args], {
    env: {
      ...process.env,
      MAAS_STORE: `file://${store}`,
      MAAS_METRICS_DIR: path.join(store, '..', 'metrics'),
      MAAS_MONITOR_GRACE_SECONDS: '0',
      MAAS_RETENTION_EVERY_MINUTES: '0',
    },
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  const line = run.stdout.trim().split('\n').pop() ?? '';
  if (run.status !== 0 || !line.startsWith('{'))
    throw new Error(`monitor child failed (${run.status}): ${run.stderr.slice(-2000)}`);
  return JSON.parse(line) as { ms: number; maxRssBytes: number; processed: number };
}

async function monitorScale(): Promise<void> {
  console.log('monitor run (file store, 5 captured requests per model, fresh process per run)');
  console.log(
    'models | seed s | scheduled run: s, peak RSS MB, processed | one batch of 100: s, peak RSS MB',
  );
  for (const n of SIZES) {
    const dir = await mkdtemp(path.join(tmpdir(), `scale-${n}-`));
    try {
      const store = path.join(dir, 'store');
      const t0 = Date.now();
      const names = await seedModels(store, n, { requests: 5 });
      const seedS = (Date.now() - t0) / 1000;
      const batch = runChild(store, ['--monitor-models', names.slice(0, 100).join(',')]);
      // The batch consumed its models' captures: seed the same requests again for the full run.
      await seedModels(path.join(dir, 'store2'), n, { requests: 5 });
      const full = runChild(path.join(dir, 'store2'), ['--monitor']);
      console.log(
        `${n} | ${seedS.toFixed(1)} | ${(full.ms / 1000).toFixed(1)}, ${mb(full.maxRssBytes)}, ${full.processed} | ${(batch.ms / 1000).toFixed(1)}, ${mb(batch.maxRssBytes)}`,
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
}

async function serverScale(): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), 'scale-serve-'));
  const store = path.join(dir, 'store');
  const names = await seedModels(store, SERVED_MODELS);
  const s = await startServer({ MAAS_STORE: `file://${store}` });
  try {
    const pid = s.server.child.pid!;
    const before = groupRss(pid);
    const t0 = Date.now();
    let failures = 0;
    await mapLimit(names, 8, async (name) => {
      for (let i = 0; i < 2; i++) {
        const r = await fetch(`${s.base}/v2/models/${name}/infer`, {
          method: 'POST',
          body: SEED_REQUEST,
          headers: { 'content-type': 'application/json' },
        });
        await r.arrayBuffer();
        if (!r.ok) failures++;
      }
    });
    const servedS = (Date.now() - t0) / 1000;
    const after = groupRss(pid);
    console.log(
      `\nnpm start with ${SERVED_MODELS} models: served each twice in ${servedS.toFixed(1)} s (${failures} failures); RSS ${mb(before)} MB before, ${mb(after)} MB after`,
    );
    const rss = sampleRss(pid, 1000);
    const url = `${s.base}/v2/models/iris/infer`;
    await runLoad(url, IRIS_REQUEST, { connections: 50, seconds: 10 });
    const warmSamples = rss.samples.length;
    const stop = new AbortController();
    const churn = churnRegistry(s.base, stop.signal);
    const load = await runLoad(url, IRIS_REQUEST, { connections: 50, seconds: LOAD_SECONDS });
    stop.abort();
    const changes = await churn;
    const samples = rss.stop().slice(warmSamples);
    console.log(
      `load ${LOAD_SECONDS} s, 50 connections: ${load.throughput.toFixed(0)} req/s, p50 ${load.p50Ms} ms, p99 ${load.p99Ms} ms, max ${load.maxMs} ms, ` +
        `errors ${load.errors + load.timeouts + load.non2xx}; ${changes.registrations} registrations, ${changes.aliasMoves} alias moves, ${changes.rollbacks} rollbacks, ${changes.failures.length} failed; ` +
        `RSS MB after warm-up ${mb(samples[0]!)}, end ${mb(samples[samples.length - 1]!)}, peak ${mb(Math.max(...samples))}`,
    );
  } finally {
    await s.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const flag = process.argv.indexOf('--monitor-models');
  if (flag >= 0) return monitorChild((process.argv[flag + 1] ?? '').split(','));
  if (process.argv.includes('--monitor')) return monitorChild();
  await monitorScale();
  await serverScale();
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
