/**
 * Evaluation (real onnxruntime sessions, same process) and the gate's rules, including the
 * "neither smaller nor faster" rule and tolerance parsing; evaluation input planning.
 */
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { buildIdentityModel, buildMlp } from '../../dev/onnx-builder';
import { inspectModel } from '../../shared/onnx/inspect';
import {
  assertInputsPlannable,
  buildCandidate,
  DEFAULT_TOLERANCES,
  type EvaluationReport,
  evaluateCandidate,
  evaluationSessionOptions,
  gate,
  parseOptimizeRequest,
  parseTolerances,
  plannedShape,
  resolveEvaluationInputs,
  splitForCalibration,
} from '../../shared/optimize';
import { FileObjectStore } from '../../shared/store';

const mlp = buildMlp({ inputSize: 32, hiddenSizes: [64], outputSize: 5, seed: 3 });
const store = new FileObjectStore('/nonexistent-maas-store'); // random inputs never touch the store

async function evaluate(candidate: Uint8Array): Promise<EvaluationReport> {
  const inputs = await resolveEvaluationInputs(inspectModel(mlp.bytes).inputs, {
    store,
    model: 'm',
    version: 1,
    options: { samples: 64 },
  });
  const session = await ort.InferenceSession.create(mlp.bytes, evaluationSessionOptions());
  try {
    return await evaluateCandidate({ model: mlp.bytes, session }, candidate, inputs, {
      iterations: 3,
      warmup: 1,
      loadRuns: 1,
    });
  } finally {
    await session.release();
  }
}

describe('evaluateCandidate', () => {
  it('a model against itself: exact agreement, latency at batch 1 and 32, size ratio 1', async () => {
    const report = await evaluate(mlp.bytes);
    expect(report.accuracy.worst).toEqual({ maxAbsError: 0, maxRelError: 0, cosine: 1, top1Agreement: 1 });
    expect(report.accuracy.outputs[0]).toMatchObject({
      name: 'output',
      top1Agreement: 1,
      nonFiniteMismatches: 0,
    });
    expect(report.latency.map((l) => [l.batch, l.parent.runs, l.candidate.runs])).toEqual([
      [1, 3, 3],
      [32, 3, 3],
    ]);
    for (const l of report.latency) {
      expect(l.ratio).toBeGreaterThan(0);
      expect(l.fasterShare).toBeGreaterThanOrEqual(0);
      expect(l.fasterShare).toBeLessThanOrEqual(1);
    }
    expect(report.size).toEqual({ parent: mlp.bytes.byteLength, candidate: mlp.bytes.byteLength, ratio: 1 });
    expect(report.inputs).toEqual({ source: 'random', samples: 64, seed: 1 });
  });

  it('a heavily pruned candidate measures as different, and the gate refuses it', async () => {
    const pruned = await buildCandidate(
      mlp.bytes,
      'prune',
      { prune: { sparsity: 0.99 } },
      { model: 'm', version: 1 },
    );
    const report = await evaluate(pruned.bytes);
    expect(report.accuracy.worst.cosine).toBeLessThan(0.99);
    expect(report.accuracy.worst.top1Agreement).toBeLessThan(0.9);
    const decision = gate(report, DEFAULT_TOLERANCES, { technique: 'prune' });
    expect(decision.passed).toBe(false);
    expect(decision.checks.filter((c) => !c.passed).map((c) => c.check)).toEqual(
      expect.arrayContaining(['top1Agreement', 'cosine']),
    );
  });
});

/** A report with the given headline numbers (the gate is a pure function of these). */
function report(o: {
  cosine?: number;
  top1?: number;
  size?: number;
  latency?: [number, number];
  share?: number;
  maxAbs?: number;
}): EvaluationReport {
  // Share of paired runs the candidate won: clear-cut unless the test says otherwise.
  const share = (ratio: number): number => o.share ?? (ratio < 1 ? 0.95 : ratio > 1 ? 0.05 : 0.5);
  const lat = (batch: number, ratio: number) => ({
    batch,
    parent: { p50: 10, p95: 12, mean: 10, runs: 5 },
    candidate: { p50: 10 * ratio, p95: 12 * ratio, mean: 10 * ratio, runs: 5 },
    ratio,
    fasterShare: share(ratio),
  });
  const [l1, l32] = o.latency ?? [1, 1];
  return {
    inputs: { source: 'random', samples: 256, seed: 1 },
    accuracy: {
      outputs: [],
      worst: {
        maxAbsError: o.maxAbs ?? 0.01,
        maxRelError: 0.01,
        cosine: o.cosine ?? 0.9999,
        ...(o.top1 !== undefined ? { top1Agreement: o.top1 } : {}),
      },
    },
    latency: [lat(1, l1), lat(32, l32)],
    size: { parent: 1000, candidate: 1000 * (o.size ?? 1), ratio: o.size ?? 1 },
    load: { parent: 5, candidate: 5, ratio: 1 },
  };
}

describe('gate', () => {
  it('passes a close, smaller candidate; the top-1 check applies only to classifier outputs', () => {
    expect(gate(report({ size: 0.26, top1: 0.995 }), DEFAULT_TOLERANCES, { technique: 'int8' }).passed).toBe(
      true,
    );
    const noClassifier = gate(report({ size: 0.5 }), DEFAULT_TOLERANCES, { technique: 'fp16' });
    expect(noClassifier.passed).toBe(true);
    expect(noClassifier.checks.map((c) => c.check)).not.toContain('top1Agreement');
  });

  it('refuses low agreement, low cosine, or errors above explicit limits', () => {
    expect(
      gate(report({ size: 0.26, top1: 0.98 }), DEFAULT_TOLERANCES, { technique: 'int8' }).reasons,
    ).toEqual([expect.stringMatching(/top-1 agreement 98.0%/)]);
    expect(
      gate(report({ size: 0.26, cosine: 0.998 }), DEFAULT_TOLERANCES, { technique: 'int8' }).reasons,
    ).toEqual([expect.stringMatching(/cosine/)]);
    const strict = parseTolerances({ maxAbsError: 0.001 });
    expect(gate(report({ size: 0.26, maxAbs: 0.01 }), strict, { technique: 'int8' }).reasons).toEqual([
      expect.stringMatching(/max absolute error/),
    ]);
  });

  it('neither smaller nor faster is pointless; faster alone or smaller alone is enough', () => {
    const same = gate(report({ size: 1, latency: [0.97, 1.02] }), DEFAULT_TOLERANCES, { technique: 'graph' });
    expect(same.passed).toBe(false);
    expect(same.reasons).toEqual([expect.stringMatching(/neither smaller nor faster.*not worth keeping/)]);
    const prune = gate(report({ size: 1.001 }), DEFAULT_TOLERANCES, { technique: 'prune' });
    expect(prune.reasons[0]).toMatch(/pruning only zeroes weights.*prune\+int8/);
    expect(
      gate(report({ size: 1, latency: [0.8, 0.95] }), DEFAULT_TOLERANCES, { technique: 'graph' }).passed,
    ).toBe(true);
  });

  it('refuses a smaller candidate that is much slower (weight-only quantization on CPU)', () => {
    const slow = gate(report({ size: 0.26, latency: [3.2, 11] }), DEFAULT_TOLERANCES, { technique: 'int8' });
    expect(slow.passed).toBe(false);
    expect(slow.reasons).toEqual([
      expect.stringMatching(/slowest latency ratio 11.00× at batch 32, slower in 95.0% of paired runs/),
    ]);
  });

  it('a speed verdict needs the paired runs to agree: load bursts make neither a fast nor a slow candidate', () => {
    // Median ratio 0.8 but the candidate won only 55 % of the pairs: not convincingly faster.
    const noisyFast = gate(report({ size: 1, latency: [0.8, 0.85], share: 0.55 }), DEFAULT_TOLERANCES, {
      technique: 'graph',
    });
    expect(noisyFast.reasons).toEqual([expect.stringMatching(/neither smaller nor faster/)]);
    // Median ratio 1.4 but slower in only 45 % of the pairs: not convincingly slower.
    expect(
      gate(report({ size: 0.5, latency: [1.4, 1], share: 0.55 }), DEFAULT_TOLERANCES, { technique: 'fp16' })
        .passed,
    ).toBe(true);
  });

  it('parses tolerance overrides and refuses nonsense', () => {
    expect(parseTolerances(undefined)).toEqual(DEFAULT_TOLERANCES);
    expect(parseTolerances({ minCosine: 0.99, maxRelError: 0.05 })).toEqual({
      ...DEFAULT_TOLERANCES,
      minCosine: 0.99,
      maxRelError: 0.05,
    });
    expect(() => parseTolerances({ speedConsistency: 1.2 })).toThrow(/at most 1/);
    expect(() => parseTolerances({ minCosine: 'high' })).toThrow(/minCosine/);
    expect(() => parseTolerances({ minTop1Agreement: 1.5 })).toThrow(/at most 1/);
    expect(() => parseTolerances({ minSpeed: 0.1 })).toThrow(/unknown tolerance/);
    expect(() => parseTolerances([])).toThrow(/object/);
  });
});

describe('evaluation input planning', () => {
  it('dynamic batch → batches 1 and 32; other dynamic dims need evaluation.inputShapes', async () => {
    const seq = inspectModel(buildIdentityModel('FP32', ['batch', 'seq']).bytes).inputs;
    expect(() => assertInputsPlannable(seq, undefined)).toThrow(/dynamic dimension 1.*inputShapes/);
    assertInputsPlannable(seq, undefined, { input: [-1, 7] });
    const inputs = await resolveEvaluationInputs(seq, {
      store,
      model: 's',
      version: 1,
      options: { inputShapes: { input: [-1, 7] }, samples: 40 },
    });
    expect(inputs.latency.map((l) => l.feed[0]!.shape)).toEqual([
      [1, 7],
      [32, 7],
    ]);
    expect(inputs.accuracy.map((feed) => feed[0]!.shape)).toEqual([
      [32, 7],
      [8, 7],
    ]);
    expect(inputs.samples).toBe(40);
  });

  it('int8-static calibrates on the last rows and is measured on the others when enough remain', async () => {
    const info = inspectModel(mlp.bytes).inputs;
    const plan = (samples: number) =>
      resolveEvaluationInputs(info, { store, model: 'm', version: 1, options: { samples } });
    const many = await plan(256); // 8 feeds of 32 rows
    const split = splitForCalibration(many, 32);
    expect(split.heldOut).toBe(true);
    expect(split.calibration).toEqual([many.accuracy[7]]);
    expect(split.evaluation.accuracy).toEqual(many.accuracy.slice(0, 7));
    expect(split.evaluation.samples).toBe(224);
    expect(split.evaluation.latency).toBe(many.latency);
    // 48 rows cannot give 32 to calibration and keep as many for accuracy: accuracy is measured on
    // all of them, calibration included.
    const few = await plan(48); // feeds of 32 and 16 rows
    const shared = splitForCalibration(few, 32);
    expect(shared.heldOut).toBe(false);
    expect(shared.evaluation).toBe(few);
    expect(shared.calibration).toBe(few.accuracy);
  });

  it('fixed batch sizes are kept; BYTES inputs and scalars need reference inputs', () => {
    expect(plannedShape({ name: 'x', datatype: 'FP32', shape: [4, 3] })).toEqual([4, 3]);
    expect(() => plannedShape({ name: 'x', datatype: 'FP32', shape: [], unknownRank: true })).toThrow(
      /no recorded shape/,
    );
    expect(() => assertInputsPlannable([{ name: 's', datatype: 'BYTES', shape: [-1] }], undefined)).toThrow(
      /BYTES/,
    );
    expect(() => plannedShape({ name: 'x', datatype: 'FP32', shape: [-1, 3] }, { x: [-1, 4] })).toThrow(
      /does not fit/,
    );
  });

  it('request parsing normalises candidates and refuses duplicates', () => {
    expect(
      parseOptimizeRequest({ techniques: [' prune + int8 '], parameters: { prune: { sparsity: 0.5 } } })
        .techniques,
    ).toEqual(['prune+int8']);
    expect(() => parseOptimizeRequest({ techniques: ['int8', 'int8'] })).toThrow(/twice/);
    expect(() => parseOptimizeRequest({ techniques: ['int8'], evaluation: { samples: 0 } })).toThrow(
      /samples/,
    );
    expect(() => parseOptimizeRequest({ techniques: ['int8'], referenceInputs: { key: '../x' } })).toThrow(
      /relative store key/,
    );
  });
});
