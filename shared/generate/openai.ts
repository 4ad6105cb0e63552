/**
 * The OpenAI-compatible API as pure mappings: request bodies of `/v1/chat/completions` and
 * `/v1/completions` → validated engine requests, engine events → the response objects and the
 * streamed chunk objects OpenAI clients parse, and maas errors → OpenAI's error shape. No HTTP
 * here: the predict side resolves the model and writes the bytes (see `sse.ts`).
 */
import { randomBytes } from 'node:crypto';
import { httpStatusOf, InvalidArgumentError, MaasError } from '../errors';
import type { FinishReason, GenerateEvent, GenerateRequest, TextGenerator, Usage } from './engine';
import type { ChatMessage } from './tokenizer';

/** What the API needs of a loaded text model (a {@link TextGenerator}). */
export type TextEngine = Pick<TextGenerator, 'generate' | 'tokenizer'>;

/** The `model` field parsed: `name`, `name@alias` or `name:version` (resolved by the predict side). */
export interface ModelReference {
  name: string;
  alias?: string;
  version?: number;
}

/** OpenAI's error body. */
export interface OpenAIErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

/** A 4xx in OpenAI's shape, naming the offending parameter. */
export class OpenAIRequestError extends InvalidArgumentError {
  constructor(
    message: string,
    readonly param: string | null,
    readonly code: string | null = null,
  ) {
    super(message, { param });
  }
}

const bad = (param: string, message: string, code: string | null = null) =>
  new OpenAIRequestError(message, param, code);

/**
 * Parses the `model` field. The name is checked by registry rules later; here only the shape.
 * @example
 * parseModelField('tiny@production'); // { name: 'tiny', alias: 'production' }
 * parseModelField('tiny:3'); // { name: 'tiny', version: 3 }
 */
export function parseModelField(model: unknown): ModelReference {
  if (typeof model !== 'string' || model.length === 0) throw bad('model', 'model must be a non-empty string');
  const at = model.lastIndexOf('@');
  if (at >= 0) {
    const name = model.slice(0, at);
    const alias = model.slice(at + 1);
    if (!name || !alias) throw bad('model', `model "${model}" is not name, name@alias or name:version`);
    return { name, alias };
  }
  const colon = model.lastIndexOf(':');
  if (colon >= 0) {
    const name = model.slice(0, colon);
    const version = model.slice(colon + 1);
    if (!name || !/^[1-9]\d{0,8}$/.test(version))
      throw bad('model', `model "${model}" is not name, name@alias or name:version (a positive integer)`);
    return { name, version: Number(version) };
  }
  return { name: model };
}

type Body = Record<string, unknown>;

function number(body: Body, key: string, min: number, max: number, integer = false): number | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v) || (integer && !Number.isInteger(v)) || v < min || v > max)
    throw bad(
      key,
      `${key} must be ${integer ? 'an integer' : 'a number'} between ${min} and ${max}, got ${JSON.stringify(v)}`,
    );
  return v;
}

function bool(body: Body, key: string): boolean | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw bad(key, `${key} must be a boolean`);
  return v;
}

/** Sampling and stopping fields shared by both endpoints (and the vLLM extensions top_k, repetition_penalty). */
function sampling(body: Body): Omit<GenerateRequest, 'prompt'> {
  const out: Omit<GenerateRequest, 'prompt'> = {};
  const maxTokens =
    number(body, 'max_completion_tokens', 1, 2 ** 31, true) ?? number(body, 'max_tokens', 1, 2 ** 31, true);
  if (maxTokens !== undefined) out.maxTokens = maxTokens;
  const temperature = number(body, 'temperature', 0, 2);
  if (temperature !== undefined) out.temperature = temperature;
  const topP = number(body, 'top_p', 0, 1);
  if (topP !== undefined) {
    if (topP === 0) throw bad('top_p', 'top_p must be greater than 0');
    out.topP = topP;
  }
  const topK = number(body, 'top_k', -1, 2 ** 31, true);
  if (topK !== undefined) out.topK = Math.max(topK, 0);
  const seed = number(body, 'seed', -(2 ** 63), 2 ** 63, true);
  if (seed !== undefined) out.seed = seed;
  const presence = number(body, 'presence_penalty', -2, 2);
  if (presence !== undefined) out.presencePenalty = presence;
  const frequency = number(body, 'frequency_penalty', -2, 2);
  if (frequency !== undefined) out.frequencyPenalty = frequency;
  const repetition = number(body, 'repetition_penalty', 0.01, 100);
  if (repetition !== undefined) out.repetitionPenalty = repetition;
  const stop = body.stop;
  if (stop !== undefined && stop !== null) {
    const list = typeof stop === 'string' ? [stop] : stop;
    if (!Array.isArray(list) || list.some((s) => typeof s !== 'string' || s.length === 0) || list.length > 16)
      throw bad('stop', 'stop must be a non-empty string or an array of up to 16 non-empty strings');
    out.stop = list as string[];
  }
  const n = number(body, 'n', 1, 128, true);
  if (n !== undefined && n !== 1) throw bad('n', 'n > 1 is not supported; send one request per completion');
  if (body.logprobs === true || (typeof body.logprobs === 'number' && body.logprobs > 0))
    throw bad('logprobs', 'logprobs are not supported');
  return out;
}

/** Streaming options of a request. */
export interface StreamOptions {
  stream: boolean;
  includeUsage: boolean;
}

function streaming(body: Body): StreamOptions {
  const stream = bool(body, 'stream') ?? false;
  const options = body.stream_options;
  if (options !== undefined && options !== null && (typeof options !== 'object' || Array.isArray(options)))
    throw bad('stream_options', 'stream_options must be an object');
  const includeUsage = (options as Body | undefined | null)?.include_usage;
  if (includeUsage !== undefined && typeof includeUsage !== 'boolean')
    throw bad('stream_options', 'stream_options.include_usage must be a boolean');
  if (options && !stream) throw bad('stream_options', 'stream_options is only allowed with stream: true');
  return { stream, includeUsage: includeUsage === true };
}

function asBody(body: unknown): Body {
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw new OpenAIRequestError('the request body must be a JSON object', null);
  return body as Body;
}

/** A validated `/v1/chat/completions` request. */
export interface ChatRequest extends StreamOptions {
  model: ModelReference;
  /** The model field as sent (echoed in responses). */
  modelField: string;
  messages: ChatMessage[];
  options: Omit<GenerateRequest, 'prompt'>;
}

const ROLES = new Set(['system', 'developer', 'user', 'assistant', 'tool']);

function messageText(content: unknown, i: number): string {
  if (typeof content === 'string') return content;
  if (content === null || content === undefined) return '';
  if (Array.isArray(content)) {
    return content
      .map((part, j) => {
        const p = part as Body;
        if (typeof p !== 'object' || p === null || p.type !== 'text' || typeof p.text !== 'string')
          throw bad(`messages[${i}].content[${j}]`, 'only text content parts are supported');
        return p.text;
      })
      .join('');
  }
  throw bad(`messages[${i}].content`, 'content must be a string or an array of text parts');
}

/**
 * Validates a chat completion body (OpenAI-shaped 400s naming the parameter).
 * @example
 * const req = parseChatRequest({ model: 'tiny', messages: [{ role: 'user', content: 'hi' }], stream: true });
 */
export function parseChatRequest(input: unknown): ChatRequest {
  const body = asBody(input);
  const model = parseModelField(body.model);
  const messages = body.messages;
  if (!Array.isArray(messages) || messages.length === 0)
    throw bad('messages', 'messages must be a non-empty array');
  const parsed = messages.map((m, i): ChatMessage => {
    if (typeof m !== 'object' || m === null) throw bad(`messages[${i}]`, 'each message must be an object');
    const { role, content, name } = m as Body;
    if (typeof role !== 'string' || !ROLES.has(role))
      throw bad(`messages[${i}].role`, `role must be one of ${[...ROLES].join(', ')}`);
    const message: ChatMessage = {
      role: role === 'developer' ? 'system' : role,
      content: messageText(content, i),
    };
    if (typeof name === 'string') message.name = name;
    return message;
  });
  if (Array.isArray(body.tools) && body.tools.length > 0) throw bad('tools', 'tools are not supported');
  const format = body.response_format as Body | undefined;
  if (format && format.type !== 'text')
    throw bad('response_format', 'only response_format {"type": "text"} is supported');
  return {
    model,
    modelField: body.model as string,
    messages: parsed,
    options: sampling(body),
    ...streaming(body),
  };
}

/** A validated `/v1/completions` request. */
export interface CompletionRequest extends StreamOptions {
  model: ModelReference;
  modelField: string;
  prompt: string | number[];
  echo: boolean;
  options: Omit<GenerateRequest, 'prompt'>;
}

/**
 * Validates a (legacy) completion body: one prompt, as a string or token ids.
 * @example
 * parseCompletionRequest({ model: 'tiny:2', prompt: 'Once upon', max_tokens: 16 });
 */
export function parseCompletionRequest(input: unknown): CompletionRequest {
  const body = asBody(input);
  const model = parseModelField(body.model);
  let prompt = body.prompt;
  if (Array.isArray(prompt) && prompt.length === 1 && typeof prompt[0] === 'string') prompt = prompt[0];
  const isIds =
    Array.isArray(prompt) && prompt.length > 0 && prompt.every((t) => Number.isInteger(t) && t >= 0);
  if (typeof prompt !== 'string' && !isIds)
    throw bad(
      'prompt',
      'prompt must be a string, a one-string array or an array of token ids (one prompt per request)',
    );
  if (typeof prompt === 'string' && prompt.length === 0) throw bad('prompt', 'prompt must not be empty');
  if (body.suffix !== undefined && body.suffix !== null) throw bad('suffix', 'suffix is not supported');
  const bestOf = number(body, 'best_of', 1, 128, true);
  if (bestOf !== undefined && bestOf !== 1) throw bad('best_of', 'best_of > 1 is not supported');
  return {
    model,
    modelField: body.model as string,
    prompt: prompt as string | number[],
    echo: bool(body, 'echo') ?? false,
    options: sampling(body),
    ...streaming(body),
  };
}

/** Identity of one response: its id, creation time and the model field echoed. */
export interface ResponseMeta {
  id: string;
  created: number;
  model: string;
}

/**
 * A fresh response identity (`chatcmpl-…` / `cmpl-…`).
 * @example
 * const meta = responseMeta('chat', 'tiny@production');
 */
export function responseMeta(kind: 'chat' | 'completion', model: string, now = Date.now()): ResponseMeta {
  return {
    id: `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${randomBytes(12).toString('hex')}`,
    created: Math.floor(now / 1000),
    model,
  };
}

/**
 * Starts generation for a chat request: renders the chat template, then calls the engine. Throws
 * (before any event) InvalidArgumentError for a template refusal or a prompt that does not fit.
 * @example
 * const events = startChat(engine, req, { signal });
 */
export function startChat(
  engine: TextEngine,
  request: ChatRequest,
  extra: Pick<GenerateRequest, 'signal' | 'deadline'> = {},
): AsyncGenerator<GenerateEvent> {
  const prompt = engine.tokenizer.applyChatTemplate(request.messages);
  return engine.generate({ ...request.options, ...extra, prompt });
}

/**
 * Starts generation for a completion request. Throws before any event like {@link startChat}.
 * @example
 * const events = startCompletion(engine, req, { deadline });
 */
export function startCompletion(
  engine: TextEngine,
  request: CompletionRequest,
  extra: Pick<GenerateRequest, 'signal' | 'deadline'> = {},
): AsyncGenerator<GenerateEvent> {
  return engine.generate({ ...request.options, ...extra, prompt: request.prompt });
}

/** OpenAI finish reasons: an abort (the client left) reads as a cut-short completion. */
export function openAIFinishReason(reason: FinishReason): 'stop' | 'length' {
  return reason === 'stop' ? 'stop' : 'length';
}

/** OpenAI's usage object. */
export function openAIUsage(usage: Usage) {
  return {
    prompt_tokens: usage.promptTokens,
    completion_tokens: usage.completionTokens,
    total_tokens: usage.totalTokens,
  };
}

async function finish(
  events: AsyncIterable<GenerateEvent>,
): Promise<Extract<GenerateEvent, { type: 'done' }>> {
  for await (const event of events) if (event.type === 'done') return event;
  throw new MaasError('internal', 'generation ended without a result');
}

/**
 * The non-streamed `chat.completion` object.
 * @example
 * res.end(JSON.stringify(await chatCompletion(startChat(engine, req), meta)));
 */
export async function chatCompletion(events: AsyncIterable<GenerateEvent>, meta: ResponseMeta) {
  const done = await finish(events);
  return {
    id: meta.id,
    object: 'chat.completion' as const,
    created: meta.created,
    model: meta.model,
    choices: [
      {
        index: 0,
        message: { role: 'assistant' as const, content: done.text, refusal: null },
        logprobs: null,
        finish_reason: openAIFinishReason(done.finishReason),
      },
    ],
    usage: openAIUsage(done.usage),
  };
}

/**
 * The non-streamed `text_completion` object (`echo` prepends the prompt text).
 * @example
 * const body = await textCompletion(startCompletion(engine, req), meta);
 */
export async function textCompletion(events: AsyncIterable<GenerateEvent>, meta: ResponseMeta, echo = '') {
  const done = await finish(events);
  return {
    id: meta.id,
    object: 'text_completion' as const,
    created: meta.created,
    model: meta.model,
    choices: [
      {
        index: 0,
        text: echo + done.text,
        logprobs: null,
        finish_reason: openAIFinishReason(done.finishReason),
      },
    ],
    usage: openAIUsage(done.usage),
  };
}

/**
 * The streamed `chat.completion.chunk` objects, as OpenAI sends them: a first chunk with the
 * assistant role, one per released piece of text, a last one with the finish reason and, with
 * `include_usage`, a final one with `choices: []` and the usage (the others carry `usage: null`).
 * Encode with `sseStream(…, { done: true })` for the `data: [DONE]` terminator.
 * @example
 * for await (const s of sseStream(chatCompletionChunks(events, meta, req.includeUsage), { done: true })) write(s);
 */
export async function* chatCompletionChunks(
  events: AsyncIterable<GenerateEvent>,
  meta: ResponseMeta,
  includeUsage = false,
) {
  const base = {
    id: meta.id,
    object: 'chat.completion.chunk' as const,
    created: meta.created,
    model: meta.model,
  };
  const usage = includeUsage ? { usage: null } : {};
  const chunk = (delta: Record<string, string>, finishReason: 'stop' | 'length' | null) => ({
    ...base,
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
    ...usage,
  });
  yield chunk({ role: 'assistant', content: '' }, null);
  for await (const event of events) {
    if (event.type === 'token') {
      if (event.text) yield chunk({ content: event.text }, null);
      continue;
    }
    yield chunk({}, openAIFinishReason(event.finishReason));
    if (includeUsage) yield { ...base, choices: [], usage: openAIUsage(event.usage) };
  }
}

/**
 * The streamed `text_completion` chunks of `/v1/completions` (same framing as chat).
 * @example
 * for await (const s of sseStream(textCompletionChunks(events, meta), { done: true })) write(s);
 */
export async function* textCompletionChunks(
  events: AsyncIterable<GenerateEvent>,
  meta: ResponseMeta,
  includeUsage = false,
  echo = '',
) {
  const base = { id: meta.id, object: 'text_completion' as const, created: meta.created, model: meta.model };
  const usage = includeUsage ? { usage: null } : {};
  const chunk = (text: string, finishReason: 'stop' | 'length' | null) => ({
    ...base,
    choices: [{ index: 0, text, logprobs: null, finish_reason: finishReason }],
    ...usage,
  });
  if (echo) yield chunk(echo, null);
  for await (const event of events) {
    if (event.type === 'token') {
      if (event.text) yield chunk(event.text, null);
      continue;
    }
    yield chunk('', openAIFinishReason(event.finishReason));
    if (includeUsage) yield { ...base, choices: [], usage: openAIUsage(event.usage) };
  }
}

const ERROR_TYPES: Record<number, string> = {
  400: 'invalid_request_error',
  401: 'authentication_error',
  403: 'permission_error',
  404: 'not_found_error',
  409: 'conflict_error',
  413: 'invalid_request_error',
  422: 'invalid_request_error',
  429: 'rate_limit_error',
  503: 'service_unavailable_error',
};

/**
 * Status and OpenAI-shaped body for any thrown value; 5xx hide internal messages.
 * @example
 * const { status, body } = openAIError(error); // 400, { error: { message, type: 'invalid_request_error', param: 'messages', code: null } }
 */
export function openAIError(error: unknown): { status: number; body: OpenAIErrorBody } {
  const status = httpStatusOf(error);
  const known = error instanceof MaasError && status < 500;
  const param = error instanceof OpenAIRequestError ? error.param : null;
  const code = error instanceof OpenAIRequestError ? error.code : status === 404 ? 'model_not_found' : null;
  return {
    status,
    body: {
      error: {
        message: known ? (error as Error).message : 'internal error; see the server logs',
        type: ERROR_TYPES[status] ?? (status >= 500 ? 'server_error' : 'invalid_request_error'),
        param,
        code,
      },
    },
  };
}

/**
 * The `GET /v1/models` list.
 * @example
 * modelList([{ id: 'tiny', created: 1700000000 }]);
 */
export function modelList(models: readonly { id: string; created: number }[]) {
  return {
    object: 'list' as const,
    data: models.map((m) => ({ id: m.id, object: 'model' as const, created: m.created, owned_by: 'maas' })),
  };
}
