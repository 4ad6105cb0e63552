/**
 * Tensor data conversions between the Open Inference Protocol wire forms (JSON numbers/strings,
 * the binary tensor data extension) and the typed arrays onnxruntime-node consumes and returns.
 *
 * These run on every request, so they write straight into one preallocated typed array per
 * tensor (no intermediate JS arrays) and serialize outputs with `join` instead of building
 * arrays for `JSON.stringify`.
 */
import { InvalidArgumentError } from '../errors';
import {
  elementByteSize,
  float16BitsToFloat32,
  float32ToFloat16Bits,
  type OipDatatype,
  type OipTypedArray,
  typedArrayConstructorOf,
} from '../onnx/datatypes';

/** Data of one tensor in memory: a typed array, or strings for BYTES. */
export type TensorValues = OipTypedArray | string[];

/**
 * Number of elements a shape holds (1 for a scalar).
 * @example
 * elementCount([2, 3]) // 6
 */
function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/**
 * The element count of an input's shape, refused with a 400 naming the input when it is not a
 * safe integer or exceeds `maxElements`: a shape is only a claim, and allocating what it claims
 * before looking at the data would let a 100-byte request reserve gigabytes (or throw a
 * RangeError that surfaces as a 500).
 * @example
 * checkedElementCount('x', [2, 3], 1000) // 6
 * checkedElementCount('x', [400000000], 40, 'an 80-byte JSON body') // throws InvalidArgumentError
 */
export function checkedElementCount(
  input: string,
  shape: readonly number[],
  maxElements: number,
  room = 'the data sent',
): number {
  const count = elementCount(shape);
  if (!Number.isSafeInteger(count)) {
    throw new InvalidArgumentError(
      `input '${input}': shape [${shape.join(', ')}] holds more elements than any request can carry`,
      { input },
    );
  }
  if (count > maxElements) {
    throw new InvalidArgumentError(
      `input '${input}': shape [${shape.join(', ')}] holds ${count} elements but ${room} can carry at most ${maxElements}`,
      { input },
    );
  }
  return count;
}

const INT_RANGES: Partial<Record<OipDatatype, readonly [number, number]>> = {
  UINT8: [0, 255],
  UINT16: [0, 65535],
  UINT32: [0, 4294967295],
  INT8: [-128, 127],
  INT16: [-32768, 32767],
  INT32: [-2147483648, 2147483647],
};
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const UINT64_MAX = 2n ** 64n - 1n;

/** Thrown for a bad element; the caller adds which input it was. */
class ElementError extends Error {}

/**
 * The JSON forms of non-finite floats, as Triton (rapidjson's NaN/Inf flags) and Python's `json`
 * write them: bare `NaN`, `Infinity`, `-Infinity`. Inputs may also send them quoted.
 */
const NON_FINITE: ReadonlyMap<string, number> = new Map([
  ['NaN', Number.NaN],
  ['Infinity', Number.POSITIVE_INFINITY],
  ['-Infinity', Number.NEGATIVE_INFINITY],
]);

/**
 * What {@link parseJsonWithNonFinite} puts in place of a bare literal: a string no client can
 * send in a BYTES element (onnxruntime refuses NUL), so a bare `NaN` never passes for the text "NaN".
 */
const BARE_MARK = '\u0000';

/** A float element: a number, or one of the non-finite spellings (quoted or bare). */
function floatOf(v: unknown, i: number): number {
  if (typeof v === 'number') return v;
  if (typeof v === 'string') {
    const f = NON_FINITE.get(v.startsWith(BARE_MARK) ? v.slice(1) : v);
    if (f !== undefined) return f;
    throw new ElementError(
      `element ${i} is a string other than "NaN", "Infinity" or "-Infinity", expected a number`,
    );
  }
  throw new ElementError(`element ${i} is ${describe(v)}, expected a number`);
}

/** True for the stand-in of a bare `NaN`/`Infinity`/`-Infinity` literal. */
export function isBareNonFinite(v: unknown): boolean {
  return typeof v === 'string' && v.startsWith(BARE_MARK) && NON_FINITE.has(v.slice(1));
}

/**
 * `JSON.parse`, also reading the bare `NaN`, `Infinity` and `-Infinity` that Python's `json` and
 * Triton write (outside strings), each as a marker string the float element writers read and the
 * others refuse (see {@link isBareNonFinite}). Plain JSON takes the fast path; only text
 * JSON.parse refuses is scanned again, so well-formed requests pay nothing. Throws JSON.parse's
 * SyntaxError when the text is malformed either way.
 * @example
 * parseJsonMarkingNonFinite('[1,NaN]') // [1, '\u0000NaN']
 */
export function parseJsonMarkingNonFinite(
  text: string,
  reviver?: (key: string, value: unknown) => unknown,
): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    if (!text.includes('NaN') && !text.includes('Infinity')) throw e;
    const marked = markBareNonFinite(text);
    try {
      return JSON.parse(marked, reviver);
    } catch {
      throw e;
    }
  }
}

/**
 * `text` with each bare `NaN`, `Infinity`, `-Infinity` outside strings replaced by its marker
 * string. One linear pass that tracks strings and escapes: a regular expression matching strings
 * would rescan the rest of the text from every unterminated quote (quadratic on hostile bodies).
 */
function markBareNonFinite(text: string): string {
  let out = '';
  let copied = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
      continue;
    }
    if (c === 0x22) {
      inString = true;
      continue;
    }
    const word =
      c === 0x4e && text.startsWith('NaN', i)
        ? 'NaN'
        : c === 0x49 && text.startsWith('Infinity', i)
          ? 'Infinity'
          : c === 0x2d && text.startsWith('-Infinity', i)
            ? '-Infinity'
            : undefined;
    if (word === undefined) continue;
    out += `${text.slice(copied, i)}"\\u0000${word}"`;
    i += word.length - 1;
    copied = i + 1;
  }
  return out + text.slice(copied);
}

/**
 * Reads a response (or any JSON text) that may hold the bare `NaN`, `Infinity` and `-Infinity`
 * maas writes for non-finite floats, as numbers: what a JavaScript client needs, since
 * `JSON.parse` refuses them.
 * @example
 * parseJsonWithNonFinite('{"data":[1,NaN,-Infinity]}') // { data: [1, NaN, -Infinity] }
 */
export function parseJsonWithNonFinite(text: string): unknown {
  return parseJsonMarkingNonFinite(text, (_, v) =>
    isBareNonFinite(v) ? NON_FINITE.get((v as string).slice(1)) : v,
  );
}

type ElementWriter = (value: unknown, index: number) => void;

function writerFor(datatype: OipDatatype, out: TensorValues): ElementWriter {
  switch (datatype) {
    case 'FP32':
    case 'FP64': {
      const a = out as Float32Array | Float64Array;
      return (v, i) => {
        a[i] = typeof v === 'number' ? v : floatOf(v, i);
      };
    }
    case 'FP16': {
      const a = out as Uint16Array;
      return (v, i) => {
        a[i] = float32ToFloat16Bits(floatOf(v, i));
      };
    }
    case 'BOOL': {
      const a = out as Uint8Array;
      return (v, i) => {
        if (v === true || v === 1) a[i] = 1;
        else if (v === false || v === 0) a[i] = 0;
        else throw new ElementError(`element ${i} is ${describe(v)}, expected true or false`);
      };
    }
    case 'INT64':
    case 'UINT64': {
      const a = out as BigInt64Array | BigUint64Array;
      const [min, max] = datatype === 'INT64' ? [INT64_MIN, INT64_MAX] : [0n, UINT64_MAX];
      return (v, i) => {
        let b: bigint;
        if (typeof v === 'number' && Number.isSafeInteger(v)) b = BigInt(v);
        else if (typeof v === 'string' && /^-?[0-9]{1,20}$/.test(v)) b = BigInt(v);
        else if (typeof v === 'number' && Number.isInteger(v)) {
          throw new ElementError(
            `element ${i} is beyond 2^53 and lost precision in JSON; send it as a decimal string or use the binary extension`,
          );
        } else throw new ElementError(`element ${i} is ${describe(v)}, expected an integer`);
        if (b < min || b > max) throw new ElementError(`element ${i} is out of range for ${datatype}`);
        a[i] = b;
      };
    }
    case 'BYTES': {
      const a = out as string[];
      return (v, i) => {
        if (typeof v !== 'string' || isBareNonFinite(v))
          throw new ElementError(`element ${i} is ${describe(v)}, expected a string`);
        a[i] = checkedString(v, i);
      };
    }
    default: {
      const a = out as Exclude<OipTypedArray, Float32Array | Float64Array | BigInt64Array | BigUint64Array>;
      const [min, max] = INT_RANGES[datatype] ?? [0, 0];
      return (v, i) => {
        if (typeof v !== 'number' || !Number.isInteger(v))
          throw new ElementError(
            `element ${i} is ${typeof v === 'number' ? 'not an integer' : describe(v)}, expected an integer`,
          );
        if (v < min || v > max)
          throw new ElementError(`element ${i} is out of range for ${datatype} [${min}, ${max}]`);
        a[i] = v;
      };
    }
  }
}

/**
 * onnxruntime-node passes string tensors to C++ as NUL-terminated strings, so an element with a
 * NUL would be cut silently (see test/onnx/runtime.test.ts): refuse it instead.
 */
function checkedString(s: string, index: number): string {
  if (s.includes('\u0000')) {
    throw new ElementError(
      `element ${index} contains a NUL character, which onnxruntime cannot carry in BYTES tensors (it would truncate the value)`,
    );
  }
  return s;
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (isBareNonFinite(v)) return 'a bare non-finite number';
  if (Array.isArray(v)) return 'an array';
  // Only the type, never the value: messages end up in logs, and tensor data must not.
  return `a ${typeof v}`;
}

function allocate(datatype: OipDatatype, count: number): TensorValues {
  if (datatype === 'BYTES') return new Array<string>(count);
  return new (typedArrayConstructorOf(datatype))(count);
}

/**
 * Converts the JSON `data` of an input (flat or nested arrays, row-major) into the typed array
 * of its datatype, checking every element's type and range and that the element count matches
 * the shape.
 * @example
 * const values = valuesFromJson('input', 'FP32', [2, 2], [[1, 2], [3, 4]]); // Float32Array(4)
 */
export function valuesFromJson(
  input: string,
  datatype: OipDatatype,
  shape: readonly number[],
  data: unknown,
): TensorValues {
  const fail = (message: string): never => {
    throw new InvalidArgumentError(`input '${input}': ${message}`, { input });
  };
  if (!Array.isArray(data)) fail(`data must be an array (flat or nested), got ${describe(data)}`);
  const flat = data as unknown[];
  // Nothing is allocated beyond what the data holds: the fast path allocates flat.length
  // elements, the nested path counts the leaves first.
  const expected = checkedElementCount(input, shape, Number.MAX_SAFE_INTEGER);
  try {
    // Fast path: a flat array of the right length (the common case for clients that send `shape`).
    if (flat.length === expected) {
      const out = allocate(datatype, expected);
      const write = writerFor(datatype, out);
      let nested = false;
      for (let i = 0; i < expected; i++) {
        const v = flat[i];
        if (Array.isArray(v)) {
          nested = true;
          break;
        }
        write(v, i);
      }
      if (!nested) return out;
    }
    const count = countLeaves(flat);
    if (count !== expected)
      fail(`shape [${shape.join(', ')}] holds ${expected} elements but data has ${count}`);
    const out = allocate(datatype, expected);
    const write = writerFor(datatype, out);
    let index = 0;
    // Indexed loops: several times faster than for…of on these hot paths.
    const walk = (node: unknown[]): void => {
      for (let i = 0; i < node.length; i++) {
        const v = node[i];
        if (Array.isArray(v)) walk(v);
        else write(v, index++);
      }
    };
    walk(flat);
    return out;
  } catch (e) {
    if (e instanceof ElementError) fail(e.message);
    if (e instanceof RangeError) fail('data is nested too deeply');
    throw e;
  }
}

/** Non-array elements of nested arrays (a RangeError when nested beyond the stack). */
function countLeaves(node: unknown[]): number {
  let n = 0;
  for (let i = 0; i < node.length; i++) {
    const v = node[i];
    if (Array.isArray(v)) n += countLeaves(v);
    else n++;
  }
  return n;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Decodes an input sent with the binary tensor data extension: raw little-endian elements, or
 * for BYTES, each element as a 4-byte little-endian length followed by its bytes.
 * @example
 * const values = valuesFromBinary('input', 'FP32', [1, 4], bytes.subarray(off, off + 16));
 */
export function valuesFromBinary(
  input: string,
  datatype: OipDatatype,
  shape: readonly number[],
  bytes: Uint8Array,
): TensorValues {
  const fail = (message: string): never => {
    throw new InvalidArgumentError(`input '${input}': ${message}`, { input });
  };
  if (datatype === 'BYTES') {
    // Each element takes at least its 4-byte length prefix: bound the count before allocating.
    const expected = checkedElementCount(
      input,
      shape,
      Math.floor(bytes.byteLength / 4),
      `binary_data_size ${bytes.byteLength} (4 bytes or more per BYTES element)`,
    );
    const out = new Array<string>(expected);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    let offset = 0;
    let i = 0;
    for (; offset < bytes.byteLength; i++) {
      if (offset + 4 > bytes.byteLength)
        fail(`binary BYTES data is truncated in the length prefix of element ${i}`);
      const length = view.getUint32(offset, true);
      offset += 4;
      if (offset + length > bytes.byteLength)
        fail(`binary BYTES element ${i} claims ${length} bytes but only ${bytes.byteLength - offset} remain`);
      if (i < expected) {
        let s: string;
        try {
          s = utf8.decode(bytes.subarray(offset, offset + length));
        } catch {
          return fail(
            `binary BYTES element ${i} is not valid UTF-8 (onnxruntime string tensors carry text only)`,
          );
        }
        try {
          out[i] = checkedString(s, i);
        } catch (e) {
          fail((e as Error).message);
        }
      }
      offset += length;
    }
    if (i !== expected)
      fail(`shape [${shape.join(', ')}] holds ${expected} elements but binary data has ${i}`);
    return out;
  }
  // Fixed-size elements: the exact size check below comes before any allocation.
  const expected = checkedElementCount(input, shape, Number.MAX_SAFE_INTEGER);
  const size = elementByteSize(datatype) ?? 1;
  if (bytes.byteLength !== expected * size) {
    fail(
      `shape [${shape.join(', ')}] of ${datatype} needs ${expected * size} bytes (binary_data_size) but got ${bytes.byteLength}`,
    );
  }
  const Ctor = typedArrayConstructorOf(datatype);
  // View in place when aligned (no copy); copy otherwise, since typed arrays need aligned offsets.
  if (bytes.byteOffset % size === 0) return new Ctor(bytes.buffer as ArrayBuffer, bytes.byteOffset, expected);
  // (`new Uint8Array(bytes)` copies; Buffer#slice would not.)
  return new Ctor(new Uint8Array(bytes).buffer, 0, expected);
}

/**
 * The JSON text of an output's `data` (flat), written without an intermediate array: numeric
 * arrays are joined directly. Non-finite floats are written as the bare literals `NaN`,
 * `Infinity` and `-Infinity`, as Triton does and Python's `json` reads (JSON.stringify's `null`
 * could not be told from a missing value).
 * @example
 * jsonDataOf('FP32', Float32Array.of(1, 2.5, Number.NaN)) // '[1,2.5,NaN]'
 */
export function jsonDataOf(datatype: OipDatatype, values: TensorValues): string {
  switch (datatype) {
    case 'BYTES':
      return JSON.stringify(values);
    case 'BOOL': {
      const a = values as Uint8Array;
      let s = '[';
      for (let i = 0; i < a.length; i++) s += (i ? ',' : '') + (a[i] ? 'true' : 'false');
      return `${s}]`;
    }
    case 'FP16': {
      const a = values as Uint16Array;
      const f = new Float64Array(a.length);
      for (let i = 0; i < a.length; i++) f[i] = float16BitsToFloat32(a[i] ?? 0);
      return floatJson(f);
    }
    case 'FP32':
    case 'FP64':
      return floatJson(values as Float32Array | Float64Array);
    default:
      // Integers print as JSON numbers (64-bit BigInt arrays exactly).
      return `[${(values as OipTypedArray).join(',')}]`;
  }
}

/**
 * Floats joined as they print: numbers, and `NaN`, `Infinity`, `-Infinity` for non-finite ones.
 * Only negative zero needs help (it prints as `0`): it is written `-0`, as Python writes `-0.0`.
 */
function floatJson(a: Float32Array | Float64Array): string {
  for (let i = 0; i < a.length; i++) {
    const v = a[i] as number;
    if (v === 0 && 1 / v < 0)
      return `[${Array.from(a, (x) => (x === 0 && 1 / x < 0 ? '-0' : String(x))).join(',')}]`;
  }
  return `[${a.join(',')}]`;
}

/**
 * Bytes of an output for the binary tensor data extension: the typed array's own memory, or for
 * BYTES the length-prefixed UTF-8 encoding.
 * @example
 * const chunk = binaryDataOf('FP32', Float32Array.of(1, 2)); // 8 bytes
 */
export function binaryDataOf(datatype: OipDatatype, values: TensorValues): Uint8Array {
  if (datatype !== 'BYTES') {
    const a = values as OipTypedArray;
    return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  }
  const encoded = (values as string[]).map((s) => Buffer.from(s, 'utf8'));
  const out = Buffer.allocUnsafe(encoded.reduce((n, b) => n + 4 + b.length, 0));
  let offset = 0;
  for (const b of encoded) {
    out.writeUInt32LE(b.length, offset);
    b.copy(out, offset + 4);
    offset += 4 + b.length;
  }
  return out;
}
