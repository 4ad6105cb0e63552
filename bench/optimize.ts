/**
 * Optimize benchmark: every technique on the MLP 1024→4096→4096→10, on the small conv net, and on
 * real trained models shipped by npm packages (PaddleOCR v4 detector and recognizer, PaddleOCR v2
 * direction classifier, Silero VAD; dev/real-models.ts) fed text-like images / speech-like audio,
 * measured in one run against the fp32 parent (same process, parent and candidate runs
 * interleaved): size, p50 latency at batch 1 and 32, agreement with fp32, and the gate's verdict
 * with default tolerances. Prints the targets next to the numbers.
 *
 * Run: `npm run bench:optimize` (or `npx tsx bench/optimize.ts`); part of `npm run bench`.
 */

import { readFileSync } from 'node:fs';
import * as ort from 'onnxruntime-node';
import { buildConvNet, buildMlp } from '../dev/onnx-builder';
import { REAL_MODELS, textImageFeed, vadFeed } from '../dev/real-models';
import { inspectModel } from '../shared/onnx/inspect';
import {
  buildCandidate,
  DEFAULT_TOLERANCES,
  type EvaluationInputs,
  type EvaluationReport,
  evaluateCandidate,
  evaluationSessionOptions,
  gate,
  type InputFeed,
  measureLoadMs,
  resolveEvaluationInputs,
  type TechniqueParameters,
} from '../shared/optimize';
import { FileObjectStore } from '../shared/store';

interface Row {
  model: string;
  technique: string;
  buildMs: number;
  report: EvaluationReport;
  verdict: string;
  targets: string;
}

interface Case {
  technique: string;
  parameters?: TechniqueParameters;
  /** Label override for the table. */
  label?: string;
  /** Settings (`MAAS_*`) in effect while the candidate is built and evaluated. */
  env?: Record<string, string>;
}

/** Runs `fn` with `settings` in `process.env` (what the build and evaluation read), then restores it. */
async function withSettings<T>(settings: Record<string, string>, fn: () => Promise<T>): Promise<T> {
  const saved = Object.keys(settings).map((k) => [k, process.env[k]] as const);
  Object.assign(process.env, settings);
  try {
    return await fn();
  } finally {
    for (const [k, v] of saved) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

const fmt = (x: number, digits = 2): string => (Number.isFinite(x) ? x.toFixed(digits) : String(x));

/** Checks the targets for the techniques that have them. */
function targetsOf(technique: string, r: EvaluationReport, model: string): string {
  const b1 = r.latency.find((l) => l.batch === 1)?.ratio ?? NaN;
  const b32 = r.latency.find((l) => l.batch === 32)?.ratio ?? NaN;
  const top1 = r.accuracy.worst.top1Agreement ?? 1;
  if (technique.startsWith('int8') && model.startsWith('mlp')) {
    const checks = [
      [`size ${fmt(r.size.ratio, 3)} ≤ 0.27`, r.size.ratio <= 0.27],
      [`b32 ${fmt(b32)} ≤ 0.5`, b32 <= 0.5],
      [`b1 ${fmt(b1)} ≤ 0.3`, b1 <= 0.3],
      [`top-1 ${fmt(top1 * 100, 1)}% ≥ 99%`, top1 >= 0.99],
    ] as const;
    return checks.map(([t, ok]) => `${ok ? 'MET' : 'MISSED'} ${t}`).join('; ');
  }
  if (technique.startsWith('int8-static')) {
    const checks = [
      [`size ${fmt(r.size.ratio, 3)} ≤ 0.3`, r.size.ratio <= 0.3],
      [`b1 ${fmt(b1)} < 1`, b1 < 1],
      [`b32 ${fmt(b32)} < 1`, b32 < 1],
      [`cosine ${fmt(r.accuracy.worst.cosine, 4)} ≥ 0.99`, r.accuracy.worst.cosine >= 0.99],
    ] as const;
    return checks.map(([t, ok]) => `${ok ? 'MET' : 'MISSED'} ${t}`).join('; ');
  }
  if (technique.startsWith('fp16'))
    return [
      `${r.size.ratio <= 0.52 ? 'MET' : 'MISSED'} size ${fmt(r.size.ratio, 3)} ≤ 0.52`,
      `${r.accuracy.worst.cosine >= 0.999 ? 'MET' : 'MISSED'} cosine ${fmt(r.accuracy.worst.cosine, 5)} ≥ 0.999`,
    ].join('; ');
  return '';
}

async function benchModel(
  label: string,
  bytes: Uint8Array,
  cases: Case[],
  iterations: number,
  given?: { inputs: EvaluationInputs; calibration: InputFeed[] },
): Promise<Row[]> {
  const info = inspectModel(bytes);
  const store = new FileObjectStore('/nonexistent-maas-bench'); // random inputs: the store is never read
  const inputs =
    given?.inputs ??
    (await resolveEvaluationInputs(info.inputs, {
      store,
      model: label,
      version: 1,
      options: { samples: 256, seed: 1 },
    }));
  // int8-static calibrates on its own data (other seeds than the evaluation's, for real models).
  const calibration = given?.calibration ?? inputs.accuracy;
  const session = await ort.InferenceSession.create(bytes, evaluationSessionOptions());
  const loadMs = await measureLoadMs(bytes, 3);
  const rows: Row[] = [];
  try {
    for (const c of cases) {
      const start = performance.now();
      const { candidate, buildMs, report } = await withSettings(c.env ?? {}, async () => {
        const candidate = await buildCandidate(
          bytes,
          c.technique,
          c.parameters ?? {},
          { model: label, version: 1 },
          { calibration, calibrationSource: given ? 'synthetic (other seeds)' : inputs.source },
        );
        const buildMs = performance.now() - start;
        const report = await evaluateCandidate({ model: bytes, session, loadMs }, candidate.bytes, inputs, {
          iterations,
          warmup: 5,
          loadRuns: 3,
        });
        return { candidate, buildMs, report };
      });
      const decision = gate(report, DEFAULT_TOLERANCES, { technique: candidate.technique });
      const name = c.label ?? c.technique;
      rows.push({
        model: label,
        technique: name,
        buildMs,
        report,
        verdict: decision.passed
          ? 'PASS'
          : `reject: ${decision.checks
              .filter((k) => !k.passed)
              .map((k) => k.check)
              .join(', ')}`,
        targets: targetsOf(name, report, label),
      });
      const last = rows[rows.length - 1] as Row;
      console.log(`  ${label} ${name}: built in ${fmt(buildMs / 1000, 1)} s, ${last.verdict}`);
    }
  } finally {
    await session.release();
  }
  return rows;
}

function printTable(rows: Row[]): void {
  const header = [
    'model',
    'technique',
    'size MB',
    'size ×',
    'b1 p50 ms',
    'b1 ×',
    'b32 p50 ms',
    'b32 ×',
    'load ×',
    'cosine',
    'top-1',
    'max abs err',
    'gate (default tolerances)',
    'issue targets',
  ];
  const lines = rows.map((r) => {
    const b1 = r.report.latency.find((l) => l.batch === 1);
    const b32 = r.report.latency.find((l) => l.batch === 32);
    // '×' columns are medians of paired (back-to-back) ratios, not ratios of the p50 columns.
    return [
      r.model,
      r.technique,
      fmt(r.report.size.candidate / 1e6, 3),
      fmt(r.report.size.ratio, 3),
      b1 ? `${fmt(b1.candidate.p50, 3)} (fp32 ${fmt(b1.parent.p50, 3)})` : '-',
      b1 ? fmt(b1.ratio) : '-',
      b32 ? `${fmt(b32.candidate.p50, 3)} (fp32 ${fmt(b32.parent.p50, 3)})` : '-',
      b32 ? fmt(b32.ratio) : '-',
      fmt(r.report.load.ratio),
      fmt(r.report.accuracy.worst.cosine, 6),
      r.report.accuracy.worst.top1Agreement !== undefined
        ? `${fmt(r.report.accuracy.worst.top1Agreement * 100, 1)}%`
        : '-',
      r.report.accuracy.worst.maxAbsError.toExponential(2),
      r.verdict,
      r.targets,
    ];
  });
  console.log(`| ${header.join(' | ')} |`);
  console.log(`|${header.map(() => ' --- ').join('|')}|`);
  for (const l of lines) console.log(`| ${l.join(' | ')} |`);
}

/** Evaluation inputs from a feed maker: `samples` rows for accuracy, batches 1 and 32 for latency. */
function givenInputs(
  make: (batch: number, seed: number) => InputFeed,
  samples: number,
): {
  inputs: EvaluationInputs;
  calibration: InputFeed[];
} {
  const accuracy = Array.from({ length: Math.ceil(samples / 8) }, (_, i) => make(8, 1 + i));
  return {
    inputs: {
      source: 'request',
      accuracy,
      samples: accuracy.length * 8,
      latency: [
        { batch: 1, feed: make(1, 50) },
        { batch: 32, feed: make(32, 51) },
      ],
    },
    calibration: [make(8, 101), make(8, 102), make(8, 103), make(8, 104)],
  };
}

const textImages =
  (height: number, width: number) =>
  (batch: number, seed: number): InputFeed =>
    textImageFeed(batch, height, width, seed);

/** Timed runs per real model and batch size: enough pairs that a busy neighbour's burst does not decide a ratio. */
const REAL_MODEL_ITERATIONS = 25;

/** The real models: PaddleOCR det/rec/cls on text-like images, Silero VAD on speech-like audio. */
async function benchRealModels(): Promise<Row[]> {
  const rows: Row[] = [];
  const load = (file: string): Uint8Array => new Uint8Array(readFileSync(file));
  rows.push(
    ...(await benchModel(
      'PaddleOCR v4 det (3x96x96)',
      load(REAL_MODELS.ocrDetector),
      [
        { technique: 'int8', label: 'int8 (dynamic, default)' },
        {
          technique: 'int8-static',
          label: 'int8-static (targetCosine 0.99)',
          parameters: { 'int8-static': { targetCosine: 0.99 } },
        },
        {
          technique: 'int8-static',
          label: 'int8-static (targetCosine 0.99, sensitive weights float)',
          parameters: { 'int8-static': { targetCosine: 0.99, sensitiveWeights: 'float' } },
        },
        {
          technique: 'int8-static',
          label: 'int8-static (targetCosine 0.99, MAAS_ORT_EXACT_INT8)',
          parameters: { 'int8-static': { targetCosine: 0.99 } },
          env: { MAAS_ORT_EXACT_INT8: 'true' },
        },
        {
          technique: 'int8-static',
          label: 'int8-static (all Conv)',
          parameters: { 'int8-static': { targetCosine: 0 } },
        },
        {
          technique: 'int8-static',
          label: 'int8-static (all Conv, no bias correction)',
          parameters: { 'int8-static': { targetCosine: 0, biasCorrection: false } },
        },
        { technique: 'fp16' },
      ],
      REAL_MODEL_ITERATIONS,
      givenInputs(textImages(96, 96), 16),
    )),
  );
  rows.push(
    ...(await benchModel(
      'PaddleOCR v4 rec (3x48x160, opset 9)',
      load(REAL_MODELS.ocrRecognizer),
      [{ technique: 'int8' }, { technique: 'int8-static' }, { technique: 'fp16' }],
      REAL_MODEL_ITERATIONS,
      givenInputs(textImages(48, 160), 16),
    )),
  );
  rows.push(
    ...(await benchModel(
      'PaddleOCR v2 cls (3x48x192, opset 9)',
      load(REAL_MODELS.ocrClassifier),
      [{ technique: 'int8-static' }, { technique: 'fp16' }],
      REAL_MODEL_ITERATIONS,
      givenInputs(textImages(48, 192), 32),
    )),
  );
  rows.push(
    ...(await benchModel(
      'Silero VAD v4 (If, 1536 samples)',
      load(REAL_MODELS.sileroVad),
      [
        {
          technique: 'int8',
          label: 'int8 incl. Conv in If bodies',
          parameters: { int8: { opTypes: ['Conv'], perChannel: true } },
        },
        { technique: 'fp16' },
      ],
      REAL_MODEL_ITERATIONS,
      givenInputs(vadFeed, 16),
    )),
  );
  return rows;
}

/**
 * Runs the optimize benchmark and prints its table (ratios are candidate / fp32 parent, measured
 * in this run).
 * @example
 * await run();
 */
export async function run(): Promise<void> {
  const started = performance.now();
  console.log(
    '\n## optimize: techniques vs the fp32 parent (same process, interleaved runs, 256 random samples, seed 1)',
  );
  console.log(
    `onnxruntime-node ${ort.env.versions.common}, ${(await import('node:os')).cpus().length} CPUs\n`,
  );
  const mlp = buildMlp({ inputSize: 1024, hiddenSizes: [4096, 4096], outputSize: 10, seed: 1 });
  const mlpCases: Case[] = [
    { technique: 'int8' },
    { technique: 'int8', label: 'int8 per-channel', parameters: { int8: { perChannel: true } } },
    { technique: 'int8+graph', label: 'int8+graph (fused com.microsoft ops)' },
    { technique: 'fp16' },
    { technique: 'fp16', label: 'fp16 weights-only', parameters: { fp16: { mode: 'weights' } } },
    { technique: 'graph' },
    { technique: 'prune', label: 'prune 50%', parameters: { prune: { sparsity: 0.5 } } },
    { technique: 'prune+int8', label: 'prune 10%+int8', parameters: { prune: { sparsity: 0.1 } } },
  ];
  const rows = await benchModel('mlp 1024-4096-4096-10', mlp.bytes, mlpCases, 30);
  const net = buildConvNet({ seed: 1, channels: [32, 64] });
  const netCases: Case[] = [
    { technique: 'int8', label: 'int8 (Gemm only, default)' },
    { technique: 'int8-static' },
    {
      technique: 'int8',
      label: 'int8 incl. Conv (ConvInteger)',
      parameters: { int8: { opTypes: ['Conv', 'Gemm'], perChannel: true } },
    },
    { technique: 'fp16' },
    { technique: 'graph' },
  ];
  rows.push(...(await benchModel('convnet 3x32x32 (32, 64 ch)', net.bytes, netCases, 40)));
  // A conv net whose convolutions dominate its time (the 32x32 one is mostly overhead at 80 KB).
  const wide = buildConvNet({ seed: 2, imageSize: 64, channels: [64, 128] });
  rows.push(
    ...(await benchModel(
      'convnet 3x64x64 (64, 128 ch)',
      wide.bytes,
      [{ technique: 'int8-static' }, { technique: 'fp16' }],
      20,
    )),
  );
  rows.push(...(await benchRealModels()));
  console.log('');
  printTable(rows);
  console.log(
    '\n× = candidate / fp32: size ratio, and for latency the median of paired back-to-back run ratios (robust to machine load).',
  );
  console.log(`optimize bench took ${fmt((performance.now() - started) / 1000, 1)} s`);
}

if (require.main === module) {
  run().catch((e: unknown) => {
    console.error(e);
    process.exitCode = 1;
  });
}
