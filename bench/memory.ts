/**
 * Memory benchmark: what a predict container holds after serving several convolutional models
 * once each with a large request, and what that choice costs in latency.
 *
 * 1. Held: four registrations of a real model (PaddleOCR v4 detector and recognizer), served in a
 *    fresh process each (test/support/serve-models-child.ts) with onnxruntime's CPU arena on
 *    (onnxruntime's default; the cache then charges each session what its arena kept), off, and
 *    off with glibc's `MALLOC_MMAP_THRESHOLD_` as serverless.yml sets it (maas's default on
 *    Lambda): RSS growth per extra model against what the session cache counts for a session.
 * 2. Latency: in one process per allocator setting, a session with the arena and one without
 *    (otherwise predict's options), run alternately on the same input: median ratio without/with
 *    (the baseline of the run).
 *
 * Run: `npx tsx bench/memory.ts`, or `npm run bench -- memory`.
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { REAL_MODELS } from '../dev/real-models';
import { inferenceSettingsFromEnv, ortSessionOptions } from '../shared/inference';
import { ModelRegistry } from '../shared/registry';
import { FileObjectStore } from '../shared/store';
import { LAMBDA_MALLOC_ENV } from '../test/support/lambda-env';
import { distinctCopy } from '../test/support/models';
import { serveModels } from '../test/support/serve-models';
import { printTable } from './support';

const MODELS = [
  { label: 'PaddleOCR v4 det', file: REAL_MODELS.ocrDetector, big: [1, 3, 640, 640], small: [1, 3, 96, 96] },
  {
    label: 'PaddleOCR v4 rec',
    file: REAL_MODELS.ocrRecognizer,
    big: [8, 3, 48, 320],
    small: [1, 3, 48, 160],
  },
];
const COPIES = 4;
const LATENCY_RUNS = Number(process.env.BENCH_MEMORY_RUNS ?? 15);
const MIB = 1024 * 1024;
/** As on a 2-vCPU Lambda (and as the test measures). */
const CONTAINER_ENV = { MAAS_ORT_INTRA_OP_THREADS: '2' };
const CONFIGS: { label: string; env: Record<string, string> }[] = [
  { label: 'arena (MAAS_ORT_CPU_ARENA=true)', env: { MAAS_ORT_CPU_ARENA: 'true' } },
  { label: 'no arena', env: {} },
  { label: 'no arena + MALLOC_MMAP_THRESHOLD_ (default)', env: LAMBDA_MALLOC_ENV },
];

/** Child: a session with the arena and one without (else predict's options), run alternately. */
const LATENCY_CHILD = `
const ort = require('onnxruntime-node');
const [file, shapeJson, runs, optionsJson] = process.argv.slice(1);
(async () => {
  const shape = JSON.parse(shapeJson);
  const options = JSON.parse(optionsJson);
  const n = shape.reduce((a, b) => a * b, 1);
  const on = await ort.InferenceSession.create(file, { ...options, enableCpuMemArena: true });
  const off = await ort.InferenceSession.create(file, { ...options, enableCpuMemArena: false });
  const feeds = { [on.inputNames[0]]: new ort.Tensor('float32', Float32Array.from({ length: n }, (_, i) => (i % 251) / 251), shape) };
  await on.run(feeds); await off.run(feeds);
  const ratios = [];
  for (let i = 0; i < +runs; i++) {
    const a = performance.now(); await on.run(feeds); const b = performance.now(); await off.run(feeds);
    ratios.push((performance.now() - b) / (b - a));
  }
  ratios.sort((x, y) => x - y);
  console.log(ratios[ratios.length >> 1].toFixed(2));
})();`;

async function main(): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), 'maas-bench-memory-'));
  try {
    const held: string[][] = [];
    // predict's session options (2 intra-op threads as above), the arena toggled in the child.
    const options = ortSessionOptions(inferenceSettingsFromEnv(CONTAINER_ENV).session);
    const latency: string[][] = [];
    const registry = new ModelRegistry(new FileObjectStore(path.join(dir, 'store')));
    for (const [m, model] of MODELS.entries()) {
      const bytes = await readFile(model.file);
      const names = Array.from({ length: COPIES }, (_, i) => `m${m}-${i}`);
      for (const [i, name] of names.entries()) {
        await registry.registerVersion(name, distinctCopy(bytes, `bench-${i}`));
      }
      for (const [c, config] of CONFIGS.entries()) {
        const { lines, rssPerModel, estimatePerModel } = await serveModels({
          storeRoot: path.join(dir, 'store'),
          cacheDir: path.join(dir, `cache-${m}-${c}`),
          shape: model.big,
          names,
          env: { ...CONTAINER_ENV, ...config.env },
        });
        held.push([
          model.label,
          JSON.stringify(model.big),
          config.label,
          (lines[0]!.rssBytes / MIB).toFixed(0),
          (rssPerModel / MIB).toFixed(1),
          (estimatePerModel / MIB).toFixed(1),
          (rssPerModel / estimatePerModel).toFixed(2),
        ]);
      }
      for (const [label, env] of [
        ['glibc default', {}],
        ['MALLOC_MMAP_THRESHOLD_', LAMBDA_MALLOC_ENV],
      ] as const)
        for (const shape of [model.small, model.big]) {
          const ratio = execFileSync(
            process.execPath,
            [
              '-e',
              LATENCY_CHILD,
              model.file,
              JSON.stringify(shape),
              String(LATENCY_RUNS),
              JSON.stringify(options),
            ],
            // A clean environment: an exported MALLOC_MMAP_THRESHOLD_ would blur the rows.
            { env: { PATH: process.env.PATH ?? '', ...env }, encoding: 'utf8' },
          ).trim();
          latency.push([model.label, JSON.stringify(shape), label, ratio]);
        }
    }
    console.log(
      `\nHeld after serving ${COPIES} registrations once each (RSS after GC; × = grown / counted by the session cache)`,
    );
    printTable(
      ['model', 'request', 'allocator', 'RSS after 1st MiB', 'per extra model MiB', 'counted MiB', '×'],
      held,
    );
    console.log(`\nLatency without the CPU arena / with it (median of ${LATENCY_RUNS} alternating runs)`);
    printTable(['model', 'request', 'allocator', 'no arena ×'], latency);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
