import { TensorProto_DataType } from 'onnx-buf';
import { describe, expect, it } from 'vitest';
import {
  elementByteSize,
  float16BitsToFloat32,
  float32ToFloat16Bits,
  isOipDatatype,
  OIP_DATATYPES,
  ONNX_DTYPE,
  oipFromOnnx,
  oipFromOrtType,
  onnxFromOip,
  ortTypeFromOip,
  typedArrayConstructorOf,
} from '../../shared/onnx/datatypes';

describe('datatypes', () => {
  it('maps OIP ⇄ ONNX ⇄ onnxruntime both ways', () => {
    for (const d of OIP_DATATYPES) {
      expect(oipFromOnnx(onnxFromOip(d))).toBe(d);
      expect(oipFromOrtType(ortTypeFromOip(d))).toBe(d);
      expect(isOipDatatype(d)).toBe(true);
    }
    expect(onnxFromOip('BYTES')).toBe(TensorProto_DataType.STRING);
    expect(onnxFromOip('FP16')).toBe(TensorProto_DataType.FLOAT16);
    expect(ortTypeFromOip('FP32')).toBe('float32');
    expect(ortTypeFromOip('BOOL')).toBe('bool');
  });

  it('spells the ONNX dtype numbers exactly as the schema defines them', () => {
    for (const [name, value] of Object.entries(ONNX_DTYPE))
      expect(value, name).toBe(TensorProto_DataType[name as keyof typeof TensorProto_DataType]);
  });

  it('has no OIP datatype for what OIP cannot carry', () => {
    for (const t of [
      TensorProto_DataType.UNDEFINED,
      TensorProto_DataType.BFLOAT16,
      TensorProto_DataType.COMPLEX64,
      TensorProto_DataType.COMPLEX128,
      TensorProto_DataType.FLOAT8E4M3FN,
      TensorProto_DataType.INT4,
      TensorProto_DataType.UINT4,
      999,
    ]) {
      expect(oipFromOnnx(t)).toBeUndefined();
    }
    expect(oipFromOrtType('int4')).toBeUndefined();
    expect(isOipDatatype('FLOAT32')).toBe(false);
    expect(isOipDatatype('toString')).toBe(false);
    expect(isOipDatatype(3)).toBe(false);
  });

  it('gives typed arrays whose element size matches the datatype', () => {
    for (const d of OIP_DATATYPES) {
      if (d === 'BYTES') {
        expect(elementByteSize(d)).toBeUndefined();
        continue;
      }
      const Ctor = typedArrayConstructorOf(d);
      expect(Ctor.BYTES_PER_ELEMENT).toBe(elementByteSize(d));
      expect(new Ctor(3).length).toBe(3);
    }
    expect(typedArrayConstructorOf('FP16')).toBe(Uint16Array);
    expect(typedArrayConstructorOf('INT64')).toBe(BigInt64Array);
  });

  it('converts fp16 exactly for representable values and rounds to nearest even', () => {
    const cases: [number, number][] = [
      [0, 0x0000],
      [-0, 0x8000],
      [1, 0x3c00],
      [-2, 0xc000],
      [0.5, 0x3800],
      [65504, 0x7bff],
      [65520, 0x7c00] /* rounds up to Inf */,
      [1e6, 0x7c00],
      [-Infinity, 0xfc00],
      [2 ** -24, 0x0001] /* smallest subnormal */,
      [2 ** -25, 0x0000] /* tie → even (0) */,
      [3 * 2 ** -25, 0x0002] /* tie → even (2) */,
      [2 ** -14, 0x0400] /* smallest normal */,
      [1 + 2 ** -11, 0x3c00] /* tie → even */,
      [1 + 3 * 2 ** -11, 0x3c02],
    ];
    for (const [value, bits] of cases) expect([value, float32ToFloat16Bits(value)]).toEqual([value, bits]);
    expect(float32ToFloat16Bits(NaN) & 0x7c00).toBe(0x7c00);
    expect(float32ToFloat16Bits(NaN) & 0x3ff).not.toBe(0);
    // Every finite half value survives half → number → half.
    for (let bits = 0; bits < 0x10000; bits++) {
      if ((bits & 0x7c00) === 0x7c00) continue;
      if (float32ToFloat16Bits(float16BitsToFloat32(bits)) !== bits)
        throw new Error(`fp16 ${bits.toString(16)}`);
    }
    expect(float16BitsToFloat32(0x7c00)).toBe(Infinity);
    expect(float16BitsToFloat32(0x7e00)).toBeNaN();
  });
});
