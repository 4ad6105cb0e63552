/**
 * Load against a real `npm start`: the server in a throw-away service copy (test/start), predict
 * traffic from autocannon, registry changes at the same time (registrations, alias moves, a
 * rollback), and the server's resident memory sampled from /proc while it runs. Used by
 * test/load/*.test.ts (sized for CI) and `npm run bench -- scale` (the full 60 s).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import autocannon from 'autocannon';
import { buildMlp } from '../../dev/onnx-builder';
import { CaptureObserver } from '../../shared/monitor/capture';
import { ModelRegistry } from '../../shared/registry';
import { FileObjectStore } from '../../shared/store';
import { mapLimit } from '../../shared/util/concurrency';
import { childEnv, freePort, LocalServer, serviceCopy } from '../start/local-server';

/** A running `npm start` and where it answers. */
export interface LoadServer {
  server: LocalServer;
  base: string;
  dir: string;
  stop(): Promise<void>;
}

/**
 * Starts `npm start` in a fresh service copy (demo model `iris` registered on first start).
 *
 * @example
 * ```ts
 * const s = await startServer({ MAAS_CAPTURE: 'true' });
 * await fetch(`${s.base}/v2/models/iris`);
 * await s.stop();
 * ```
 */
export async function startServer(extra: Record<string, string> = {}): Promise<LoadServer> {
  const dir = serviceCopy();
  const httpPort = await freePort();
  const lambdaPort = await freePort();
  const base = `http://127.0.0.1:${httpPort}`;
  const server = LocalServer.start(
    dir,
    childEnv({ MAAS_PORT: String(httpPort), MAAS_LAMBDA_PORT: String(lambdaPort), ...extra }),
  );
  try {
    await server.waitUntilReady(`${base}/v2/models/iris/ready`, 170_000);
  } catch (e) {
    await server.stop();
    throw e;
  }
  return {
    server,
    base,
    dir,
    async stop() {
      await server.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Resident memory (bytes) of every process in the process group `pgid` (npm, serverless-offline
 * and whatever it spawned), from /proc: what the machine actually pays for the server.
 *
 * @example
 * ```ts
 * const rss = groupRss(server.child.pid!);
 * ```
 */
export function groupRss(pgid: number): number {
  let total = 0;
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(path.join('/proc', entry, 'stat'), 'utf8');
      // Fields after the parenthesised command: state, ppid, pgrp, …
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[2]) !== pgid) continue;
      const status = fs.readFileSync(path.join('/proc', entry, 'status'), 'utf8');
      total += Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) * 1024;
    } catch {
      // the process exited while we looked
    }
  }
  return total;
}

/** One flower batch in OIP JSON, for `/v2/models/iris/infer`. */
export const IRIS_REQUEST = JSON.stringify({
  inputs: [
    {
      name: 'input',
      shape: [3, 4],
      datatype: 'FP32',
      data: [5.1, 3.5, 1.4, 0.2, 7.0, 3.2, 4.7, 1.4, 6.3, 3.3, 6.0, 2.5],
    },
  ],
});

/** What one autocannon run measured. */
export interface LoadResult {
  requests: number;
  /** Requests per second (mean). */
  throughput: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  errors: number;
  timeouts: number;
  non2xx: number;
}

/**
 * Runs autocannon against `url` (POST of `body`) and summarizes it.
 *
 * @example
 * ```ts
 * const r = await runLoad(`${base}/v2/models/iris/infer`, IRIS_REQUEST, { connections: 50, seconds: 30 });
 * ```
 */
export async function runLoad(
  url: string,
  body: string,
  options: { connections: number; seconds: number },
): Promise<LoadResult> {
  const result = await autocannon({
    url,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
    connections: options.connections,
    duration: options.seconds,
    timeout: 10,
  });
  return {
    requests: result.requests.total,
    throughput: result.requests.average,
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    maxMs: result.latency.max,
    errors: result.errors,
    timeouts: result.timeouts,
    non2xx: result.non2xx,
  };
}

/** What {@link churnRegistry} did while the load ran. */
export interface ChurnResult {
  registrations: number;
  aliasMoves: number;
  rollbacks: number;
  /** Failed management calls (status and route): should be none. */
  failures: string[];
}

/**
 * Until `signal` aborts: registers the demo model's bytes again as a new version (`force`),
 * points `production` at it, and in the first and every third round after rolls `production` back — the registry
 * changes predict must absorb without a failed request.
 *
 * @example
 * ```ts
 * const stop = new AbortController();
 * const churn = churnRegistry(base, stop.signal);
 * // … load …
 * stop.abort();
 * console.log(await churn);
 * ```
 */
export async function churnRegistry(
  base: string,
  signal: AbortSignal,
  options: { pauseMs?: number } = {},
): Promise<ChurnResult> {
  const result: ChurnResult = { registrations: 0, aliasMoves: 0, rollbacks: 0, failures: [] };
  const model = Buffer.from(await (await fetch(`${base}/models/iris/versions/1/download`)).arrayBuffer());
  const call = async (
    method: string,
    route: string,
    body?: Uint8Array | string,
    type = 'application/json',
  ) => {
    const response = await fetch(`${base}${route}`, {
      method,
      ...(body === undefined ? {} : { body, headers: { 'content-type': type } }),
    });
    const text = await response.text();
    if (!response.ok) result.failures.push(`${method} ${route}: ${response.status} ${text.slice(0, 200)}`);
    return response.ok ? (JSON.parse(text) as Record<string, unknown>) : undefined;
  };
  for (let round = 1; !signal.aborted; round++) {
    const registered = await call(
      'POST',
      `/models/iris/versions?force=true&description=load-${round}`,
      model,
      'application/octet-stream',
    );
    if (registered) result.registrations++;
    const version = (registered?.version as { version?: number } | undefined)?.version ?? registered?.version;
    if (typeof version === 'number') {
      const moved = await call(
        'PUT',
        '/models/iris/aliases/production',
        JSON.stringify({ version, reason: `load round ${round}` }),
      );
      if (moved) result.aliasMoves++;
    }
    if (round % 3 === 1) {
      const rolled = await call(
        'POST',
        '/models/iris/rollback',
        JSON.stringify({ alias: 'production', reason: 'load test rollback' }),
      );
      if (rolled) result.rollbacks++;
    }
    await new Promise((r) => setTimeout(r, options.pauseMs ?? 500));
  }
  return result;
}

/**
 * Samples {@link groupRss} every `everyMs` until stopped.
 *
 * @example
 * ```ts
 * const sampler = sampleRss(pid, 1000);
 * // …
 * const samples = sampler.stop();
 * ```
 */
export function sampleRss(pgid: number, everyMs: number): { stop(): number[]; samples: number[] } {
  const samples: number[] = [groupRss(pgid)];
  const timer = setInterval(() => samples.push(groupRss(pgid)), everyMs);
  return {
    samples,
    stop() {
      clearInterval(timer);
      samples.push(groupRss(pgid));
      return samples;
    },
  };
}

/** Megabytes, for reports. */
export const mb = (bytes: number): string => (bytes / 1024 / 1024).toFixed(0);

/**
 * Registers `n` distinct small models (`m0000`…, a 4→8→3 MLP each with its own weights) in the
 * store at `root`, `production` pointing at version 1, and, with `requests`, captures that many
 * alias requests per model as predict would have (for monitor runs without serving first).
 *
 * @example
 * ```ts
 * const names = await seedModels('/tmp/store', 1000, { requests: 5 });
 * ```
 */
export async function seedModels(
  root: string,
  n: number,
  options: { requests?: number; concurrency?: number } = {},
): Promise<string[]> {
  const store = new FileObjectStore(root);
  const registry = new ModelRegistry(store);
  const names = Array.from({ length: n }, (_, i) => `m${String(i).padStart(4, '0')}`);
  const capture = options.requests ? new CaptureObserver(store) : undefined;
  await mapLimit(names, options.concurrency ?? 4, async (name, i) => {
    const { bytes } = buildMlp({ inputSize: 4, hiddenSizes: [8], outputSize: 3, seed: i + 1 });
    await registry.registerVersion(name, bytes, { alias: 'production', actor: 'seed' });
    for (let r = 0; r < (options.requests ?? 0); r++)
      capture?.observe({
        model: name,
        version: 1,
        alias: 'production',
        latencyMs: 3,
        inferenceMs: 1,
        batchSize: 1,
        status: 200,
        inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 4], data: Float32Array.from([r, 1, 2, 3]) }],
        outputs: [
          { name: 'output', datatype: 'FP32', shape: [1, 3], data: Float32Array.from([0.2, 0.3, 0.5]) },
        ],
      });
  });
  await capture?.close();
  return names;
}

/** One small OIP request for a seeded model. */
export const SEED_REQUEST = JSON.stringify({
  inputs: [{ name: 'input', shape: [1, 4], datatype: 'FP32', data: [5.1, 3.5, 1.4, 0.2] }],
});
