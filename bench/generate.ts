/**
 * `npm run bench -- generate`: maas text generation against a raw onnxruntime greedy loop on the
 * same session, model (the tiny decoder of dev/text-model.ts) and prompt. The raw loop is the
 * floor: feeds, session.run, argmax over the vocabulary, nothing else; maas adds sampling setup,
 * EOS / stop checks, incremental detokenization and the event stream. Reports tokens/s of both
 * (target ratio ≥ 0.95), time-to-first-token overhead over the raw prefill (target ≤ 5 ms), and
 * the per-token overhead in µs. Medians of alternating runs.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { defaultChain, writeTextModelFolder } from '../dev/text-model';
import { loadTextGenerator, type TextGenerator } from '../shared/generate/engine';
import { argmax } from '../shared/generate/sampling';

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
    await gen.session.release();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

void main();
