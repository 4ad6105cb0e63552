/**
 * Optimize on text-generation models: int8 (MatMul weights dynamic, the embedding Gather
 * weight-only) and fp16 of the tiny decoder bundle on RGW, evaluated on the model's own tokenizer
 * (next-token agreement and logits cosine on sample prompts), registered as bundles that keep the
 * tokenizer files, served by the generate routes; onnx's checker accepts the candidate; the gate
 * refuses on the text checks; requests that do not fit the model kind are 400s.
 */
import { createReadStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildMlp } from '../../dev/onnx-builder';
import { CHAIN_TEXT, defaultChain, writeTextModelFolder } from '../../dev/text-model';
import { InvalidArgumentError } from '../../shared/errors';
import { registryTextResolver } from '../../shared/generate/registry-resolver';
import { inferenceSettingsFromEnv } from '../../shared/inference';
import { CaptureObserver } from '../../shared/monitor/capture';
import { encodeModel } from '../../shared/onnx/codec';
import {
  assertEvaluationFits,
  capturedPromptsFromMonitoring,
  optimizeVersion,
  parseOptimizeRequest,
} from '../../shared/optimize';
import { openParentModel } from '../../shared/optimize/parent';
import { ModelRegistry, versionFiles } from '../../shared/registry';
import { createTestStore, type TestStore } from '../support/stores';
import { ensureOnnxChecker, onnxCheckerErrors } from './onnx-checker';

let ts: TestStore;
let dir: string;
let registry: ModelRegistry;

/** The chain the tiny decoder was built to continue (strong logits), and ordinary text (weak ones). */
const PROMPTS = [`Hello${CHAIN_TEXT}${CHAIN_TEXT}`, 'Grüße aus Köln, wie geht es dir?', 'def main():'];

beforeAll(async () => {
  ensureOnnxChecker();
  ts = await createTestStore('s3', 'maas-opt-text');
  registry = new ModelRegistry(ts.store);
  dir = await mkdtemp(join(tmpdir(), 'maas-opt-text-'));
  const folder = join(dir, 'bundle');
  const files = writeTextModelFolder(folder, { chain: defaultChain(), externalData: true });
  await registry.registerBundle(
    'tiny',
    files.map((name) => ({ name, body: createReadStream(join(folder, name)) })),
  );
  await registry.registerVersion(
    'mlp',
    buildMlp({ inputSize: 4, hiddenSizes: [8], outputSize: 2, seed: 3 }).bytes,
  );
}, 300_000);

afterAll(async () => {
  await ts?.cleanup();
  await rm(dir, { recursive: true, force: true });
});

async function greedy(ref: { name: string; version: number }, prompt: string): Promise<string> {
  const resolver = registryTextResolver({
    registry,
    store: ts.store,
    cacheDir: join(dir, 'cache'),
    materialize: inferenceSettingsFromEnv().materialize,
    generator: { sessionOptions: { logSeverityLevel: 3 } },
  });
  const { engine } = await resolver.resolve(ref);
  for await (const e of engine.generate({ prompt, maxTokens: 12, temperature: 0 }))
    if (e.type === 'done') return e.text;
  throw new Error('no done event');
}

describe('optimize text-generation models', () => {
  it('int8 and fp16 candidates are gated on next tokens and logits, and registered as text bundles', async () => {
    const parent = await registry.getVersion('tiny', 1);
    const report = await optimizeVersion(
      registry,
      'tiny',
      1,
      parseOptimizeRequest({
        techniques: ['int8', 'fp16'],
        evaluation: { prompts: PROMPTS, iterations: 6 },
        // Speed is the benchmark's business (these machines are noisy): only accuracy gates here.
        tolerances: { minNextTokenAgreement: 0.75, maxSlowdown: 1000 },
      }),
      { store: ts.store, evaluate: { warmup: 1, loadRuns: 1 } },
    );
    expect(report.inputs.source).toBe('prompts');
    expect(report.inputs.samples).toBe(PROMPTS.length + 1); // and the first one chat-templated
    const [int8, fp16] = report.candidates;
    expect(int8?.status, int8?.error ?? int8?.gate?.reasons.join('; ')).toBe('registered');
    expect(fp16?.status, fp16?.error ?? fp16?.gate?.reasons.join('; ')).toBe('registered');

    // int8: the embedding table (Gather) is quantized too, so the bundle is ~0.28× (0.63× without).
    const steps = int8!.steps![0] as { report: { quantized: { opType: string; weight: string }[] } };
    expect(steps.report.quantized).toContainEqual(
      expect.objectContaining({ opType: 'Gather', weight: 'wte' }),
    );
    expect(int8!.evaluation!.size.ratio).toBeLessThan(0.3);
    expect(fp16!.evaluation!.size.ratio).toBeCloseTo(0.5, 2);
    const checks = (c: typeof int8) => new Map(c!.gate!.checks.map((k) => [k.check, k]));
    for (const c of [int8, fp16]) {
      const byName = checks(c);
      expect(byName.has('cosine')).toBe(false); // KV-cache outputs are not what is judged
      expect(byName.get('nextTokenAgreement')!.actual).toBeGreaterThanOrEqual(0.75);
      expect(byName.get('logitsCosine')!.actual).toBeGreaterThanOrEqual(0.99);
    }
    const logits = int8!.evaluation!.accuracy.outputs.find((o) => o.name === 'logits')!;
    expect(logits.top1Agreement).toBe(checks(int8).get('nextTokenAgreement')!.actual);
    expect(int8!.evaluation!.latency[0]!.batch).toBe(1);

    for (const c of [int8, fp16]) {
      const v = await registry.getVersion('tiny', c!.version!);
      expect(v.parentVersion).toBe(1);
      expect(v.textGeneration).toMatchObject({
        kvCache: 'cached',
        contextLength: parent.textGeneration!.contextLength,
      });
      const companions = (x: typeof v) =>
        versionFiles(x)
          .filter((f) => f.role === 'companion')
          .map((f) => [f.name, f.sha256])
          .sort();
      expect(companions(v)).toEqual(companions(parent));
      expect(
        versionFiles(v)
          .filter((f) => f.role === 'graph')
          .map((f) => f.name),
      ).toEqual(['model.onnx']);
    }
    // The model's own continuation (strong logits) survives int8 and fp16.
    const expected = await greedy({ name: 'tiny', version: 1 }, PROMPTS[0]!);
    expect(expected.length).toBeGreaterThan(4);
    expect(await greedy({ name: 'tiny', version: int8!.version! }, PROMPTS[0]!)).toBe(expected);
    expect(await greedy({ name: 'tiny', version: fp16!.version! }, PROMPTS[0]!)).toBe(expected);

    // onnx's own checker accepts the int8 graph, and onnxruntime loads it.
    const opened = await openParentModel(registry, await registry.getVersion('tiny', int8!.version!));
    const bytes = encodeModel(await opened.decode());
    await opened.dispose();
    expect(onnxCheckerErrors(bytes)).toBe('');
    await (await ort.InferenceSession.create(bytes)).release();
  }, 300_000);

  it('refuses a candidate whose logits drift past the text tolerances, registering nothing', async () => {
    const before = (await registry.getModelSummary('tiny')).latestVersion;
    const report = await optimizeVersion(
      registry,
      'tiny',
      1,
      parseOptimizeRequest({
        techniques: ['int8'],
        evaluation: { prompts: PROMPTS.slice(1), iterations: 4 },
        tolerances: { minLogitsCosine: 1 },
      }),
      { store: ts.store, evaluate: { warmup: 1, loadRuns: 1 } },
    );
    const [c] = report.candidates;
    expect(c?.status).toBe('rejected');
    expect(c?.gate?.reasons.join('; ')).toMatch(/logits cosine 0\.99\d+ \(minimum 1\)/);
    expect((await registry.getModelSummary('tiny')).latestVersion).toBe(before);
  }, 300_000);

  it('evaluates on captured prompts (MAAS_CAPTURE_TEXT_SAMPLE) when the request names none', async () => {
    // What the generate function's capture writes with text sampling on.
    const capture = new CaptureObserver(ts.store, { flushTimer: false, textSample: 1 });
    const captured = [PROMPTS[1]!, 'Zwei Sätze über Köln, bitte.', PROMPTS[1]!];
    for (const prompt of captured)
      capture.observeGeneration({
        model: 'tiny',
        version: 1,
        finishReason: 'stop',
        promptTokens: 5,
        completionTokens: 3,
        timeToFirstTokenMs: 4,
        tokensPerSecond: 100,
        totalMs: 30,
        text: { prompt, completion: 'gut' },
      });
    await capture.close();
    const run = (prompts?: string[]) =>
      optimizeVersion(
        registry,
        'tiny',
        1,
        parseOptimizeRequest({
          techniques: ['fp16'],
          evaluation: { iterations: 2, ...(prompts ? { prompts } : {}) },
        }),
        {
          store: ts.store,
          evaluate: { warmup: 1, loadRuns: 1 },
          capturedPrompts: capturedPromptsFromMonitoring(ts.store),
        },
      );
    const fromCaptures = await run();
    // Two distinct captured prompts, plus the first one in the chat template.
    expect(fromCaptures.inputs).toEqual({ source: 'captured', samples: 3 });
    expect(fromCaptures.candidates[0]?.evaluation?.inputs.source).toBe('captured');
    // The request's own prompts win over captures.
    expect((await run([PROMPTS[2]!])).inputs).toEqual({ source: 'prompts', samples: 2 });
  }, 300_000);

  it('refuses evaluation settings that do not fit the model kind with a 400', async () => {
    const text = await registry.getVersion('tiny', 1);
    const mlp = await registry.getVersion('mlp', 1);
    const fits = (v: typeof text, body: Record<string, unknown>) => () =>
      assertEvaluationFits(v, parseOptimizeRequest({ techniques: ['int8'], ...body }));
    expect(fits(text, { evaluation: { inputShapes: { input_ids: [1, 8] } } })).toThrow(
      /text-generation model, evaluated on prompts: evaluation\.inputShapes do not apply/,
    );
    expect(fits(text, { referenceInputs: { key: 'x.json' } })).toThrow(InvalidArgumentError);
    expect(fits(mlp, { evaluation: { prompts: ['hi'] } })).toThrow(/apply to text-generation models only/);
    expect(fits(text, { evaluation: { prompts: ['hi'] } })).not.toThrow();
    expect(fits(mlp, {})).not.toThrow();
    expect(() => parseOptimizeRequest({ techniques: ['int8'], evaluation: { prompts: [''] } })).toThrow(
      /evaluation\.prompts must be 1 to 64 non-empty strings/,
    );
  });
});
