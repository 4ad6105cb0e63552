/**
 * Ready-made ONNX models for tests, demos and benchmarks (MLPs, conv nets, identity models), with
 * reference implementations to check onnxruntime's outputs against. Generated in TypeScript so the
 * repository holds no binary model blobs and every model's weights are reproducible from a seed.
 * Development code: no function bundles it.
 *
 * Layout conventions of the generated models: one input named 'input' and one output named 'output',
 * with a symbolic leading batch dimension 'batch' unless a fixed batch size is requested.
 */
import type { ModelProto, NodeProto, TensorProto } from 'onnx-buf';
import { InvalidArgumentError } from '../shared/errors';
import { encodeModel } from '../shared/onnx/codec';
import {
  DEFAULT_OPSET,
  type Dim,
  makeGraph,
  makeModel,
  makeNode,
  makeValueInfo,
  tensorFromFloat32,
} from '../shared/onnx/construct';
import type { OipDatatype } from '../shared/onnx/datatypes';
import { mulberry32, randomFloat32 } from '../shared/util/random';

export * from '../shared/onnx/construct';
export { mulberry32, randomFloat32 } from '../shared/util/random';

// ---------------------------------------------------------------------------------------------
// Ready-made models
// ---------------------------------------------------------------------------------------------

/** A generated model: its encoded bytes and the message it was encoded from. */
export interface BuiltModel {
  bytes: Uint8Array;
  model: ModelProto;
}

/** One dense layer: y = x·W + b with W row-major [rows = in, cols = out]. */
export interface DenseLayer {
  W: Float32Array;
  b: Float32Array;
  rows: number;
  cols: number;
}

/** Options of {@link buildMlp}. */
export interface MlpOptions {
  inputSize: number;
  hiddenSizes: readonly number[];
  outputSize: number;
  seed: number;
  /** 'dynamic' (default): symbolic dim 'batch'; a number fixes the batch size. */
  batch?: 'dynamic' | number;
  /** Activation after each hidden layer (default 'relu'). */
  activation?: 'relu' | 'none';
  /** Append Softmax over the last axis (default false). */
  softmax?: boolean;
  opset?: number;
}

/** Result of {@link buildMlp}: the model plus everything {@link mlpReference} needs. */
export interface BuiltMlp extends BuiltModel {
  weights: DenseLayer[];
  activation: 'relu' | 'none';
  softmax: boolean;
}

function batchDim(batch: 'dynamic' | number | undefined): Dim {
  return batch === undefined || batch === 'dynamic' ? 'batch' : batch;
}

function denseLayer(rand: () => number, rows: number, cols: number): DenseLayer {
  // Glorot-uniform weights keep activations O(1) through the layers, so reference comparisons with
  // a relative tolerance stay meaningful; small non-zero biases make bias bugs visible.
  const limit = Math.sqrt(6 / (rows + cols));
  return {
    W: randomFloat32(rand, rows * cols, -limit, limit),
    b: randomFloat32(rand, cols, -0.1, 0.1),
    rows,
    cols,
  };
}

/**
 * Builds a multi-layer perceptron 'input' [batch, inputSize] → 'output' [batch, outputSize] from
 * MatMul + Add (+ Relu) nodes with seeded weights as initializers.
 * @example
 * const mlp = buildMlp({ inputSize: 16, hiddenSizes: [32], outputSize: 4, seed: 1 });
 * const session = await ort.InferenceSession.create(mlp.bytes);
 */
export function buildMlp(options: MlpOptions): BuiltMlp {
  const { inputSize, hiddenSizes, outputSize, seed } = options;
  const activation = options.activation ?? 'relu';
  const softmax = options.softmax ?? false;
  const sizes = [inputSize, ...hiddenSizes, outputSize];
  if (sizes.some((s) => !Number.isInteger(s) || s <= 0))
    throw new InvalidArgumentError('MLP layer sizes must be positive integers');
  const rand = mulberry32(seed);
  const weights: DenseLayer[] = [];
  const nodes: NodeProto[] = [];
  const initializers: TensorProto[] = [];
  let x = 'input';
  for (let i = 0; i + 1 < sizes.length; i++) {
    const layer = denseLayer(rand, sizes[i] ?? 0, sizes[i + 1] ?? 0);
    weights.push(layer);
    const last = i + 2 === sizes.length;
    initializers.push(tensorFromFloat32(`fc${i}.weight`, [layer.rows, layer.cols], layer.W));
    initializers.push(tensorFromFloat32(`fc${i}.bias`, [layer.cols], layer.b));
    nodes.push(makeNode('MatMul', [x, `fc${i}.weight`], [`fc${i}.matmul`], {}, { name: `fc${i}_matmul` }));
    const y = last && !softmax ? 'output' : `fc${i}.out`;
    nodes.push(makeNode('Add', [`fc${i}.matmul`, `fc${i}.bias`], [y], {}, { name: `fc${i}_add` }));
    x = y;
    if (!last && activation === 'relu') {
      nodes.push(makeNode('Relu', [x], [`fc${i}.relu`], {}, { name: `fc${i}_relu` }));
      x = `fc${i}.relu`;
    }
  }
  if (softmax) nodes.push(makeNode('Softmax', [x], ['output'], { axis: { int: -1 } }, { name: 'softmax' }));
  const b = batchDim(options.batch);
  const graph = makeGraph({
    name: 'mlp',
    nodes,
    inputs: [makeValueInfo('input', 'FP32', [b, inputSize])],
    outputs: [makeValueInfo('output', 'FP32', [b, outputSize])],
    initializers,
  });
  const model = makeModel(graph, options.opset !== undefined ? { opset: options.opset } : {});
  return { bytes: encodeModel(model), model, weights, activation, softmax };
}

function softmaxRows(out: Float32Array, batch: number, cols: number): void {
  for (let r = 0; r < batch; r++) {
    let max = -Infinity;
    for (let c = 0; c < cols; c++) max = Math.max(max, out[r * cols + c] ?? 0);
    let sum = 0;
    for (let c = 0; c < cols; c++) {
      const e = Math.exp((out[r * cols + c] ?? 0) - max);
      out[r * cols + c] = e;
      sum += e;
    }
    for (let c = 0; c < cols; c++) out[r * cols + c] = (out[r * cols + c] ?? 0) / sum;
  }
}

/**
 * Plain-JS forward pass of a {@link buildMlp} model, the oracle tests compare onnxruntime against.
 * Accumulates in float64, so expect ~1e-6 relative differences from onnxruntime's float32.
 * @example
 * const expected = mlpReference(mlp.weights, input, 4, { softmax: mlp.softmax });
 */
export function mlpReference(
  weights: readonly DenseLayer[],
  input: Float32Array,
  batch: number,
  options: { activation?: 'relu' | 'none'; softmax?: boolean } = {},
): Float32Array {
  let x = input;
  weights.forEach((layer, i) => {
    if (x.length !== batch * layer.rows)
      throw new InvalidArgumentError(`layer ${i} expects ${batch}x${layer.rows} inputs, got ${x.length}`);
    const y = new Float32Array(batch * layer.cols);
    const relu = (options.activation ?? 'relu') === 'relu' && i + 1 < weights.length;
    for (let r = 0; r < batch; r++) {
      for (let c = 0; c < layer.cols; c++) {
        let acc = layer.b[c] ?? 0;
        for (let k = 0; k < layer.rows; k++)
          acc += (x[r * layer.rows + k] ?? 0) * (layer.W[k * layer.cols + c] ?? 0);
        y[r * layer.cols + c] = relu ? Math.max(0, acc) : acc;
      }
    }
    x = y;
  });
  if (options.softmax) softmaxRows(x, batch, weights[weights.length - 1]?.cols ?? 0);
  return x;
}

/** Options of {@link buildConvNet}. */
export interface ConvNetOptions {
  seed: number;
  batch?: 'dynamic' | number;
  inputChannels?: number;
  /** Square input side (default 32); must be even (one 2x2 max pool). */
  imageSize?: number;
  /** Output channels of the two 3x3 convolutions (default [8, 16]). */
  channels?: readonly [number, number];
  numClasses?: number;
  softmax?: boolean;
  opset?: number;
}

/** One 3x3 'same' convolution: W is [outC, inC, 3, 3] (OIHW), b is [outC]. */
export interface ConvLayer {
  W: Float32Array;
  b: Float32Array;
  outC: number;
  inC: number;
}

/** Weights of a {@link buildConvNet} model. The classifier is a Gemm with transB=1: W is [numClasses, channels[1]]. */
export interface ConvNetParams {
  conv: [ConvLayer, ConvLayer];
  fc: { W: Float32Array; b: Float32Array; outFeatures: number; inFeatures: number };
  inputChannels: number;
  imageSize: number;
  softmax: boolean;
}

/** Result of {@link buildConvNet}. */
export interface BuiltConvNet extends BuiltModel {
  params: ConvNetParams;
  /** Input shape with batch as -1 when dynamic. */
  inputShape: number[];
  outputShape: number[];
}

/**
 * Builds a small image classifier: Conv3x3+Relu → MaxPool2x2 → Conv3x3+Relu → GlobalAveragePool →
 * Flatten → Gemm (→ Softmax), input 'input' [batch, 3, 32, 32] and output 'output' [batch, 10] by default.
 * @example
 * const net = buildConvNet({ seed: 7 });
 * const session = await ort.InferenceSession.create(net.bytes);
 */
export function buildConvNet(options: ConvNetOptions): BuiltConvNet {
  const inC = options.inputChannels ?? 3;
  const size = options.imageSize ?? 32;
  const [c1, c2] = options.channels ?? [8, 16];
  const classes = options.numClasses ?? 10;
  const softmax = options.softmax ?? false;
  if (size % 2 !== 0 || size < 2) throw new InvalidArgumentError('imageSize must be an even number >= 2');
  const rand = mulberry32(options.seed);
  const conv = (outC: number, cin: number): ConvLayer => {
    const fanIn = cin * 9;
    const limit = Math.sqrt(6 / (fanIn + outC * 9));
    return {
      W: randomFloat32(rand, outC * cin * 9, -limit, limit),
      b: randomFloat32(rand, outC, -0.1, 0.1),
      outC,
      inC: cin,
    };
  };
  const conv1 = conv(c1, inC);
  const conv2 = conv(c2, c1);
  const fcLimit = Math.sqrt(6 / (c2 + classes));
  const fc = {
    W: randomFloat32(rand, classes * c2, -fcLimit, fcLimit),
    b: randomFloat32(rand, classes, -0.1, 0.1),
    outFeatures: classes,
    inFeatures: c2,
  };
  const same = { kernel_shape: { ints: [3, 3] }, pads: { ints: [1, 1, 1, 1] } } as const;
  const nodes = [
    makeNode('Conv', ['input', 'conv1.weight', 'conv1.bias'], ['conv1.out'], same, { name: 'conv1' }),
    makeNode('Relu', ['conv1.out'], ['relu1.out'], {}, { name: 'relu1' }),
    makeNode(
      'MaxPool',
      ['relu1.out'],
      ['pool1.out'],
      { kernel_shape: { ints: [2, 2] }, strides: { ints: [2, 2] } },
      { name: 'pool1' },
    ),
    makeNode('Conv', ['pool1.out', 'conv2.weight', 'conv2.bias'], ['conv2.out'], same, { name: 'conv2' }),
    makeNode('Relu', ['conv2.out'], ['relu2.out'], {}, { name: 'relu2' }),
    makeNode('GlobalAveragePool', ['relu2.out'], ['gap.out'], {}, { name: 'gap' }),
    makeNode('Flatten', ['gap.out'], ['flat.out'], { axis: { int: 1 } }, { name: 'flatten' }),
    makeNode(
      'Gemm',
      ['flat.out', 'fc.weight', 'fc.bias'],
      [softmax ? 'fc.out' : 'output'],
      { transB: { int: 1 } },
      { name: 'fc' },
    ),
    ...(softmax
      ? [makeNode('Softmax', ['fc.out'], ['output'], { axis: { int: -1 } }, { name: 'softmax' })]
      : []),
  ];
  const initializers = [
    tensorFromFloat32('conv1.weight', [c1, inC, 3, 3], conv1.W),
    tensorFromFloat32('conv1.bias', [c1], conv1.b),
    tensorFromFloat32('conv2.weight', [c2, c1, 3, 3], conv2.W),
    tensorFromFloat32('conv2.bias', [c2], conv2.b),
    tensorFromFloat32('fc.weight', [classes, c2], fc.W),
    tensorFromFloat32('fc.bias', [classes], fc.b),
  ];
  const b = batchDim(options.batch);
  const graph = makeGraph({
    name: 'convnet',
    nodes,
    inputs: [makeValueInfo('input', 'FP32', [b, inC, size, size])],
    outputs: [makeValueInfo('output', 'FP32', [b, classes])],
    initializers,
  });
  const model = makeModel(graph, options.opset !== undefined ? { opset: options.opset } : {});
  const n = typeof b === 'number' ? b : -1;
  return {
    bytes: encodeModel(model),
    model,
    params: { conv: [conv1, conv2], fc, inputChannels: inC, imageSize: size, softmax },
    inputShape: [n, inC, size, size],
    outputShape: [n, classes],
  };
}

function conv3x3Relu(x: Float32Array, layer: ConvLayer, size: number): Float32Array {
  const { W, b, outC, inC } = layer;
  const y = new Float32Array(outC * size * size);
  for (let o = 0; o < outC; o++) {
    for (let i = 0; i < size; i++) {
      for (let j = 0; j < size; j++) {
        let acc = b[o] ?? 0;
        for (let c = 0; c < inC; c++) {
          for (let ki = 0; ki < 3; ki++) {
            const ii = i + ki - 1;
            if (ii < 0 || ii >= size) continue;
            for (let kj = 0; kj < 3; kj++) {
              const jj = j + kj - 1;
              if (jj < 0 || jj >= size) continue;
              acc += (x[(c * size + ii) * size + jj] ?? 0) * (W[((o * inC + c) * 3 + ki) * 3 + kj] ?? 0);
            }
          }
        }
        y[(o * size + i) * size + j] = Math.max(0, acc);
      }
    }
  }
  return y;
}

/**
 * Plain-JS forward pass of a {@link buildConvNet} model (NCHW input, batch images back to back).
 * @example
 * const expected = convNetReference(net.params, input, 2);
 */
export function convNetReference(params: ConvNetParams, input: Float32Array, batch: number): Float32Array {
  const { conv, fc, inputChannels, imageSize: size } = params;
  const per = inputChannels * size * size;
  if (input.length !== batch * per)
    throw new InvalidArgumentError(`expected ${batch * per} input values, got ${input.length}`);
  const out = new Float32Array(batch * fc.outFeatures);
  const half = size / 2;
  for (let n = 0; n < batch; n++) {
    const a = conv3x3Relu(input.subarray(n * per, (n + 1) * per), conv[0], size);
    const pooled = new Float32Array(conv[0].outC * half * half);
    for (let c = 0; c < conv[0].outC; c++) {
      for (let i = 0; i < half; i++) {
        for (let j = 0; j < half; j++) {
          const at = (di: number, dj: number): number => a[(c * size + 2 * i + di) * size + 2 * j + dj] ?? 0;
          pooled[(c * half + i) * half + j] = Math.max(at(0, 0), at(0, 1), at(1, 0), at(1, 1));
        }
      }
    }
    const h = conv3x3Relu(pooled, conv[1], half);
    const feat = new Float64Array(conv[1].outC);
    for (let c = 0; c < conv[1].outC; c++) {
      let s = 0;
      for (let k = 0; k < half * half; k++) s += h[c * half * half + k] ?? 0;
      feat[c] = s / (half * half);
    }
    for (let o = 0; o < fc.outFeatures; o++) {
      let acc = fc.b[o] ?? 0;
      for (let k = 0; k < fc.inFeatures; k++) acc += (feat[k] ?? 0) * (fc.W[o * fc.inFeatures + k] ?? 0);
      out[n * fc.outFeatures + o] = acc;
    }
  }
  if (params.softmax) softmaxRows(out, batch, fc.outFeatures);
  return out;
}

/**
 * Builds a single-Identity-node model 'input' → 'output' of the given datatype and shape, to test
 * that each datatype survives the request → onnxruntime → response path unchanged.
 * @example
 * const { bytes } = buildIdentityModel('FP16', ['batch', 4]);
 */
export function buildIdentityModel(
  datatype: OipDatatype,
  shape: readonly Dim[] = ['batch', 4],
  options: { opset?: number } = {},
): BuiltModel {
  const graph = makeGraph({
    name: `identity_${datatype.toLowerCase()}`,
    nodes: [makeNode('Identity', ['input'], ['output'], {}, { name: 'identity' })],
    inputs: [makeValueInfo('input', datatype, shape)],
    outputs: [makeValueInfo('output', datatype, shape)],
  });
  const model = makeModel(graph, options.opset !== undefined ? { opset: options.opset } : {});
  return { bytes: encodeModel(model), model };
}

/**
 * A model whose computation sits inside an `If` (like Silero VAD): input `x` [batch, 64] and a
 * scalar BOOL `use_wide`; the then-branch runs MatMul(x, W1 from the outer graph) → Relu →
 * MatMul(W2, a body initializer), the else-branch MatMul(x, W3 from the outer graph) → Tanh →
 * MatMul(W4 as a body Constant node). Output `y` [batch, 8]. Both branches read outer-scope names.
 * @example
 * const { bytes } = buildIfModel({ seed: 1 });
 */
export function buildIfModel(options: { seed: number; opset?: number }): BuiltModel {
  const rand = mulberry32(options.seed);
  const w = (name: string, rows: number, cols: number): TensorProto =>
    tensorFromFloat32(name, [rows, cols], randomFloat32(rand, rows * cols, -0.15, 0.15));
  const branch = (
    name: string,
    first: string,
    act: string,
    second: 'init' | 'constant',
  ): ModelProto['graph'] => {
    const w2 = w(`${name}.w2`, 256, 8);
    const nodes: NodeProto[] = [
      makeNode('MatMul', ['x', first], [`${name}.h`], {}, { name: `${name}.fc1` }),
      makeNode(act, [`${name}.h`], [`${name}.a`], {}, { name: `${name}.act` }),
    ];
    if (second === 'constant')
      nodes.push(makeNode('Constant', [], [w2.name], { value: { tensor: w2 } }, { name: `${name}.const` }));
    nodes.push(makeNode('MatMul', [`${name}.a`, w2.name], [`${name}.y`], {}, { name: `${name}.fc2` }));
    return makeGraph({
      name,
      nodes,
      inputs: [],
      outputs: [makeValueInfo(`${name}.y`, 'FP32', ['batch', 8])],
      initializers: second === 'init' ? [w2] : [],
    });
  };
  const graph = makeGraph({
    name: 'if_model',
    nodes: [
      makeNode(
        'If',
        ['use_wide'],
        ['y'],
        {
          then_branch: { graph: branch('wide', 'W1', 'Relu', 'init') as NonNullable<ModelProto['graph']> },
          else_branch: {
            graph: branch('narrow', 'W3', 'Tanh', 'constant') as NonNullable<ModelProto['graph']>,
          },
        },
        { name: 'choose' },
      ),
    ],
    inputs: [makeValueInfo('x', 'FP32', ['batch', 64]), makeValueInfo('use_wide', 'BOOL', [])],
    outputs: [makeValueInfo('y', 'FP32', ['batch', 8])],
    initializers: [w('W1', 64, 256), w('W3', 64, 256)],
  });
  const model = makeModel(graph, { opset: options.opset ?? DEFAULT_OPSET });
  return { bytes: encodeModel(model), model };
}

/**
 * A small CNN exported the way paddle2onnx exports: every weight a `Constant` node, a Conv
 * followed by BatchNormalization whose running variance is ~1e8 (beyond float16's 65504, as in
 * the PaddleOCR detector head), Relu, GlobalAveragePool, Flatten, MatMul. Input `x`
 * [batch, 3, 16, 16], output `y` [batch, 4].
 * @example
 * const { bytes } = buildBatchNormConstantNet({ seed: 1 });
 */
export function buildBatchNormConstantNet(options: { seed: number; opset?: number }): BuiltModel {
  const rand = mulberry32(options.seed);
  const nodes: NodeProto[] = [];
  const constant = (name: string, dims: number[], data: Float32Array): string => {
    nodes.push(
      makeNode(
        'Constant',
        [],
        [name],
        { value: { tensor: tensorFromFloat32(name, dims, data) } },
        { name: `${name}.const` },
      ),
    );
    return name;
  };
  // Conv outputs in the thousands, normalized by a variance near 1e8: fine in fp32 and in float16
  // compute (values < 65504), wrong when the variance itself is clamped to 65504.
  const W = constant('conv.w', [8, 3, 3, 3], randomFloat32(rand, 8 * 27, -2000, 2000));
  const scale = constant('bn.scale', [8], randomFloat32(rand, 8, 0.5, 1.5));
  const bias = constant('bn.bias', [8], randomFloat32(rand, 8, -0.5, 0.5));
  const mean = constant('bn.mean', [8], randomFloat32(rand, 8, -100, 100));
  const variance = constant('bn.var', [8], randomFloat32(rand, 8, 5e7, 2e8));
  const fc = constant('fc.w', [8, 4], randomFloat32(rand, 32, -1, 1));
  nodes.push(
    makeNode('Conv', ['x', W], ['conv'], { pads: { ints: [1, 1, 1, 1] } }, { name: 'conv' }),
    makeNode(
      'BatchNormalization',
      ['conv', scale, bias, mean, variance],
      ['bn'],
      { epsilon: { float: 1e-5 } },
      { name: 'bn' },
    ),
    makeNode('Relu', ['bn'], ['relu'], {}, { name: 'relu' }),
    makeNode('GlobalAveragePool', ['relu'], ['pool'], {}, { name: 'pool' }),
    makeNode('Flatten', ['pool'], ['flat'], {}, { name: 'flatten' }),
    makeNode('MatMul', ['flat', fc], ['y'], {}, { name: 'fc' }),
  );
  const graph = makeGraph({
    name: 'bn_constant_net',
    nodes,
    inputs: [makeValueInfo('x', 'FP32', ['batch', 3, 16, 16])],
    outputs: [makeValueInfo('y', 'FP32', ['batch', 4])],
  });
  const model = makeModel(graph, { opset: options.opset ?? DEFAULT_OPSET });
  return { bytes: encodeModel(model), model };
}
