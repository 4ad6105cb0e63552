/**
 * The text-generation routes over one request: OpenAI-compatible `/v1/chat/completions`,
 * `/v1/completions`, `/v1/models`, and the OIP generate extension `/v2/models/{name}[/versions/{v}]
 * /generate[_stream]`. Transport-neutral: takes method, path and body text, returns a status,
 * headers and either a body or a stream of SSE text; the Lambda streaming handler and the local
 * server write it out. Model resolution (versions, aliases, canary split) is the caller's.
 */
import { InvalidArgumentError, NotFoundError } from '../errors';
import type { DoneEvent } from './metrics';
import { oipError, oipGenerateResponse, oipGenerateStream, parseOipGenerateRequest } from './oip-generate';
import {
  chatCompletion,
  chatCompletionChunks,
  type ModelReference,
  modelList,
  openAIError,
  parseChatRequest,
  parseCompletionRequest,
  responseMeta,
  startChat,
  startCompletion,
  type TextEngine,
  textCompletion,
  textCompletionChunks,
} from './openai';
import { SSE_DONE, SSE_HEADERS, sseEvent, sseStream } from './sse';

/** A resolved text model: the engine and the version that answers. */
export interface ResolvedTextModel {
  engine: TextEngine;
  name: string;
  version: number;
  /** The alias the request was routed through, if any (monitoring keeps routes apart). */
  alias?: string;
}

/** How routes find models (the predict side's version / alias / canary resolution). */
export interface TextModelResolver {
  /** NotFoundError when there is no such model or it is not a text-generation model. */
  resolve(ref: ModelReference): Promise<ResolvedTextModel>;
  /** Text models for `GET /v1/models`. */
  list(): Promise<{ id: string; created: number }[]>;
}

/** Options of {@link handleGenerateRequest}. */
export interface GenerateRouteOptions {
  /** Aborting stops generation (the client disconnected). */
  signal?: AbortSignal;
  /** Epoch ms after which generation ends with finish reason "length". */
  deadline?: number;
  /** Called once per finished generation with the model that answered (metrics). */
  onDone?: (
    done: DoneEvent,
    model: { name: string; version: number; alias?: string },
    prompt: string | readonly number[],
  ) => void;
}

/** One request, transport-neutral. */
export interface GenerateHttpRequest {
  method: string;
  path: string;
  /** Body text (UTF-8), if any. */
  body?: string | undefined;
}

/** A reply: a whole body, or SSE text produced while generating. */
export type GenerateHttpReply =
  | { status: number; headers: Record<string, string>; body: string }
  | { status: number; headers: Record<string, string>; stream: AsyncIterable<string> };

const JSON_HEADERS = { 'content-type': 'application/json' };
const OIP = /^\/v2\/models\/([^/]+)(?:\/versions\/([^/]+))?\/(generate|generate_stream)$/;

/**
 * Whether a path is one of these routes (for a gateway deciding where a request goes).
 * @example
 * isGenerateRoute('/v1/chat/completions'); // true
 */
export function isGenerateRoute(path: string): boolean {
  return (
    path === '/v1/chat/completions' || path === '/v1/completions' || path === '/v1/models' || OIP.test(path)
  );
}

function parseBody(text: string | undefined): unknown {
  if (text === undefined || text === '')
    throw new InvalidArgumentError('the request body is empty; send JSON');
  try {
    return JSON.parse(text);
  } catch {
    throw new InvalidArgumentError('the request body is not valid JSON');
  }
}

/** OpenAI streams report a failure after the 200 as an error event, then end. */
async function* guarded(chunks: AsyncIterable<unknown>): AsyncGenerator<string> {
  try {
    for await (const text of sseStream(chunks)) yield text;
  } catch (error) {
    yield sseEvent(openAIError(error).body);
  }
  yield SSE_DONE;
}

/**
 * Answers one request. Validation, resolution and the context check all happen before the reply
 * is returned, so every such failure is a proper 4xx; a stream only starts once generation has.
 * @example
 * const reply = await handleGenerateRequest({ method: 'POST', path: '/v1/chat/completions', body }, resolver, { signal });
 */
export async function handleGenerateRequest(
  request: GenerateHttpRequest,
  resolver: TextModelResolver,
  options: GenerateRouteOptions = {},
): Promise<GenerateHttpReply> {
  const { onDone, ...extra } = options;
  // Wraps a resolved model's engine so the finished generation is reported, whichever route ran it.
  const observed = (model: ResolvedTextModel): TextEngine => ({
    tokenizer: model.engine.tokenizer,
    generate: (request) => {
      const events = model.engine.generate(request); // throws before any event: a 4xx
      if (!onDone) return events;
      return (async function* () {
        for await (const event of events) {
          if (event.type === 'done')
            onDone(
              event,
              {
                name: model.name,
                version: model.version,
                ...(model.alias !== undefined ? { alias: model.alias } : {}),
              },
              request.prompt,
            );
          yield event;
        }
      })();
    },
  });
  const json = (status: number, body: unknown) => ({
    status,
    headers: JSON_HEADERS,
    body: JSON.stringify(body),
  });
  const oip = OIP.exec(request.path);
  if (oip) {
    try {
      if (request.method !== 'POST')
        throw new NotFoundError(`${request.method} ${request.path} is not a route; use POST`);
      const body = parseOipGenerateRequest(parseBody(request.body));
      const version = oip[2];
      if (version !== undefined && !/^[1-9]\d{0,8}$/.test(version))
        throw new InvalidArgumentError(`version "${version}" is not a positive integer`);
      const name = decodeURIComponent(oip[1] ?? '');
      const model = await resolver.resolve(version ? { name, version: Number(version) } : { name });
      const events = observed(model).generate({ ...body.options, ...extra, prompt: body.textInput });
      const meta = { name: model.name, version: String(model.version) };
      if (oip[3] === 'generate_stream')
        return {
          status: 200,
          headers: { ...SSE_HEADERS },
          stream: sseStream(oipGenerateStream(events, meta, body.id)),
        };
      return json(200, await oipGenerateResponse(events, meta, body.id));
    } catch (error) {
      const { status, body } = oipError(error);
      return json(status, body);
    }
  }
  try {
    if (request.path === '/v1/models' && request.method === 'GET')
      return json(200, modelList(await resolver.list()));
    if (request.path === '/v1/chat/completions' && request.method === 'POST') {
      const body = parseChatRequest(parseBody(request.body));
      const events = startChat(observed(await resolver.resolve(body.model)), body, extra);
      const meta = responseMeta('chat', body.modelField);
      if (body.stream)
        return {
          status: 200,
          headers: { ...SSE_HEADERS },
          stream: guarded(chatCompletionChunks(events, meta, body.includeUsage)),
        };
      return json(200, await chatCompletion(events, meta));
    }
    if (request.path === '/v1/completions' && request.method === 'POST') {
      const body = parseCompletionRequest(parseBody(request.body));
      const events = startCompletion(observed(await resolver.resolve(body.model)), body, extra);
      const meta = responseMeta('completion', body.modelField);
      const echo = body.echo && typeof body.prompt === 'string' ? body.prompt : '';
      if (body.stream)
        return {
          status: 200,
          headers: { ...SSE_HEADERS },
          stream: guarded(textCompletionChunks(events, meta, body.includeUsage, echo)),
        };
      return json(200, await textCompletion(events, meta, echo));
    }
    throw new NotFoundError(`${request.method} ${request.path} is not a route`);
  } catch (error) {
    const { status, body } = openAIError(error);
    return json(status, body);
  }
}
