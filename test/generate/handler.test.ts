import { mkdtempSync, rmSync } from 'node:fs';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultChain, writeTextModelFolder } from '../../dev/text-model';
import { createGenerateHandler } from '../../functions/generate/handler';
import { installLambdaStreamingShim, serveStreamingHandler } from '../../functions/generate/local-server';
import { NotFoundError } from '../../shared/errors';
import {
  type GenerateEvent,
  type GenerateRequest,
  loadTextGenerator,
  type TextGenerator,
} from '../../shared/generate/engine';
import { folderResolver } from '../../shared/generate/folders';
import type { TextEngine } from '../../shared/generate/openai';
import type { TextModelResolver } from '../../shared/generate/routes';
import { MemoryRequestMetrics } from '../../shared/request-metrics';

let root: string;
let engine: TextGenerator;
const servers: Server[] = [];
const finished: { at: number; event: Extract<GenerateEvent, { type: 'done' }> }[] = [];

async function* record(events: AsyncGenerator<GenerateEvent>): AsyncGenerator<GenerateEvent> {
  for await (const e of events) {
    if (e.type === 'done') finished.push({ at: performance.now(), event: e });
    yield e;
  }
}

function resolver(): TextModelResolver {
  const recorded: TextEngine = {
    tokenizer: engine.tokenizer,
    generate: (request: GenerateRequest) => record(engine.generate(request)), // throws before any event, as engine.generate
  };
  return {
    resolve: async (ref) => {
      if (ref.name !== 'tiny') throw new NotFoundError(`model ${ref.name} not found`);
      return { engine: recorded, name: 'tiny', version: 3 };
    },
    list: async () => [{ id: 'tiny', created: 1_700_000_000 }],
  };
}

const metrics = new MemoryRequestMetrics();

async function serve(deadlineMarginMs: number, timeoutMs = 900_000): Promise<OpenAI> {
  const handler = createGenerateHandler(resolver(), {
    settings: { defaultMaxTokens: 1024, deadlineMarginMs },
    metrics,
  });
  const { server, url } = await serveStreamingHandler(handler, { port: 0, timeoutMs });
  servers.push(server);
  return new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0 });
}

let client: OpenAI;

beforeAll(async () => {
  installLambdaStreamingShim(); // before the handler is built: streamifyResponse sees the runtime
  root = mkdtempSync(join(tmpdir(), 'maas-generate-handler-'));
  writeTextModelFolder(join(root, 'tiny'), { chain: defaultChain() });
  engine = await loadTextGenerator(join(root, 'tiny'), { sessionOptions: { logSeverityLevel: 3 } });
  client = await serve(0);
});

afterAll(async () => {
  for (const s of servers) s.close();
  await engine?.session.release();
  rmSync(root, { recursive: true, force: true });
});

describe('the Lambda streaming handler through a Function URL stand-in', () => {
  it('streams chat chunks to the openai client while generating', async () => {
    const stream = await client.chat.completions.create({
      model: 'tiny@production',
      messages: [{ role: 'user', content: 'Hello world' }],
      max_tokens: 60,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    });
    const arrivals: number[] = [];
    let text = '';
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const chunk of stream) {
      arrivals.push(performance.now());
      text += chunk.choices[0]?.delta?.content ?? '';
      if (chunk.usage) usage = chunk.usage;
    }
    const done = finished.at(-1);
    expect(usage?.completion_tokens).toBe(60);
    expect(text).toBe(done?.event.text);
    expect(arrivals[1]).toBeLessThan(done?.at ?? 0); // the first token arrived before generation ended
    // Metrics per model and version: counts and timings only, never text.
    const dims = { model: 'tiny', version: '3' };
    expect(metrics.sum('Generations', { ...dims, finish_reason: 'length' })).toBe(1);
    expect(metrics.sum('CompletionTokens', dims)).toBe(60);
    expect(metrics.sum('PromptTokens', dims)).toBe(done?.event.usage.promptTokens);
    expect(metrics.points('TimeToFirstToken', dims)[0]?.value).toBeCloseTo(
      done?.event.timing.timeToFirstTokenMs ?? -1,
    );
    expect(metrics.points('TokensPerSecond', dims)[0]?.value).toBeGreaterThan(0);
    expect(JSON.stringify(metrics.published)).not.toContain('Hello');
  });

  it('answers non-streamed completions, model lists and OpenAI-shaped errors', async () => {
    const models = await client.models.list();
    expect(models.data[0]).toMatchObject({ id: 'tiny', object: 'model', owned_by: 'maas' });
    const r = await client.completions.create({
      model: 'tiny',
      prompt: 'Grüße aus Köln',
      max_tokens: 8,
      temperature: 0,
    });
    expect(r.choices[0]?.text).toContain('🦙');
    expect(r.usage?.completion_tokens).toBe(8);
    const missing = await client.completions.create({ model: 'other', prompt: 'x' }).catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(OpenAI.NotFoundError);
    const bad = await client.completions
      .create({ model: 'tiny', prompt: 'x', top_p: 2 })
      .catch((e: unknown) => e);
    expect(bad).toMatchObject({ status: 400, param: 'top_p' });
  });

  it('stops generating when the client disconnects', async () => {
    const before = finished.length;
    const stream = await client.completions.create({
      model: 'tiny',
      prompt: 'Hello world',
      max_tokens: 110,
      temperature: 0,
      stream: true,
    });
    let seen = 0;
    for await (const c of stream) if (c.choices[0]?.text && ++seen === 2) stream.controller.abort();
    for (let i = 0; i < 100 && finished.length === before; i++) await new Promise((r) => setTimeout(r, 20));
    expect(finished.at(-1)?.event.finishReason).toBe('abort');
    expect(finished.at(-1)?.event.usage.completionTokens).toBeLessThan(110);
  });

  it('ends before the function time limit with finish_reason length', async () => {
    const short = await serve(900_000 - 150); // 150 ms of generation time left
    const r = await short.completions.create({
      model: 'tiny',
      prompt: 'Hello world',
      max_tokens: 120,
      temperature: 0,
    });
    expect(r.choices[0]?.finish_reason).toBe('length');
    expect(r.usage?.completion_tokens).toBeLessThan(120);
    expect(r.usage?.completion_tokens).toBeGreaterThan(0);
  });

  it('serves the OIP generate_stream route with the resolved version', async () => {
    const base = (client.baseURL as string).replace(/\/v1$/, '');
    const res = await fetch(`${base}/v2/models/tiny/generate_stream`, {
      method: 'POST',
      body: JSON.stringify({ text_input: 'Grüße aus Köln', parameters: { max_tokens: 6, temperature: 0 } }),
    });
    expect(res.status).toBe(200);
    const events = (await res.text())
      .split('\n\n')
      .filter((s) => s.startsWith('data: '))
      .map((s) => JSON.parse(s.slice(6)) as Record<string, string>);
    expect(events[0]).toMatchObject({ model_name: 'tiny', model_version: '3' });
    expect(events.at(-1)?.finish_reason).toBe('length');
    const missing = await fetch(`${base}/v2/models/nope/generate`, {
      method: 'POST',
      body: '{"text_input":"x"}',
    });
    expect(missing.status).toBe(404);
  });
});

describe('folderResolver', () => {
  it('serves each sub-folder as a model at version 1 and refuses others', async () => {
    const folders = folderResolver(root, { sessionOptions: { logSeverityLevel: 3 } });
    expect((await folders.list()).map((m) => m.id)).toEqual(['tiny']);
    const a = await folders.resolve({ name: 'tiny', alias: 'production' });
    expect(a).toMatchObject({ name: 'tiny', version: 1 });
    expect((await folders.resolve({ name: 'tiny' })).engine).toBe(a.engine); // loaded once
    await expect(folders.resolve({ name: 'tiny', version: 2 })).rejects.toThrow(NotFoundError);
    await expect(folders.resolve({ name: 'other' })).rejects.toThrow(/model other not found/);
    await (a.engine as TextGenerator).session.release();
  });
});
