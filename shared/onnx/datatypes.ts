/**
 * Datatype vocabulary shared by the ONNX model format, the Open Inference Protocol (OIP / KServe v2)
 * and onnxruntime-node.
 *
 * Three naming schemes meet in maas: ONNX `TensorProto.DataType` numbers (inside model files), OIP
 * datatype strings (on the wire, in model metadata) and onnxruntime tensor type strings (at inference
 * time). Everything that converts between them goes through the single table below so the three can
 * never drift apart.
 */
import type { TensorProto_DataType } from 'onnx-buf';

/**
 * ONNX TensorProto.DataType numbers (fixed by the ONNX spec). Spelled out instead of importing
 * the enum so that code needing only this table (the inference codec) does not depend on the
 * generated ONNX schema module (~35 ms to load); test/onnx/datatypes.test.ts checks them against onnx-buf.
 */
export const ONNX_DTYPE = {
  FLOAT: 1,
  UINT8: 2,
  INT8: 3,
  UINT16: 4,
  INT16: 5,
  INT32: 6,
  INT64: 7,
  STRING: 8,
  BOOL: 9,
  FLOAT16: 10,
  DOUBLE: 11,
  UINT32: 12,
  UINT64: 13,
} as const satisfies Record<string, TensorProto_DataType>;

/** Every OIP datatype maas serves, in the order the OIP spec lists them. */
export const OIP_DATATYPES = [
  'BOOL',
  'UINT8',
  'UINT16',
  'UINT32',
  'UINT64',
  'INT8',
  'INT16',
  'INT32',
  'INT64',
  'FP16',
  'FP32',
  'FP64',
  'BYTES',
] as const;

/** An Open Inference Protocol tensor datatype (BYTES is ONNX STRING). */
export type OipDatatype = (typeof OIP_DATATYPES)[number];

/** OIP datatypes with a fixed element size (everything except BYTES). */
export type NumericOipDatatype = Exclude<OipDatatype, 'BYTES'>;

/** onnxruntime-node `Tensor` type strings for the datatypes maas supports. */
export type OrtTensorType =
  | 'bool'
  | 'uint8'
  | 'uint16'
  | 'uint32'
  | 'uint64'
  | 'int8'
  | 'int16'
  | 'int32'
  | 'int64'
  | 'float16'
  | 'float32'
  | 'float64'
  | 'string';

/**
 * The typed array holding each numeric OIP datatype in memory, matching what onnxruntime-node
 * accepts and returns. FP16 is a Uint16Array of IEEE half-precision bit patterns because Node 20
 * has no Float16Array (onnxruntime-common falls back to Uint16Array in that case too).
 * BOOL is one byte per element, 0 or 1.
 */
export interface OipTypedArrayMap {
  BOOL: Uint8Array;
  UINT8: Uint8Array;
  UINT16: Uint16Array;
  UINT32: Uint32Array;
  UINT64: BigUint64Array;
  INT8: Int8Array;
  INT16: Int16Array;
  INT32: Int32Array;
  INT64: BigInt64Array;
  FP16: Uint16Array;
  FP32: Float32Array;
  FP64: Float64Array;
}

/** Any typed array that can hold a numeric OIP tensor. */
export type OipTypedArray = OipTypedArrayMap[NumericOipDatatype];

/** Constructor of a typed array, with the overloads maas needs (length, copy, or view of a buffer). */
export interface TypedArrayConstructorOf<T> {
  new (length: number): T;
  new (buffer: ArrayBuffer, byteOffset?: number, length?: number): T;
  readonly BYTES_PER_ELEMENT: number;
}

interface DatatypeInfo {
  onnx: TensorProto_DataType;
  ort: OrtTensorType;
  /** Bytes per element, or undefined for variable-length BYTES. */
  size: number | undefined;
}

const TABLE: Record<OipDatatype, DatatypeInfo> = {
  BOOL: { onnx: ONNX_DTYPE.BOOL, ort: 'bool', size: 1 },
  UINT8: { onnx: ONNX_DTYPE.UINT8, ort: 'uint8', size: 1 },
  UINT16: { onnx: ONNX_DTYPE.UINT16, ort: 'uint16', size: 2 },
  UINT32: { onnx: ONNX_DTYPE.UINT32, ort: 'uint32', size: 4 },
  UINT64: { onnx: ONNX_DTYPE.UINT64, ort: 'uint64', size: 8 },
  INT8: { onnx: ONNX_DTYPE.INT8, ort: 'int8', size: 1 },
  INT16: { onnx: ONNX_DTYPE.INT16, ort: 'int16', size: 2 },
  INT32: { onnx: ONNX_DTYPE.INT32, ort: 'int32', size: 4 },
  INT64: { onnx: ONNX_DTYPE.INT64, ort: 'int64', size: 8 },
  FP16: { onnx: ONNX_DTYPE.FLOAT16, ort: 'float16', size: 2 },
  FP32: { onnx: ONNX_DTYPE.FLOAT, ort: 'float32', size: 4 },
  FP64: { onnx: ONNX_DTYPE.DOUBLE, ort: 'float64', size: 8 },
  BYTES: { onnx: ONNX_DTYPE.STRING, ort: 'string', size: undefined },
};

const CONSTRUCTORS: { [D in NumericOipDatatype]: TypedArrayConstructorOf<OipTypedArrayMap[D]> } = {
  BOOL: Uint8Array,
  UINT8: Uint8Array,
  UINT16: Uint16Array,
  UINT32: Uint32Array,
  UINT64: BigUint64Array,
  INT8: Int8Array,
  INT16: Int16Array,
  INT32: Int32Array,
  INT64: BigInt64Array,
  FP16: Uint16Array,
  FP32: Float32Array,
  FP64: Float64Array,
};

const BY_ONNX = new Map<number, OipDatatype>(OIP_DATATYPES.map((d) => [TABLE[d].onnx, d]));
const BY_ORT = new Map<string, OipDatatype>(OIP_DATATYPES.map((d) => [TABLE[d].ort, d]));

/**
 * Type guard for untrusted strings (request bodies, CLI flags).
 * @example
 * if (!isOipDatatype(body.datatype)) throw new InvalidArgumentError(`unknown datatype ${body.datatype}`);
 */
export function isOipDatatype(value: unknown): value is OipDatatype {
  return typeof value === 'string' && Object.hasOwn(TABLE, value);
}

/**
 * OIP datatype for an ONNX element type, or undefined when OIP cannot carry it
 * (complex, bfloat16, float8, int4, ...).
 * @example
 * oipFromOnnx(TensorProto_DataType.FLOAT) // 'FP32'
 */
export function oipFromOnnx(dataType: number): OipDatatype | undefined {
  return BY_ONNX.get(dataType);
}

/**
 * ONNX `TensorProto.DataType` for an OIP datatype.
 * @example
 * onnxFromOip('BYTES') // TensorProto_DataType.STRING
 */
export function onnxFromOip(datatype: OipDatatype): TensorProto_DataType {
  return TABLE[datatype].onnx;
}

/**
 * onnxruntime-node tensor type string for an OIP datatype.
 * @example
 * new ort.Tensor(ortTypeFromOip('FP16'), uint16Bits, [2, 2])
 */
export function ortTypeFromOip(datatype: OipDatatype): OrtTensorType {
  return TABLE[datatype].ort;
}

/**
 * OIP datatype for an onnxruntime-node tensor type string (e.g. of a session output),
 * or undefined for types OIP cannot carry ('int4', 'uint4', ...).
 * @example
 * oipFromOrtType(output.type) // 'FP32' for 'float32'
 */
export function oipFromOrtType(type: string): OipDatatype | undefined {
  return BY_ORT.get(type);
}

/**
 * Bytes per element, or undefined for BYTES (variable length).
 * @example
 * elementByteSize('FP16') // 2
 */
export function elementByteSize(datatype: OipDatatype): number | undefined {
  return TABLE[datatype].size;
}

/**
 * Typed array constructor holding a numeric OIP datatype (see {@link OipTypedArrayMap}).
 * @example
 * const Ctor = typedArrayConstructorOf('INT64'); // BigInt64Array
 * const data = new Ctor(4);
 */
export function typedArrayConstructorOf<D extends NumericOipDatatype>(
  datatype: D,
): TypedArrayConstructorOf<OipTypedArrayMap[D]> {
  return CONSTRUCTORS[datatype];
}

// Shared scratch views for the fp16 conversions: one allocation for the process instead of one per call.
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/**
 * Converts a number to IEEE 754 half-precision bits (round to nearest even), as stored in
 * FP16 tensors, onnxruntime 'float16' tensors and ONNX FLOAT16 initializers.
 * @example
 * float32ToFloat16Bits(1) // 0x3c00
 */
export function float32ToFloat16Bits(value: number): number {
  f32[0] = value;
  const x = u32[0] ?? 0;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 : 0); // Inf / NaN (quiet)
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow to Inf
  if (e <= 0) {
    // Subnormal half (or zero): shift the mantissa with its implicit leading 1.
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rem > halfway || (rem === halfway && (half & 1) === 1)) half += 1;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  // Round to nearest even; a carry into the exponent is correct (may round up to Inf).
  if (rem > 0x1000 || (rem === 0x1000 && (half & 1) === 1)) half += 1;
  return sign | half;
}

/**
 * Converts IEEE 754 half-precision bits to a number.
 * @example
 * float16BitsToFloat32(0x3c00) // 1
 */
export function float16BitsToFloat32(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >>> 10) & 0x1f;
  const mant = bits & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant === 0 ? sign * Infinity : NaN;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}
