/**
 * The explain route end to end through the exported predict handler, on models registered in
 * RGW and run by onnxruntime: Kernel SHAP against exact answers (linear models, brute-force
 * Shapley values of an MLP), additivity on a sampled MLP explanation, occlusion on a conv net
 * built to look at one patch, and every bad or over-budget request answered with its 4xx.
 */
import type { APIGatewayProxyEventV2 } from 'aws-lambda';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  buildConvNet,
  buildMlp,
  convNetReference,
  makeGraph,
  makeModel,
  makeNode,
  makeValueInfo,
  mlpReference,
  mulberry32,
  randomFloat32,
  tensorFromFloat32,
} from '../../dev/onnx-builder';
import { createBaselineFromData } from '../../shared/monitor/baseline';
import { encodeModel } from '../../shared/onnx/codec';
import {
  apiEvent,
  bodyJson,
  inferEvent,
  invoke,
  type PredictFixture,
  predictFixture,
} from '../predict/support';
import { loadRoutes, startGateway } from '../support/gateway';

interface ExplanationBody {
  method: string;
  class: number;
  baseline: string;
  prediction: number;
  expected_value: number;
  attributions: { shape: number[]; data: number[] };
  additivity?: { sum: number; prediction: number; gap: number; ok: boolean };
  exact?: boolean;
  patch?: number;
  samples: number;
  model_calls: number;
  batch_size: number;
  time_ms: number;
}

let fx: PredictFixture;
const linear = buildMlp({ inputSize: 6, hiddenSizes: [], outputSize: 3, seed: 11, activation: 'none' });
const wide = buildMlp({ inputSize: 20, hiddenSizes: [], outputSize: 1, seed: 12, activation: 'none' });
const mlp = buildMlp({ inputSize: 5, hiddenSizes: [16, 8], outputSize: 2, seed: 13 });
const mlp12 = buildMlp({ inputSize: 12, hiddenSizes: [24], outputSize: 1, seed: 14 });
const convnet = buildConvNet({ seed: 15, imageSize: 16, channels: [4, 8], numClasses: 3 });

/** The grid cell (row 2, column 1 of a 4×4 grid of 4×4 patches) class 1 of `lookingNet` reads. */
const TARGET = { row: 2, col: 1, size: 4 };

/**
 * A conv net built to look at one patch: a 4×4 stride-4 convolution of ones sums each patch of
 * a 16×16 image, Relu, and a Gemm whose class 1 weighs only the TARGET cell (class 0 weighs
 * every cell a little).
 */
function lookingNet(): Uint8Array {
  const fc = new Float32Array(16 * 2);
  for (let cell = 0; cell < 16; cell++) fc[cell * 2] = 0.01;
  fc[(TARGET.row * 4 + TARGET.col) * 2 + 1] = 1;
  const graph = makeGraph({
    name: 'looking',
    nodes: [
      makeNode('Conv', ['input', 'w'], ['conv'], {
        kernel_shape: { ints: [4, 4] },
        strides: { ints: [4, 4] },
      }),
      makeNode('Relu', ['conv'], ['relu']),
      makeNode('Flatten', ['relu'], ['flat'], { axis: { int: 1 } }),
      makeNode('Gemm', ['flat', 'fc', 'bias'], ['output']),
    ],
    inputs: [makeValueInfo('input', 'FP32', ['batch', 1, 16, 16])],
    outputs: [makeValueInfo('output', 'FP32', ['batch', 2])],
    initializers: [
      tensorFromFloat32('w', [1, 1, 4, 4], new Float32Array(16).fill(1)),
      tensorFromFloat32('fc', [16, 2], fc),
      tensorFromFloat32('bias', [2], Float32Array.of(0.1, -0.2)),
    ],
  });
  return encodeModel(makeModel(graph));
}

function explainEvent(name: string, request: unknown, version?: string): APIGatewayProxyEventV2 {
  const headers = { 'content-type': 'application/json' };
  return version === undefined
    ? apiEvent('POST /v2/models/{name}/explain', { name }, { body: JSON.stringify(request), headers })
    : apiEvent(
        'POST /v2/models/{name}/versions/{version}/explain',
        { name, version },
        { body: JSON.stringify(request), headers },
      );
}

async function explain(
  name: string,
  input: { shape: number[]; data: ArrayLike<number> },
  parameters: Record<string, unknown> = {},
): Promise<{ body: Record<string, unknown>; explanation: ExplanationBody }> {
  const res = await invoke(
    explainEvent(name, {
      inputs: [{ name: 'input', datatype: 'FP32', shape: input.shape, data: Array.from(input.data) }],
      parameters,
    }),
  );
  const body = bodyJson(res);
  if (res.statusCode !== 200) throw new Error(`explain ${name}: ${res.statusCode} ${JSON.stringify(body)}`);
  return { body, explanation: body.explanation as ExplanationBody };
}

async function status(name: string, request: unknown): Promise<{ status: number; error: string }> {
  const res = await invoke(explainEvent(name, request));
  return { status: res.statusCode ?? 0, error: String(bodyJson(res).error ?? '') };
}

function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number): void {
  expect(actual.length).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    if (Math.abs(a - e) > tol * Math.max(1, Math.abs(e)))
      throw new Error(`element ${i}: got ${a}, expected ${e} (±${tol})`);
  }
}

/** Attributions of a linear model's class c: w_jc · (x_j − b_j). */
function linearAttributions(
  model: typeof linear,
  x: Float32Array,
  baseline: ArrayLike<number>,
  c: number,
): number[] {
  const layer = model.weights[0]!;
  return Array.from(x, (v, j) => layer.W[j * layer.cols + c]! * (v - (baseline[j] ?? 0)));
}

function factorial(n: number): number {
  return n <= 1 ? 1 : n * factorial(n - 1);
}

/** Exact Shapley values of `f` at x against baseline b, by enumerating every subset. */
function bruteForceShapley(f: (z: Float32Array) => number, x: Float32Array, b: Float32Array): number[] {
  const M = x.length;
  const value = (mask: number): number => f(Float32Array.from(x, (v, j) => ((mask >> j) & 1 ? v : b[j]!)));
  const phi = new Array<number>(M).fill(0);
  for (let mask = 0; mask < 1 << M; mask++) {
    let size = 0;
    for (let j = 0; j < M; j++) size += (mask >> j) & 1;
    for (let j = 0; j < M; j++) {
      if ((mask >> j) & 1) continue;
      const w = (factorial(size) * factorial(M - size - 1)) / factorial(M);
      phi[j]! += w * (value(mask | (1 << j)) - value(mask));
    }
  }
  return phi;
}

beforeAll(async () => {
  fx = await predictFixture();
  await fx.registry.registerVersion('linear', linear.bytes, { alias: 'production', actor: 'test' });
  await fx.registry.registerVersion('wide', wide.bytes);
  await fx.registry.registerVersion('mlp', mlp.bytes);
  await fx.registry.registerVersion('mlp12', mlp12.bytes);
  await fx.registry.registerVersion('convnet', convnet.bytes);
  await fx.registry.registerVersion('looking', lookingNet());
});
afterAll(async () => fx?.cleanup());
afterEach(() => {
  delete process.env.MAAS_EXPLAIN_MAX_SAMPLES;
});

describe('Kernel SHAP', () => {
  const x = randomFloat32(mulberry32(21), 6, -2, 2);

  it('returns the exact linear attributions against a zero baseline (every coalition enumerated)', async () => {
    const { body, explanation: e } = await explain(
      'linear',
      { shape: [1, 6], data: x },
      { explain_class: 2 },
    );
    expect(e.method).toBe('kernel_shap');
    expect(e.baseline).toBe('zeros'); // auto: the version has no monitoring baseline
    expect(e.exact).toBe(true);
    expect(e.samples).toBe(62);
    expect(e.attributions.shape).toEqual([1, 6]);
    expectClose(e.attributions.data, linearAttributions(linear, x, new Float32Array(6), 2), 1e-5);
    const reference = mlpReference(linear.weights, x, 1, { activation: 'none' });
    expect(e.prediction).toBeCloseTo(reference[2]!, 5);
    expect(e.expected_value).toBeCloseTo(linear.weights[0]!.b[2]!, 5);
    expect(e.additivity?.ok).toBe(true);
    // The prediction part is the OIP infer response of the instance.
    const outputs = body.outputs as { name: string; shape: number[]; data: number[] }[];
    expect(outputs[0]?.shape).toEqual([1, 3]);
    expectClose(outputs[0]!.data, reference, 1e-5);
    expect(body.model_version).toBe('1');
    // One prediction call plus ceil(64 rows / 64) batched calls.
    expect(e.model_calls).toBe(2);
  });

  it('measures from a reference data key and from the monitoring baseline', async () => {
    const rows = randomFloat32(mulberry32(22), 3 * 6, -1, 3);
    const mean = Array.from({ length: 6 }, (_, j) => (rows[j]! + rows[6 + j]! + rows[12 + j]!) / 3);
    await fx.store.put(
      'references/linear/train.json',
      JSON.stringify({
        inputs: [{ name: 'input', datatype: 'FP32', shape: [3, 6], data: Array.from(rows) }],
      }),
    );
    const ref = await explain(
      'linear',
      { shape: [1, 6], data: x },
      { explain_baseline: { key: 'references/linear/train.json' }, explain_class: 0 },
    );
    expect(ref.explanation.baseline).toBe('reference');
    expectClose(ref.explanation.attributions.data, linearAttributions(linear, x, mean, 0), 1e-4);

    await createBaselineFromData(fx.store, 'linear', 1, {
      inputs: [{ name: 'input', datatype: 'FP32', shape: [3, 6], data: rows }],
    });
    const traffic = await explain('linear', { shape: [1, 6], data: x }, { explain_class: 0 });
    expect(traffic.explanation.baseline).toBe('traffic'); // auto picks the stored baseline now
    expectClose(traffic.explanation.attributions.data, linearAttributions(linear, x, mean, 0), 1e-4);
    const fMean = mlpReference(linear.weights, Float32Array.from(mean), 1, { activation: 'none' })[0]!;
    expect(traffic.explanation.expected_value).toBeCloseTo(fMean, 4);
  });

  it('stays exact on a linear model when coalitions are sampled', async () => {
    const xw = randomFloat32(mulberry32(23), 20, -2, 2);
    const { explanation: e } = await explain('wide', { shape: [1, 20], data: xw }, { explain_samples: 200 });
    expect(e.exact).toBe(false);
    expect(e.samples).toBe(200);
    expect(e.model_calls).toBe(1 + Math.ceil(202 / 64));
    expectClose(e.attributions.data, linearAttributions(wide, xw, new Float32Array(20), 0), 1e-4);
  });

  it('gives the exact Shapley values of a non-linear MLP when every coalition fits the budget', async () => {
    const xm = randomFloat32(mulberry32(24), 5, -2, 2);
    const { explanation: e } = await explain('mlp', { shape: [1, 5], data: xm }, { explain_class: 1 });
    expect(e.exact).toBe(true);
    const f = (z: Float32Array): number => mlpReference(mlp.weights, z, 1)[1]!;
    expectClose(e.attributions.data, bruteForceShapley(f, xm, new Float32Array(5)), 1e-4);
  });

  it('keeps additivity on a sampled MLP explanation: Σφ + f(baseline) = f(x)', async () => {
    const xm = randomFloat32(mulberry32(25), 12, -2, 2);
    const { explanation: e } = await explain('mlp12', { shape: [1, 12], data: xm }, { explain_samples: 300 });
    expect(e.exact).toBe(false);
    const fx0 = mlpReference(mlp12.weights, xm, 1)[0]!;
    const fb = mlpReference(mlp12.weights, new Float32Array(12), 1)[0]!;
    const sum = e.attributions.data.reduce((a, b) => a + b, 0);
    expect(Math.abs(sum + fb - fx0)).toBeLessThan(1e-4);
    expect(e.additivity?.ok).toBe(true);
    expect(e.additivity?.gap).toBeLessThan(1e-4);
    // A non-linear model: the attributions are not all zero and not the linear shortcut.
    expect(e.attributions.data.some((v) => Math.abs(v) > 1e-3)).toBe(true);
  });
});

describe('occlusion', () => {
  const image = randomFloat32(mulberry32(31), 256, 0, 1);

  it('finds the patch the conv net is built to look at', async () => {
    const { explanation: e } = await explain(
      'looking',
      { shape: [1, 1, 16, 16], data: image },
      { explain_patch: 4 },
    );
    expect(e.method).toBe('occlusion'); // auto for image-shaped inputs
    expect(e.class).toBe(1); // argmax of the prediction
    expect(e.samples).toBe(16);
    expect(e.attributions.shape).toEqual([1, 1, 16, 16]);
    const drop = (i: number, j: number): number => e.attributions.data[i * 16 + j]!;
    let patchSum = 0;
    for (let i = 0; i < 4; i++)
      for (let j = 0; j < 4; j++) patchSum += image[(TARGET.row * 4 + i) * 16 + TARGET.col * 4 + j]!;
    for (let i = 0; i < 16; i++) {
      for (let j = 0; j < 16; j++) {
        const inside = Math.floor(i / 4) === TARGET.row && Math.floor(j / 4) === TARGET.col;
        // Occluding the target patch removes its whole sum; any other patch changes nothing.
        expect(drop(i, j)).toBeCloseTo(inside ? patchSum : 0, 4);
      }
    }
  });

  it('resolves finer patches inside the target region only', async () => {
    const { explanation: e } = await explain(
      'looking',
      { shape: [1, 1, 16, 16], data: image },
      { explain_patch: 2, explain_class: 1 },
    );
    expect(e.samples).toBe(64);
    for (let i = 0; i < 16; i++)
      for (let j = 0; j < 16; j++) {
        const inside = Math.floor(i / 4) === TARGET.row && Math.floor(j / 4) === TARGET.col;
        const v = e.attributions.data[i * 16 + j]!;
        if (inside) expect(v).toBeGreaterThan(0);
        else expect(Math.abs(v)).toBeLessThan(1e-5);
      }
  });

  it('matches the reference forward pass of a three-channel conv net, patch by patch', async () => {
    const img = randomFloat32(mulberry32(32), 3 * 16 * 16, -1, 1);
    const { explanation: e } = await explain(
      'convnet',
      { shape: [1, 3, 16, 16], data: img },
      { explain_patch: 8 },
    );
    expect(e.samples).toBe(4);
    expect(e.attributions.shape).toEqual([1, 3, 16, 16]);
    const full = convNetReference(convnet.params, img, 1);
    expect(e.prediction).toBeCloseTo(full[e.class]!, 4);
    // Occlude the bottom-right patch (all channels) by hand.
    const occluded = Float32Array.from(img);
    for (let c = 0; c < 3; c++)
      for (let i = 8; i < 16; i++) for (let j = 8; j < 16; j++) occluded[(c * 16 + i) * 16 + j] = 0;
    const expected = full[e.class]! - convNetReference(convnet.params, occluded, 1)[e.class]!;
    expect(e.attributions.data[(2 * 16 + 15) * 16 + 15]).toBeCloseTo(expected, 4);
  });
});

describe('per-request explanations on infer', () => {
  it('are off by default and on with x-maas-explain: true', async () => {
    const request = {
      inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 6], data: [1, 2, 3, 4, 5, 6] }],
    };
    const plain = bodyJson(await invoke(inferEvent('linear', request)));
    expect(plain.explanation).toBeUndefined();
    const explained = await invoke(
      inferEvent('linear', { ...request, parameters: { explain_baseline: 'zeros' } }, undefined, {
        'content-type': 'application/json',
        'x-maas-explain': 'true',
      }),
    );
    expect(explained.statusCode).toBe(200);
    const body = bodyJson(explained);
    expect(body.outputs).toEqual(plain.outputs);
    expect((body.explanation as ExplanationBody).method).toBe('kernel_shap');
  });
});

describe('over HTTP, with the routes serverless.yml declares', () => {
  it('answers POST /v2/models/{name}/versions/{version}/explain', async () => {
    const gw = await startGateway(await loadRoutes(['predict']));
    try {
      const x = [0.5, -1, 2, 0, 1, -0.5];
      const res = await fetch(`${gw.url}/v2/models/linear/versions/production/explain`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 6], data: x }],
          parameters: { explain_baseline: 'zeros', explain_class: 1 },
        }),
      });
      expect(res.status).toBe(200);
      expect(res.headers.get('x-maas-model-version')).toBe('1');
      const e = ((await res.json()) as { explanation: ExplanationBody }).explanation;
      expectClose(
        e.attributions.data,
        linearAttributions(linear, Float32Array.from(x), new Float32Array(6), 1),
        1e-5,
      );
    } finally {
      await gw.close();
    }
  });
});

describe('budgets and bad requests', () => {
  const tab = (parameters: Record<string, unknown>, shape = [1, 6], data: number[] = [1, 2, 3, 4, 5, 6]) => ({
    inputs: [{ name: 'input', datatype: 'FP32', shape, data }],
    parameters,
  });
  const img = (parameters: Record<string, unknown>) => ({
    inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 1, 16, 16], data: new Array(256).fill(0.5) }],
    parameters,
  });

  it('refuses more samples or patches than the limit allows, before running anything', async () => {
    process.env.MAAS_EXPLAIN_MAX_SAMPLES = '100';
    const tooMany = await status('wide', {
      inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 20], data: new Array(20).fill(1) }],
      parameters: { explain_samples: 500 },
    });
    expect(tooMany.status).toBe(400);
    expect(tooMany.error).toMatch(/more than the limit of 100/);
    const tinyPatches = await status('looking', img({ explain_patch: 1 }));
    expect(tinyPatches.status).toBe(400);
    expect(tinyPatches.error).toMatch(/256 patches/);
  });

  it('answers 422 when the time budget cannot cover the samples', async () => {
    const res = await status('mlp12', {
      inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 12], data: new Array(12).fill(1) }],
      parameters: { explain_samples: 8000, explain_time_budget_ms: 1 },
    });
    expect(res.status).toBe(422);
    expect(res.error).toMatch(/budget/);
  });

  it('names what is wrong in every malformed explain request', async () => {
    const cases: [string, unknown, number, RegExp][] = [
      ['linear', tab({}, [2, 6], new Array(12).fill(1)), 400, /batch dimension of 1/],
      ['linear', tab({ explain_method: 'lime' }), 400, /explain_method/],
      ['linear', tab({ explain_class: 3 }), 400, /out of range/],
      ['linear', tab({ explain_class: -1 }), 400, /explain_class/],
      ['linear', tab({ explain_output: 'nope' }), 400, /explain_output/],
      ['linear', tab({ explain_samples: 3 }), 400, /at least 7/],
      ['linear', tab({ explain_method: 'occlusion' }), 400, /image-shaped/],
      ['linear', tab({ explain_baseline: { key: 'models/linear/head.json' } }), 400, /under references\//],
      ['linear', tab({ explain_baseline: 'mean' }), 400, /explain_baseline/],
      ['linear', tab({ explain_baseline: { key: 'references/missing.json' } }), 404, /does not exist/],
      [
        'wide',
        tab({ explain_baseline: 'traffic' }, [1, 20], new Array(20).fill(1)),
        422,
        /no monitoring baseline/,
      ],
      ['linear', tab({ explain_sample: 10 }), 400, /unknown parameter explain_sample/],
      ['looking', img({ explain_method: 'kernel_shap' }), 400, /256 features/],
      ['looking', img({ explain_patch: 17 }), 400, /larger than the image/],
      ['looking', img({ explain_samples: 10 }), 400, /explain_patch/],
      [
        'linear',
        { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 6], data: [1, 2, 3, 4, 5, 6] }] },
        400,
        /unknown input/,
      ],
      ['nope', tab({}), 404, /nope/],
    ];
    for (const [model, request, expected, message] of cases) {
      const res = await status(model, request);
      expect({ model, request, status: res.status }).toEqual({ model, request, status: expected });
      expect(res.error).toMatch(message);
    }
  });
});
