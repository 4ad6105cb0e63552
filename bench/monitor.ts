/**
 * Monitor benchmark: what data capture costs predict.
 *
 * The capture observer is wired into the real predict function as the monitoring docs say
 * (`addInferenceObserver(createCaptureObserver(getStore()))`, defaults: flush every 1000
 * requests / 60 s, the prediction of every request with an `id` kept for feedback), behind a
 * switch so that "on" and "off" run in the same warm container, interleaved in rounds, and
 * machine load affects them alike. Requests are OIP JSON with an `id`. For each case:
 *
 * - handler: p50 of the whole predict handler (API Gateway event in, response out): the
 *   number the target (on/off ≤ 1.05) is about;
 * - core: p50 of `InferenceService.infer` alone (no event parsing or logging): a stricter ratio,
 *   since the denominator is smaller;
 * - observe(): the observer's own cost per request, measured alone.
 *
 * "off" still lets predict build its observation object (a few small allocations); everything
 * the capture does (summaries, prediction records, flushes and their background writes) is in "on".
 * `MAAS_CAPTURE_*` settings apply: `MAAS_CAPTURE_FEEDBACK_SAMPLE=0 npx tsx bench/monitor.ts`
 * measures capture without per-request prediction records (one store write per request with an id).
 *
 * Run: `npx tsx bench/monitor.ts`, or through `npm run bench`.
 */

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import type { APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import type { InferenceObservation, InferenceObserver } from '../shared/inference/observer';
import { inferEvent, lambdaContext } from './support';

/** Wall-clock budget per case (all variants together), milliseconds. */
const CASE_BUDGET_MS = 12_000;
const ROUND = 25;

interface Case {
  label: string;
  inputSize: number;
  hidden: number[];
  outputSize: number;
  batch: number;
}
const CASES: Case[] = [
  { label: 'MLP 16→32→4, batch 1', inputSize: 16, hidden: [32], outputSize: 4, batch: 1 },
  { label: 'MLP 1000→128→10, batch 1', inputSize: 1000, hidden: [128], outputSize: 10, batch: 1 },
  { label: 'MLP 1000→128→10, batch 32', inputSize: 1000, hidden: [128], outputSize: 10, batch: 32 },
];

const p50 = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const f = (x: number, d = 3): string => x.toFixed(d);

export async function run(): Promise<void> {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const dir = await mkdtemp(path.join(tmpdir(), 'maas-bench-monitor-'));
  const saved = {
    store: process.env.MAAS_STORE,
    cache: process.env.MAAS_MODEL_CACHE_DIR,
    log: process.env.POWERTOOLS_LOG_LEVEL,
    capture: process.env.MAAS_CAPTURE,
  };
  // The handler's own capture stays off: the bench installs one it can switch on and off.
  process.env.MAAS_CAPTURE = 'false';
  process.env.MAAS_STORE = `file://${path.join(dir, 'store')}`;
  process.env.MAAS_MODEL_CACHE_DIR = path.join(dir, 'models');
  process.env.POWERTOOLS_LOG_LEVEL ??= 'WARN';
  try {
    // Imported after the environment is set: the handler's singletons read it on first use.
    const { buildMlp, mulberry32 } = await import('../dev/onnx-builder.js');
    const { getRegistry, getStore, resetRuntime } = await import('../functions/lib/runtime.js');
    const { handler } = await import('../functions/predict/handler.js');
    const { addInferenceObserver, getInferenceService, setInferenceService } = await import(
      '../functions/predict/runtime.js'
    );
    const { CaptureObserver, createCaptureObserver } = await import('../shared/monitor/capture.js');
    resetRuntime();
    await setInferenceService(undefined);

    const capture = createCaptureObserver(getStore(), { ...process.env, MAAS_CAPTURE: 'true' })!; // other MAAS_CAPTURE_* settings apply (defaults unless set)
    let enabled = false;
    const switched: InferenceObserver = {
      observe: (o) => {
        if (enabled) capture.observe(o);
      },
      get flushDue() {
        return enabled && capture.flushDue;
      },
      flush: () => capture.flush(),
    };
    addInferenceObserver(switched);

    const rows: string[][] = [];
    for (const [i, c] of CASES.entries()) {
      const name = `bench-${i}`;
      await getRegistry().registerVersion(
        name,
        buildMlp({ inputSize: c.inputSize, hiddenSizes: c.hidden, outputSize: c.outputSize, seed: 40 + i })
          .bytes,
        { alias: 'production', actor: 'bench' },
      );
      const rand = mulberry32(i + 1);
      const data = Array.from({ length: c.inputSize * c.batch }, () => Math.fround(rand() * 2 - 1));
      let n = 0;
      const body = (): string =>
        JSON.stringify({
          id: `r-${n++}`,
          inputs: [{ name: 'input', datatype: 'FP32', shape: [c.batch, c.inputSize], data }],
        });
      const viaHandler = async (): Promise<number> => {
        const e = inferEvent(name, Buffer.from(body()), { 'content-type': 'application/json' }, false);
        const t0 = performance.now();
        const res = (await handler(e, lambdaContext)) as APIGatewayProxyStructuredResultV2;
        const t = performance.now() - t0;
        if (res.statusCode !== 200)
          throw new Error(`predict answered ${res.statusCode}: ${String(res.body)}`);
        return t;
      };
      const viaCore = async (): Promise<number> => {
        const b = body();
        const t0 = performance.now();
        await getInferenceService().infer(name, undefined, b, { contentType: 'application/json' });
        return performance.now() - t0;
      };
      // predict's EMF metric lines are still produced (their cost counts in both variants), not shown.
      const s = {
        handlerOff: [] as number[],
        handlerOn: [] as number[],
        coreOff: [] as number[],
        coreOn: [] as number[],
      };
      const flushesBefore = capture.stats.flushes;
      const write = process.stdout.write;
      process.stdout.write = (() => true) as typeof process.stdout.write;
      try {
        for (let w = 0; w < 50; w++) await viaHandler();
        const deadline = performance.now() + CASE_BUDGET_MS;
        for (let r = 0; performance.now() < deadline; r++) {
          // Alternate which variant goes first so neither always runs right after a flush.
          for (const on of r % 2 === 0 ? [false, true] : [true, false]) {
            enabled = on;
            for (let k = 0; k < ROUND; k++) (on ? s.handlerOn : s.handlerOff).push(await viaHandler());
            for (let k = 0; k < ROUND; k++) (on ? s.coreOn : s.coreOff).push(await viaCore());
          }
        }
      } finally {
        enabled = false;
        process.stdout.write = write;
      }

      // observe() alone, on the observation predict builds for this case (no prediction records: those cost at flush).
      const observation: InferenceObservation = {
        model: `${name}-solo`,
        version: 1,
        requestId: 'x',
        alias: 'production',
        latencyMs: 1,
        inferenceMs: 1,
        batchSize: c.batch,
        status: 200,
        inputs: [
          { name: 'input', datatype: 'FP32', shape: [c.batch, c.inputSize], data: Float32Array.from(data) },
        ],
        outputs: [
          {
            name: 'output',
            datatype: 'FP32',
            shape: [c.batch, c.outputSize],
            data: new Float32Array(c.batch * c.outputSize).fill(0.5),
          },
        ],
      };
      const solo = new CaptureObserver(getStore(), {
        flushRequests: Number.MAX_SAFE_INTEGER,
        flushSeconds: 1e9,
      });
      const reps = 5000;
      const t0 = performance.now();
      for (let k = 0; k < reps; k++) solo.observe(observation);
      const observeUs = ((performance.now() - t0) / reps) * 1000;

      const [ho, hn, co, cn] = [p50(s.handlerOff), p50(s.handlerOn), p50(s.coreOff), p50(s.coreOn)];
      rows.push([
        c.label,
        String(s.handlerOn.length),
        f(ho),
        f(hn),
        f(hn / ho),
        f(co),
        f(cn),
        f(cn / co),
        f(observeUs, 1),
        String(capture.stats.flushes - flushesBefore),
        hn / ho <= 1.05 ? 'ok' : 'MISSED',
      ]);
    }
    await capture.close();
    const headers = [
      'case',
      'n/variant',
      'handler off p50 ms',
      'on p50 ms',
      'ratio',
      'core off p50 ms',
      'on p50 ms',
      'ratio',
      'observe() µs',
      'flushes',
      'handler ratio ≤ 1.05',
    ];
    const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
    console.log([headers, ...rows].map((r) => r.map((x, i) => x.padEnd(widths[i]!)).join('  ')).join('\n'));
    console.log(
      `capture: ${capture.stats.predictionsWritten} prediction records and ${capture.stats.captureFilesWritten} capture files written, ${capture.stats.writeFailures} write failures`,
    );
    await setInferenceService(undefined);
  } finally {
    for (const [k, v] of [
      ['MAAS_STORE', saved.store],
      ['MAAS_MODEL_CACHE_DIR', saved.cache],
      ['POWERTOOLS_LOG_LEVEL', saved.log],
      ['MAAS_CAPTURE', saved.capture],
    ] as const) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    await rm(dir, { recursive: true, force: true });
  }
}

if (require.main === module) {
  run().catch((e: unknown) => {
    console.error(e);
    process.exit(1);
  });
}
