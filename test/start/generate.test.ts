/**
 * Text generation through `npm start`: the tiny text model bundle registered with the CLI
 * (`maas register NAME FOLDER/`), then the official `openai` client, unmodified, against the
 * public port: chat (whole and streamed, chunks arriving while the model still generates),
 * completions and errors in OpenAI's shape; and predict and management requests still reach
 * serverless-offline through the same port (the front server's proxy).
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { irisReference } from '../../dev/demo/iris';
import { defaultChain, writeTextModelFolder } from '../../dev/text-model';
import { childEnv, freePort, LocalServer, ROOT, runShell, serviceCopy } from './local-server';

const API_KEY = randomBytes(12).toString('hex');
let dir: string;
let server: LocalServer;
let base: string;
let client: OpenAI;

beforeAll(async () => {
  dir = serviceCopy();
  const [httpPort, lambdaPort] = [await freePort(), await freePort()];
  base = `http://127.0.0.1:${httpPort}`;
  const env = childEnv({
    MAAS_PORT: String(httpPort),
    MAAS_LAMBDA_PORT: String(lambdaPort),
    MAAS_API_KEY: API_KEY,
  });
  server = LocalServer.start(dir, env);
  await server.waitUntilReady(`${base}/v2/health/ready`, 170_000);
  const folder = path.join(dir, 'tiny-bundle');
  writeTextModelFolder(folder, { chain: defaultChain(), externalData: true });
  const cli = await runShell(`node ${path.join(ROOT, 'bin/maas.cjs')} register tiny ${folder}/`, dir, {
    ...env,
    MAAS_ENDPOINT: base,
  });
  if (cli.status !== 0)
    throw new Error(`maas register failed:\n${cli.stdout}\n${cli.stderr}\n${server.output.slice(-3000)}`);
  client = new OpenAI({ baseURL: `${base}/v1`, apiKey: API_KEY, maxRetries: 0 });
}, 240_000);

afterAll(async () => {
  await server?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
}, 30_000);

describe('npm start: text generation on the public port', () => {
  const messages = [{ role: 'user' as const, content: 'Grüße aus Köln' }];

  it('chat: whole and streamed give the same greedy text, and the stream really streams', async () => {
    const whole = await client.chat.completions.create({
      model: 'tiny',
      messages,
      max_tokens: 100,
      temperature: 0,
    });
    expect(whole.object).toBe('chat.completion');
    expect(whole.usage?.completion_tokens).toBeGreaterThan(10);
    const started = performance.now();
    const stream = await client.chat.completions.create({
      model: 'tiny',
      messages,
      max_tokens: 100,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    const arrivals: number[] = [];
    let finish: string | null | undefined;
    for await (const chunk of stream) {
      arrivals.push(performance.now());
      text += chunk.choices[0]?.delta.content ?? '';
      finish ??= chunk.choices[0]?.finish_reason;
    }
    expect(text).toBe(whole.choices[0]!.message.content);
    expect(finish).toBe(whole.choices[0]!.finish_reason);
    expect(arrivals.length).toBeGreaterThan(10);
    const total = arrivals.at(-1)! - started;
    const spread = arrivals.at(-1)! - arrivals[0]!;
    console.log(
      `streamed ${arrivals.length} chunks: first after ${(arrivals[0]! - started).toFixed(1)} ms, last after ${total.toFixed(1)} ms`,
    );
    // A buffered response would deliver every chunk at once, at the end.
    expect(spread).toBeGreaterThan(0.25 * total);
  });

  it('completions, and errors in OpenAI shape', async () => {
    const done = await client.completions.create({
      model: 'tiny',
      prompt: 'Grüße aus Köln',
      max_tokens: 8,
      temperature: 0,
    });
    expect(done.object).toBe('text_completion');
    expect(done.choices[0]!.finish_reason).toBe('length');
    expect(done.usage?.completion_tokens).toBe(8);
    const missing = await client.completions.create({ model: 'nope', prompt: 'x' }).catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(OpenAI.NotFoundError);
    expect((missing as InstanceType<typeof OpenAI.NotFoundError>).code).toBe('model_not_found');
    const bad = await client.chat.completions
      .create({ model: 'tiny', messages, temperature: 7 })
      .catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(OpenAI.BadRequestError);
    expect((bad as InstanceType<typeof OpenAI.BadRequestError>).param).toBe('temperature');
  });

  it('predict and management requests still go through the same port', async () => {
    const features: [number, number, number, number] = [5.1, 3.5, 1.4, 0.2];
    const inferred = await fetch(`${base}/v2/models/iris/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ inputs: [{ name: 'input', shape: [1, 4], datatype: 'FP32', data: features }] }),
    });
    expect(inferred.status).toBe(200);
    const out = (await inferred.json()) as { outputs: { name: string; data: number[] }[] };
    const probabilities = out.outputs.find((o) => o.name === 'probabilities')!;
    irisReference(features).forEach((p, i) => expect(probabilities.data[i]).toBeCloseTo(p, 5));
    // The key is still required on mutating routes (checked by the proxied handler).
    const refused = await fetch(`${base}/models/tiny/aliases/production`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ version: 1 }),
    });
    expect(refused.status).toBe(401);
    const versions = await fetch(`${base}/models/tiny/versions`);
    expect(versions.status).toBe(200);
    expect(JSON.stringify(await versions.json())).toContain('"version":1');
  });
});
