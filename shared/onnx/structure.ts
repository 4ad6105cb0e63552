/**
 * Reading an ONNX model's structure without its weights.
 *
 * A ModelProto is mostly tensor payloads (`raw_data` and the typed `*_data` fields of every
 * TensorProto); the graph around them (nodes, signature, opsets) is small. This module walks the
 * protobuf wire format, descends only into the messages that can hold tensors, skips every
 * payload without keeping it, and re-encodes the rest as a compact ModelProto (a "skeleton")
 * that decodes with the ordinary codec. So a multi-gigabyte single-file model is inspected with
 * memory proportional to its graph, from bytes in memory, a random-access source (a file, ranged
 * GETs) or a stream passing by (registration hashes and stores the same chunks).
 *
 * The skipped byte count of each tensor travels in a private field of the skeleton's TensorProto
 * ({@link skippedPayloadBytes}); the same field in the input is dropped, so a file cannot forge it.
 */
import type { TensorProto } from 'onnx-buf';
import { UnprocessableError } from '../errors';
import { decodeModel, type ModelProto } from './codec';

/** Bytes addressed by offset: a file, an object read with ranged GETs. */
export interface RandomAccessSource {
  size: number;
  /** Exactly `length` bytes from `offset` (the caller never asks past `size`). */
  read(offset: number, length: number): Promise<Uint8Array>;
}

export interface StructureOptions {
  /**
   * Most bytes of structure (everything but tensor payloads) kept; more is refused (422), so a
   * hostile file with a gigabyte doc string cannot exhaust memory. Default 256 MiB.
   */
  maxStructureBytes?: number;
}

/** The result of a scan: the skeleton's bytes and how much of the input was skipped. */
export interface ModelStructure {
  /** A ModelProto without tensor payloads; decode with {@link decodeStructure}. */
  skeleton: Uint8Array;
  /** Bytes of the input (the model's size). */
  size: number;
  /** Payload bytes left out. */
  skippedBytes: number;
}

export const DEFAULT_MAX_STRUCTURE_BYTES = 256 * 1024 * 1024;

/**
 * Private TensorProto field (the largest legal field number) carrying the payload bytes the
 * scan skipped for that tensor.
 */
const SKIPPED_FIELD = 536_870_911;

type Kind = 'model' | 'graph' | 'node' | 'attribute' | 'tensor' | 'sparse' | 'training' | 'function';

/**
 * Which fields of which message lead to tensors (and are parsed rather than copied), by field
 * number in onnx.proto.
 */
const CHILDREN: Record<Kind, Partial<Record<number, Kind>>> = {
  // ModelProto: graph = 7, training_info = 20, functions = 25
  model: { 7: 'graph', 20: 'training', 25: 'function' },
  // GraphProto: node = 1, initializer = 5, sparse_initializer = 15
  graph: { 1: 'node', 5: 'tensor', 15: 'sparse' },
  // NodeProto: attribute = 5
  node: { 5: 'attribute' },
  // AttributeProto: t = 5, g = 6, tensors = 10, graphs = 11, sparse_tensor = 22, sparse_tensors = 23
  attribute: { 5: 'tensor', 6: 'graph', 10: 'tensor', 11: 'graph', 22: 'sparse', 23: 'sparse' },
  tensor: {},
  // SparseTensorProto: values = 1, indices = 2
  sparse: { 1: 'tensor', 2: 'tensor' },
  // TrainingInfoProto: initialization = 1, algorithm = 2
  training: { 1: 'graph', 2: 'graph' },
  // FunctionProto: node = 7, attribute_proto = 11
  function: { 7: 'node', 11: 'attribute' },
};

/** TensorProto payload fields: raw_data, float/int32/string/int64/double/uint64 data. */
const PAYLOAD_FIELDS = new Set([9, 4, 5, 6, 7, 10, 11]);

/** Subgraphs nest (If inside Loop inside If…); deeper is not a real model. */
const MAX_DEPTH = 64;

/** What the scanner asks its driver for: `read` n bytes (null at a clean end of input when `eof`), or `skip` n. */
type Request = { read: number; eof?: boolean } | { skip: number };
type Scan<T> = Generator<Request, T, Uint8Array | null>;

const invalid = (reason: string): UnprocessableError =>
  new UnprocessableError(
    `not a valid ONNX model: protobuf decoding failed (${reason}); the file is truncated, corrupted or not ONNX`,
  );

class Budget {
  kept = 0;
  skipped = 0;
  constructor(readonly max: number) {}
  keep(n: number): void {
    this.kept += n;
    if (this.kept > this.max)
      throw new UnprocessableError(
        `the model's structure (everything but tensor payloads) is larger than ${this.max} bytes; such a model cannot be inspected`,
        { maxStructureBytes: this.max },
      );
  }
}

function* readVarint(first: boolean): Scan<{ value: number; bytes: number[] } | null> {
  const bytes: number[] = [];
  let value = 0;
  let scale = 1;
  for (;;) {
    const b = yield { read: 1, eof: first && bytes.length === 0 };
    if (b === null) return null;
    const byte = b[0] as number;
    bytes.push(byte);
    if (bytes.length > 10) throw invalid('varint longer than 10 bytes');
    // Lengths and field numbers beyond 2^53 are not real; keep exact arithmetic up to there.
    value += (byte & 0x7f) * scale;
    scale *= 128;
    if ((byte & 0x80) === 0) return { value, bytes };
  }
}

function encodeVarint(value: number): number[] {
  const out: number[] = [];
  let v = value;
  while (v >= 0x80) {
    out.push((v % 128) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return out;
}

/**
 * Scans one message of `kind` spanning `length` bytes (Infinity: to the end of input) and
 * returns its compact encoding.
 */
function* scanMessage(kind: Kind, length: number, budget: Budget, depth: number): Scan<Uint8Array> {
  if (depth > MAX_DEPTH) throw invalid(`messages nested deeper than ${MAX_DEPTH}`);
  const out: Uint8Array[] = [];
  let consumed = 0;
  let skippedHere = 0;
  const emit = (bytes: Uint8Array | number[]): void => {
    const b = bytes instanceof Uint8Array ? bytes : Uint8Array.from(bytes);
    budget.keep(b.length);
    out.push(b);
  };
  while (consumed < length) {
    const tag = yield* readVarint(length === Number.POSITIVE_INFINITY);
    if (tag === null) break; // clean end of the top-level message
    consumed += tag.bytes.length;
    const field = Math.floor(tag.value / 8);
    const wire = tag.value % 8;
    if (field === 0) throw invalid('field number 0');
    let fieldBytes: number;
    if (wire === 0) {
      const v = yield* readVarint(false);
      if (v === null) throw invalid('truncated varint');
      fieldBytes = v.bytes.length;
      if (!(kind === 'tensor' && field === SKIPPED_FIELD)) emit([...tag.bytes, ...v.bytes]);
    } else if (wire === 1 || wire === 5) {
      fieldBytes = wire === 1 ? 8 : 4;
      const v = yield { read: fieldBytes };
      if (v === null) throw invalid('truncated fixed-width field');
      if (kind === 'tensor' && PAYLOAD_FIELDS.has(field)) skippedHere += fieldBytes;
      else if (!(kind === 'tensor' && field === SKIPPED_FIELD)) emit([...tag.bytes, ...v]);
    } else if (wire === 2) {
      const len = yield* readVarint(false);
      if (len === null) throw invalid('truncated length');
      if (consumed + len.bytes.length + len.value > length)
        throw invalid('length-delimited field past its message');
      fieldBytes = len.bytes.length + len.value;
      const child = CHILDREN[kind][field];
      if (kind === 'tensor' && (PAYLOAD_FIELDS.has(field) || field === SKIPPED_FIELD)) {
        if (field !== SKIPPED_FIELD) skippedHere += len.value;
        budget.skipped += len.value;
        if (len.value > 0) yield { skip: len.value };
      } else if (child !== undefined) {
        const inner = yield* scanMessage(child, len.value, budget, depth + 1);
        emit([...tag.bytes, ...encodeVarint(inner.length)]);
        out.push(inner); // counted by the child's own emits
      } else {
        emit([...tag.bytes, ...len.bytes]);
        budget.keep(len.value); // checked before the bytes are asked for
        const value = len.value > 0 ? yield { read: len.value } : new Uint8Array();
        if (value === null) throw invalid('truncated field');
        out.push(value);
      }
    } else {
      throw invalid(`unsupported wire type ${wire}`);
    }
    consumed += fieldBytes;
    if (consumed > length) throw invalid('field past the end of its message');
  }
  if (kind === 'tensor' && skippedHere > 0)
    emit([...encodeVarint(SKIPPED_FIELD * 8), ...encodeVarint(skippedHere)]);
  return concat(out);
}

function concat(parts: Uint8Array[]): Uint8Array {
  let size = 0;
  for (const p of parts) size += p.length;
  const out = new Uint8Array(size);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function budgetOf(options: StructureOptions): Budget {
  return new Budget(options.maxStructureBytes ?? DEFAULT_MAX_STRUCTURE_BYTES);
}

/**
 * Scans a model held in memory (payloads are skipped by reference, nothing is copied but the
 * structure).
 *
 * @example
 * ```ts
 * const { skeleton } = scanModelBytes(await readFile('model.onnx'));
 * const model = decodeStructure(skeleton);
 * ```
 */
export function scanModelBytes(bytes: Uint8Array, options: StructureOptions = {}): ModelStructure {
  const budget = budgetOf(options);
  const scan = scanMessage('model', bytes.length, budget, 0);
  let pos = 0;
  let step = scan.next();
  while (!step.done) {
    const request = step.value;
    if ('skip' in request) {
      if (pos + request.skip > bytes.length) throw invalid('truncated field');
      pos += request.skip;
      step = scan.next(null);
    } else if (pos === bytes.length && request.eof) {
      step = scan.next(null);
    } else {
      if (pos + request.read > bytes.length) throw invalid('truncated field');
      step = scan.next(bytes.subarray(pos, pos + request.read));
      pos += request.read;
    }
  }
  return { skeleton: step.value, size: bytes.length, skippedBytes: budget.skipped };
}

/**
 * Scans a model from a random-access source, reading its structure in windows and jumping over
 * payloads: a few reads per megabyte of structure, none for the weights.
 *
 * @example
 * ```ts
 * const handle = await fs.open('big.onnx');
 * const source = { size: (await handle.stat()).size, read: async (o, n) => {
 *   const b = Buffer.alloc(n); await handle.read(b, 0, n, o); return b; } };
 * const { skeleton } = await scanModelSource(source);
 * ```
 */
export async function scanModelSource(
  source: RandomAccessSource,
  options: StructureOptions & { windowBytes?: number } = {},
): Promise<ModelStructure> {
  // Small windows: a window that starts a payload reads bytes that are then jumped over.
  const windowBytes = options.windowBytes ?? 64 * 1024;
  const budget = budgetOf(options);
  const scan = scanMessage('model', source.size, budget, 0);
  let pos = 0;
  let window: Uint8Array = new Uint8Array();
  let windowStart = 0;
  let step = scan.next();
  while (!step.done) {
    const request = step.value;
    if ('skip' in request) {
      if (pos + request.skip > source.size) throw invalid('truncated field');
      pos += request.skip;
      step = scan.next(null);
      continue;
    }
    if (pos === source.size && request.eof) {
      step = scan.next(null);
      continue;
    }
    const n = request.read;
    if (pos + n > source.size) throw invalid('truncated field');
    if (pos < windowStart || pos + n > windowStart + window.length) {
      // Small reads share one window; a large field is read on its own (no window copy).
      const length = Math.min(Math.max(n, windowBytes), source.size - pos);
      window = await source.read(pos, length);
      windowStart = pos;
      if (window.length !== length) throw invalid('short read from the model source');
    }
    const at = pos - windowStart;
    step = scan.next(window.subarray(at, at + n));
    pos += n;
  }
  return { skeleton: step.value, size: source.size, skippedBytes: budget.skipped };
}

/**
 * Scans a model as its bytes stream past (push `write` each chunk, then `end`): payloads are
 * dropped as they go by, so registration inspects while it hashes and stores the same chunks.
 * A malformed model makes `write` or `end` throw {@link UnprocessableError}.
 *
 * @example
 * ```ts
 * const scanner = new StructureScanner();
 * for await (const chunk of stream) { hash.update(chunk); scanner.write(chunk); }
 * const model = decodeStructure(scanner.end().skeleton);
 * ```
 */
export class StructureScanner {
  private readonly budget: Budget;
  private readonly scan: Scan<Uint8Array>;
  private step: IteratorResult<Request, Uint8Array>;
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;
  private size = 0;
  private result: Uint8Array | undefined;

  /** `size`: the model's length when known (a corrupt length is then caught before any buffering). */
  constructor(options: StructureOptions & { size?: number } = {}) {
    this.budget = budgetOf(options);
    this.scan = scanMessage('model', options.size ?? Number.POSITIVE_INFINITY, this.budget, 0);
    this.step = this.scan.next();
  }

  /** Feeds the next chunk of the model. */
  write(chunk: Uint8Array): void {
    this.size += chunk.length;
    if (this.step.done) {
      if (chunk.length > 0) throw invalid('bytes after the end of the model');
      return;
    }
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    this.drain();
    if (this.step.done && this.pendingBytes > 0) throw invalid('bytes after the end of the model');
  }

  /** Signals the end of input and returns the structure. */
  end(): ModelStructure {
    if (this.step.done && this.pendingBytes > 0) throw invalid('bytes after the end of the model');
    while (!this.step.done) {
      const request = this.step.value;
      if (!('skip' in request) && request.eof && this.pendingBytes === 0) this.step = this.scan.next(null);
      else throw invalid('truncated field');
    }
    this.result = this.step.value;
    return { skeleton: this.result, size: this.size, skippedBytes: this.budget.skipped };
  }

  private drain(): void {
    while (!this.step.done) {
      const request = this.step.value;
      if ('skip' in request) {
        const n = Math.min(request.skip, this.pendingBytes);
        this.take(n, false);
        if (n < request.skip) {
          // Partly skipped: wait for more bytes with the rest of the skip outstanding.
          this.step = { done: false, value: { skip: request.skip - n } };
          return;
        }
        this.step = this.scan.next(null);
      } else {
        if (this.pendingBytes < request.read) return;
        this.step = this.scan.next(this.take(request.read, true));
      }
    }
  }

  /** Removes `n` bytes from the front of the pending chunks, returning them when `keep`. */
  private take(n: number, keep: boolean): Uint8Array {
    const first = this.pending[0];
    if (first !== undefined && first.length >= n) {
      const out = first.subarray(0, n);
      if (first.length === n) this.pending.shift();
      else this.pending[0] = first.subarray(n);
      this.pendingBytes -= n;
      return keep ? out : new Uint8Array();
    }
    const out = keep ? new Uint8Array(n) : new Uint8Array();
    let at = 0;
    while (at < n) {
      const chunk = this.pending[0] as Uint8Array;
      const use = Math.min(chunk.length, n - at);
      if (keep) out.set(chunk.subarray(0, use), at);
      if (use === chunk.length) this.pending.shift();
      else this.pending[0] = chunk.subarray(use);
      at += use;
    }
    this.pendingBytes -= n;
    return out;
  }
}

/**
 * Decodes a skeleton into a ModelProto (tensor payloads empty; see {@link skippedPayloadBytes}).
 * Throws {@link UnprocessableError} as {@link decodeModel} does.
 */
export function decodeStructure(skeleton: Uint8Array): ModelProto {
  return decodeModel(skeleton);
}

/**
 * Bytes of payload (`raw_data`, typed data) the scan skipped for this tensor of a skeleton: what
 * it held inline in the original model.
 */
export function skippedPayloadBytes(tensor: TensorProto): number {
  const field = tensor.$unknown?.find((f) => f.no === SKIPPED_FIELD);
  if (!field) return 0;
  let value = 0;
  let scale = 1;
  for (const byte of field.data) {
    value += (byte & 0x7f) * scale;
    scale *= 128;
    if ((byte & 0x80) === 0) break;
  }
  return value;
}
