import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHAIN_TEXT, defaultChain, writeTextModelFolder } from '../../dev/text-model';
import { InvalidArgumentError, UnprocessableError } from '../../shared/errors';
import {
  type GenerateEvent,
  type GenerateRequest,
  loadTextGenerator,
  sessionSignature,
  type TextGenerator,
} from '../../shared/generate/engine';
import { detectTextModel } from '../../shared/generate/model-kind';
import { inspectModel } from '../../shared/onnx/inspect';

const quiet = { logSeverityLevel: 3 as const };
let root: string;
let cached: TextGenerator;
let uncached: TextGenerator;
let merged: TextGenerator;
let half: TextGenerator;
const CHAIN_PROMPT = 'Grüße aus Köln'; // ends in the chain's first token

async function collect(gen: TextGenerator, request: GenerateRequest) {
  const tokens: { text: string; tokenId: number }[] = [];
  let done: Extract<GenerateEvent, { type: 'done' }> | undefined;
  for await (const e of gen.generate(request)) {
    if (e.type === 'token') tokens.push({ text: e.text, tokenId: e.tokenId });
    else done = e;
  }
  if (!done) throw new Error('no done event');
  const ids = tokens.filter((t) => t.tokenId >= 0).map((t) => t.tokenId);
  return { tokens, ids, text: tokens.map((t) => t.text).join(''), done };
}

function copyFolder(from: string, to: string): void {
  mkdirSync(to, { recursive: true });
  for (const name of readdirSync(from)) copyFileSync(join(from, name), join(to, name));
}

const ids64 = (ids: readonly number[]) =>
  new ort.Tensor('int64', BigInt64Array.from(ids, BigInt), [1, ids.length]);
const ones = (n: number) => new ort.Tensor('int64', new BigInt64Array(n).fill(1n), [1, n]);
const positions = (from: number, n: number) =>
  new ort.Tensor(
    'int64',
    BigInt64Array.from({ length: n }, (_, i) => BigInt(from + i)),
    [1, n],
  );

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'maas-generate-'));
  const chain = defaultChain();
  writeTextModelFolder(join(root, 'cached'), { chain, externalData: true });
  writeTextModelFolder(join(root, 'uncached'), { chain, kind: 'uncached' });
  writeTextModelFolder(join(root, 'merged'), { chain, kind: 'merged' });
  writeTextModelFolder(join(root, 'half'), { chain, cacheDatatype: 'FP16', positionIds: false });
  const load = (kind: string) => loadTextGenerator(join(root, kind), { sessionOptions: quiet });
  [cached, uncached, merged, half] = await Promise.all([
    load('cached'),
    load('uncached'),
    load('merged'),
    load('half'),
  ]);
});

afterAll(async () => {
  await Promise.all([cached, uncached, merged, half].map((g) => g?.session.release()));
  rmSync(root, { recursive: true, force: true });
});

describe('detectTextModel', () => {
  const files = ['model.onnx', 'tokenizer.json', 'tokenizer_config.json'];
  it('recognizes the three graph kinds from their signatures', () => {
    expect(cached.spec).toMatchObject({
      kind: 'cached',
      layers: 2,
      positionIds: true,
      kvHeads: 4,
      headDim: 8,
    });
    expect(uncached.spec).toMatchObject({ kind: 'uncached', layers: 0, positionIds: false });
    expect(merged.spec).toMatchObject({ kind: 'merged', layers: 2 });
    expect(half.spec).toMatchObject({ kind: 'cached', cacheDatatype: 'FP16', positionIds: false });
  });
  it('reads inspectModel output, as registration will call it', () => {
    const info = inspectModel(readFileSync(join(root, 'merged', 'model.onnx')));
    const names = readdirSync(join(root, 'merged'));
    expect(detectTextModel(info, names)).toEqual(merged.spec);
    expect(detectTextModel(info, names)?.hasGenerationConfig).toBe(true);
  });

  it('ignores graphs that are not decoders and refuses incomplete ones with 422s naming the gap', () => {
    const sig = sessionSignature(cached.session);
    expect(
      detectTextModel(
        { inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 4] }], outputs: sig.outputs },
        files,
      ),
    ).toBeUndefined();
    expect(() => detectTextModel(sig, ['model.onnx', 'tokenizer.json'])).toThrow(/no tokenizer_config\.json/);
    const noPresent = {
      inputs: sig.inputs,
      outputs: sig.outputs.filter((o) => o.name !== 'present.1.value'),
    };
    expect(() => detectTextModel(noPresent, files)).toThrow(UnprocessableError);
    expect(() => detectTextModel(noPresent, files)).toThrow(
      /present\.1\.key and \.value are not both outputs/,
    );
    const noMask = { inputs: sig.inputs.filter((i) => i.name !== 'attention_mask'), outputs: sig.outputs };
    expect(() => detectTextModel(noMask, files)).toThrow(/attention_mask/);
  });
});

describe('graphs', () => {
  it('cached (prefill + one token at a time) and uncached graphs give the same logits', async () => {
    const prompt = cached.tokenizer.encode('The quick brown fox jumps over Köln 🦙');
    const full = await uncached.session.run({
      input_ids: ids64(prompt),
      attention_mask: ones(prompt.length),
    });
    const expected = full.logits?.data as Float32Array;
    const V = full.logits?.dims[2] ?? 0;
    const split = 3;
    let past: Record<string, ort.Tensor> = {};
    for (let i = 0; i < 2; i++)
      for (const p of ['key', 'value'])
        past[`past_key_values.${i}.${p}`] = new ort.Tensor('float32', new Float32Array(0), [1, 4, 0, 8]);
    const steps = [prompt.slice(0, split), ...prompt.slice(split).map((t) => [t])];
    let at = 0;
    let maxDiff = 0;
    for (const step of steps) {
      const out = await cached.session.run({
        input_ids: ids64(step),
        attention_mask: ones(at + step.length),
        position_ids: positions(at, step.length),
        ...past,
      });
      const got = out.logits?.data as Float32Array;
      for (let i = 0; i < got.length; i++)
        maxDiff = Math.max(maxDiff, Math.abs((got[i] ?? 0) - (expected[at * V + i] ?? 0)));
      past = {};
      for (let l = 0; l < 2; l++)
        for (const p of ['key', 'value'])
          past[`past_key_values.${l}.${p}`] = out[`present.${l}.${p}`] as ort.Tensor;
      at += step.length;
    }
    expect(at).toBe(prompt.length);
    expect(maxDiff).toBeLessThan(1e-4);
  });

  it('greedy output equals a reference loop written directly on onnxruntime, for every graph kind', async () => {
    const prompt = cached.tokenizer.encode('Hello world');
    const n = 24;
    // Reference: cached graph, argmax, no engine code.
    const reference: number[] = [];
    const past: Record<string, ort.Tensor> = {};
    for (let i = 0; i < 2; i++)
      for (const p of ['key', 'value'])
        past[`past_key_values.${i}.${p}`] = new ort.Tensor('float32', new Float32Array(0), [1, 4, 0, 8]);
    let step = prompt;
    let length = 0;
    while (reference.length < n) {
      const out = await cached.session.run({
        input_ids: ids64(step),
        attention_mask: ones(length + step.length),
        position_ids: positions(length, step.length),
        ...past,
      });
      const logits = out.logits as ort.Tensor;
      const V = logits.dims[2] ?? 0;
      const data = logits.data as Float32Array;
      let best = 0;
      for (let v = 1; v < V; v++)
        if ((data[(step.length - 1) * V + v] ?? 0) > (data[(step.length - 1) * V + best] ?? 0)) best = v;
      reference.push(best);
      length += step.length;
      step = [best];
      for (let l = 0; l < 2; l++)
        for (const p of ['key', 'value'])
          past[`past_key_values.${l}.${p}`] = out[`present.${l}.${p}`] as ort.Tensor;
    }
    expect(new Set(reference).size).toBeGreaterThan(5); // not a degenerate repetition
    for (const gen of [cached, uncached, merged]) {
      const { ids, text, done } = await collect(gen, { prompt: 'Hello world', maxTokens: n, temperature: 0 });
      expect(ids).toEqual(reference);
      expect(text).toBe(cached.tokenizer.decode(reference));
      expect(done).toMatchObject({
        finishReason: 'length',
        usage: { promptTokens: prompt.length, completionTokens: n, totalTokens: prompt.length + n },
      });
      expect(done.timing.timeToFirstTokenMs).toBeGreaterThan(0);
      expect(done.timing.tokensPerSecond).toBeGreaterThan(0);
    }
  });
});

describe('concurrency', () => {
  it('concurrent requests on one session give what they give alone', async () => {
    const a = { prompt: 'Hello world', maxTokens: 12, temperature: 0 };
    const b = { prompt: CHAIN_PROMPT, maxTokens: 12, temperature: 0.9, seed: 4 };
    const alone = [await collect(cached, a), await collect(cached, b)].map((r) => r.ids);
    const together = (await Promise.all([collect(cached, a), collect(cached, b)])).map((r) => r.ids);
    expect(together).toEqual(alone);
  });
});

describe('sampling', () => {
  it('is reproducible with a seed, differs across seeds, and top_k=1 is greedy', async () => {
    const request = { prompt: 'Hello world', maxTokens: 16, temperature: 1, topP: 0.95 };
    const a = await collect(cached, { ...request, seed: 11 });
    const b = await collect(cached, { ...request, seed: 11 });
    const c = await collect(cached, { ...request, seed: 12 });
    expect(a.ids).toEqual(b.ids);
    expect(c.ids).not.toEqual(a.ids);
    const greedy = await collect(cached, { prompt: 'Hello world', maxTokens: 16, temperature: 0 });
    const topK1 = await collect(cached, {
      prompt: 'Hello world',
      maxTokens: 16,
      temperature: 1,
      topK: 1,
      seed: 3,
    });
    expect(topK1.ids).toEqual(greedy.ids);
    const full = await collect(cached, { prompt: 'Hello world', maxTokens: 16, temperature: 0.8, seed: 5 });
    expect(full.ids).toEqual(
      (await collect(cached, { prompt: 'Hello world', maxTokens: 16, temperature: 0.8, seed: 5 })).ids,
    );
  });

  it('penalties change the choice: a large frequency penalty forbids repeating a token', async () => {
    const plain = await collect(cached, { prompt: CHAIN_PROMPT, maxTokens: 12, temperature: 0 });
    expect(new Set(plain.ids).size).toBeLessThan(plain.ids.length); // the chain repeats
    const penalized = await collect(cached, {
      prompt: CHAIN_PROMPT,
      maxTokens: 12,
      temperature: 0,
      frequencyPenalty: 100,
    });
    expect(new Set(penalized.ids).size).toBe(penalized.ids.length);
    const presence = await collect(cached, {
      prompt: CHAIN_PROMPT,
      maxTokens: 12,
      temperature: 0,
      presencePenalty: 100,
    });
    expect(new Set(presence.ids).size).toBe(presence.ids.length);
    const repetition = await collect(cached, {
      prompt: CHAIN_PROMPT,
      maxTokens: 12,
      temperature: 0,
      repetitionPenalty: 50,
    });
    expect(repetition.ids).not.toEqual(plain.ids);
  });
});

describe('finishing', () => {
  it('stop strings end the completion before them, even when they span tokens or split characters', async () => {
    const full = await collect(cached, { prompt: CHAIN_PROMPT, maxTokens: 30, temperature: 0 });
    expect(full.text.startsWith(CHAIN_TEXT.slice(' Köln'.length))).toBe(true); // the chain, after " Köln"
    for (const stop of ['𝄞', '𝄞 K', 'ln 🦙𝄞 Köln 🦙']) {
      const r = await collect(cached, {
        prompt: CHAIN_PROMPT,
        maxTokens: 30,
        temperature: 0,
        stop: ['never there', stop],
      });
      expect(r.done.finishReason).toBe('stop');
      expect(r.text).toBe(full.text.slice(0, full.text.indexOf(stop)));
      expect(r.done.text).toBe(r.text);
      // No emitted piece ends with a prefix of the stop string beyond what the completion keeps.
      expect(r.tokens.some((t) => t.text.includes(stop))).toBe(false);
    }
    // An fp16 KV cache (positions derived in the graph) follows the same chain.
    expect((await collect(half, { prompt: CHAIN_PROMPT, maxTokens: 30, temperature: 0 })).text).toBe(
      full.text,
    );
    const absent = await collect(cached, {
      prompt: CHAIN_PROMPT,
      maxTokens: 30,
      temperature: 0,
      stop: ['zzz'],
    });
    expect(absent.text).toBe(full.text);
    expect(absent.done.finishReason).toBe('length');
  });

  it('EOS ids from generation_config.json end with finish_reason stop; max_tokens with length', async () => {
    const base = await collect(cached, { prompt: 'Hello world', maxTokens: 8, temperature: 0 });
    expect(base.done.finishReason).toBe('length');
    expect(base.done.usage.completionTokens).toBe(8);
    const eos = base.ids[4] ?? -1;
    expect(base.ids.slice(0, 4)).not.toContain(eos);
    const dir = join(root, 'eos');
    copyFolder(join(root, 'cached'), dir);
    writeFileSync(join(dir, 'generation_config.json'), JSON.stringify({ eos_token_id: [eos] }));
    const gen = await loadTextGenerator(dir, { sessionOptions: quiet });
    try {
      const r = await collect(gen, { prompt: 'Hello world', maxTokens: 8, temperature: 0 });
      expect(r.done.finishReason).toBe('stop');
      expect(r.ids).toEqual(base.ids.slice(0, 4));
      expect(r.done.usage.completionTokens).toBe(4);
      const ignored = await collect(gen, {
        prompt: 'Hello world',
        maxTokens: 8,
        temperature: 0,
        ignoreEos: true,
      });
      expect(ignored.ids).toEqual(base.ids);
    } finally {
      await gen.session.release();
    }
  });

  it('streams multi-byte characters intact: no piece holds half a character, the pieces add up to the decode', async () => {
    const r = await collect(cached, { prompt: CHAIN_PROMPT, maxTokens: 29, temperature: 0 });
    const solo = r.ids.map((id) => cached.tokenizer.decode([id]));
    expect(solo.some((s) => s.includes('\uFFFD'))).toBe(true); // some tokens end inside a character
    expect(r.tokens.some((t) => t.tokenId >= 0 && t.text === '')).toBe(true); // … and were held back
    for (const t of r.tokens) {
      if (t.tokenId >= 0) expect(t.text).not.toContain('\uFFFD');
      expect(Buffer.from(t.text, 'utf8').toString('utf8')).toBe(t.text); // no lone surrogates
    }
    expect(r.text).toBe(cached.tokenizer.decode(r.ids));
    expect(r.text).toContain('🦙𝄞');
  });

  it('an abort stops generation at the next step; a deadline ends it with length', async () => {
    const controller = new AbortController();
    let seen = 0;
    let done: GenerateEvent | undefined;
    for await (const e of cached.generate({
      prompt: 'Hello world',
      maxTokens: 100,
      temperature: 0,
      signal: controller.signal,
    })) {
      if (e.type === 'token' && ++seen === 3) controller.abort();
      if (e.type === 'done') done = e;
    }
    expect(done).toMatchObject({ finishReason: 'abort', usage: { completionTokens: 3 } });
    const r = await collect(cached, {
      prompt: 'Hello world',
      maxTokens: 100,
      temperature: 0,
      deadline: Date.now() + 40,
    });
    expect(r.done.finishReason).toBe('length');
    expect(r.done.usage.completionTokens).toBeLessThan(100);
  });

  it('refuses prompts longer than the context with a 400 that states the limits', () => {
    const long = 'word '.repeat(200);
    expect(() => cached.generate({ prompt: long })).toThrow(InvalidArgumentError);
    expect(() => cached.generate({ prompt: long })).toThrow(/context is 128 tokens/);
    const fits = Array.from({ length: 100 }, () => 1879); // ' world' × 100
    expect(() => cached.generate({ prompt: fits, maxTokens: 50 })).toThrow(
      /128 tokens, but 150 were requested/,
    );
    expect(() => cached.generate({ prompt: fits, maxTokens: 28 })).not.toThrow();
    expect(() => cached.generate({ prompt: [9707, 151_669] })).toThrow(
      /token id 151669 is outside the vocabulary \(0 to 151668\)/,
    );
  });
});
