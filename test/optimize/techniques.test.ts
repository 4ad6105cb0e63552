/**
 * Each technique on generated models: the result loads and runs in onnxruntime-node, computes what
 * the plain-JS fp32 reference computes within the technique's expected error, keeps the signature,
 * and has the size the technique promises.
 */

import { TensorProto_DataType } from 'onnx-buf';
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
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
  readTensor,
  tensorFromFloat32,
} from '../../dev/onnx-builder';
import { decodeModel, encodeModel } from '../../shared/onnx/codec';
import { convertToFloat16, DEFAULT_FP16_BLOCK_LIST } from '../../shared/onnx/fp16';
import { inspectModel } from '../../shared/onnx/inspect';
import { pruneByMagnitude } from '../../shared/onnx/prune';
import { quantizeDynamic } from '../../shared/onnx/quantize';
import { buildCandidate, parseCandidate, parseTechniqueParameters } from '../../shared/optimize';

async function run(bytes: Uint8Array, input: Float32Array, shape: number[]): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(bytes);
  try {
    const out = await session.run({ input: new ort.Tensor('float32', input, shape) });
    expect(out.output?.type).toBe('float32');
    return out.output?.data as Float32Array;
  } finally {
    await session.release();
  }
}

function cosine(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += (a[i] ?? 0) * (b[i] ?? 0);
    na += (a[i] ?? 0) ** 2;
    nb += (b[i] ?? 0) ** 2;
  }
  return dot / Math.sqrt(na * nb);
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs((a[i] ?? 0) - (b[i] ?? 0)));
  return m;
}

const mlp = buildMlp({ inputSize: 256, hiddenSizes: [512, 512], outputSize: 10, seed: 11 });
const batch = 8;
const mlpInput = randomFloat32(mulberry32(5), batch * 256);
const mlpExpected = mlpReference(mlp.weights, mlpInput, batch);

describe('int8 dynamic quantization', () => {
  for (const variant of [
    { perChannel: false, weightType: 'int8' as const },
    { perChannel: true, weightType: 'int8' as const },
    { perChannel: false, weightType: 'uint8' as const },
    { perChannel: true, weightType: 'uint8' as const },
  ]) {
    it(`MLP, ${variant.weightType} ${variant.perChannel ? 'per channel' : 'per tensor'}: runs, close to fp32, ~0.25x size`, async () => {
      const model = decodeModel(mlp.bytes.slice());
      const report = quantizeDynamic(model, variant);
      expect(report.quantized.map((q) => q.weight)).toEqual(['fc0.weight', 'fc1.weight', 'fc2.weight']);
      const bytes = encodeModel(model);
      const info = inspectModel(bytes);
      expect(info.opTypes).toEqual(expect.arrayContaining(['DynamicQuantizeLinear', 'MatMulInteger']));
      expect(info.opTypes).not.toContain('MatMul');
      expect(info.inputs).toEqual(inspectModel(mlp.bytes).inputs);
      expect(info.outputs).toEqual(inspectModel(mlp.bytes).outputs);
      // Float weights are gone; int8 weights take 1 byte per element (+ biases and scales).
      expect(model.graph!.initializer.some((t) => t.name === 'fc0.weight')).toBe(false);
      const weights = 256 * 512 + 512 * 512 + 512 * 10;
      const perChannelValues = 512 + 512 + 10; // biases, and per-channel scales / zero points
      expect(bytes.byteLength).toBeLessThan(weights * 1 + perChannelValues * (4 + 4 + 1) + 4000);
      expect(bytes.byteLength / mlp.bytes.byteLength).toBeLessThan(0.27);
      const out = await run(bytes, mlpInput, [batch, 256]);
      expect(cosine(out, mlpExpected)).toBeGreaterThan(0.999);
      expect(maxAbsDiff(out, mlpExpected)).toBeLessThan(0.05);
      expect(maxAbsDiff(out, mlpExpected)).toBeGreaterThan(0); // it did quantize
    });
  }

  it('stores weights as onnxruntime quantize_dynamic does: symmetric int8 zero point 0, scale max|w|/127', () => {
    const model = decodeModel(mlp.bytes.slice());
    quantizeDynamic(model, { perChannel: true }); // reduce_range=False, onnxruntime's default and maas's
    const q = readTensor(model.graph!.initializer.find((t) => t.name === 'fc2.weight_quantized')!);
    const scale = readTensor(model.graph!.initializer.find((t) => t.name === 'fc2.weight_scale')!);
    const zp = readTensor(model.graph!.initializer.find((t) => t.name === 'fc2.weight_zero_point')!);
    expect(q.datatype).toBe('INT8');
    expect(q.dims).toEqual([512, 10]);
    expect(scale.dims).toEqual([10]);
    expect(zp.dims).toEqual([]);
    expect(Array.from(zp.data as Int8Array)).toEqual([0]);
    const w = mlp.weights[2]!;
    for (let c = 0; c < 10; c++) {
      let m = 0;
      for (let r = 0; r < 512; r++) m = Math.max(m, Math.abs(w.W[r * 10 + c]!));
      expect((scale.data as Float32Array)[c]).toBeCloseTo(m / 127, 7);
      // The largest-magnitude weight of each column maps to ±127.
      let qm = 0;
      for (let r = 0; r < 512; r++) qm = Math.max(qm, Math.abs((q.data as Int8Array)[r * 10 + c]!));
      expect(qm).toBe(127);
    }
  });

  it('conv net: Gemm (transB=1) quantized by default, Conv only on request (ConvInteger), both within tolerance', async () => {
    const net = buildConvNet({ seed: 3 });
    const input = randomFloat32(mulberry32(9), 4 * 3 * 32 * 32);
    const expected = convNetReference(net.params, input, 4);

    const gemmOnly = decodeModel(net.bytes.slice());
    const r1 = quantizeDynamic(gemmOnly);
    expect(r1.quantized.map((q) => q.opType)).toEqual(['Gemm']);
    const out1 = await run(encodeModel(gemmOnly), input, [4, 3, 32, 32]);
    expect(cosine(out1, expected)).toBeGreaterThan(0.999);

    for (const perChannel of [false, true]) {
      const withConv = decodeModel(net.bytes.slice());
      const r2 = quantizeDynamic(withConv, { opTypes: ['Conv', 'Gemm'], perChannel });
      expect(r2.quantized.map((q) => q.opType)).toEqual(['Conv', 'Conv', 'Gemm']);
      const bytes = encodeModel(withConv);
      expect(inspectModel(bytes).opTypes).toContain('ConvInteger');
      const out2 = await run(bytes, input, [4, 3, 32, 32]);
      expect(cosine(out2, expected)).toBeGreaterThan(0.999);
    }
  });

  it('skips what it cannot quantize and says why (uint8 per-channel Conv, excluded nodes)', () => {
    const net = decodeModel(buildConvNet({ seed: 3 }).bytes);
    const report = quantizeDynamic(net, {
      opTypes: ['Conv', 'Gemm'],
      perChannel: true,
      weightType: 'uint8',
      nodesToExclude: ['fc'],
    });
    expect(report.quantized).toEqual([]);
    expect(report.skipped.map((s) => s.node)).toEqual(['conv1', 'conv2', 'fc']);
    expect(report.skipped[0]!.reason).toMatch(/per-tensor weight zero point/);
    expect(report.skipped[2]!.reason).toMatch(/nodesToExclude/);
  });

  it('Gemm with alpha, beta and transB=0 matches the float Gemm', async () => {
    const rand = mulberry32(4);
    const W = randomFloat32(rand, 16 * 6);
    const C = randomFloat32(rand, 6);
    const graph = makeGraph({
      nodes: [
        makeNode(
          'Gemm',
          ['input', 'W', 'C'],
          ['output'],
          { alpha: { float: 0.5 }, beta: { float: 2 } },
          { name: 'g' },
        ),
      ],
      inputs: [makeValueInfo('input', 'FP32', ['batch', 16])],
      outputs: [makeValueInfo('output', 'FP32', ['batch', 6])],
      initializers: [tensorFromFloat32('W', [16, 6], W), tensorFromFloat32('C', [6], C)],
    });
    const bytes = encodeModel(makeModel(graph));
    const x = randomFloat32(rand, 3 * 16);
    const expected = await run(bytes, x, [3, 16]);
    const model = decodeModel(bytes.slice());
    expect(quantizeDynamic(model).quantized).toHaveLength(1);
    const out = await run(encodeModel(model), x, [3, 16]);
    expect(cosine(out, expected)).toBeGreaterThan(0.999);
  });

  it('upgrades models below opset 11 (DynamicQuantizeLinear) instead of refusing them', () => {
    const old = decodeModel(
      buildMlp({ inputSize: 4, hiddenSizes: [4], outputSize: 2, seed: 1, opset: 10 }).bytes,
    );
    expect(quantizeDynamic(old).quantized.length).toBeGreaterThan(0);
    expect(old.opsetImport.find((o) => o.domain === '')?.version).toBe(11n);
  });
});

describe('fp16', () => {
  it('compute mode: float16 inside, float32 signature, ≤ 0.52x size, close to fp32', async () => {
    const softmaxMlp = buildMlp({
      inputSize: 256,
      hiddenSizes: [512, 512],
      outputSize: 10,
      seed: 12,
      softmax: true,
    });
    const model = decodeModel(softmaxMlp.bytes.slice());
    const report = convertToFloat16(model);
    expect(report.float32Nodes).toEqual(['softmax (Softmax)']); // on the default block list
    const bytes = encodeModel(model);
    expect(bytes.byteLength / softmaxMlp.bytes.byteLength).toBeLessThanOrEqual(0.52);
    const info = inspectModel(bytes);
    expect(info.inputs).toEqual(inspectModel(softmaxMlp.bytes).inputs);
    expect(info.outputs).toEqual(inspectModel(softmaxMlp.bytes).outputs);
    expect(model.graph!.initializer.every((t) => t.dataType === TensorProto_DataType.FLOAT16)).toBe(true);
    // The MatMuls now read float16 (their weight is float16 and the input is cast at the boundary).
    const firstCast = model.graph!.node[0]!;
    expect(firstCast.opType).toBe('Cast');
    expect(firstCast.input).toEqual(['input']);
    const expected = mlpReference(softmaxMlp.weights, mlpInput, batch, { softmax: true });
    const out = await run(bytes, mlpInput, [batch, 256]);
    expect(cosine(out, expected)).toBeGreaterThan(0.9999);
    expect(maxAbsDiff(out, expected)).toBeLessThan(5e-3);
  });

  it('weights mode: float16 storage, float32 compute, ≤ 0.52x size', async () => {
    const model = decodeModel(mlp.bytes.slice());
    const report = convertToFloat16(model, { mode: 'weights' });
    expect(report.convertedInitializers).toBe(6);
    const bytes = encodeModel(model);
    expect(bytes.byteLength / mlp.bytes.byteLength).toBeLessThanOrEqual(0.52);
    const out = await run(bytes, mlpInput, [batch, 256]);
    expect(cosine(out, mlpExpected)).toBeGreaterThan(0.9999);
  });

  it('conv net in fp16 compute mode', async () => {
    const net = buildConvNet({ seed: 3, softmax: true });
    const input = randomFloat32(mulberry32(9), 2 * 3 * 32 * 32);
    const model = decodeModel(net.bytes.slice());
    convertToFloat16(model);
    const out = await run(encodeModel(model), input, [2, 3, 32, 32]);
    expect(cosine(out, convNetReference(net.params, input, 2))).toBeGreaterThan(0.9999);
  });

  it('an empty block list converts Softmax too, and the default list is documented', async () => {
    const softmaxMlp = buildMlp({ inputSize: 8, hiddenSizes: [8], outputSize: 4, seed: 2, softmax: true });
    const model = decodeModel(softmaxMlp.bytes.slice());
    expect(convertToFloat16(model, { blockList: [] }).float32Nodes).toEqual([]);
    expect(DEFAULT_FP16_BLOCK_LIST).toContain('Softmax');
    const input = randomFloat32(mulberry32(1), 2 * 8);
    const out = await run(encodeModel(model), input, [2, 8]);
    expect(cosine(out, mlpReference(softmaxMlp.weights, input, 2, { softmax: true }))).toBeGreaterThan(0.999);
  });
});

describe('magnitude pruning', () => {
  it('per layer: each weight reaches the target sparsity, smallest magnitudes go first', async () => {
    const model = decodeModel(mlp.bytes.slice());
    const report = pruneByMagnitude(model, { sparsity: 0.3 });
    expect(report.layers).toHaveLength(3);
    for (const l of report.layers)
      expect(l.sparsity).toBeCloseTo(Math.floor(0.3 * l.elements) / l.elements, 9);
    const w = readTensor(model.graph!.initializer.find((t) => t.name === 'fc1.weight')!).data as Float32Array;
    const orig = mlp.weights[1]!.W;
    let maxPruned = 0;
    let minKept = Infinity;
    let changedKept = 0;
    for (let i = 0; i < w.length; i++) {
      if (w[i] === 0) maxPruned = Math.max(maxPruned, Math.abs(orig[i]!));
      else {
        minKept = Math.min(minKept, Math.abs(orig[i]!));
        if (w[i] !== orig[i]) changedKept += 1;
      }
    }
    expect(changedKept).toBe(0); // kept weights are untouched
    expect(maxPruned).toBeLessThanOrEqual(minKept);
    const bytes = encodeModel(model);
    expect(bytes.byteLength).toBe(mlp.bytes.byteLength); // dense storage: zeros cost as much as any value
    const out = await run(bytes, mlpInput, [batch, 256]);
    expect(out).toHaveLength(batch * 10);
  });

  it('global: one threshold for all layers, overall sparsity reached, per-layer sparsity reported', () => {
    const model = decodeModel(mlp.bytes.slice());
    const report = pruneByMagnitude(model, { sparsity: 0.5, scope: 'global' });
    expect(report.sparsity).toBeCloseTo(Math.floor(0.5 * report.totalElements) / report.totalElements, 9);
    const perLayer = report.layers.map((l) => l.sparsity);
    expect(new Set(perLayer.map((s) => s.toFixed(3))).size).toBeGreaterThan(1);
  });

  it('rejects a sparsity outside [0, 1)', () => {
    expect(() => pruneByMagnitude(decodeModel(mlp.bytes), { sparsity: 1 })).toThrow(/sparsity/);
    expect(() => pruneByMagnitude(decodeModel(mlp.bytes), { sparsity: -0.1 })).toThrow(/sparsity/);
  });
});

describe('graph optimization and chains', () => {
  it('graph: onnxruntime-optimized model, runtime-specific ops recorded and their opset imported', async () => {
    const candidate = await buildCandidate(mlp.bytes, 'graph', {}, { model: 'm', version: 1 });
    expect(candidate.runtimeSpecificOps.length).toBeGreaterThan(0);
    expect(candidate.runtimeSpecificOps.every((op) => op.startsWith('com.microsoft'))).toBe(true);
    const model = decodeModel(candidate.bytes);
    expect(model.opsetImport.some((o) => o.domain === 'com.microsoft')).toBe(true);
    inspectModel(candidate.bytes); // the registry's check accepts it
    const out = await run(candidate.bytes, mlpInput, [batch, 256]);
    expect(maxAbsDiff(out, mlpExpected)).toBeLessThan(1e-4);
    const meta = JSON.parse(model.metadataProps.find((p) => p.key === 'maas.optimization')!.value) as Record<
      string,
      unknown
    >;
    expect(meta).toMatchObject({
      parent: { model: 'm', version: 1 },
      technique: 'graph',
      parameters: { graph: { level: 'extended' } },
    });
  });

  it('prune+int8 chains both steps; invalid orders and names are refused', async () => {
    const candidate = await buildCandidate(
      mlp.bytes,
      'prune+int8',
      parseTechniqueParameters({ prune: { sparsity: 0.2 } }),
      { model: 'm', version: 1 },
    );
    expect(candidate.details.map((d) => d.technique)).toEqual(['prune', 'int8']);
    expect(inspectModel(candidate.bytes).opTypes).toContain('MatMulInteger');
    expect(() => parseCandidate('int8+prune')).toThrow(/cannot follow/);
    expect(() => parseCandidate('graph+int8')).toThrow(/cannot follow/);
    expect(() => parseCandidate('fp16+int8')).toThrow(/cannot follow/);
    expect(() => parseCandidate('int4')).toThrow(/unknown technique/);
    expect(() => parseTechniqueParameters({ int8: { perChanel: true } })).toThrow(/unknown parameter/);
    expect(() => parseTechniqueParameters({ prune: {} })).toThrow(/sparsity/);
  });
});

describe('fp16 on a hand-built graph (blocked op mid-graph, Constant node, output also read inside)', () => {
  it('keeps the signature and values, casting around the float32 island', async () => {
    const rand = mulberry32(8);
    const W = randomFloat32(rand, 6 * 4);
    const graph = makeGraph({
      nodes: [
        makeNode('MatMul', ['input', 'W'], ['logits'], {}, { name: 'mm' }),
        makeNode('Softmax', ['logits'], ['probs'], { axis: { int: -1 } }, { name: 'sm' }),
        makeNode(
          'Constant',
          [],
          ['two'],
          { value: { tensor: tensorFromFloat32('two', [], new Float32Array([2])) } },
          { name: 'const' },
        ),
        makeNode('Mul', ['probs', 'two'], ['output'], {}, { name: 'scale' }),
        makeNode('Shape', ['logits'], ['shape'], {}, { name: 'shape' }),
      ],
      inputs: [makeValueInfo('input', 'FP32', ['batch', 6])],
      outputs: [
        makeValueInfo('output', 'FP32', ['batch', 4]),
        makeValueInfo('logits', 'FP32', ['batch', 4]),
        makeValueInfo('shape', 'INT64', [2]),
      ],
      initializers: [tensorFromFloat32('W', [6, 4], W)],
    });
    const bytes = encodeModel(makeModel(graph));
    const model = decodeModel(bytes.slice());
    const report = convertToFloat16(model);
    expect(report.float32Nodes).toEqual(['sm (Softmax)']);
    const converted = encodeModel(model);
    expect(inspectModel(converted).outputs).toEqual(inspectModel(bytes).outputs);
    const x = randomFloat32(rand, 3 * 6);
    const feeds = { input: new ort.Tensor('float32', x, [3, 6]) };
    const [a, b] = await Promise.all([
      ort.InferenceSession.create(bytes),
      ort.InferenceSession.create(converted),
    ]);
    const [ra, rb] = [await a.run(feeds), await b.run(feeds)];
    for (const name of ['output', 'logits']) {
      expect(rb[name]?.type).toBe('float32');
      expect(maxAbsDiff(rb[name]!.data as Float32Array, ra[name]!.data as Float32Array)).toBeLessThan(5e-3);
    }
    expect(Array.from(rb.shape!.data as BigInt64Array)).toEqual([3n, 4n]);
  });
});
