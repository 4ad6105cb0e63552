/**
 * Text-generation monitoring: the generate handler's capture records each finished generation
 * (counts and timings; text only when MAAS_CAPTURE_TEXT_SAMPLE opts in), and the monitor aggregates them into the version's report
 * (`generation`) and CloudWatch points — through the official openai client, the real streaming
 * handler, onnxruntime and RGW.
 */
import { createReadStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultChain, writeTextModelFolder } from '../../dev/text-model';
import { createGenerateHandler } from '../../functions/generate/handler';
import { installLambdaStreamingShim, serveStreamingHandler } from '../../functions/generate/local-server';
import { registryTextResolver } from '../../shared/generate/registry-resolver';
import { inferenceSettingsFromEnv } from '../../shared/inference';
import { CaptureObserver, createCaptureObserver } from '../../shared/monitor/capture';
import { monitoringLayout } from '../../shared/monitor/layout';
import type { MonitorMetricPoint, MonitorSinkResult } from '../../shared/monitor/metrics-sink';
import { policyFromEnv } from '../../shared/monitor/policy';
import { runMonitor } from '../../shared/monitor/run';
import type { CaptureFile, RawSample } from '../../shared/monitor/summary';
import { ModelRegistry } from '../../shared/registry';
import { createTestStore, type TestStore } from '../support/stores';

class RecordingSink {
  readonly kind = 'local' as const;
  readonly points: MonitorMetricPoint[] = [];
  async put(_ns: string, points: readonly MonitorMetricPoint[]): Promise<MonitorSinkResult> {
    this.points.push(...points);
    return { calls: 1, delivered: points.length, skippedNonFinite: 0, failedCalls: 0, errors: [] };
  }
}

const PROMPT = 'Grüße aus Köln';

let ts: TestStore;
let dir: string;
let registry: ModelRegistry;
let server: Server;
let client: OpenAI;
let capture: CaptureObserver;

beforeAll(async () => {
  ts = await createTestStore('s3', 'maas-genmon');
  registry = new ModelRegistry(ts.store);
  dir = await mkdtemp(join(tmpdir(), 'maas-genmon-'));
  const folder = join(dir, 'bundle');
  const files = writeTextModelFolder(folder, { chain: defaultChain(), externalData: true });
  await registry.registerBundle(
    'tiny',
    files.map((name) => ({ name, body: createReadStream(join(folder, name)) })),
  );
  await registry.setAlias('tiny', 'production', 1);
  capture = new CaptureObserver(ts.store, { flushTimer: false });
  installLambdaStreamingShim();
  const handler = createGenerateHandler(
    registryTextResolver({
      registry,
      store: ts.store,
      cacheDir: join(dir, 'cache'),
      materialize: inferenceSettingsFromEnv().materialize,
      generator: { sessionOptions: { logSeverityLevel: 3 } },
    }),
    { settings: { defaultMaxTokens: 64, deadlineMarginMs: 1000 }, observer: capture },
  );
  const served = await serveStreamingHandler(handler, { port: 0 });
  server = served.server;
  client = new OpenAI({ baseURL: `${served.url}/v1`, apiKey: 'unused', maxRetries: 0 });
});

afterAll(async () => {
  server?.close();
  await ts?.cleanup();
  await rm(dir, { recursive: true, force: true });
});

describe('generation monitoring', () => {
  it('aggregates finished generations per version and route into the report and CloudWatch points', async () => {
    const finished: { reason: string; prompt: number; completion: number }[] = [];
    // Greedy text of the model, so one request can stop on a string it will produce.
    const probe = await client.completions.create({
      model: 'tiny@production',
      prompt: PROMPT,
      max_tokens: 12,
      temperature: 0,
    });
    const probeText = probe.choices[0]!.text;
    expect(probeText.length).toBeGreaterThan(4);
    finished.push({
      reason: probe.choices[0]!.finish_reason,
      prompt: probe.usage!.prompt_tokens,
      completion: probe.usage!.completion_tokens,
    });
    const stopped = await client.completions.create({
      model: 'tiny@production',
      prompt: PROMPT,
      max_tokens: 12,
      temperature: 0,
      stop: [probeText.slice(2, 4)],
    });
    expect(stopped.choices[0]!.finish_reason).toBe('stop');
    finished.push({
      reason: 'stop',
      prompt: stopped.usage!.prompt_tokens,
      completion: stopped.usage!.completion_tokens,
    });
    // A direct version call (no alias), streamed with usage.
    const stream = await client.chat.completions.create({
      model: 'tiny:1',
      messages: [{ role: 'user', content: PROMPT }],
      max_tokens: 5,
      seed: 7,
      stream: true,
      stream_options: { include_usage: true },
    });
    let reason = '';
    let usage: OpenAI.CompletionUsage | undefined;
    for await (const c of stream) {
      reason = c.choices[0]?.finish_reason ?? reason;
      usage = c.usage ?? usage;
    }
    expect(reason).toBe('length');
    finished.push({ reason, prompt: usage!.prompt_tokens, completion: usage!.completion_tokens });
    // A client that goes away after the first chunk: the generation ends as `abort`.
    const abandoned = await client.completions.create({
      model: 'tiny@production',
      prompt: PROMPT,
      max_tokens: 60,
      temperature: 0,
      stream: true,
    });
    for await (const _ of abandoned) break;
    const until = Date.now() + 10_000;
    while (capture.stats.observed < 4 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    expect(capture.stats.observed).toBe(4);
    await capture.close();

    const captures = await ts.store.list({ prefix: monitoringLayout.capturesPrefix('tiny') });
    expect(captures.objects.length).toBeGreaterThan(0);
    for (const o of captures.objects) {
      const text = new TextDecoder().decode((await ts.store.get(o.key)).body);
      expect(text).not.toContain(PROMPT); // counts and timings only
      expect(text).not.toContain(probeText);
    }

    const sink = new RecordingSink();
    const run = await runMonitor({
      store: ts.store,
      registry,
      sink,
      policy: policyFromEnv({}),
      graceSeconds: 0,
      models: ['tiny'],
    });
    const report = run.models[0]!.report!.versions['1']!;
    expect(report.requests).toBe(4);
    expect(report.aliases).toEqual({ production: 3, '-': 1 });
    const g = report.generation!;
    expect(g.generations).toBe(4);
    const reasons: Record<string, number> = { abort: 1 };
    for (const f of finished) reasons[f.reason] = (reasons[f.reason] ?? 0) + 1;
    expect(g.finishReasons).toEqual(reasons);
    const sum = (k: 'prompt' | 'completion') => finished.reduce((a, f) => a + f[k], 0);
    // The abandoned request had the probe's prompt and produced between 1 and 59 tokens.
    expect(g.promptTokens).toBe(sum('prompt') + probe.usage!.prompt_tokens);
    expect(g.completionTokens - sum('completion')).toBeGreaterThanOrEqual(1);
    expect(g.completionTokens - sum('completion')).toBeLessThan(60);
    expect(g.timeToFirstTokenMs.p50).toBeGreaterThan(0);
    expect(g.timeToFirstTokenMs.p99).toBeGreaterThanOrEqual(g.timeToFirstTokenMs.p50);
    expect(g.tokensPerSecond.p50).toBeGreaterThan(0);
    expect(g.tokensPerSecond.p10).toBeLessThanOrEqual(g.tokensPerSecond.p50);

    const point = (name: string, dims: Record<string, string>) =>
      sink.points.filter(
        (p) =>
          p.name === name &&
          Object.keys(p.dimensions).length === Object.keys(dims).length &&
          Object.entries(dims).every(([k, v]) => p.dimensions[k] === v),
      );
    const d = { model: 'tiny', version: '1' };
    expect(point('Generations', d).map((p) => p.value)).toEqual([4]);
    for (const [r, n] of Object.entries(reasons))
      expect(point('Generations', { ...d, finish_reason: r }).map((p) => p.value)).toEqual([n]);
    expect(point('CompletionTokens', d).map((p) => p.value)).toEqual([g.completionTokens]);
    expect(point('PromptTokens', d).map((p) => p.value)).toEqual([g.promptTokens]);
    expect(point('TimeToFirstTokenP50', d)[0]?.unit).toBe('Milliseconds');
    const dist = point('TimeToFirstToken', d)[0]!;
    expect(dist.counts!.reduce((a, b) => a + b, 0)).toBe(4); // every generation produced a token
  });

  it('keeps prompt and completion text only when MAAS_CAPTURE_TEXT_SAMPLE opts in', async () => {
    const folder = join(dir, 'bundle');
    await registry.registerBundle(
      'tiny-text',
      writeTextModelFolder(folder, { chain: defaultChain(), externalData: true }).map((name) => ({
        name,
        body: createReadStream(join(folder, name)),
      })),
    );
    // Read from the environment as the deployed function does.
    const textCapture = createCaptureObserver(ts.store, { MAAS_CAPTURE_TEXT_SAMPLE: '1' })!;
    const handler = createGenerateHandler(
      registryTextResolver({
        registry,
        store: ts.store,
        cacheDir: join(dir, 'cache-text'),
        materialize: inferenceSettingsFromEnv().materialize,
        generator: { sessionOptions: { logSeverityLevel: 3 } },
      }),
      { settings: { defaultMaxTokens: 16, deadlineMarginMs: 1000 }, observer: textCapture },
    );
    const served = await serveStreamingHandler(handler, { port: 0 });
    try {
      const openai = new OpenAI({ baseURL: `${served.url}/v1`, apiKey: 'unused', maxRetries: 0 });
      const chat = await openai.chat.completions.create({
        model: 'tiny-text',
        messages: [{ role: 'user', content: PROMPT }],
        max_tokens: 8,
        temperature: 0,
      });
      const completion = await openai.completions.create({
        model: 'tiny-text',
        prompt: PROMPT,
        max_tokens: 8,
        temperature: 0,
      });
      const until = Date.now() + 10_000;
      while (textCapture.stats.observed < 2 && Date.now() < until)
        await new Promise((r) => setTimeout(r, 20));
      await textCapture.close();
      const samples: RawSample[] = [];
      for (const o of (await ts.store.list({ prefix: monitoringLayout.capturesPrefix('tiny-text') })).objects)
        samples.push(
          ...(JSON.parse(new TextDecoder().decode((await ts.store.get(o.key)).body)) as CaptureFile).samples!,
        );
      expect(samples).toHaveLength(2);
      const byPrompt = (p: string) => samples.find((x) => x.inputs[0]?.data[0] === p);
      // The completion route's prompt is the text as sent; the chat one is the rendered template around it.
      expect(byPrompt(PROMPT)?.outputs).toEqual([
        { name: 'completion', shape: [1], data: [completion.choices[0]!.text] },
      ]);
      const rendered = samples.find((x) => x !== byPrompt(PROMPT))!;
      expect(rendered.inputs[0]).toMatchObject({ name: 'prompt', shape: [1] });
      expect(String(rendered.inputs[0]!.data[0])).toContain(PROMPT);
      expect(String(rendered.inputs[0]!.data[0]).length).toBeGreaterThan(PROMPT.length);
      expect(rendered.outputs[0]!.data).toEqual([chat.choices[0]!.message.content]);
    } finally {
      served.server.close();
    }
  });
});
