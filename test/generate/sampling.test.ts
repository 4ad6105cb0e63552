import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { QWEN3_TOKENIZER_DIR } from '../../dev/text-model';
import { GREEDY, Sampler } from '../../shared/generate/sampling';
import { IncrementalDetokenizer, StopMatcher } from '../../shared/generate/text-stream';
import { TextTokenizer } from '../../shared/generate/tokenizer';

/** A logits row over `size` tokens whose softmax gives `probs` to the first tokens and ~0 to the rest. */
function row(probs: number[], size = 1000): Float32Array {
  const out = new Float32Array(size).fill(-1e4);
  probs.forEach((p, i) => {
    out[i] = Math.log(p);
  });
  return out;
}

function draw(options: Partial<typeof GREEDY>, probs: number[], n: number, seed = 1): number[] {
  const sampler = new Sampler({ ...GREEDY, temperature: 1, ...options }, seed);
  const counts = new Array<number>(probs.length + 1).fill(0);
  for (let i = 0; i < n; i++) {
    const id = sampler.next(row(probs));
    counts[Math.min(id, probs.length)] = (counts[Math.min(id, probs.length)] ?? 0) + 1;
  }
  return counts;
}

describe('Sampler', () => {
  const probs = [0.5, 0.3, 0.15, 0.05];
  it('samples the softmax distribution at temperature 1', () => {
    const counts = draw({}, probs, 4000);
    probs.forEach((p, i) => {
      expect(Math.abs((counts[i] ?? 0) / 4000 - p)).toBeLessThan(0.03);
    });
    expect(counts[4]).toBe(0);
  });

  it('top_p keeps the smallest set reaching p, renormalized (with and without top_k)', () => {
    for (const options of [{ topP: 0.8 }, { topP: 0.8, topK: 3 }]) {
      const counts = draw(options, probs, 4000);
      expect((counts[2] ?? 0) + (counts[3] ?? 0) + (counts[4] ?? 0)).toBe(0);
      expect(Math.abs((counts[0] ?? 0) / 4000 - 0.5 / 0.8)).toBeLessThan(0.03);
    }
    const k2 = draw({ topK: 2 }, probs, 4000);
    expect((k2[2] ?? 0) + (k2[3] ?? 0)).toBe(0);
  });

  it('temperature sharpens, greedy takes the argmax, penalties follow their definitions', () => {
    const cold = draw({ temperature: 0.25 }, probs, 2000);
    expect((cold[0] ?? 0) / 2000).toBeGreaterThan(0.8);
    const greedy = new Sampler(GREEDY, 1);
    expect(greedy.next(row([0.2, 0.7, 0.1]))).toBe(1);
    // repetition_penalty divides positive logits of seen tokens, multiplies negative ones.
    const rep = new Sampler({ ...GREEDY, repetitionPenalty: 2 }, 1, [0]);
    const r = new Float32Array([3, 2, -1]);
    expect(rep.next(r)).toBe(1);
    expect(Array.from(r)).toEqual([1.5, 2, -1]);
    // presence / frequency: logit - presence - frequency * count over generated tokens.
    const pf = new Sampler({ ...GREEDY, presencePenalty: 0.5, frequencyPenalty: 0.25 }, 1);
    pf.accept(0);
    pf.accept(0);
    const f = new Float32Array([3, 2.1, 0]);
    expect(pf.next(f)).toBe(1);
    expect(f[0]).toBeCloseTo(3 - 0.5 - 0.5);
  });
});

describe('StopMatcher', () => {
  it('holds back possible stop prefixes and cuts at the earliest stop', () => {
    const m = new StopMatcher(['END', '\n\n']);
    expect(m.push('Hello E')).toEqual({ text: 'Hello ', stopped: false });
    expect(m.push('N')).toEqual({ text: '', stopped: false });
    expect(m.push('x')).toEqual({ text: 'ENx', stopped: false });
    expect(m.push('a\n')).toEqual({ text: 'a', stopped: false });
    expect(m.push('\nEND')).toEqual({ text: '', stopped: true });
    const n = new StopMatcher(['ab']);
    expect(n.push('xa')).toEqual({ text: 'x', stopped: false });
    expect(n.flush()).toBe('a');
  });
});

describe('IncrementalDetokenizer', () => {
  const tok = new TextTokenizer({
    tokenizer: JSON.parse(readFileSync(join(QWEN3_TOKENIZER_DIR, 'tokenizer.json'), 'utf8')),
    tokenizerConfig: JSON.parse(readFileSync(join(QWEN3_TOKENIZER_DIR, 'tokenizer_config.json'), 'utf8')),
  });
  it('emits every character whole and adds up to the full decode, for text split inside characters', () => {
    for (const text of ['Grüße aus Köln 🦙𝄞!', ' 𝄞𝄞𝄞 ok', 'naïve café — 日本語 🇩🇪']) {
      const ids = tok.encode(text);
      const d = new IncrementalDetokenizer(tok);
      const pieces = ids.map((id) => d.push(id));
      pieces.push(d.flush());
      for (const p of pieces) expect(p).not.toContain('\uFFFD');
      expect(pieces.join('')).toBe(text);
    }
    expect(tok.vocabSize).toBe(151_669);
  });
});
