/**
 * Load and soak against a real `npm start` (issue #13): 50 connections on predict while the
 * registry changes underneath (registrations, alias moves, rollbacks of `production`), with the
 * server's RSS sampled every second. Sized for CI (8 s warm-up + 30 s measured); `npm run bench
 * -- scale` runs the same for 60 s.
 *
 * Before the instance cap (plugins/offline-pool.js) serverless-offline started a worker thread per
 * concurrent request: RSS went past 3 GB within 30 s and most requests timed out.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type ChurnResult,
  churnRegistry,
  IRIS_REQUEST,
  type LoadResult,
  type LoadServer,
  mb,
  runLoad,
  sampleRss,
  startServer,
} from './driver';

const CONNECTIONS = 50;
const WARMUP_S = 8;
const MEASURED_S = 30;
const MB = 1024 * 1024;

let s: LoadServer;
beforeAll(async () => {
  s = await startServer();
}, 180_000);
afterAll(async () => s?.stop(), 90_000);

describe('npm start under load', () => {
  it(`answers ${CONNECTIONS} connections on predict without a failure while versions are registered, promoted and rolled back; RSS stays flat`, async () => {
    const url = `${s.base}/v2/models/iris/infer`;
    const rss = sampleRss(s.server.child.pid!, 1000);
    const warm = await runLoad(url, IRIS_REQUEST, { connections: CONNECTIONS, seconds: WARMUP_S });
    const warmSamples = rss.samples.length;
    const stop = new AbortController();
    const churning = churnRegistry(s.base, stop.signal);
    let load: LoadResult;
    let churn: ChurnResult;
    try {
      load = await runLoad(url, IRIS_REQUEST, { connections: CONNECTIONS, seconds: MEASURED_S });
    } finally {
      stop.abort();
      churn = await churning;
    }
    const samples = rss.stop().slice(warmSamples);
    const half = samples[Math.floor(samples.length / 2)]!;
    const end = samples[samples.length - 1]!;
    const peak = Math.max(...samples);
    console.log(
      `load: ${load.requests} requests in ${MEASURED_S} s (${load.throughput.toFixed(0)}/s), p50 ${load.p50Ms} ms, p99 ${load.p99Ms} ms, max ${load.maxMs} ms; ` +
        `errors ${load.errors}, timeouts ${load.timeouts}, non-2xx ${load.non2xx}; warm-up ${warm.requests} requests; ` +
        `churn ${churn.registrations} registrations, ${churn.aliasMoves} alias moves, ${churn.rollbacks} rollbacks; ` +
        `RSS MB after warm-up ${mb(samples[0]!)}, at half ${mb(half)}, end ${mb(end)}, peak ${mb(peak)}`,
    );
    expect(load.errors + load.timeouts + load.non2xx).toBe(0);
    expect(warm.errors + warm.timeouts + warm.non2xx).toBe(0);
    expect(load.requests).toBeGreaterThan(MEASURED_S * 50); // it served, not stalled
    expect(churn.failures).toEqual([]);
    // At least one rollback and a few moves land during the load even on a busy machine.
    expect(churn.rollbacks).toBeGreaterThanOrEqual(1);
    expect(churn.aliasMoves).toBeGreaterThanOrEqual(3);
    // Flat after warm-up: the second half adds less than 96 MB, and nothing near the 3 GB of old.
    expect(end - half).toBeLessThan(96 * MB);
    expect(peak).toBeLessThan(2048 * MB);
    // The demo alias still answers with a probability per class.
    const last = (await (
      await fetch(url, {
        method: 'POST',
        body: IRIS_REQUEST,
        headers: { 'content-type': 'application/json' },
      })
    ).json()) as {
      outputs: { shape: number[] }[];
    };
    expect(last.outputs[0]!.shape).toEqual([3, 3]);
  }, 150_000);
});
