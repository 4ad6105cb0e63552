import { create } from '@bufbuild/protobuf';
import {
  AttributeProto_AttributeType,
  type ModelProto,
  type TensorProto,
  TensorProto_DataType,
  TensorProtoSchema,
} from 'onnx-buf';
import { describe, expect, it } from 'vitest';
import {
  makeAttribute,
  makeGraph,
  makeModel,
  makeNode,
  makeTensor,
  makeValueInfo,
  mulberry32,
  randomFloat32,
  readTensor,
  readTensorAsFloat32,
  type TensorData,
  tensorFromFloat32,
  toFloat16Bits,
} from '../../dev/onnx-builder';
import { InvalidArgumentError, UnprocessableError } from '../../shared/errors';
import { decodeModel, encodeModel } from '../../shared/onnx/codec';
import { OIP_DATATYPES, type OipDatatype, onnxFromOip } from '../../shared/onnx/datatypes';

const SAMPLE: Record<OipDatatype, TensorData> = {
  BOOL: Uint8Array.of(1, 0, 1, 0),
  UINT8: Uint8Array.of(0, 1, 200, 255),
  UINT16: Uint16Array.of(0, 1, 40000, 65535),
  UINT32: Uint32Array.of(0, 1, 3e9, 2 ** 32 - 1),
  UINT64: BigUint64Array.of(0n, 1n, 2n ** 63n, 2n ** 64n - 1n),
  INT8: Int8Array.of(-128, -1, 1, 127),
  INT16: Int16Array.of(-32768, -1, 1, 32767),
  INT32: Int32Array.of(-(2 ** 31), -1, 1, 2 ** 31 - 1),
  INT64: BigInt64Array.of(-(2n ** 63n), -1n, 1n, 2n ** 63n - 1n),
  FP16: toFloat16Bits([0, 1.5, -2, 65504]),
  FP32: Float32Array.of(0, 1.5, -2, 3.4e38),
  FP64: Float64Array.of(0, 0.1, -2, 1e300),
  BYTES: ['', 'a', 'naïve', 'z'],
};

describe('mulberry32', () => {
  it('is deterministic and uniform-ish in [0, 1)', () => {
    const a = mulberry32(42);
    const b = mulberry32(42);
    const xs = Array.from({ length: 10000 }, () => a());
    expect(xs.slice(0, 5)).toEqual(Array.from({ length: 5 }, () => b()));
    expect(Math.min(...xs)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...xs)).toBeLessThan(1);
    expect(xs.reduce((s, x) => s + x, 0) / xs.length).toBeCloseTo(0.5, 1);
    expect(mulberry32(43)()).not.toBe(mulberry32(42)());
    expect(randomFloat32(mulberry32(1), 3, 5, 6).every((v) => v >= 5 && v < 6)).toBe(true);
  });
});

describe('tensors', () => {
  it('makeTensor → encode → decode → readTensor round-trips every datatype', () => {
    for (const datatype of OIP_DATATYPES) {
      const t = makeTensor(`t_${datatype}`, datatype, [2, 2], SAMPLE[datatype]);
      expect(t.dataType).toBe(onnxFromOip(datatype));
      const model = decodeModel(encodeModel(makeTensorModel(t)));
      const back = readTensor(model.graph!.initializer[0]!);
      expect(back.datatype).toBe(datatype);
      expect(back.dims).toEqual([2, 2]);
      if (back.datatype === 'BYTES') {
        expect(back.data.map((b) => Buffer.from(b).toString())).toEqual(SAMPLE.BYTES);
      } else {
        expect(Array.from(back.data as ArrayLike<unknown>)).toEqual(
          Array.from(SAMPLE[datatype] as ArrayLike<unknown>),
        );
      }
    }
  });

  it('readTensor understands the typed *_data fields that some exporters write', () => {
    const t = (dataType: TensorProto_DataType, init: object) =>
      create(TensorProtoSchema, { name: 'x', dims: [2n], dataType, ...init });
    expect(readTensor(t(TensorProto_DataType.FLOAT, { floatData: [1.5, -2] })).data).toEqual(
      Float32Array.of(1.5, -2),
    );
    expect(readTensor(t(TensorProto_DataType.DOUBLE, { doubleData: [0.1, 2] })).data).toEqual(
      Float64Array.of(0.1, 2),
    );
    expect(readTensor(t(TensorProto_DataType.INT64, { int64Data: [-1n, 5n] })).data).toEqual(
      BigInt64Array.of(-1n, 5n),
    );
    expect(readTensor(t(TensorProto_DataType.UINT64, { uint64Data: [2n ** 64n - 1n, 5n] })).data).toEqual(
      BigUint64Array.of(2n ** 64n - 1n, 5n),
    );
    expect(readTensor(t(TensorProto_DataType.UINT32, { uint64Data: [4000000000n, 5n] })).data).toEqual(
      Uint32Array.of(4e9, 5),
    );
    expect(readTensor(t(TensorProto_DataType.INT8, { int32Data: [-5, 7] })).data).toEqual(
      Int8Array.of(-5, 7),
    );
    expect(readTensor(t(TensorProto_DataType.BOOL, { int32Data: [1, 0] })).data).toEqual(Uint8Array.of(1, 0));
    const half = t(TensorProto_DataType.FLOAT16, { int32Data: [0x3c00, 0xc000] });
    expect(readTensor(half).data).toEqual(Uint16Array.of(0x3c00, 0xc000));
    expect(readTensorAsFloat32(half)).toEqual(Float32Array.of(1, -2));
    expect(readTensorAsFloat32(t(TensorProto_DataType.INT64, { int64Data: [-1n, 5n] }))).toEqual(
      Float32Array.of(-1, 5),
    );
  });

  it('readTensor returns aligned copies even from unaligned raw_data views', () => {
    const model = decodeModel(
      encodeModel(makeTensorModel(tensorFromFloat32('w', [3], Float32Array.of(1, 2, 3)))),
    );
    const raw = model.graph!.initializer[0]!.rawData;
    expect(raw.byteOffset % 4).not.toBe(0); // a view into the decoded buffer, not Float32-aligned
    const before = Buffer.from(raw);
    const a = readTensor(model.graph!.initializer[0]!);
    expect(a.data).toEqual(Float32Array.of(1, 2, 3));
    (a.data as Float32Array)[0] = 9;
    expect(Buffer.from(raw).equals(before)).toBe(true); // the model was not modified
  });

  it('readTensor rejects bad tensors', () => {
    expect(() =>
      readTensor(
        create(TensorProtoSchema, {
          name: 'x',
          dims: [3n],
          dataType: TensorProto_DataType.FLOAT,
          floatData: [1],
        }),
      ),
    ).toThrow(/holds 1 elements/);
    expect(() =>
      readTensor(
        create(TensorProtoSchema, {
          name: 'x',
          dims: [1n],
          dataType: TensorProto_DataType.BFLOAT16,
          rawData: new Uint8Array(2),
        }),
      ),
    ).toThrow(/BFLOAT16/);
    expect(() =>
      readTensor(create(TensorProtoSchema, { name: 'x', dims: [1n], dataType: 1, dataLocation: 1 })),
    ).toThrow(UnprocessableError);
  });

  it('makeTensor validates sizes and element types', () => {
    expect(() => makeTensor('x', 'FP32', [3], new Float32Array(2))).toThrow(InvalidArgumentError);
    expect(() => makeTensor('x', 'FP32', [2], new Float64Array(2))).toThrow(/not a typed array of FP32/);
    expect(makeTensor('s', 'FP32', [], Float32Array.of(7)).dims).toEqual([]);
  });
});

describe('nodes and value infos', () => {
  it('builds attributes of each kind', () => {
    const T = AttributeProto_AttributeType;
    expect(makeAttribute('a', { int: 3 })).toMatchObject({ type: T.INT, i: 3n });
    expect(makeAttribute('a', { float: 1 })).toMatchObject({ type: T.FLOAT, f: 1 });
    expect(makeAttribute('a', { ints: [1, 2n] })).toMatchObject({ type: T.INTS, ints: [1n, 2n] });
    expect(makeAttribute('a', { floats: [0.5] })).toMatchObject({ type: T.FLOATS, floats: [0.5] });
    expect(Buffer.from(makeAttribute('a', { string: 'NOTSET' }).s).toString()).toBe('NOTSET');
    expect(makeAttribute('a', { strings: ['x', 'y'] }).strings).toHaveLength(2);
    expect(makeAttribute('a', { tensor: tensorFromFloat32('c', [1], Float32Array.of(1)) }).type).toBe(
      T.TENSOR,
    );
    const node = makeNode(
      'Conv',
      ['x', 'w'],
      ['y'],
      { pads: { ints: [1, 1, 1, 1] } },
      { name: 'conv', domain: '' },
    );
    expect(node).toMatchObject({ opType: 'Conv', name: 'conv', input: ['x', 'w'], output: ['y'] });
  });

  it('builds value infos with fixed, symbolic and unknown dims', () => {
    const v = makeValueInfo('x', 'FP16', ['batch', 3, null, -1]);
    const t = v.type?.value;
    expect(t?.case).toBe('tensorType');
    if (t?.case !== 'tensorType') return;
    expect(t.value.elemType).toBe(TensorProto_DataType.FLOAT16);
    expect(t.value.shape?.dim.map((d) => d.value.case)).toEqual([
      'dimParam',
      'dimValue',
      undefined,
      undefined,
    ]);
    const noShape = makeValueInfo('y', TensorProto_DataType.BFLOAT16).type?.value;
    expect(noShape?.case === 'tensorType' && noShape.value.shape).toBeUndefined();
  });
});

/** A model whose only initializer is `t`, to push a tensor through encode/decode. */
function makeTensorModel(t: TensorProto): ModelProto {
  return makeModel(
    makeGraph({
      nodes: [makeNode('Identity', ['x'], ['y'])],
      inputs: [makeValueInfo('x', 'FP32', [1])],
      outputs: [makeValueInfo('y', 'FP32', [1])],
      initializers: [t],
    }),
  );
}
