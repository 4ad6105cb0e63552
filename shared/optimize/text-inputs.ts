/**
 * Evaluation inputs of a text-generation model: the parent's tokenizer turns sample prompts into
 * prefill feeds (input_ids, attention_mask, position_ids, an empty KV cache), so parent and
 * candidate logits are compared at every position of every prompt (next-token agreement and
 * logits cosine), and one decode step after a cache of {@link DECODE_PAST_TOKENS} is timed.
 * Random tensors would not do: token ids must be ids, and a KV cache must have its heads' shape.
 */
import type * as ort from 'onnxruntime-node';
import { InvalidArgumentError } from '../errors';
import { TEXT_COMPANIONS, type TextGenerator, textGeneratorForSession } from '../generate/engine';
import { type NumericOipDatatype, type OipTypedArray, oipFromOrtType } from '../onnx/datatypes';
import { type ModelRegistry, type ModelVersion, versionFiles } from '../registry';
import type { EvaluationInputs, InputFeed } from './inputs';

/**
 * Prompts used when a request names none: short texts of the kinds chat traffic holds (prose in
 * several languages, code, numbers, a question), tokenized by the model's own tokenizer.
 */
export const DEFAULT_SAMPLE_PROMPTS: readonly string[] = [
  'The quick brown fox jumps over the lazy dog. Once upon a time, in a small village by the sea,',
  'Explain in two sentences why the sky is blue.',
  'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n    if n < 2:\n        return n\n',
  'Grüße aus Köln! Wie geht es dir heute? Das Wetter ist schön und die Sonne scheint.',
  'Le chat dort sur le canapé pendant que la pluie tombe doucement sur les toits de Paris.',
  '1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144,',
  'SELECT name, count(*) FROM orders WHERE created_at > now() - interval 7 day GROUP BY name;',
  '今天天气很好，我们去公园散步吧。',
];

/** Prompt positions compared at most per prompt (prefill cost grows with the square of it). */
export const MAX_PROMPT_TOKENS = 256;
/** Cached tokens before the timed decode step: a short chat turn in. */
export const DECODE_PAST_TOKENS = 64;

/**
 * The text of a version's companion files (tokenizer.json, …), read verified from the registry.
 * @example
 * const companions = await readTextCompanions(registry, version);
 */
export async function readTextCompanions(
  registry: ModelRegistry,
  version: ModelVersion,
): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const file of versionFiles(version)) {
    if (!(TEXT_COMPANIONS as readonly string[]).includes(file.name)) continue;
    const chunks: Buffer[] = [];
    for await (const chunk of await registry.openFile(version, file)) chunks.push(chunk as Buffer);
    out[file.name] = Buffer.concat(chunks).toString('utf8');
  }
  return out;
}

function toEvalFeed(feeds: Record<string, ort.Tensor>): InputFeed {
  return Object.entries(feeds).map(([name, t]) => ({
    name,
    datatype: oipFromOrtType(t.type) as NumericOipDatatype,
    shape: [...t.dims],
    data: t.data as OipTypedArray,
  }));
}

/**
 * Evaluation inputs of a text model over `parentSession`: one prefill feed per prompt (a chat-
 * templated one too when the tokenizer has a template), one decode-step feed for latency at
 * batch 1. InvalidArgumentError for a prompt that tokenizes to nothing.
 * @example
 * const inputs = textEvaluationInputs(session, version.files.map((f) => f.name), companions);
 */
export function textEvaluationInputs(
  parentSession: ort.InferenceSession,
  fileNames: readonly string[],
  companions: Readonly<Record<string, string | undefined>>,
  prompts: readonly string[] = DEFAULT_SAMPLE_PROMPTS,
  source: 'prompts' | 'captured' = 'prompts',
): EvaluationInputs {
  const generator: TextGenerator = textGeneratorForSession(parentSession, fileNames, companions);
  const tok = generator.tokenizer;
  const texts = [...prompts];
  if (tok.hasChatTemplate && prompts[0] !== undefined)
    texts.push(tok.applyChatTemplate([{ role: 'user', content: prompts[0] }]));
  const limit = Math.min(MAX_PROMPT_TOKENS, generator.contextLength - 1);
  const accuracy = texts.map((text, i) => {
    const ids = tok.encode(text).slice(0, limit);
    if (ids.length === 0) throw new InvalidArgumentError(`evaluation.prompts[${i}] has no tokens`);
    return toEvalFeed(generator.promptFeeds(ids));
  });
  const past = Math.min(DECODE_PAST_TOKENS, generator.contextLength - 2);
  return {
    source,
    accuracy,
    samples: accuracy.length,
    latency: [{ batch: 1, feed: toEvalFeed(generator.decodeStepFeeds(past)) }],
    tokenDistributions: ['logits'],
  };
}
