import { create } from '@bufbuild/protobuf';
import {
  FunctionProtoSchema,
  type ModelProto,
  OperatorSetIdProtoSchema,
  SparseTensorProtoSchema,
  StringStringEntryProtoSchema,
  type TensorProto,
  TensorProto_DataLocation,
  TensorProto_DataType,
  TypeProto_SequenceSchema,
  TypeProtoSchema,
  ValueInfoProtoSchema,
} from 'onnx-buf';
import { describe, expect, it } from 'vitest';
import {
  buildConvNet,
  buildIdentityModel,
  buildIfModel,
  buildMlp,
  makeGraph,
  makeModel,
  makeNode,
  makeTensor,
  makeValueInfo,
  mulberry32,
  tensorFromFloat32,
} from '../../dev/onnx-builder';
import { MaasError, PayloadTooLargeError, UnprocessableError } from '../../shared/errors';
import { estimateSessionBytes, NODE_BYTES } from '../../shared/inference';
import { decodeModel, encodeModel } from '../../shared/onnx/codec';
import { OIP_DATATYPES } from '../../shared/onnx/datatypes';
import { inspectModel } from '../../shared/onnx/inspect';
import type { ModelVersion } from '../../shared/registry';

const MIB = 1024 * 1024;

/** Runs inspectModel and returns the error it throws (failing the test if it does not). */
function rejection(bytes: Uint8Array): MaasError {
  try {
    inspectModel(bytes);
  } catch (error) {
    expect(error).toBeInstanceOf(MaasError);
    return error as MaasError;
  }
  throw new Error('expected inspectModel to reject the model');
}

/** An external-data reference, as onnx.save_model(..., save_as_external_data=True) would write it. */
function externalize(tensor: TensorProto, location: string, setDataLocation = true): TensorProto {
  tensor.rawData = new Uint8Array();
  if (setDataLocation) tensor.dataLocation = TensorProto_DataLocation.EXTERNAL;
  tensor.externalData = [
    create(StringStringEntryProtoSchema, { key: 'location', value: location }),
    create(StringStringEntryProtoSchema, { key: 'offset', value: '0' }),
  ];
  return tensor;
}

const f32 = (n: number): Float32Array => Float32Array.from({ length: n }, (_, i) => i / 10);

/** x → Add(x, c) where c comes from a Constant node: the smallest model with a Constant attribute. */
function constantModel(c: TensorProto): ModelProto {
  return makeModel(
    makeGraph({
      nodes: [makeNode('Constant', [], ['c'], { value: { tensor: c } }), makeNode('Add', ['x', 'c'], ['y'])],
      inputs: [makeValueInfo('x', 'FP32', [2])],
      outputs: [makeValueInfo('y', 'FP32', [2])],
    }),
  );
}

/** If(cond) then Identity(x) else Constant(c), with c in the else-branch subgraph. */
function ifModel(elseTensor: TensorProto, asInitializer: boolean): ModelProto {
  const thenBranch = makeGraph({
    name: 'then',
    nodes: [makeNode('Identity', ['x'], ['t_out'])],
    inputs: [],
    outputs: [makeValueInfo('t_out', 'FP32', [2])],
  });
  const elseBranch = asInitializer
    ? makeGraph({
        name: 'else',
        nodes: [makeNode('Identity', [elseTensor.name], ['e_out'])],
        inputs: [],
        outputs: [makeValueInfo('e_out', 'FP32', [2])],
        initializers: [elseTensor],
      })
    : makeGraph({
        name: 'else',
        nodes: [makeNode('Constant', [], ['e_out'], { value: { tensor: elseTensor } })],
        inputs: [],
        outputs: [makeValueInfo('e_out', 'FP32', [2])],
      });
  return makeModel(
    makeGraph({
      nodes: [
        makeNode('If', ['cond'], ['y'], {
          then_branch: { graph: thenBranch },
          else_branch: { graph: elseBranch },
        }),
      ],
      inputs: [makeValueInfo('cond', 'BOOL', []), makeValueInfo('x', 'FP32', [2])],
      outputs: [makeValueInfo('y', 'FP32', [2])],
    }),
  );
}

describe('inspectModel on valid models', () => {
  it('describes an MLP', () => {
    const mlp = buildMlp({ inputSize: 16, hiddenSizes: [32, 8], outputSize: 4, seed: 1, softmax: true });
    const info = inspectModel(mlp.bytes);
    expect(info).toEqual({
      irVersion: 8,
      opsets: [{ domain: '', version: 17 }],
      producerName: 'maas',
      producerVersion: '0.1.0',
      opTypes: ['Add', 'MatMul', 'Relu', 'Softmax'],
      inputs: [{ name: 'input', datatype: 'FP32', shape: [-1, 16] }],
      outputs: [{ name: 'output', datatype: 'FP32', shape: [-1, 4] }],
      initializerCount: 6,
      parameterCount: 16 * 32 + 32 + 32 * 8 + 8 + 8 * 4 + 4,
      initializerBytes: 4 * (16 * 32 + 32 + 32 * 8 + 8 + 8 * 4 + 4), // FP32 raw_data
      nodeCount: 3 * 3, // MatMul, Add and Relu / Softmax per layer
    });
  });

  it('counts a model-local function body at each call, as onnxruntime inlines it', () => {
    const model = decodeModel(buildIdentityModel('FP32', [2]).bytes);
    const before = inspectModel(encodeModel(model)).nodeCount!;
    const body = [makeNode('Relu', ['a'], ['b']), makeNode('Neg', ['b'], ['c'])];
    model.functions.push(
      create(FunctionProtoSchema, {
        name: 'F',
        domain: 'local',
        input: ['a'],
        output: ['c'],
        node: body,
        opsetImport: model.opsetImport,
      }),
    );
    model.opsetImport.push(create(OperatorSetIdProtoSchema, { domain: 'local', version: 1n }));
    // Declared but not called: nothing more to load.
    expect(inspectModel(encodeModel(model)).nodeCount).toBe(before);
    const out = model.graph!.output[0]!.name;
    model.graph!.node.push(
      makeNode('F', [out], ['f1'], {}, { domain: 'local' }),
      makeNode('F', ['f1'], ['f2'], {}, { domain: 'local' }),
    );
    expect(inspectModel(encodeModel(model)).nodeCount).toBe(before + 2 * (1 + body.length));
  });

  it('counts the nodes of subgraphs too, and the session estimate charges each one', () => {
    // If, then the wide branch's MatMul, Relu, MatMul and the narrow one's MatMul, Tanh, Constant, MatMul.
    const info = inspectModel(buildIfModel({ seed: 1 }).bytes);
    expect(info.nodeCount).toBe(1 + 3 + 4);
    const version = (onnx: object): ModelVersion => ({ size: 10 * MIB, onnx }) as unknown as ModelVersion;
    for (const smallModelBytes of [4 * MIB, 16 * MIB])
      expect(
        estimateSessionBytes(version(info), { smallModelBytes }) -
          estimateSessionBytes(version({ ...info, nodeCount: undefined }), { smallModelBytes }),
      ).toBe(8 * NODE_BYTES);
  });

  it('describes a fixed-batch MLP with another opset', () => {
    const info = inspectModel(
      buildMlp({ inputSize: 3, hiddenSizes: [], outputSize: 2, seed: 1, batch: 5, opset: 13 }).bytes,
    );
    expect(info.inputs).toEqual([{ name: 'input', datatype: 'FP32', shape: [5, 3] }]);
    expect(info.opsets).toEqual([{ domain: '', version: 13 }]);
    expect(info.opTypes).toEqual(['Add', 'MatMul']);
  });

  it('describes a conv net', () => {
    const net = buildConvNet({ seed: 2 });
    const info = inspectModel(net.bytes);
    expect(info.opTypes).toEqual(['Conv', 'Flatten', 'Gemm', 'GlobalAveragePool', 'MaxPool', 'Relu']);
    expect(info.inputs).toEqual([{ name: 'input', datatype: 'FP32', shape: [-1, 3, 32, 32] }]);
    expect(info.outputs).toEqual([{ name: 'output', datatype: 'FP32', shape: [-1, 10] }]);
    expect(info.parameterCount).toBe(8 * 3 * 9 + 8 + 16 * 8 * 9 + 16 + 10 * 16 + 10);
    expect(info.initializerCount).toBe(6);
  });

  it('maps every OIP datatype of an identity model', () => {
    for (const datatype of OIP_DATATYPES) {
      const info = inspectModel(buildIdentityModel(datatype, ['n', 2, null]).bytes);
      expect(info.inputs).toEqual([{ name: 'input', datatype, shape: [-1, 2, -1] }]);
      expect(info.outputs).toEqual([{ name: 'output', datatype, shape: [-1, 2, -1] }]);
      expect(info.parameterCount).toBe(0);
    }
  });

  it('excludes initializers listed as graph inputs (IR < 4 style) and reports unknown rank', () => {
    const w = tensorFromFloat32('w', [2], f32(2));
    const model = makeModel(
      makeGraph({
        nodes: [makeNode('Add', ['x', 'w'], ['y'])],
        inputs: [makeValueInfo('x', 'FP32', [2]), makeValueInfo('w', 'FP32', [2])],
        outputs: [makeValueInfo('y', 'FP32')],
        initializers: [w],
      }),
      { irVersion: 3, opset: 9 },
    );
    const info = inspectModel(encodeModel(model));
    expect(info.inputs.map((i) => i.name)).toEqual(['x']);
    expect(info.outputs).toEqual([{ name: 'y', datatype: 'FP32', shape: [], unknownRank: true }]);
    expect(info.irVersion).toBe(3);
  });

  it('lists ops of subgraphs and prefixes non-default domains', () => {
    const graph = ifModel(tensorFromFloat32('c', [2], f32(2)), false).graph!;
    graph.node.push(makeNode('FusedMatMul', ['x', 'x'], ['z'], {}, { domain: 'com.microsoft' }));
    const model = makeModel(graph, { extraOpsets: [{ domain: 'com.microsoft', version: 1 }] });
    const info = inspectModel(encodeModel(model));
    expect(info.opTypes).toEqual(['Constant', 'Identity', 'If', 'com.microsoft:FusedMatMul']);
    expect(info.opsets).toEqual([
      { domain: '', version: 17 },
      { domain: 'com.microsoft', version: 1 },
    ]);
    expect(info.inputs.map((i) => [i.name, i.datatype, i.shape])).toEqual([
      ['cond', 'BOOL', []],
      ['x', 'FP32', [2]],
    ]);
  });

  it('counts what folding constant Casts of initializers adds (int8 weights as Cast→Mul become float32)', () => {
    const graph = makeGraph({
      nodes: [
        makeNode('Cast', ['w_q'], ['w_f'], { to: { int: TensorProto_DataType.FLOAT } }),
        makeNode('Mul', ['w_f', 'w_scale'], ['w']),
        makeNode('MatMul', ['x', 'w'], ['h']),
        // Neither counts: a Cast of an activation, and one that narrows.
        makeNode('Cast', ['h'], ['h16'], { to: { int: TensorProto_DataType.FLOAT16 } }),
        makeNode('Cast', ['b'], ['b16'], { to: { int: TensorProto_DataType.FLOAT16 } }),
        makeNode('Add', ['h16', 'b16'], ['y']),
      ],
      inputs: [makeValueInfo('x', 'FP32', ['batch', 16])],
      outputs: [makeValueInfo('y', 'FP16', ['batch', 8])],
      initializers: [
        makeTensor('w_q', 'INT8', [16, 8], new Int8Array(128)),
        tensorFromFloat32('w_scale', [8], new Float32Array(8)),
        tensorFromFloat32('b', [8], new Float32Array(8)),
      ],
    });
    const info = inspectModel(encodeModel(makeModel(graph, { opset: 13 })));
    expect(info.castWideningBytes).toBe(128 * 3);
    const version = (onnx: object): ModelVersion => ({ size: 10 * MIB, onnx }) as unknown as ModelVersion;
    const session = { smallModelBytes: 4 * MIB };
    expect(
      estimateSessionBytes(version(info), session) -
        estimateSessionBytes(version({ ...info, castWideningBytes: 0 }), session),
    ).toBe(128 * 3);
    expect(
      inspectModel(buildMlp({ inputSize: 4, hiddenSizes: [8], outputSize: 2, seed: 1 }).bytes)
        .castWideningBytes,
    ).toBeUndefined();
  });

  it('counts the dense size of sparse initializers', () => {
    const model = decodeModel(buildIdentityModel('FP32', [2]).bytes);
    model.graph!.sparseInitializer.push(
      create(SparseTensorProtoSchema, {
        values: makeTensor('s', 'FP32', [1], f32(1)),
        indices: makeTensor('s_idx', 'INT64', [1], new BigInt64Array([3n])),
        dims: [10n, 10n],
      }),
    );
    const info = inspectModel(encodeModel(model));
    expect(info.initializerCount).toBe(1);
    expect(info.parameterCount).toBe(100);
  });
});

describe('inspectModel rejections', () => {
  it('rejects random bytes, JSON and empty files as not ONNX', () => {
    const rand = mulberry32(9);
    for (let i = 0; i < 50; i++) {
      const garbage = Uint8Array.from({ length: 64 + Math.floor(rand() * 1024) }, () =>
        Math.floor(rand() * 256),
      );
      const error = rejection(garbage);
      expect(error).toBeInstanceOf(UnprocessableError);
      expect(error.message).toMatch(/not a valid ONNX model/);
    }
    expect(rejection(Buffer.from('{"model": "x"}'))).toBeInstanceOf(UnprocessableError);
    expect(rejection(new Uint8Array()).message).toMatch(/empty/);
  });

  it('rejects every truncation of a model', () => {
    const small = buildIdentityModel('FP32', ['batch', 4]).bytes;
    for (let n = 0; n < small.length; n++) {
      expect(rejection(small.subarray(0, n))).toBeInstanceOf(UnprocessableError);
    }
    const big = buildMlp({ inputSize: 64, hiddenSizes: [64], outputSize: 8, seed: 5 }).bytes;
    for (let n = 0; n < big.length; n += 97) {
      expect(rejection(big.subarray(0, n))).toBeInstanceOf(UnprocessableError);
    }
    expect(rejection(big.subarray(0, big.length - 1))).toBeInstanceOf(UnprocessableError);
  });

  it('rejects models above maxBytes with PayloadTooLargeError', () => {
    const bytes = buildMlp({ inputSize: 64, hiddenSizes: [64], outputSize: 8, seed: 5 }).bytes;
    expect(() => inspectModel(bytes, { maxBytes: bytes.length - 1 })).toThrow(PayloadTooLargeError);
    expect(inspectModel(bytes, { maxBytes: bytes.length }).inputs).toHaveLength(1);
  });

  it('rejects a model without graph, ir_version, opset or with an unimported domain', () => {
    const noGraph = makeModel(makeGraph({ nodes: [], inputs: [], outputs: [] }));
    delete noGraph.graph;
    expect(rejection(encodeModel(noGraph)).message).toMatch(/no graph/);

    const noIr = decodeModel(buildIdentityModel('FP32', [1]).bytes);
    noIr.irVersion = 0n;
    expect(rejection(encodeModel(noIr)).message).toMatch(/ir_version/);

    const noOpset = decodeModel(buildIdentityModel('FP32', [1]).bytes);
    noOpset.opsetImport = [];
    expect(rejection(encodeModel(noOpset)).message).toMatch(/opset/);

    const foreign = decodeModel(buildIdentityModel('FP32', [1]).bytes);
    foreign.graph!.node[0]!.domain = 'com.example';
    expect(rejection(encodeModel(foreign)).message).toMatch(/com\.example:Identity.*com\.example/);
  });

  it('accepts models without inputs (served with inputs: []) and rejects models without outputs', () => {
    const noInputs = makeModel(
      makeGraph({
        nodes: [makeNode('Constant', [], ['y'], { value: { tensor: tensorFromFloat32('c', [1], f32(1)) } })],
        inputs: [],
        outputs: [makeValueInfo('y', 'FP32', [1])],
      }),
    );
    const constant = inspectModel(encodeModel(noInputs));
    expect(constant.inputs).toEqual([]);
    expect(constant.outputs).toEqual([{ name: 'y', datatype: 'FP32', shape: [1] }]);

    const onlyInitializerInputs = makeModel(
      makeGraph({
        nodes: [makeNode('Identity', ['w'], ['y'])],
        inputs: [makeValueInfo('w', 'FP32', [1])],
        outputs: [makeValueInfo('y', 'FP32', [1])],
        initializers: [tensorFromFloat32('w', [1], f32(1))],
      }),
      { irVersion: 3, opset: 9 },
    );
    expect(inspectModel(encodeModel(onlyInitializerInputs)).inputs).toEqual([]);

    const noOutputs = decodeModel(buildIdentityModel('FP32', [1]).bytes);
    noOutputs.graph!.output = [];
    expect(rejection(encodeModel(noOutputs)).message).toMatch(/no outputs/);
  });

  it('rejects non-tensor inputs/outputs and element types OIP cannot carry', () => {
    const seqInput = decodeModel(buildIdentityModel('FP32', [1]).bytes);
    seqInput.graph!.input[0] = create(ValueInfoProtoSchema, {
      name: 'input',
      type: create(TypeProtoSchema, {
        value: {
          case: 'sequenceType',
          value: create(TypeProto_SequenceSchema, { elemType: makeValueInfo('e', 'FP32', [1]).type! }),
        },
      }),
    });
    expect(rejection(encodeModel(seqInput)).message).toMatch(/input "input" has type sequence; only tensor/);

    const noType = decodeModel(buildIdentityModel('FP32', [1]).bytes);
    delete noType.graph!.output[0]!.type;
    expect(rejection(encodeModel(noType)).message).toMatch(/output "output" has type missing/);

    const cases: [TensorProto_DataType, RegExp][] = [
      [
        TensorProto_DataType.BFLOAT16,
        /input "input" has element type BFLOAT16, which has no Open Inference Protocol datatype/,
      ],
      [TensorProto_DataType.COMPLEX64, /COMPLEX64/],
      [TensorProto_DataType.FLOAT8E4M3FN, /FLOAT8E4M3FN/],
      [TensorProto_DataType.INT4, /INT4/],
      [TensorProto_DataType.UNDEFINED, /UNDEFINED/],
    ];
    for (const [dataType, message] of cases) {
      const model = makeModel(
        makeGraph({
          nodes: [makeNode('Identity', ['input'], ['output'])],
          inputs: [makeValueInfo('input', dataType, [1])],
          outputs: [makeValueInfo('output', dataType, [1])],
        }),
      );
      const error = rejection(encodeModel(model));
      expect(error).toBeInstanceOf(UnprocessableError);
      expect(error.message).toMatch(message);
    }
  });

  describe('external data (path traversal risk)', () => {
    const expectExternal = (model: ModelProto, tensor: string, location: string): void => {
      const error = rejection(encodeModel(model));
      expect(error).toBeInstanceOf(UnprocessableError);
      expect(error.message).toContain(`tensor "${tensor}"`);
      expect(error.message).toContain(`"${location}"`);
      expect(error.message).toMatch(/external data/);
      expect(error.details).toMatchObject({ tensor, location });
    };

    it('rejects an external-data initializer pointing at ../../etc/passwd', () => {
      const model = decodeModel(buildMlp({ inputSize: 4, hiddenSizes: [3], outputSize: 2, seed: 1 }).bytes);
      externalize(model.graph!.initializer[0]!, '../../etc/passwd');
      expectExternal(model, 'fc0.weight', '../../etc/passwd');
    });

    it('rejects external_data entries even when data_location is not set', () => {
      const model = decodeModel(buildMlp({ inputSize: 4, hiddenSizes: [3], outputSize: 2, seed: 1 }).bytes);
      externalize(model.graph!.initializer[1]!, '/etc/shadow', false);
      expectExternal(model, 'fc0.bias', '/etc/shadow');
    });

    it('rejects data_location EXTERNAL without a location', () => {
      const model = decodeModel(buildMlp({ inputSize: 4, hiddenSizes: [3], outputSize: 2, seed: 1 }).bytes);
      model.graph!.initializer[0]!.dataLocation = TensorProto_DataLocation.EXTERNAL;
      expect(rejection(encodeModel(model)).message).toMatch(/tensor "fc0.weight" .*uses external data/);
    });

    it('rejects external data in a Constant node attribute', () => {
      const model = constantModel(externalize(tensorFromFloat32('const_c', [2], f32(2)), '../weights.bin'));
      expectExternal(model, 'const_c', '../weights.bin');
    });

    it('rejects external data in an If subgraph (Constant and initializer)', () => {
      expectExternal(
        ifModel(externalize(tensorFromFloat32('else_c', [2], f32(2)), '../../etc/passwd'), false),
        'else_c',
        '../../etc/passwd',
      );
      expectExternal(
        ifModel(externalize(tensorFromFloat32('else_w', [2], f32(2)), '../../etc/hosts'), true),
        'else_w',
        '../../etc/hosts',
      );
    });

    it('rejects external data in a Loop body nested in an If branch', () => {
      const loopBody = makeGraph({
        name: 'body',
        nodes: [
          makeNode('Constant', [], ['k'], {
            value: { tensor: externalize(tensorFromFloat32('deep', [1], f32(1)), '../../deep.bin') },
          }),
        ],
        inputs: [makeValueInfo('i', 'INT64', []), makeValueInfo('c', 'BOOL', [])],
        outputs: [makeValueInfo('c', 'BOOL', [])],
      });
      const model = ifModel(tensorFromFloat32('c', [2], f32(2)), false);
      const thenBranch = model.graph!.node[0]!.attribute[0]!.g!;
      thenBranch.node.push(makeNode('Loop', ['', ''], [], { body: { graph: loopBody } }));
      expectExternal(model, 'deep', '../../deep.bin');
    });

    it('rejects external data in sparse initializers', () => {
      const model = decodeModel(buildIdentityModel('FP32', [2]).bytes);
      model.graph!.sparseInitializer.push(
        create(SparseTensorProtoSchema, {
          values: externalize(makeTensor('sparse_v', 'FP32', [1], f32(1)), '../sparse.bin'),
          indices: makeTensor('sparse_i', 'INT64', [1], new BigInt64Array([0n])),
          dims: [4n],
        }),
      );
      expectExternal(model, 'sparse_v', '../sparse.bin');
    });

    it('rejects external data in a model-local function body', () => {
      const model = decodeModel(buildIdentityModel('FP32', [2]).bytes);
      const body = constantModel(externalize(tensorFromFloat32('fn_c', [2], f32(2)), '../fn.bin')).graph!
        .node;
      model.functions.push(create(FunctionProtoSchema, { name: 'F', domain: 'local', node: body }));
      expectExternal(model, 'fn_c', '../fn.bin');
    });
  });
});
