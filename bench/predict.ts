/**
 * Predict benchmark: how much the handler adds to onnxruntime, and what a cold start costs.
 *
 * Warm: for each case, p50/p99 of (a) raw `session.run` on a prebuilt tensor, (b) the whole
 * predict handler invoked in-process with a JSON API Gateway event, (c) the same with the binary
 * tensor extension (base64 body, binary output); printed with the ratios b/a and c/a. The three
 * are measured in interleaved rounds so machine load affects them alike.
 *
 * Cold: a fresh process to its first response, (d) through the handler bundled as deployed
 * (esbuild, as serverless.yml configures it) with the model in the store (S3 when S3_ENDPOINT is
 * set, else a file store) and an empty model cache, against (e) a fresh process that reads the
 * .onnx file, creates a session and runs once.
 *
 * Run: `npm run bench:predict` (or `npx tsx bench/predict.ts`), or through `npm run bench`.
 */

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { CreateBucketCommand, DeleteBucketCommand, S3Client } from '@aws-sdk/client-s3';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import * as ort from 'onnxruntime-node';
import { inferEvent, lambdaContext, printTable, writeColdPredictHandler } from './support';

/** Wall-clock budget per warm case (a, b and c together), milliseconds. */
const CASE_BUDGET_MS = Number(process.env.BENCH_PREDICT_CASE_MS ?? 12_000);
const COLD_REPEATS = 3;

interface Case {
  label: string;
  model: string;
  inputSize: number;
  hidden: number[];
  outputSize: number;
  batch: number;
}

const MODELS = [
  { model: 'small', inputSize: 1000, hidden: [128], outputSize: 10 },
  { model: 'large', inputSize: 1024, hidden: [4096, 4096], outputSize: 10 },
];
const CASES: Case[] = [
  { label: 'MLP 1000→128→10, batch 1', ...MODELS[0]!, batch: 1 },
  { label: 'MLP 1024→4096→4096→10, batch 1', ...MODELS[1]!, batch: 1 },
  { label: 'MLP 1024→4096→4096→10, batch 32', ...MODELS[1]!, batch: 32 },
];

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
}
const stats = (xs: number[]): { p50: number; p99: number } => {
  const s = [...xs].sort((a, b) => a - b);
  return { p50: quantile(s, 0.5), p99: quantile(s, 0.99) };
};

interface BenchStore {
  url: string;
  kind: string;
  cleanup(): Promise<void>;
}

/** S3 (a fresh bucket on S3_ENDPOINT) when configured, else a file store in a temp folder. */
async function benchStore(): Promise<BenchStore> {
  const { S3_ENDPOINT, S3_ACCESS_KEY, S3_SECRET_KEY } = process.env;
  if (S3_ENDPOINT && S3_ACCESS_KEY && S3_SECRET_KEY) {
    const bucket = `bench-predict-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
    const client = new S3Client({
      endpoint: S3_ENDPOINT,
      region: process.env.S3_REGION ?? 'us-east-1',
      forcePathStyle: true,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      credentials: { accessKeyId: S3_ACCESS_KEY, secretAccessKey: S3_SECRET_KEY },
    });
    await client.send(new CreateBucketCommand({ Bucket: bucket }));
    const url = `s3://${bucket}/bench`;
    const cleanup = async (): Promise<void> => {
      const { createObjectStore, listAll } = await import('../shared/store/index.js');
      const store = createObjectStore(url);
      for (const o of (await listAll(store, {})).objects) await store.delete(o.key);
      await client.send(new DeleteBucketCommand({ Bucket: bucket }));
      client.destroy();
    };
    return { url, kind: `S3 (${S3_ENDPOINT})`, cleanup };
  }
  const dir = await mkdtemp(path.join(tmpdir(), 'bench-predict-store-'));
  return {
    url: `file://${dir}`,
    kind: 'file store (S3_ENDPOINT not set)',
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}

/** Silences stdout while measuring: EMF lines are still produced (their cost counts), not shown. */
function muteStdout(): () => void {
  const write = process.stdout.write;
  process.stdout.write = (() => true) as typeof process.stdout.write;
  return () => {
    process.stdout.write = write;
  };
}

export async function run(): Promise<void> {
  // The SDK's notice about Node 22 is noise on the Node 20 maas supports (as in vitest.config).
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const cacheDir = await mkdtemp(path.join(tmpdir(), 'bench-predict-cache-'));
  const store = await benchStore();
  // Other benchmarks run in this process after us (npm run bench): restore what we change.
  const saved = {
    MAAS_STORE: process.env.MAAS_STORE,
    MAAS_MODEL_CACHE_DIR: process.env.MAAS_MODEL_CACHE_DIR,
    POWERTOOLS_LOG_LEVEL: process.env.POWERTOOLS_LOG_LEVEL,
  };
  process.env.MAAS_STORE = store.url;
  process.env.MAAS_MODEL_CACHE_DIR = cacheDir;
  process.env.POWERTOOLS_LOG_LEVEL ??= 'WARN';
  // Imported after the environment is set: the handler's singletons read it on first use.
  const { buildMlp } = await import('../dev/onnx-builder.js');
  const { getRegistry, resetRuntime } = await import('../functions/lib/runtime.js');
  const { handler } = await import('../functions/predict/handler.js');
  const { getInferenceService, setInferenceService } = await import('../functions/predict/runtime.js');
  resetRuntime();
  await setInferenceService(undefined);

  console.log(`store: ${store.kind}`);
  const files: Record<string, string> = {};
  for (const m of MODELS) {
    const built = buildMlp({
      inputSize: m.inputSize,
      hiddenSizes: m.hidden,
      outputSize: m.outputSize,
      seed: 42,
    });
    files[m.model] = path.join(cacheDir, `${m.model}.source.onnx`);
    await writeFile(files[m.model]!, built.bytes);
    await getRegistry().registerVersion(m.model, built.bytes, { alias: 'production', actor: 'bench' });
  }

  const invoke = async (e: APIGatewayProxyEventV2): Promise<APIGatewayProxyStructuredResultV2> =>
    (await handler(e, lambdaContext)) as APIGatewayProxyStructuredResultV2;
  const rows: string[][] = [];
  for (const c of CASES) {
    const x = new Float32Array(c.batch * c.inputSize);
    for (let i = 0; i < x.length; i++) x[i] = Math.fround(Math.sin(i) * 0.5);
    const jsonBody = Buffer.from(
      JSON.stringify({
        id: 'bench',
        inputs: [{ name: 'input', shape: [c.batch, c.inputSize], datatype: 'FP32', data: Array.from(x) }],
      }),
    );
    const header = Buffer.from(
      JSON.stringify({
        id: 'bench',
        inputs: [
          {
            name: 'input',
            shape: [c.batch, c.inputSize],
            datatype: 'FP32',
            parameters: { binary_data_size: x.byteLength },
          },
        ],
        outputs: [{ name: 'output', parameters: { binary_data: true } }],
      }),
    );
    const jsonEvent = inferEvent(c.model, jsonBody, { 'content-type': 'application/json' }, false);
    const binEvent = inferEvent(
      c.model,
      Buffer.concat([header, Buffer.from(x.buffer)]),
      {
        'content-type': 'application/octet-stream',
        'inference-header-content-length': String(header.length),
      },
      true,
    );
    // Warm up through the handler (loads the session), then take the very session it uses.
    const unmuteWarmup = muteStdout();
    try {
      for (const e of [jsonEvent, binEvent, jsonEvent, binEvent]) {
        const res = await invoke(e);
        if (res.statusCode !== 200) throw new Error(`warm-up failed: ${res.statusCode} ${res.body}`);
      }
    } finally {
      unmuteWarmup();
    }
    const service = getInferenceService();
    const version = (await service.routes.resolve(c.model)).primary;
    const lease = await service.sessions.acquire(version);
    const session = lease.session;
    lease.release();
    const tensor = new ort.Tensor('float32', x, [c.batch, c.inputSize]);

    const a: number[] = [];
    const b: number[] = [];
    const cc: number[] = [];
    const started = performance.now();
    const unmute = muteStdout();
    try {
      // Interleaved rounds of a few iterations each, until the case's time budget is spent.
      while (performance.now() - started < CASE_BUDGET_MS || a.length < 20) {
        for (let i = 0; i < 5; i++) {
          let t = performance.now();
          await session.run({ input: tensor });
          a.push(performance.now() - t);
          t = performance.now();
          await invoke(jsonEvent);
          b.push(performance.now() - t);
          t = performance.now();
          await invoke(binEvent);
          cc.push(performance.now() - t);
        }
      }
    } finally {
      unmute();
    }
    const [sa, sb, sc] = [stats(a), stats(b), stats(cc)];
    const ms = (v: number): string => v.toFixed(3);
    rows.push([
      c.label,
      String(a.length),
      `${ms(sa.p50)} / ${ms(sa.p99)}`,
      `${ms(sb.p50)} / ${ms(sb.p99)}`,
      `${ms(sc.p50)} / ${ms(sc.p99)}`,
      (sb.p50 / sa.p50).toFixed(3),
      (sc.p50 / sa.p50).toFixed(3),
      `${((sb.p50 - sa.p50) * 1000).toFixed(0)} / ${((sc.p50 - sa.p50) * 1000).toFixed(0)}`,
    ]);
  }
  printTable(
    [
      'case',
      'n',
      '(a) session.run p50/p99 ms',
      '(b) handler JSON p50/p99 ms',
      '(c) handler binary p50/p99 ms',
      'b/a p50',
      'c/a p50',
      'overhead b/c p50 µs',
    ],
    rows,
  );
  console.log('targets: b/a and c/a ≤ 1.10 for the large model; overhead = handler p50 − session.run p50.');
  await setInferenceService(undefined);

  // Cold starts: fresh `node` processes. The handler runs as deployed: bundled by esbuild with
  // the settings of serverless.yml (onnxruntime-node external, from the layer on AWS).
  const children = await coldChildren(cacheDir);
  const coldRows: string[][] = [];
  for (const m of MODELS) {
    const d: number[] = [];
    const e: number[] = [];
    for (let r = 0; r < COLD_REPEATS; r++) {
      const emptyCache = await mkdtemp(path.join(tmpdir(), 'bench-predict-cold-'));
      d.push(
        await coldChild(children.handler, [m.model, String(m.inputSize)], {
          MAAS_STORE: store.url,
          MAAS_MODEL_CACHE_DIR: emptyCache,
        }),
      );
      e.push(await coldChild(children.baseline, [files[m.model]!, String(m.inputSize)], {}));
      await rm(emptyCache, { recursive: true, force: true });
    }
    const [md, me] = [stats(d).p50, stats(e).p50];
    coldRows.push([
      m.model === 'small' ? 'MLP 1000→128→10' : 'MLP 1024→4096→4096→10',
      md.toFixed(0),
      me.toFixed(0),
      (md / me).toFixed(2),
    ]);
  }
  printTable(
    [
      'cold start (median of 3)',
      '(d) bundled handler, model in store, ms',
      '(e) read file + session + run, ms',
      'd/e',
    ],
    coldRows,
  );
  console.log('target: d/e ≤ 1.5. Both are fresh `node` processes, timed from spawn to their first result.');
  await rm(cacheDir, { recursive: true, force: true });
  await store.cleanup();
  for (const [k, v] of Object.entries(saved)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  resetRuntime();
}

/** Writes the two cold-start programs: the esbuild-bundled handler, and plain onnxruntime. */
async function coldChildren(dir: string): Promise<{ handler: string; baseline: string }> {
  const handler = await writeColdPredictHandler(dir);
  const ortPath = JSON.stringify(require.resolve('onnxruntime-node'));
  const baseline = path.join(dir, 'cold-baseline.cjs');
  await writeFile(
    baseline,
    `const ort = require(${ortPath});
const fs = require('fs');
const [file, size] = process.argv.slice(2);
(async () => {
  const session = await ort.InferenceSession.create(fs.readFileSync(file));
  await session.run({ input: new ort.Tensor('float32', new Float32Array(Number(size)).fill(0.5), [1, Number(size)]) });
  process.stdout.write('COLD-OK\\n');
  process.exit(0);
})();
`,
  );
  return { handler, baseline };
}

/** Runs a cold-start program in a fresh node process; milliseconds from spawn to its result line. */
function coldChild(script: string, args: string[], env: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(process.execPath, [script, ...args], {
      env: { ...process.env, ...env, POWERTOOLS_LOG_LEVEL: 'WARN' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    let done = false;
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (!done && out.includes('COLD-OK')) {
        done = true;
        resolve(performance.now() - started);
      }
    });
    child.on('exit', (code) => {
      if (!done)
        reject(new Error(`cold child ${path.basename(script)} exited with ${code}: ${out.slice(-500)}`));
    });
  });
}

if (require.main === module) {
  run().catch((e: unknown) => {
    console.error(e);
    process.exit(1);
  });
}
