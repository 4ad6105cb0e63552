import { describe, expect, it } from 'vitest';
import { float16BitsToFloat32 } from '../../shared/onnx/datatypes';
import { typedFromNumbers } from '../../shared/optimize/inputs';

describe('typedFromNumbers (shared by reference inputs and captured samples)', () => {
  it('truncates 64-bit integers to bigint', () => {
    const out = typedFromNumbers('INT64', [1, 2.7, -3.2]);
    expect(out).toBeInstanceOf(BigInt64Array);
    expect([...(out as BigInt64Array)]).toEqual([1n, 2n, -3n]);
  });

  it('stores FP16 as bit patterns that decode back to the value', () => {
    const out = typedFromNumbers('FP16', [0.5, -2, 1.5]);
    expect(out).toBeInstanceOf(Uint16Array);
    expect([...(out as Uint16Array)].map(float16BitsToFloat32)).toEqual([0.5, -2, 1.5]);
  });

  it('copies other types as they are', () => {
    const out = typedFromNumbers('FP32', [0.25, 3]);
    expect(out).toBeInstanceOf(Float32Array);
    expect([...(out as Float32Array)]).toEqual([0.25, 3]);
    expect([...(typedFromNumbers('INT32', [7, -1]) as Int32Array)]).toEqual([7, -1]);
  });
});
