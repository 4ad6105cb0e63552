import { createReadStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultChain, writeTextModelFolder } from '../../dev/text-model';
import {
  installLambdaStreamingShim,
  type StreamingHandler,
  serveStreamingHandler,
} from '../../functions/generate/local-server';
import { type ModelVersion, ModelRegistry as Registry } from '../../shared/registry';
import { FileObjectStore } from '../../shared/store';
import { runMaas } from '../support/cli';
import { type LocalApi, startLocalApi } from '../support/local-api';

const maas = (args: string[], env: Record<string, string>, input = '') => runMaas(args, { env, input });

let dir: string;
let server: Server;
let url: string;

const post = async (route: string, body: unknown) => {
  const res = await fetch(`${url}${route}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  expect(res.status).toBe(200);
  return (await res.json()) as {
    choices: { text?: string; message?: { content: string }; finish_reason: string }[];
    usage: { prompt_tokens: number; completion_tokens: number };
  };
};

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'maas-cli-generate-'));
  const folder = path.join(dir, 'bundle');
  const files = writeTextModelFolder(folder, { chain: defaultChain(), externalData: true });
  const registry = new Registry(new FileObjectStore(path.join(dir, 'store')));
  await registry.registerBundle(
    'tiny',
    files.map((name) => ({ name, body: createReadStream(path.join(folder, name)) })),
  );
  await registry.setAlias('tiny', 'production', 1);
  process.env.MAAS_STORE = `file://${path.join(dir, 'store')}`;
  process.env.MAAS_MODEL_CACHE_DIR = path.join(dir, 'cache');
  process.env.MAAS_METRICS = 'off';
  installLambdaStreamingShim();
  // Imported after the shim and the environment are in place (the handler is built on import).
  const file = path.join(__dirname, '..', '..', 'functions', 'generate', 'lambda.ts');
  const { handler } = (await import(file)) as { handler: StreamingHandler };
  const served = await serveStreamingHandler(handler, { port: 0 });
  server = served.server;
  url = served.url;
});

afterAll(async () => {
  server?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('maas generate / chat', () => {
  it('generate streams the same text as the non-streamed completion, usage on stderr', async () => {
    const prompt = 'Grüße aus Köln';
    const expected = await post('/v1/completions', {
      model: 'tiny@production',
      prompt,
      max_tokens: 16,
      temperature: 0,
    });
    const r = await maas(
      ['generate', 'tiny@production', prompt, '--max-tokens', '16', '--temperature', '0'],
      { MAAS_ENDPOINT: url },
    );
    expect(r.code, r.stderr).toBe(0);
    expect(expected.choices[0]?.text?.length).toBeGreaterThan(0);
    expect(r.stdout).toBe(`${expected.choices[0]?.text}\n`);
    expect(r.stderr).toContain(
      `finish_reason: ${expected.choices[0]?.finish_reason}, prompt_tokens: ${expected.usage.prompt_tokens}, completion_tokens: ${expected.usage.completion_tokens}`,
    );
  });

  it('generate stops at a stop string', async () => {
    const full = await post('/v1/completions', {
      model: 'tiny',
      prompt: ' Köln',
      max_tokens: 16,
      temperature: 0,
    });
    const text = full.choices[0]?.text ?? '';
    const stop = '🦙';
    expect(text).toContain(stop);
    const r = await maas(
      ['generate', 'tiny', ' Köln', '--max-tokens', '16', '--temperature', '0', '--stop', stop],
      {
        MAAS_ENDPOINT: url,
      },
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(`${text.slice(0, text.indexOf(stop))}\n`);
    expect(r.stderr).toContain('finish_reason: stop');
  });

  it('chat keeps the conversation over piped stdin lines and ends at /exit (MAAS_GENERATE_ENDPOINT)', async () => {
    const questions = ['Hallo aus Köln', 'Und weiter?'];
    const messages: { role: string; content: string }[] = [];
    let transcript = '';
    for (const q of questions) {
      messages.push({ role: 'user', content: q });
      const answer = await post('/v1/chat/completions', {
        model: 'tiny',
        messages,
        max_tokens: 8,
        temperature: 0,
      });
      const content = answer.choices[0]?.message?.content ?? '';
      expect(content.length).toBeGreaterThan(0);
      messages.push({ role: 'assistant', content });
      transcript += `${content}\n`;
    }
    // MAAS_ENDPOINT points nowhere: the chat routes must go to MAAS_GENERATE_ENDPOINT.
    const r = await maas(
      ['chat', 'tiny', '--max-tokens', '8', '--temperature', '0'],
      { MAAS_ENDPOINT: 'http://127.0.0.1:9', MAAS_GENERATE_ENDPOINT: url },
      `${questions.join('\n')}\n/exit\nnever sent\n`,
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(transcript);
    expect(r.stderr.match(/finish_reason: length/g)).toHaveLength(2);
  });

  it('reports an unknown model clearly, with exit code 1', async () => {
    const r = await maas(['generate', 'nope', 'hello'], { MAAS_ENDPOINT: url });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^error: .*nope.*\(HTTP 404 model_not_found\)/);
    const chat = await maas(['chat', 'tiny:7'], { MAAS_ENDPOINT: url }, 'hi\n');
    expect(chat.code).toBe(1);
    expect(chat.stderr).toMatch(/HTTP 404 model_not_found/);
  });
});

describe('maas register / show of a text-generation bundle (real API, file store, upload server)', () => {
  let api: LocalApi;
  let work: string;

  beforeAll(async () => {
    work = await mkdtemp(path.join(tmpdir(), 'maas-cli-generate-reg-'));
    // Bundles go through upload sessions: the npm start upload server stands in for S3 here.
    api = await startLocalApi();
  });
  afterAll(async () => {
    await api?.close();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('registration records the text-generation kind; an incomplete folder is refused with its 422', async () => {
    const folder = path.join(work, 'tiny');
    writeTextModelFolder(folder, { vocabSize: 64, hidden: 8, heads: 2, context: 32, externalData: true });
    const env = { MAAS_ENDPOINT: api.gateway.url };
    const r = await maas(['--json', 'register', 'tiny', folder], env);
    expect(r.code, r.stderr).toBe(0);
    const { version } = JSON.parse(r.stdout) as { version: ModelVersion };
    expect(version.textGeneration).toEqual({
      task: 'text-generation',
      kvCache: 'cached',
      layers: 2,
      cacheDatatype: 'FP32',
      contextLength: 32,
      vocabSize: 64,
      chatTemplate: true,
    });
    const shown = await maas(['show', 'tiny', '1'], env);
    expect(shown.code, shown.stderr).toBe(0);
    expect(shown.stdout).toMatch(
      /task: +text-generation \(KV cache: cached, context 32 tokens, chat template\)/,
    );

    await rm(path.join(folder, 'tokenizer.json'));
    const refused = await maas(['register', 'broken', folder], env);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/no tokenizer\.json .*\(HTTP 422/);
    const missing = await maas(['show', 'broken'], env);
    expect(missing.stderr).toMatch(/HTTP 404/);
  });
});
