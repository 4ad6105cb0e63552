/**
 * The Open Inference Protocol generate extension (Triton, KServe) as pure mappings:
 * `POST v2/models/{m}[/versions/{v}]/generate` bodies `{text_input, parameters}` → engine requests,
 * events → `{model_name, model_version, text_output}` objects, streamed by `generate_stream` as
 * SSE. The HTTP status is fixed by the first event, so an error after it is sent as an event
 * `{"error": "…"}` (Triton's convention).
 */
import { httpStatusOf, InvalidArgumentError, MaasError } from '../errors';
import type { GenerateEvent, GenerateRequest } from './engine';
import { parseCompletionRequest } from './openai';

/** A validated generate request. */
export interface OipGenerateRequest {
  textInput: string;
  /** Echoed as `id` when given. */
  id?: string;
  options: Omit<GenerateRequest, 'prompt'>;
}

/** Which model answered (the resolved name and version). */
export interface OipModelMeta {
  name: string;
  version: string;
}

/**
 * Validates a generate body. `parameters` takes the OpenAI sampling names (`max_tokens`,
 * `temperature`, `top_p`, `top_k`, `seed`, `stop`, penalties), as Triton's and KServe's
 * generate endpoints do.
 * @example
 * parseOipGenerateRequest({ text_input: 'Hello', parameters: { max_tokens: 8, temperature: 0 } });
 */
export function parseOipGenerateRequest(input: unknown): OipGenerateRequest {
  if (typeof input !== 'object' || input === null || Array.isArray(input))
    throw new InvalidArgumentError('the request body must be a JSON object');
  const body = input as Record<string, unknown>;
  if (typeof body.text_input !== 'string' || body.text_input.length === 0)
    throw new InvalidArgumentError('text_input must be a non-empty string');
  const parameters = body.parameters ?? {};
  if (typeof parameters !== 'object' || parameters === null || Array.isArray(parameters))
    throw new InvalidArgumentError('parameters must be an object');
  const { stream: _stream, ...rest } = parameters as Record<string, unknown>;
  let options: Omit<GenerateRequest, 'prompt'>;
  try {
    // The same validation as /v1/completions, on the parameters object.
    options = parseCompletionRequest({ ...rest, model: 'x', prompt: body.text_input }).options;
  } catch (error) {
    throw new InvalidArgumentError(`parameters: ${(error as Error).message}`);
  }
  return { textInput: body.text_input, ...(typeof body.id === 'string' ? { id: body.id } : {}), options };
}

function output(meta: OipModelMeta, text: string, id: string | undefined, finishReason?: string) {
  return {
    ...(id !== undefined ? { id } : {}),
    model_name: meta.name,
    model_version: meta.version,
    text_output: text,
    ...(finishReason !== undefined ? { finish_reason: finishReason } : {}),
  };
}

/**
 * The `generate` response: the whole completion (plus its finish reason).
 * @example
 * const body = await oipGenerateResponse(engine.generate({ prompt: req.textInput, ...req.options }), { name: 'tiny', version: '3' });
 */
export async function oipGenerateResponse(
  events: AsyncIterable<GenerateEvent>,
  meta: OipModelMeta,
  id?: string,
) {
  for await (const event of events)
    if (event.type === 'done') return output(meta, event.text, id, event.finishReason);
  throw new MaasError('internal', 'generation ended without a result');
}

/**
 * The `generate_stream` events: one per released piece of text, the last with the finish reason;
 * an error thrown mid-stream becomes a final `{error}` event. Encode with `sseStream`.
 * @example
 * for await (const s of sseStream(oipGenerateStream(events, meta))) write(s);
 */
export async function* oipGenerateStream(
  events: AsyncIterable<GenerateEvent>,
  meta: OipModelMeta,
  id?: string,
) {
  try {
    for await (const event of events) {
      if (event.type === 'token') {
        if (event.text) yield output(meta, event.text, id);
      } else yield output(meta, '', id, event.finishReason);
    }
  } catch (error) {
    yield { error: oipError(error).body.error };
  }
}

/**
 * Status and OIP error body (`{"error": "message"}`) for any thrown value; 5xx hide internals.
 * @example
 * const { status, body } = oipError(new InvalidArgumentError('text_input must be a non-empty string'));
 */
export function oipError(error: unknown): { status: number; body: { error: string } } {
  const status = httpStatusOf(error);
  const message =
    error instanceof MaasError && status < 500 ? error.message : 'internal error; see the server logs';
  return { status, body: { error: message } };
}
