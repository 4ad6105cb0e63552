/**
 * Explain benchmark: what an explanation costs against the model calls it makes.
 *
 * For each case, (a) the explain core (`ExplainService.explain`, request decoding, baseline,
 * masking, batching, the Kernel SHAP regression or occlusion map, response encoding) and (b) the
 * same sequence of raw `session.run` calls on prebuilt tensors of the same batch sizes (one
 * prediction call, then ⌈rows / batch⌉ batched calls). Printed: model calls, p50 of each, the
 * ratio a/b and the overhead per model call, (a − b) / calls. Measured in interleaved rounds so
 * machine load affects both alike. The model lives in a file store (no network in the numbers).
 *
 * Run: `npm run bench -- explain` (or `npx tsx bench/explain.ts`).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { buildConvNet, buildMlp, mulberry32, randomFloat32 } from '../dev/onnx-builder';
import { ExplainService } from '../shared/explain';
import { InferenceService } from '../shared/inference';
import { ModelRegistry } from '../shared/registry';
import { FileObjectStore } from '../shared/store';

const CASE_BUDGET_MS = Number(process.env.BENCH_EXPLAIN_CASE_MS ?? 6000);

interface Case {
  label: string;
  model: 'tabular' | 'image';
  parameters: Record<string, unknown>;
  batchSize?: number;
}

const CASES: Case[] = [
  { label: 'Kernel SHAP, 16 features, 256 samples', model: 'tabular', parameters: { explain_samples: 256 } },
  {
    label: 'Kernel SHAP, 16 features, 1024 samples',
    model: 'tabular',
    parameters: { explain_samples: 1024 },
  },
  {
    label: 'Kernel SHAP, 16 features, 4096 samples',
    model: 'tabular',
    parameters: { explain_samples: 4096 },
  },
  {
    label: 'Kernel SHAP, 16 features, 256 samples, batch 1',
    model: 'tabular',
    parameters: { explain_samples: 256 },
    batchSize: 1,
  },
  { label: 'occlusion 3×32×32, patch 8 (16 patches)', model: 'image', parameters: { explain_patch: 8 } },
  { label: 'occlusion 3×32×32, patch 4 (64 patches)', model: 'image', parameters: { explain_patch: 4 } },
  { label: 'occlusion 3×32×32, patch 2 (256 patches)', model: 'image', parameters: { explain_patch: 2 } },
];

const p50 = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

async function main(): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), 'bench-explain-'));
  const store = new FileObjectStore(path.join(dir, 'store'));
  const registry = new ModelRegistry(store);
  const tabular = buildMlp({ inputSize: 16, hiddenSizes: [64, 64], outputSize: 3, seed: 1 });
  const image = buildConvNet({ seed: 2, imageSize: 32 });
  await registry.registerVersion('tabular', tabular.bytes);
  await registry.registerVersion('image', image.bytes);
  const inference = new InferenceService({ registry, settings: { modelCacheDir: path.join(dir, 'cache') } });
  const shapes = { tabular: [16], image: [3, 32, 32] };
  const rand = mulberry32(3);
  const instances = {
    tabular: randomFloat32(rand, 16, -1, 1),
    image: randomFloat32(rand, 3 * 32 * 32, 0, 1),
  };
  const raw = {
    tabular: await ort.InferenceSession.create(tabular.bytes),
    image: await ort.InferenceSession.create(image.bytes),
  };
  const rows: string[][] = [];
  try {
    for (const c of CASES) {
      const explainer = new ExplainService({
        inference,
        store,
        settings: { timeBudgetMs: 60_000, ...(c.batchSize ? { batchSize: c.batchSize } : {}) },
      });
      const body = JSON.stringify({
        inputs: [
          {
            name: 'input',
            datatype: 'FP32',
            shape: [1, ...shapes[c.model]],
            data: Array.from(instances[c.model]),
          },
        ],
        parameters: { explain_baseline: 'zeros', ...c.parameters },
      });
      // Warm-up, and the plan: model calls and rows per call.
      const first = (await explainer.explain(c.model, '1', body)).explanation;
      const batches: number[] = [1];
      for (let left = first.samples + 2; left > 0; left -= first.batch_size)
        batches.push(Math.min(first.batch_size, left));
      const width = shapes[c.model].reduce((a, b) => a * b, 1);
      const tensors = new Map<number, ort.Tensor>();
      for (const b of new Set(batches))
        tensors.set(b, new ort.Tensor('float32', randomFloat32(rand, b * width), [b, ...shapes[c.model]]));
      const session = raw[c.model];
      const explainMs: number[] = [];
      const rawMs: number[] = [];
      const started = performance.now();
      while (performance.now() - started < CASE_BUDGET_MS || explainMs.length < 3) {
        let t0 = performance.now();
        await explainer.explain(c.model, '1', body);
        explainMs.push(performance.now() - t0);
        t0 = performance.now();
        for (const b of batches) await session.run({ input: tensors.get(b)! });
        rawMs.push(performance.now() - t0);
      }
      const a = p50(explainMs);
      const r = p50(rawMs);
      rows.push([
        c.label,
        String(first.model_calls),
        String(first.samples),
        a.toFixed(2),
        r.toFixed(2),
        (a / r).toFixed(2),
        (((a - r) / first.model_calls) * 1000).toFixed(0),
        String(explainMs.length),
      ]);
    }
  } finally {
    await raw.tabular.release();
    await raw.image.release();
    await inference.close();
    await rm(dir, { recursive: true, force: true });
  }
  const head = [
    'case',
    'model calls',
    'samples',
    'explain p50 ms',
    'raw runs p50 ms',
    'ratio',
    'overhead µs/call',
    'rounds',
  ];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((x, i) => x.padEnd(widths[i]!)).join(' | ')} |`;
  console.log(line(head));
  console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
  for (const r of rows) console.log(line(r));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
