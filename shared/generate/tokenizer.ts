/**
 * A text model's tokenizer side: `tokenizer.json` through `@huggingface/tokenizers`, the chat
 * template of `tokenizer_config.json` (or `chat_template.jinja`) through `@huggingface/jinja`, and
 * the EOS ids and sampling defaults of `generation_config.json`. No hand-written tokenization.
 */
import { Template } from '@huggingface/jinja';
import { Tokenizer } from '@huggingface/tokenizers';
import { InvalidArgumentError, UnprocessableError } from '../errors';

/** One chat message, as OpenAI clients send it (content already flattened to text). */
export interface ChatMessage {
  role: string;
  content: string;
  name?: string;
}

/** Sampling defaults a model ships in generation_config.json. */
export interface GenerationDefaults {
  temperature?: number;
  topP?: number;
  topK?: number;
  repetitionPenalty?: number;
  maxNewTokens?: number;
}

/** The parsed companion files of a text model. */
export interface TextModelFiles {
  /** tokenizer.json, parsed. */
  tokenizer: unknown;
  /** tokenizer_config.json, parsed. */
  tokenizerConfig: unknown;
  /** generation_config.json, parsed, when present. */
  generationConfig?: unknown;
  /** config.json, parsed, when present (context length, KV heads). */
  config?: unknown;
  /** chat_template.jinja, when present (takes precedence over tokenizer_config's). */
  chatTemplate?: string;
}

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const tokenText = (v: unknown): string | undefined =>
  typeof v === 'string' ? v : isObject(v) && typeof v.content === 'string' ? v.content : undefined;
const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

/**
 * Tokenizer, chat template and generation settings of one text model.
 * @example
 * const tok = new TextTokenizer({ tokenizer: json, tokenizerConfig: config });
 * const ids = tok.encode(tok.applyChatTemplate([{ role: 'user', content: 'hi' }]));
 */
export class TextTokenizer {
  readonly eosTokenIds: ReadonlySet<number>;
  readonly defaults: GenerationDefaults;
  /** Context length from config.json / tokenizer_config.json, when they state a plausible one. */
  readonly contextLength: number | undefined;
  private readonly tokenizer: Tokenizer;
  private readonly template: Template | undefined;
  private readonly specials: Record<string, string>;
  private readonly addBos: boolean;
  private readonly bosId: number | undefined;

  constructor(files: TextModelFiles) {
    if (!isObject(files.tokenizer)) throw new UnprocessableError('tokenizer.json is not a JSON object');
    const config = isObject(files.tokenizerConfig) ? files.tokenizerConfig : {};
    try {
      this.tokenizer = new Tokenizer(files.tokenizer, config);
    } catch (error) {
      throw new UnprocessableError(`tokenizer.json cannot be loaded: ${(error as Error).message}`);
    }
    this.specials = {};
    for (const key of ['bos_token', 'eos_token', 'pad_token', 'unk_token']) {
      const text = tokenText(config[key]);
      if (text !== undefined) this.specials[key] = text;
    }
    this.bosId =
      this.specials.bos_token !== undefined ? this.tokenizer.token_to_id(this.specials.bos_token) : undefined;
    this.addBos = config.add_bos_token === true && this.bosId !== undefined;

    const eos = new Set<number>();
    const generation = isObject(files.generationConfig) ? files.generationConfig : {};
    const fromGeneration = generation.eos_token_id;
    for (const id of Array.isArray(fromGeneration) ? fromGeneration : [fromGeneration])
      if (Number.isInteger(id)) eos.add(id as number);
    const eosText = this.specials.eos_token;
    const eosId = eosText !== undefined ? this.tokenizer.token_to_id(eosText) : undefined;
    if (eosId !== undefined) eos.add(eosId);
    this.eosTokenIds = eos;
    this.defaults = {
      ...(generation.do_sample === false
        ? { temperature: 0 }
        : num(generation.temperature) !== undefined
          ? { temperature: num(generation.temperature) }
          : {}),
      ...(num(generation.top_p) !== undefined ? { topP: num(generation.top_p) } : {}),
      ...(num(generation.top_k) !== undefined ? { topK: num(generation.top_k) } : {}),
      ...(num(generation.repetition_penalty) !== undefined
        ? { repetitionPenalty: num(generation.repetition_penalty) }
        : {}),
      ...(num(generation.max_new_tokens) !== undefined
        ? { maxNewTokens: num(generation.max_new_tokens) }
        : {}),
    };
    const modelConfig = isObject(files.config) ? files.config : {};
    const declared = [
      modelConfig.max_position_embeddings,
      modelConfig.n_positions,
      modelConfig.n_ctx,
      modelConfig.seq_length,
      // tokenizer_config's model_max_length is often a placeholder (1e30) or the family's maximum.
      config.model_max_length,
    ].map(num);
    this.contextLength = declared.find((n) => n !== undefined && Number.isInteger(n) && n > 0 && n < 2 ** 31);

    let source = files.chatTemplate;
    const fromConfig = config.chat_template;
    if (source === undefined && typeof fromConfig === 'string') source = fromConfig;
    if (source === undefined && Array.isArray(fromConfig)) {
      // Newer configs list named templates; 'default' is the chat one.
      const named = fromConfig.find((t) => isObject(t) && t.name === 'default') ?? fromConfig[0];
      if (isObject(named) && typeof named.template === 'string') source = named.template;
    }
    try {
      this.template = source !== undefined ? new Template(source) : undefined;
    } catch (error) {
      throw new UnprocessableError(`the chat template cannot be parsed: ${(error as Error).message}`);
    }
  }

  /** Token ids the tokenizer can produce: its vocabulary plus added tokens (the largest id + 1). */
  get vocabSize(): number {
    let max = -1;
    for (const id of this.tokenizer.get_vocab(true).values()) if (id > max) max = id;
    return max + 1;
  }

  /** Whether the model has a chat template (else only completions can be served). */
  get hasChatTemplate(): boolean {
    return this.template !== undefined;
  }

  /**
   * Token ids of a text; special tokens written in the text (e.g. `<|im_start|>`) are recognized,
   * and a BOS token is prepended when tokenizer_config asks for one and the text lacks it.
   * @example
   * tok.encode('Hello world'); // [9707, 1879]
   */
  encode(text: string): number[] {
    const ids = this.tokenizer.encode(text, { add_special_tokens: false }).ids;
    if (this.addBos && this.bosId !== undefined && ids[0] !== this.bosId) ids.unshift(this.bosId);
    return ids;
  }

  /**
   * Text of token ids; special tokens are dropped (as OpenAI-compatible servers answer).
   * @example
   * tok.decode([9707, 1879]); // 'Hello world'
   */
  decode(ids: readonly number[]): string {
    if (ids.length === 0) return ''; // the library refuses an empty list
    return this.tokenizer.decode(ids as number[], { skip_special_tokens: true });
  }

  /**
   * The prompt text of a conversation, rendered by the model's chat template with the generation
   * prompt appended. InvalidArgumentError when the model has no template or the template refuses
   * the conversation (templates `raise_exception` on e.g. a wrong role order).
   * @example
   * tok.applyChatTemplate([{ role: 'user', content: 'hi' }]);
   * // '<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n'
   */
  applyChatTemplate(messages: readonly ChatMessage[], variables: Record<string, unknown> = {}): string {
    if (!this.template)
      throw new InvalidArgumentError(
        'this model has no chat template (tokenizer_config.json chat_template); use /v1/completions',
      );
    try {
      return this.template.render({
        ...this.specials,
        ...variables,
        messages,
        add_generation_prompt: true,
      });
    } catch (error) {
      // Includes the template's own raise_exception (e.g. roles out of order).
      throw new InvalidArgumentError(
        `the chat template failed on these messages: ${(error as Error).message}`,
      );
    }
  }
}
