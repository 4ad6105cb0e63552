import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultChain, writeTextModelFolder } from '../../dev/text-model';
import { InvalidArgumentError, NotFoundError } from '../../shared/errors';
import { type GenerateEvent, loadTextGenerator, type TextGenerator } from '../../shared/generate/engine';
import {
  oipError,
  oipGenerateResponse,
  oipGenerateStream,
  parseOipGenerateRequest,
} from '../../shared/generate/oip-generate';
import {
  chatCompletion,
  chatCompletionChunks,
  type ModelReference,
  modelList,
  openAIError,
  parseChatRequest,
  parseCompletionRequest,
  parseModelField,
  responseMeta,
  startChat,
  startCompletion,
  textCompletion,
  textCompletionChunks,
} from '../../shared/generate/openai';
import { SSE_HEADERS, sseStream } from '../../shared/generate/sse';

let root: string;
let engine: TextGenerator;
let server: Server;
let client: OpenAI;
let base: string;
/** Server-side record of each generation: when it ended and how. */
const finished: { at: number; event: Extract<GenerateEvent, { type: 'done' }> }[] = [];

async function* record(events: AsyncGenerator<GenerateEvent>): AsyncGenerator<GenerateEvent> {
  for await (const e of events) {
    if (e.type === 'done') finished.push({ at: performance.now(), event: e });
    yield e;
  }
}

/** The test's stand-in for predict's resolution: one model, 'tiny', version 1 (any alias). */
function resolve(ref: ModelReference): TextGenerator {
  if (
    ref.name !== 'tiny' ||
    (ref.version !== undefined && ref.version !== 1) ||
    (ref.alias !== undefined && ref.alias !== 'production')
  )
    throw new NotFoundError(`model ${JSON.stringify(ref)} not found`);
  return engine;
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new InvalidArgumentError('the request body is not valid JSON');
  }
}

async function stream(res: ServerResponse, chunks: AsyncIterable<unknown>, done: boolean): Promise<void> {
  res.writeHead(200, SSE_HEADERS);
  for await (const text of sseStream(chunks, { done })) if (!res.destroyed) res.write(text);
  res.end();
}

/** A tiny node:http server over the openai.ts / oip-generate.ts mappings, as predict will wire them. */
async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://localhost');
  const controller = new AbortController();
  res.on('close', () => {
    if (!res.writableFinished) controller.abort(); // the client went away
  });
  const json = (status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  const oip = /^\/v2\/models\/([^/]+)(?:\/versions\/(\d+))?\/(generate|generate_stream)$/.exec(url.pathname);
  if (oip) {
    try {
      const request = parseOipGenerateRequest(await readJson(req));
      const gen = resolve({
        name: decodeURIComponent(oip[1] ?? ''),
        ...(oip[2] ? { version: Number(oip[2]) } : {}),
      });
      const events = record(
        gen.generate({ ...request.options, prompt: request.textInput, signal: controller.signal }),
      );
      const meta = { name: 'tiny', version: '1' };
      if (oip[3] === 'generate_stream') await stream(res, oipGenerateStream(events, meta, request.id), false);
      else json(200, await oipGenerateResponse(events, meta, request.id));
    } catch (error) {
      const { status, body } = oipError(error);
      json(status, body);
    }
    return;
  }
  try {
    if (req.method === 'GET' && url.pathname === '/v1/models')
      return json(200, modelList([{ id: 'tiny', created: 1_700_000_000 }]));
    if (req.method === 'POST' && url.pathname === '/v1/chat/completions') {
      const request = parseChatRequest(await readJson(req));
      const events = record(startChat(resolve(request.model), request, { signal: controller.signal }));
      const meta = responseMeta('chat', request.modelField);
      if (request.stream)
        return await stream(res, chatCompletionChunks(events, meta, request.includeUsage), true);
      return json(200, await chatCompletion(events, meta));
    }
    if (req.method === 'POST' && url.pathname === '/v1/completions') {
      const request = parseCompletionRequest(await readJson(req));
      const events = record(startCompletion(resolve(request.model), request, { signal: controller.signal }));
      const meta = responseMeta('completion', request.modelField);
      const echo = request.echo && typeof request.prompt === 'string' ? request.prompt : '';
      if (request.stream)
        return await stream(res, textCompletionChunks(events, meta, request.includeUsage, echo), true);
      return json(200, await textCompletion(events, meta, echo));
    }
    throw new NotFoundError(`no route ${req.method} ${url.pathname}`);
  } catch (error) {
    const { status, body } = openAIError(error);
    json(status, body);
  }
}

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'maas-openai-'));
  writeTextModelFolder(join(root, 'tiny'), { chain: defaultChain() });
  engine = await loadTextGenerator(join(root, 'tiny'), { sessionOptions: { logSeverityLevel: 3 } });
  server = createServer((req, res) => void handle(req, res));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'unused', maxRetries: 0 });
});

afterAll(async () => {
  server?.close();
  await engine?.session.release();
  rmSync(root, { recursive: true, force: true });
});

describe('the official openai client against the mapping', () => {
  it('lists models', async () => {
    const page = await client.models.list();
    expect(page.data.map((m) => m.id)).toEqual(['tiny']);
  });

  it('chat completions: the reply is the greedy completion of the chat-templated prompt, with usage', async () => {
    const messages = [{ role: 'user' as const, content: 'Grüße aus Köln' }];
    const reply = await client.chat.completions.create({
      model: 'tiny@production',
      messages,
      max_tokens: 12,
      temperature: 0,
    });
    const prompt = engine.tokenizer.applyChatTemplate(messages);
    let expected = '';
    for await (const e of engine.generate({ prompt, maxTokens: 12, temperature: 0 }))
      if (e.type === 'done') expected = e.text;
    expect(reply.object).toBe('chat.completion');
    expect(reply.model).toBe('tiny@production');
    expect(reply.id).toMatch(/^chatcmpl-/);
    expect(reply.choices[0]?.message).toMatchObject({ role: 'assistant', content: expected });
    expect(reply.choices[0]?.finish_reason).toBe('length');
    const promptTokens = engine.tokenizer.encode(prompt).length;
    expect(reply.usage).toEqual({
      prompt_tokens: promptTokens,
      completion_tokens: 12,
      total_tokens: promptTokens + 12,
    });
  });

  it('streams chat chunks as OpenAI does, the first one before generation ends', async () => {
    const started = performance.now();
    const stream = await client.chat.completions.create({
      model: 'tiny:1',
      messages: [{ role: 'user', content: 'Hello world' }],
      max_tokens: 60,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    });
    const arrivals: number[] = [];
    const chunks: OpenAI.Chat.Completions.ChatCompletionChunk[] = [];
    for await (const chunk of stream) {
      arrivals.push(performance.now());
      chunks.push(chunk);
    }
    const done = finished.at(-1);
    expect(done?.event.usage.completionTokens).toBe(60);
    expect(arrivals[1]).toBeGreaterThan(started);
    // The first content chunk reached the client while the server was still generating.
    expect(arrivals[1]).toBeLessThan(done?.at ?? 0);
    expect(done?.event.timing.totalMs ?? 0).toBeGreaterThan(20);
    expect(chunks[0]?.choices[0]?.delta).toEqual({ role: 'assistant', content: '' });
    expect(new Set(chunks.map((c) => c.id)).size).toBe(1);
    expect(new Set(chunks.map((c) => c.created)).size).toBe(1);
    expect(chunks.every((c) => c.object === 'chat.completion.chunk')).toBe(true);
    const usage = chunks.at(-1);
    expect(usage?.choices).toEqual([]);
    expect(usage?.usage?.completion_tokens).toBe(60);
    const last = chunks.at(-2);
    expect(last?.choices[0]?.finish_reason).toBe('length');
    expect(chunks.slice(0, -2).every((c) => c.choices[0]?.finish_reason === null && c.usage === null)).toBe(
      true,
    );
    const text = chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');
    expect(text).toBe(done?.event.text);
  });

  it('completions, streamed and not, agree; stop strings give finish_reason stop', async () => {
    const body = { model: 'tiny', prompt: 'Grüße aus Köln', max_tokens: 20, temperature: 0 };
    const whole = await client.completions.create(body);
    expect(whole.object).toBe('text_completion');
    expect(whole.choices[0]?.finish_reason).toBe('length');
    const text = whole.choices[0]?.text ?? '';
    expect(text).toContain('🦙𝄞');
    const pieces: string[] = [];
    for await (const c of await client.completions.create({ ...body, stream: true }))
      pieces.push(c.choices[0]?.text ?? '');
    expect(pieces.join('')).toBe(text);
    expect(pieces.filter((p) => p).length).toBeGreaterThan(3);
    const stopped = await client.completions.create({ ...body, stop: ['𝄞'] });
    expect(stopped.choices[0]).toMatchObject({
      text: text.slice(0, text.indexOf('𝄞')),
      finish_reason: 'stop',
    });
    const seeded = { ...body, temperature: 1, seed: 42 };
    const a = await client.completions.create(seeded);
    const b = await client.completions.create(seeded);
    expect(a.choices[0]?.text).toBe(b.choices[0]?.text);
  });

  it("errors arrive in OpenAI shape as the client's typed errors", async () => {
    const bad = await client.chat.completions
      .create({ model: 'tiny', messages: [], max_tokens: 4 })
      .catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(OpenAI.BadRequestError);
    expect(bad).toMatchObject({ status: 400, param: 'messages', type: 'invalid_request_error' });
    const temp = await client.chat.completions
      .create({ model: 'tiny', messages: [{ role: 'user', content: 'x' }], temperature: 3 })
      .catch((e: unknown) => e);
    expect(temp).toMatchObject({ status: 400, param: 'temperature' });
    const missing = await client.chat.completions
      .create({ model: 'nope', messages: [{ role: 'user', content: 'x' }] })
      .catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(OpenAI.NotFoundError);
    expect(missing).toMatchObject({ code: 'model_not_found' });
    const long = await client.completions
      .create({ model: 'tiny', prompt: 'word '.repeat(300), stream: true })
      .catch((e: unknown) => e);
    expect(long).toBeInstanceOf(OpenAI.BadRequestError);
    expect((long as Error).message).toMatch(/context is 128 tokens/);
  });

  it('a client that disconnects mid-stream stops generation', async () => {
    const before = finished.length;
    const stream = await client.completions.create({
      model: 'tiny',
      prompt: 'Hello world',
      max_tokens: 100,
      temperature: 0,
      stream: true,
    });
    let seen = 0;
    for await (const c of stream) {
      if (c.choices[0]?.text && ++seen === 3) stream.controller.abort();
    }
    for (let i = 0; i < 100 && finished.length === before; i++) await new Promise((r) => setTimeout(r, 20));
    const done = finished.at(-1)?.event;
    expect(done?.finishReason).toBe('abort');
    expect(done?.usage.completionTokens).toBeLessThan(100);
  });
});

describe('OIP generate', () => {
  it('generate and generate_stream answer text_output; errors are {error}', async () => {
    const body = { text_input: 'Grüße aus Köln', parameters: { max_tokens: 10, temperature: 0 } };
    const res = await fetch(`${base}/v2/models/tiny/versions/1/generate`, {
      method: 'POST',
      body: JSON.stringify(body),
    });
    expect(res.status).toBe(200);
    const whole = (await res.json()) as Record<string, string>;
    expect(whole).toMatchObject({ model_name: 'tiny', model_version: '1', finish_reason: 'length' });
    const streamed = await fetch(`${base}/v2/models/tiny/generate_stream`, {
      method: 'POST',
      body: JSON.stringify(body),
    });
    expect(streamed.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const events = (await streamed.text())
      .split('\n\n')
      .filter((s) => s.startsWith('data: '))
      .map((s) => JSON.parse(s.slice(6)) as Record<string, string>);
    expect(events.map((e) => e.text_output).join('')).toBe(whole.text_output);
    expect(events.at(-1)?.finish_reason).toBe('length');
    const bad = await fetch(`${base}/v2/models/tiny/generate`, {
      method: 'POST',
      body: JSON.stringify({ parameters: {} }),
    });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toEqual({ error: 'text_input must be a non-empty string' });
    const badParam = await fetch(`${base}/v2/models/tiny/generate`, {
      method: 'POST',
      body: JSON.stringify({ text_input: 'x', parameters: { top_p: 7 } }),
    });
    expect(((await badParam.json()) as { error: string }).error).toMatch(
      /top_p must be a number between 0 and 1/,
    );
  });
});

describe('parseModelField', () => {
  it('splits name, alias and version, and refuses malformed fields', () => {
    expect(parseModelField('tiny')).toEqual({ name: 'tiny' });
    expect(parseModelField('tiny@canary')).toEqual({ name: 'tiny', alias: 'canary' });
    expect(parseModelField('tiny:12')).toEqual({ name: 'tiny', version: 12 });
    for (const bad of ['', 'tiny@', '@x', 'tiny:0', 'tiny:x', 42])
      expect(() => parseModelField(bad)).toThrow(InvalidArgumentError);
  });
});
