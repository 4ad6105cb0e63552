/**
 * `npm run bench -- generate`: maas text generation against a raw onnxruntime greedy loop on the
 * same session, model (the tiny decoder of dev/text-model.ts) and prompt. The raw loop is the
 * floor: feeds, session.run, argmax over the vocabulary, nothing else; maas adds sampling setup,
 * EOS / stop checks, incremental detokenization and the event stream. Reports tokens/s of both
 * (target ratio ≥ 0.95), time-to-first-token overhead over the raw prefill (target ≤ 5 ms), and
 * the per-token overhead in µs. Medians of alternating runs.
 *
 * Then the int8 candidates optimize builds for this decoder (shared/optimize: MatMul weights
 * dynamic, plus the embedding Gather weight-only, and without it for comparison), measured as the
 * optimize job measures them (next-token agreement and logits cosine on the default sample
 * prompts, paired decode-step latency) and by maas generation tokens/s against the fp32 parent.
 */
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { defaultChain, writeTextModelFolder } from '../dev/text-model';
import { loadTextGenerator, type TextGenerator } from '../shared/generate/engine';
import { argmax } from '../shared/generate/sampling';
import { evaluateCandidate, evaluationSessionOptions } from '../shared/optimize/evaluate';
import { buildCandidate } from '../shared/optimize/techniques';
import { textEvaluationInputs } from '../shared/optimize/text-inputs';

const TOKENS = Number(process.env.BENCH_GENERATE_TOKENS ?? 200);
const RUNS = Number(process.env.BENCH_GENERATE_RUNS ?? 5);
const PROMPT = 'Hello world, this is a benchmark of maas text generation.';

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;

/** Greedy loop straight on onnxruntime: returns time to first token and decode tokens/s. */
async function raw(gen: TextGenerator, prompt: number[], n: number) {
  const started = performance.now();
  const { layers } = gen.spec;
  let past: Record<string, ort.Tensor> = {};
  for (let i = 0; i < layers; i++)
    for (const p of ['key', 'value'])
      past[`past_key_values.${i}.${p}`] = new ort.Tensor('float32', new Float32Array(0), [
        1,
        gen.spec.kvHeads,
        0,
        gen.spec.headDim,
      ]);
  let step = prompt;
  let length = 0;
  let first = 0;
  for (let produced = 0; produced < n; produced++) {
    const T = step.length;
    const out = await gen.session.run({
      input_ids: new ort.Tensor('int64', BigInt64Array.from(step, BigInt), [1, T]),
      attention_mask: new ort.Tensor('int64', new BigInt64Array(length + T).fill(1n), [1, length + T]),
      position_ids: new ort.Tensor(
        'int64',
        BigInt64Array.from({ length: T }, (_, i) => BigInt(length + i)),
        [1, T],
      ),
      ...past,
    });
    const logits = out.logits as ort.Tensor;
    const V = logits.dims[2] ?? 0;
    const next = argmax((logits.data as Float32Array).subarray((T - 1) * V, T * V));
    if (produced === 0) first = performance.now();
    length += T;
    step = [next];
    past = {};
    for (let i = 0; i < layers; i++)
      for (const p of ['key', 'value'])
        past[`past_key_values.${i}.${p}`] = out[`present.${i}.${p}`] as ort.Tensor;
  }
  const end = performance.now();
  return { ttft: first - started, tps: (n - 1) / ((end - first) / 1000) };
}

async function maas(gen: TextGenerator, prompt: string, n: number) {
  for await (const e of gen.generate({ prompt, maxTokens: n, temperature: 0, ignoreEos: true }))
    if (e.type === 'done') return { ttft: e.timing.timeToFirstTokenMs, tps: e.timing.tokensPerSecond };
  throw new Error('no done event');
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'maas-bench-generate-'));
  try {
    writeTextModelFolder(dir, { chain: defaultChain(), context: TOKENS + 64 });
    const gen = await loadTextGenerator(dir, {
      sessionOptions: { logSeverityLevel: 3, intraOpNumThreads: 1, interOpNumThreads: 1 },
    });
    const ids = gen.tokenizer.encode(PROMPT);
    await raw(gen, ids, 8); // warm-up
    await maas(gen, PROMPT, 8);
    const r: { ttft: number; tps: number }[] = [];
    const m: { ttft: number; tps: number }[] = [];
    for (let i = 0; i < RUNS; i++) {
      r.push(await raw(gen, ids, TOKENS));
      m.push(await maas(gen, PROMPT, TOKENS));
    }
    const rawTps = median(r.map((x) => x.tps));
    const maasTps = median(m.map((x) => x.tps));
    const rawTtft = median(r.map((x) => x.ttft));
    const maasTtft = median(m.map((x) => x.ttft));
    console.log(
      `tiny decoder: hidden ${gen.spec.headDim * gen.spec.kvHeads}, ${gen.spec.layers} layers, vocab ${gen.spec.vocabSize}; prompt ${ids.length} tokens, ${TOKENS} generated, ${RUNS} runs (medians)`,
    );
    console.table({
      'tokens/s': {
        raw: rawTps.toFixed(1),
        maas: maasTps.toFixed(1),
        'maas / raw': (maasTps / rawTps).toFixed(3),
      },
      'time to first token (ms)': {
        raw: rawTtft.toFixed(2),
        maas: maasTtft.toFixed(2),
        'maas / raw': `+${(maasTtft - rawTtft).toFixed(2)} ms`,
      },
      'per-token overhead (µs)': {
        raw: '',
        maas: '',
        'maas / raw': ((1 / maasTps - 1 / rawTps) * 1e6).toFixed(0),
      },
    });
    await int8Rows(dir, gen);
    await gen.session.release();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** int8 variants of the decoder: size, next-token agreement, logits cosine, decode-step and generation speed. */
async function int8Rows(dir: string, parent: TextGenerator): Promise<void> {
  const files = [
    'model.onnx',
    'tokenizer.json',
    'tokenizer_config.json',
    'generation_config.json',
    'config.json',
  ];
  const companions = Object.fromEntries(files.slice(1).map((f) => [f, readFileSync(join(dir, f), 'utf8')]));
  const parentBytes = new Uint8Array(readFileSync(join(dir, 'model.onnx')));
  const session = await ort.InferenceSession.create(
    parentBytes,
    evaluationSessionOptions({ textGeneration: true }),
  );
  const inputs = textEvaluationInputs(session, files, companions);
  const lineage = { model: 'tiny', version: 1 };
  const variants = {
    'int8 (MatMul + Gather)': {},
    'int8 (MatMul only)': { int8: { opTypes: ['MatMul', 'Gemm'] as const } },
  };
  const rows: Record<string, Record<string, string>> = {};
  for (const [label, parameters] of Object.entries(variants)) {
    const candidate = await buildCandidate(parentBytes, 'int8', parameters as never, lineage);
    const ev = await evaluateCandidate({ model: parentBytes, session }, candidate.bytes, inputs, {
      iterations: 40,
    });
    const logits = ev.accuracy.outputs.find((o) => o.name === 'logits');
    const folder = join(dir, label.replace(/\W+/g, '-'));
    mkdirSync(folder);
    writeFileSync(join(folder, 'model.onnx'), candidate.bytes);
    for (const f of files.slice(1)) copyFileSync(join(dir, f), join(folder, f));
    const gen = await loadTextGenerator(folder, {
      sessionOptions: { logSeverityLevel: 3, intraOpNumThreads: 1, interOpNumThreads: 1 },
    });
    await maas(gen, PROMPT, 8);
    const a: number[] = [];
    const b: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      a.push((await maas(parent, PROMPT, TOKENS)).tps);
      b.push((await maas(gen, PROMPT, TOKENS)).tps);
    }
    await gen.session.release();
    rows[label] = {
      'size ×': ev.size.ratio.toFixed(3),
      'next-token agreement': (logits?.top1Agreement ?? NaN).toFixed(3),
      'logits cosine': (logits?.cosine ?? NaN).toFixed(5),
      'decode step ×': `${ev.latency[0]?.ratio.toFixed(2)} (faster in ${((ev.latency[0]?.fasterShare ?? 0) * 100).toFixed(0)}%)`,
      'tokens/s ×': (median(b) / median(a)).toFixed(2),
    };
  }
  await session.release();
  console.log(
    `int8 candidates vs the fp32 parent (${parentBytes.byteLength} bytes): accuracy on ${inputs.samples} sample prompts, every position; decode step = one token after 64 cached, paired runs; tokens/s = maas generation of ${TOKENS} tokens, alternating, medians`,
  );
  console.table(rows);
}

void main();
