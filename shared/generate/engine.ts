/**
 * The decoding loop of text generation on onnxruntime-node: prefill the prompt, then one token per
 * step feeding the KV cache back (or the whole sequence, for graphs without one), sampling,
 * stopping on EOS / stop strings / max_tokens / a deadline / an abort, and streaming text that
 * never splits a character or shows part of a stop string. Knows nothing of HTTP or Lambda:
 * callers consume {@link TextGenerator.generate}'s events.
 */
import { randomInt } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { InvalidArgumentError, UnprocessableError } from '../errors';
import { float16BitsToFloat32, oipFromOrtType } from '../onnx/datatypes';
import { detectTextModel, type SignatureLike, type TextModelSpec } from './model-kind';
import { GREEDY, Sampler, type SamplingOptions } from './sampling';
import { IncrementalDetokenizer, StopMatcher } from './text-stream';
import { TextTokenizer } from './tokenizer';

/** Why generation ended: `stop` (EOS or a stop string), `length` (max_tokens, context or deadline), `abort` (the caller's signal). */
export type FinishReason = 'stop' | 'length' | 'abort';

/** Token counts, as OpenAI's `usage` reports them. */
export interface Usage {
  promptTokens: number;
  completionTokens: number;
  totalTokens: number;
}

/** Timings of one generation. */
export interface GenerationTiming {
  /** From the call to the first token being chosen (prompt tokenization + prefill + first sample). */
  timeToFirstTokenMs: number;
  /** From the call to the end. */
  totalMs: number;
  /** Tokens after the first per second of decode time (0 with fewer than two tokens). */
  tokensPerSecond: number;
}

/** An event of {@link TextGenerator.generate}. */
export type GenerateEvent =
  | {
      type: 'token';
      /** Text this token released ('' while a character or a possible stop string is held back). */
      text: string;
      tokenId: number;
    }
  | { type: 'done'; finishReason: FinishReason; usage: Usage; timing: GenerationTiming; text: string };

/** One generation request (camelCase engine terms; the API mappings translate to them). */
export interface GenerateRequest {
  /** Prompt text (tokenized as is: chat prompts come from {@link TextTokenizer.applyChatTemplate}) or token ids. */
  prompt: string | readonly number[];
  /** Most tokens to generate; default: what the context leaves (capped by `defaultMaxTokens`). */
  maxTokens?: number;
  temperature?: number;
  topP?: number;
  topK?: number;
  seed?: number;
  repetitionPenalty?: number;
  presencePenalty?: number;
  frequencyPenalty?: number;
  /** Stop strings: generation ends before the first occurrence, which is not emitted. */
  stop?: readonly string[];
  /** Extra EOS token ids (besides the model's). */
  stopTokenIds?: readonly number[];
  /** Keep generating past EOS (benchmarks). */
  ignoreEos?: boolean;
  /** Aborting ends generation at the next step with finish reason `abort` (client disconnect). */
  signal?: AbortSignal;
  /** Epoch ms after which generation ends with finish reason `length` (the function's time limit). */
  deadline?: number;
}

/** Options of {@link loadTextGenerator}. */
export interface TextGeneratorOptions {
  /** Graph file name in the folder (default: the only *.onnx file). */
  graph?: string;
  /** Context length when config.json / tokenizer_config.json state none. */
  contextLength?: number;
  /** Cap of max_tokens when a request gives none (default 1024). */
  defaultMaxTokens?: number;
  /** onnxruntime session options (threads, optimization level). */
  sessionOptions?: ort.InferenceSession.SessionOptions;
}

/** The companion files a text generator reads (besides the graph and its external data). */
export const TEXT_COMPANIONS = [
  'tokenizer.json',
  'tokenizer_config.json',
  'generation_config.json',
  'config.json',
  'chat_template.jinja',
];

/**
 * Signature of an onnxruntime session in the shape {@link detectTextModel} reads.
 * @example
 * const spec = detectTextModel(sessionSignature(session), files);
 */
export function sessionSignature(session: ort.InferenceSession): SignatureLike {
  const convert = (m: ort.InferenceSession.ValueMetadata) => ({
    name: m.name,
    datatype: (m.isTensor ? oipFromOrtType(m.type) : undefined) ?? 'BYTES',
    shape: m.isTensor ? m.shape.map((d) => (typeof d === 'number' && d >= 0 ? d : -1)) : [],
  });
  return { inputs: session.inputMetadata.map(convert), outputs: session.outputMetadata.map(convert) };
}

/**
 * Loads a text model from a folder holding its bundle files (graph, external data, tokenizer
 * files): the session is created from the graph's path so external data resolves next to it.
 * UnprocessableError when the folder is not a usable text model.
 * @example
 * const gen = await loadTextGenerator('/tmp/models/tiny/3');
 * for await (const e of gen.generate({ prompt: 'Hello', maxTokens: 8 })) if (e.type === 'token') process.stdout.write(e.text);
 */
export async function loadTextGenerator(
  dir: string,
  options: TextGeneratorOptions = {},
): Promise<TextGenerator> {
  const names = await readdir(dir);
  const graphs = names.filter((n) => n.endsWith('.onnx'));
  const graph = options.graph ?? (graphs.length === 1 ? graphs[0] : undefined);
  if (graph === undefined)
    throw new UnprocessableError(`${dir} holds ${graphs.length} .onnx files; name the graph to load`);
  const read = async (name: string): Promise<string | undefined> =>
    names.includes(name) ? readFile(join(dir, name), 'utf8') : undefined;
  const texts = await Promise.all(TEXT_COMPANIONS.map(read));
  const companions = Object.fromEntries(TEXT_COMPANIONS.map((name, i) => [name, texts[i]]));
  const session = await ort.InferenceSession.create(join(dir, graph), options.sessionOptions ?? {});
  try {
    return textGeneratorForSession(session, names, companions, options);
  } catch (error) {
    await session.release();
    throw error;
  }
}

/**
 * A {@link TextGenerator} over a session already created, given the bundle's file names and the
 * text of its companion files (tokenizer.json, tokenizer_config.json, generation_config.json,
 * config.json, chat_template.jinja; absent ones undefined). UnprocessableError when they do not
 * make a usable text model. The optimizer uses it on in-memory parent and candidate graphs.
 * @example
 * const gen = textGeneratorForSession(session, ['model.onnx', 'tokenizer.json'], { 'tokenizer.json': text });
 */
export function textGeneratorForSession(
  session: ort.InferenceSession,
  fileNames: readonly string[],
  companions: Readonly<Record<string, string | undefined>>,
  options: TextGeneratorOptions = {},
): TextGenerator {
  const parse = (name: string): unknown => {
    const text = companions[name];
    if (text === undefined) return undefined;
    try {
      return JSON.parse(text);
    } catch {
      throw new UnprocessableError(`${name} is not valid JSON`);
    }
  };
  const spec = detectTextModel(sessionSignature(session), fileNames);
  if (!spec)
    throw new UnprocessableError('the graph is not a text-generation graph (it needs input_ids → logits)');
  const chatTemplate = companions['chat_template.jinja'];
  const tok = new TextTokenizer({
    tokenizer: parse('tokenizer.json'),
    tokenizerConfig: parse('tokenizer_config.json'),
    generationConfig: parse('generation_config.json'),
    config: parse('config.json'),
    ...(chatTemplate !== undefined ? { chatTemplate } : {}),
  });
  return new TextGenerator(session, tok, spec, {
    ...options,
    config: parse('config.json') as Record<string, unknown> | undefined,
  });
}

type Feeds = Record<string, ort.Tensor>;

/**
 * One loaded text model: an onnxruntime session, its tokenizer and how to drive its graph.
 * Requests are independent (batch size 1 each); the session may serve them concurrently.
 * @example
 * const events = gen.generate({ prompt: gen.tokenizer.applyChatTemplate(messages), maxTokens: 64, seed: 1, temperature: 0.7 });
 */
export class TextGenerator {
  readonly contextLength: number;
  /** Size of the logits' last dimension: token ids a prompt may hold. */
  readonly vocabSize: number;
  private readonly kvHeads: number;
  private readonly headDim: number;
  private readonly defaultMaxTokens: number;

  constructor(
    readonly session: ort.InferenceSession,
    readonly tokenizer: TextTokenizer,
    readonly spec: TextModelSpec,
    options: TextGeneratorOptions & { config?: Record<string, unknown> | undefined } = {},
  ) {
    const context = tokenizer.contextLength ?? options.contextLength;
    if (context === undefined)
      throw new UnprocessableError(
        'the model states no context length (config.json max_position_embeddings / n_positions)',
      );
    this.contextLength = context;
    this.defaultMaxTokens = options.defaultMaxTokens ?? 1024;
    const config = options.config ?? {};
    const fromConfig = (...keys: string[]) =>
      keys.map((k) => config[k]).find((v) => typeof v === 'number') as number | undefined;
    const heads = fromConfig('num_key_value_heads', 'num_attention_heads', 'n_head');
    const hidden = fromConfig('hidden_size', 'n_embd');
    this.kvHeads = spec.kvHeads > 0 ? spec.kvHeads : (heads ?? -1);
    this.headDim =
      spec.headDim > 0
        ? spec.headDim
        : (fromConfig('head_dim') ??
          (hidden && fromConfig('num_attention_heads', 'n_head')
            ? hidden / (fromConfig('num_attention_heads', 'n_head') ?? 1)
            : -1));
    // Exporters pad the logits dimension (Qwen: 151,936 for 151,669 tokens), never shrink it.
    this.vocabSize = spec.vocabSize > 0 ? spec.vocabSize : tokenizer.vocabSize;
    if (tokenizer.vocabSize > this.vocabSize)
      throw new UnprocessableError(
        `tokenizer.json has ${tokenizer.vocabSize} tokens but the graph's logits cover only ${this.vocabSize}`,
      );
    if (spec.layers > 0 && (this.kvHeads <= 0 || this.headDim <= 0))
      throw new UnprocessableError(
        'the KV cache shape is dynamic and config.json gives no num_key_value_heads / head_dim',
      );
  }

  /** Tokenizes a prompt and checks it fits the context with `maxTokens` (InvalidArgumentError otherwise). */
  private plan(request: GenerateRequest): { ids: number[]; maxTokens: number } {
    const ids =
      typeof request.prompt === 'string' ? this.tokenizer.encode(request.prompt) : [...request.prompt];
    if (ids.length === 0) throw new InvalidArgumentError('the prompt is empty (no tokens)');
    const outside = ids.find((id) => !Number.isInteger(id) || id < 0 || id >= this.vocabSize);
    if (outside !== undefined)
      throw new InvalidArgumentError(
        `prompt token id ${outside} is outside the vocabulary (0 to ${this.vocabSize - 1})`,
      );
    const room = this.contextLength - ids.length;
    if (room < 1)
      throw new InvalidArgumentError(
        `the prompt is ${ids.length} tokens; this model's context is ${this.contextLength} tokens (prompt plus completion), so at most ${this.contextLength - 1} prompt tokens`,
        { promptTokens: ids.length, contextLength: this.contextLength },
      );
    if (request.maxTokens !== undefined && ids.length + request.maxTokens > this.contextLength)
      throw new InvalidArgumentError(
        `this model's context is ${this.contextLength} tokens, but ${ids.length + request.maxTokens} were requested (${ids.length} in the prompt, ${request.maxTokens} for the completion)`,
        { promptTokens: ids.length, contextLength: this.contextLength },
      );
    const maxTokens =
      request.maxTokens ?? Math.min(room, this.tokenizer.defaults.maxNewTokens ?? this.defaultMaxTokens);
    return { ids, maxTokens };
  }

  private sampling(request: GenerateRequest): SamplingOptions {
    const d = this.tokenizer.defaults;
    return {
      ...GREEDY,
      temperature: request.temperature ?? d.temperature ?? 1,
      topK: request.topK ?? d.topK ?? 0,
      topP: request.topP ?? d.topP ?? 1,
      repetitionPenalty: request.repetitionPenalty ?? d.repetitionPenalty ?? 1,
      presencePenalty: request.presencePenalty ?? 0,
      frequencyPenalty: request.frequencyPenalty ?? 0,
    };
  }

  /**
   * Generates a completion as events: one `token` event per generated token (its `text` may be
   * '' while held back), then one `done`. The prompt is checked before the first event, so a
   * caller can still answer 4xx: InvalidArgumentError for a prompt that does not fit the context.
   * @example
   * for await (const event of gen.generate({ prompt: 'Once', maxTokens: 16, stop: ['\n'] })) {
   *   if (event.type === 'done') console.log(event.finishReason, event.usage);
   * }
   */
  generate(request: GenerateRequest): AsyncGenerator<GenerateEvent> {
    const started = performance.now();
    const plan = this.plan(request); // throws synchronously: before any event
    return this.run(request, plan, started);
  }

  private async *run(
    request: GenerateRequest,
    plan: { ids: number[]; maxTokens: number },
    started: number,
  ): AsyncGenerator<GenerateEvent> {
    const { ids: prompt, maxTokens } = plan;
    const sampler = new Sampler(this.sampling(request), request.seed ?? randomInt(2 ** 31), prompt);
    const eos = new Set(
      request.ignoreEos ? [] : [...this.tokenizer.eosTokenIds, ...(request.stopTokenIds ?? [])],
    );
    const detok = new IncrementalDetokenizer(this.tokenizer);
    const stops = new StopMatcher(request.stop ?? []);
    let text = '';
    let generated = 0;
    let firstAt = 0;
    let finishReason: FinishReason = 'length';
    let cut = false;
    const sequence = [...prompt];
    let past: Feeds = this.emptyPast();
    let step: number[] = prompt;
    for (;;) {
      if (request.signal?.aborted) {
        finishReason = 'abort';
        break;
      }
      if (generated >= maxTokens || (request.deadline !== undefined && Date.now() >= request.deadline)) break;
      const { logits, present } = await this.forward(step, sequence.length - step.length, sequence, past);
      past = present;
      const token = sampler.next(logits);
      if (generated === 0) firstAt = performance.now();
      if (eos.has(token)) {
        finishReason = 'stop';
        break;
      }
      generated++;
      sampler.accept(token);
      sequence.push(token);
      const piece = stops.push(detok.push(token));
      text += piece.text;
      yield { type: 'token', text: piece.text, tokenId: token };
      if (piece.stopped) {
        finishReason = 'stop';
        cut = true;
        break;
      }
      step = [token];
    }
    // Held-back text is released at the end, unless a stop string cut the completion there.
    let tail = '';
    if (!cut) {
      const last = stops.push(detok.flush());
      tail = last.stopped ? last.text : last.text + stops.flush();
      if (last.stopped) finishReason = 'stop';
    }
    if (tail) {
      text += tail;
      yield { type: 'token', text: tail, tokenId: -1 };
    }
    const end = performance.now();
    const decodeSeconds = (end - (firstAt || end)) / 1000;
    yield {
      type: 'done',
      finishReason,
      text,
      usage: {
        promptTokens: prompt.length,
        completionTokens: generated,
        totalTokens: prompt.length + generated,
      },
      timing: {
        timeToFirstTokenMs: (firstAt || end) - started,
        totalMs: end - started,
        tokensPerSecond: generated > 1 && decodeSeconds > 0 ? (generated - 1) / decodeSeconds : 0,
      },
    };
  }

  private emptyPast(): Feeds {
    const feeds: Feeds = {};
    const type = this.spec.cacheDatatype === 'FP16' ? 'float16' : 'float32';
    for (let i = 0; i < this.spec.layers; i++) {
      for (const part of ['key', 'value']) {
        const data = type === 'float16' ? new Uint16Array(0) : new Float32Array(0);
        feeds[`past_key_values.${i}.${part}`] = new ort.Tensor(type, data, [
          1,
          this.kvHeads,
          0,
          this.headDim,
        ]);
      }
    }
    return feeds;
  }

  /**
   * The feeds of a prefill of `ids` (an empty KV cache): what the graph sees for a prompt. The
   * optimizer compares parent and candidate logits on these, position by position.
   * @example
   * const out = await session.run(gen.promptFeeds(gen.tokenizer.encode('Hello')));
   */
  promptFeeds(ids: readonly number[]): Feeds {
    return this.feeds(ids, 0, this.emptyPast());
  }

  /**
   * The feeds of one decode step after `pastLength` tokens (a zero KV cache of that length, or the
   * whole sequence for graphs without one): what each generated token costs, for timing.
   * @example
   * const feeds = gen.decodeStepFeeds(64);
   */
  decodeStepFeeds(pastLength: number): Feeds {
    if (this.spec.layers === 0) return this.feeds(new Array<number>(pastLength + 1).fill(0), 0, {});
    const past: Feeds = {};
    for (const [name, empty] of Object.entries(this.emptyPast())) {
      const dims = [1, this.kvHeads, pastLength, this.headDim];
      const n = this.kvHeads * pastLength * this.headDim;
      past[name] = new ort.Tensor(
        empty.type as 'float32',
        empty.type === 'float16' ? new Uint16Array(n) : new Float32Array(n),
        dims,
      );
    }
    return this.feeds([0], pastLength, past);
  }

  /** Inputs of one pass over `input` after `offset` cached positions. */
  private feeds(input: readonly number[], offset: number, past: Feeds): Feeds {
    const cached = this.spec.layers > 0;
    const T = input.length;
    const total = offset + T;
    const feeds: Feeds = {
      input_ids: new ort.Tensor(
        'int64',
        BigInt64Array.from(input, (v) => BigInt(v)),
        [1, T],
      ),
      attention_mask: new ort.Tensor('int64', new BigInt64Array(total).fill(1n), [1, total]),
    };
    if (this.spec.positionIds) {
      const positions = new BigInt64Array(T);
      for (let i = 0; i < T; i++) positions[i] = BigInt(offset + i);
      feeds.position_ids = new ort.Tensor('int64', positions, [1, T]);
    }
    if (cached) Object.assign(feeds, past);
    if (this.spec.kind === 'merged')
      feeds.use_cache_branch = new ort.Tensor('bool', new Uint8Array([offset > 0 ? 1 : 0]), [1]);
    return feeds;
  }

  /** One forward pass: logits of the last position (a fresh Float32Array view) and the new past. */
  private async forward(
    step: readonly number[],
    pastLength: number,
    sequence: readonly number[],
    past: Feeds,
  ): Promise<{ logits: Float32Array; present: Feeds }> {
    const cached = this.spec.layers > 0;
    const input = cached ? step : sequence;
    const T = input.length;
    const out = await this.session.run(this.feeds(input, cached ? pastLength : 0, past));
    const logits = out.logits;
    if (!logits) throw new UnprocessableError('the graph returned no logits');
    const vocab = logits.dims[2] ?? 0;
    const row = toFloat32(logits).subarray((T - 1) * vocab, T * vocab);
    const present: Feeds = {};
    for (let i = 0; i < this.spec.layers; i++) {
      for (const part of ['key', 'value']) {
        const tensor = out[`present.${i}.${part}`];
        if (!tensor) throw new UnprocessableError(`the graph returned no present.${i}.${part}`);
        present[`past_key_values.${i}.${part}`] = tensor;
      }
    }
    return { logits: row, present };
  }
}

function toFloat32(tensor: ort.Tensor): Float32Array {
  if (tensor.type === 'float32') return tensor.data as Float32Array;
  const bits = tensor.data as Uint16Array;
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = float16BitsToFloat32(bits[i] ?? 0);
  return out;
}
