/**
 * The inputs a candidate is evaluated on, in order of preference:
 * 1. reference inputs from the request: OIP-style tensors inline, or the store key of a JSON file
 *    holding `{ "inputs": [...] }` (e.g. a saved inference request);
 * 2. captured samples of real traffic, through the {@link CapturedInputsProvider} hook
 *    (`capturedInputsFromMonitoring` in captured.ts reads the raw samples monitoring stores under
 *    `monitoring/captures/`; the library default, {@link noCapturedInputs}, reads nothing);
 * 3. seeded random inputs generated from the model's signature: a dynamic leading (batch) dimension
 *    is set per run (1 and 32); any other dynamic dimension must be given in `inputShapes`.
 */
import { InvalidArgumentError, NotFoundError, UnprocessableError } from '../errors';
import {
  float32ToFloat16Bits,
  isOipDatatype,
  type NumericOipDatatype,
  type OipTypedArray,
  typedArrayConstructorOf,
} from '../onnx/datatypes';
import type { TensorSpec } from '../onnx/inspect';
import type { ObjectStore } from '../store';
import { readJson } from '../store/documents';
import { mulberry32 } from '../util/random';

/** One named tensor with its data, batch (leading) dimension first. */
export interface EvalTensor {
  name: string;
  datatype: NumericOipDatatype;
  shape: number[];
  data: OipTypedArray;
}

/** A full set of model inputs for one run. */
export type InputFeed = EvalTensor[];

/** Where the evaluation inputs came from. */
export type InputSource = 'request' | 'store' | 'captured' | 'random' | 'prompts';

/** What the evaluator runs: accuracy feeds, and a feed per latency batch size. */
export interface EvaluationInputs {
  source: InputSource;
  /** Feeds compared for accuracy (parent vs candidate), together `samples` rows. */
  accuracy: InputFeed[];
  samples: number;
  /** Feeds timed for latency, keyed by batch size (1 and 32 when the batch dimension is dynamic). */
  latency: { batch: number; feed: InputFeed }[];
  /** Present for random inputs. */
  seed?: number;
  /** Set where a store key was read. */
  key?: string;
  /**
   * Outputs whose last axis is a distribution over tokens (a text model's `logits`): top-1
   * agreement is counted per position (next-token agreement).
   */
  tokenDistributions?: readonly string[];
}

/** Request-side description of the reference inputs: inline OIP tensors or a store key. */
export type ReferenceInputs = { inputs: unknown[] } | { key: string; inline?: true };

/**
 * Hook that returns captured traffic samples fitting a model version's input signature (batch
 * dimension first), or undefined when there are none.
 */
export type CapturedInputsProvider = (
  model: string,
  version: number,
  specs: readonly TensorSpec[],
) => Promise<InputFeed | undefined>;

/**
 * {@link CapturedInputsProvider} that has no captures: evaluation falls back to random inputs.
 * The optimize function uses `capturedInputsFromMonitoring` (captured.ts) instead.
 */
export const noCapturedInputs: CapturedInputsProvider = async () => undefined;

/** Options of {@link resolveEvaluationInputs}. */
export interface EvaluationInputOptions {
  /** Shapes for inputs with dynamic dimensions other than the leading batch one (−1 allowed first). */
  inputShapes?: Record<string, number[]>;
  /** Rows compared for accuracy with random inputs (default 256). */
  samples?: number;
  /** Seed of random inputs (default 1). */
  seed?: number;
  /**
   * Fixed values of scalar and small inputs, given inline (e.g. `{ "sr": 16000 }` for a sample
   * rate): a number for a scalar, a flat array of numbers for an input with a fixed shape. They are
   * the same in every feed, are not batched, and with random inputs the other inputs are generated.
   */
  values?: Record<string, number | number[]>;
}

/** Most elements an inline `evaluation.values` entry may hold. */
export const MAX_INLINE_VALUE_ELEMENTS = 4096;

/**
 * The tensor of an inline `evaluation.values` entry, checked against the input's signature.
 * @example
 * inlineValueTensor({ name: 'sr', datatype: 'INT64', shape: [] }, 16000) // INT64 scalar
 */
export function inlineValueTensor(spec: TensorSpec, value: unknown): EvalTensor {
  const where = `evaluation.values.${spec.name}`;
  if (spec.datatype === 'BYTES')
    throw new InvalidArgumentError(`${where}: input is BYTES; give referenceInputs`);
  const flat = typeof value === 'number' ? [value] : value;
  if (
    !Array.isArray(flat) ||
    flat.length === 0 ||
    flat.some((v) => typeof v !== 'number' || !Number.isFinite(v))
  )
    throw new InvalidArgumentError(`${where} must be a finite number or a flat array of finite numbers`);
  if (flat.length > MAX_INLINE_VALUE_ELEMENTS)
    throw new InvalidArgumentError(
      `${where} has ${flat.length} values; at most ${MAX_INLINE_VALUE_ELEMENTS} inline`,
    );
  if (spec.unknownRank || spec.shape.some((d) => d < 0)) {
    if (typeof value !== 'number')
      throw new InvalidArgumentError(
        `${where}: input has a dynamic shape [${spec.shape.join(', ')}]; only a scalar number fits without a shape`,
      );
  }
  const shape = spec.unknownRank ? [] : spec.shape.map((d) => (d < 0 ? 1 : d));
  const count = shape.reduce((a, b) => a * b, 1);
  if (flat.length !== count)
    throw new InvalidArgumentError(
      `${where} has ${flat.length} values; input shape [${spec.shape.join(', ')}] needs ${count}`,
    );
  const datatype = spec.datatype as NumericOipDatatype;
  return { name: spec.name, datatype, shape, data: typedFromNumbers(datatype, flat as number[]) };
}

const LATENCY_BATCHES = [1, 32];

/**
 * Parses inline OIP tensors (`{name, datatype, shape, data}`, data flat or nested) against the
 * model signature. Throws InvalidArgumentError on anything that would not run.
 * @example
 * const feed = parseOipInputs([{ name: 'input', datatype: 'FP32', shape: [2, 4], data: [0, 1, 2, 3, 4, 5, 6, 7] }], version.onnx.inputs);
 */
export function parseOipInputs(inputs: unknown, specs: readonly TensorSpec[]): InputFeed {
  if (!Array.isArray(inputs) || inputs.length === 0)
    throw new InvalidArgumentError('referenceInputs.inputs must be a non-empty array of OIP tensors');
  const feed: InputFeed = [];
  for (const raw of inputs) {
    if (typeof raw !== 'object' || raw === null)
      throw new InvalidArgumentError('each reference input must be an object {name, datatype, shape, data}');
    const t = raw as Record<string, unknown>;
    const spec = specs.find((s) => s.name === t.name);
    if (!spec)
      throw new InvalidArgumentError(
        `reference input "${String(t.name)}" is not an input of the model (inputs: ${specs.map((s) => s.name).join(', ')})`,
      );
    if (!isOipDatatype(t.datatype) || t.datatype === 'BYTES')
      throw new InvalidArgumentError(
        `reference input "${spec.name}": datatype must be a numeric OIP datatype`,
      );
    if (t.datatype !== spec.datatype)
      throw new InvalidArgumentError(
        `reference input "${spec.name}" is ${t.datatype}; the model expects ${spec.datatype}`,
      );
    const shape = t.shape;
    if (!Array.isArray(shape) || shape.some((d) => !Number.isInteger(d) || (d as number) < 0))
      throw new InvalidArgumentError(`reference input "${spec.name}": shape must be non-negative integers`);
    const dims = shape as number[];
    if (
      !spec.unknownRank &&
      (dims.length !== spec.shape.length || spec.shape.some((d, i) => d !== -1 && d !== dims[i]))
    ) {
      throw new InvalidArgumentError(
        `reference input "${spec.name}" has shape [${dims.join(', ')}]; the model expects [${spec.shape.join(', ')}]`,
      );
    }
    if (dims.length === 0 || (dims[0] ?? 0) < 1)
      throw new InvalidArgumentError(
        `reference input "${spec.name}" needs a leading batch dimension of at least 1`,
      );
    const flat = (Array.isArray(t.data) ? (t.data as unknown[]).flat(Infinity) : []) as unknown[];
    const count = dims.reduce((a, b) => a * b, 1);
    if (flat.length !== count)
      throw new InvalidArgumentError(
        `reference input "${spec.name}" has ${flat.length} values; shape [${dims.join(', ')}] needs ${count}`,
      );
    feed.push({
      name: spec.name,
      datatype: spec.datatype as NumericOipDatatype,
      shape: dims,
      data: toTyped(spec.datatype as NumericOipDatatype, flat, spec.name),
    });
  }
  const missing = specs.filter((s) => !feed.some((f) => f.name === s.name));
  if (missing.length > 0)
    throw new InvalidArgumentError(
      `reference inputs miss model input(s) ${missing.map((m) => m.name).join(', ')}`,
    );
  const batches = new Set(feed.map((f) => f.shape[0]));
  if (batches.size > 1)
    throw new InvalidArgumentError('reference inputs must share the same leading (batch) dimension');
  return feed;
}

function toTyped(datatype: NumericOipDatatype, values: readonly unknown[], name: string): OipTypedArray {
  const numbers = values.map((v, i) => {
    const n = typeof v === 'boolean' ? Number(v) : v;
    if (typeof n !== 'number' || (!Number.isFinite(n) && !datatype.startsWith('FP')))
      throw new InvalidArgumentError(`reference input "${name}": value ${i} is not a number`);
    return n;
  });
  return typedFromNumbers(datatype, numbers);
}

/**
 * The typed array onnxruntime takes for `datatype`, from plain numbers (JSON values): 64-bit
 * integers truncated to bigint, FP16 as its bit patterns. Callers validate the numbers first.
 *
 * @example
 * ```ts
 * typedFromNumbers('INT64', [1, 2.7]); // BigInt64Array [1n, 2n]
 * ```
 */
export function typedFromNumbers(datatype: NumericOipDatatype, values: ArrayLike<number>): OipTypedArray {
  const Ctor = typedArrayConstructorOf(datatype) as unknown as new (n: number) => OipTypedArray;
  const out = new Ctor(values.length);
  const target = out as unknown as { [i: number]: number | bigint };
  const big = datatype === 'INT64' || datatype === 'UINT64';
  for (let i = 0; i < values.length; i++) {
    const n = values[i] ?? 0;
    if (big) target[i] = BigInt(Math.trunc(n));
    else if (datatype === 'FP16') target[i] = float32ToFloat16Bits(n);
    else target[i] = n;
  }
  return out;
}

/**
 * Rows of a feed: its first tensor's leading dimension.
 * @example
 * const rows = feeds.reduce((n, f) => n + feedRows(f), 0);
 */
export function feedRows(feed: InputFeed): number {
  return feed[0]?.shape[0] ?? 1;
}

/**
 * The evaluation feeds calibration runs on: whole feeds (each at most 32 rows, see `fromFeed`;
 * a feed's batch may be fixed by the model, so it is never split) until `rows` rows are reached.
 * @example
 * const feeds = calibrationFeeds(inputs.accuracy, 32);
 */
export function calibrationFeeds(feeds: readonly InputFeed[], rows: number): InputFeed[] {
  const out: InputFeed[] = [];
  let taken = 0;
  for (const feed of feeds) {
    if (taken >= rows) break;
    out.push(feed);
    taken += feedRows(feed);
  }
  return out;
}

/**
 * Splits evaluation inputs for `int8-static`: calibration on the last feeds (at least `rows`
 * rows), accuracy on the feeds before them when at least as many rows remain. Measuring accuracy
 * on the rows the activation ranges were calibrated on would flatter the candidate (min/max ranges
 * cover those rows exactly). With fewer rows both get all the feeds (calibration then takes its
 * rows from the start, {@link calibrationFeeds}), and `heldOut` is false.
 * @example
 * const { calibration, evaluation, heldOut } = splitForCalibration(inputs, 32);
 */
export function splitForCalibration(
  inputs: EvaluationInputs,
  rows: number,
): { calibration: InputFeed[]; evaluation: EvaluationInputs; heldOut: boolean } {
  const feeds = inputs.accuracy;
  let cut = feeds.length;
  let taken = 0;
  while (cut > 0 && taken < rows) taken += feedRows(feeds[--cut] as InputFeed);
  const remaining = feeds.slice(0, cut);
  const remainingRows = remaining.reduce((n, f) => n + feedRows(f), 0);
  if (remaining.length === 0 || remainingRows < taken)
    return { calibration: feeds, evaluation: inputs, heldOut: false };
  return {
    calibration: feeds.slice(cut),
    evaluation: { ...inputs, accuracy: remaining, samples: remainingRows },
    heldOut: true,
  };
}

/** Rows `[from, from + count)` of a feed along the batch dimension, cycling when past the end. */
function takeRows(feed: InputFeed, from: number, count: number): InputFeed {
  return feed.map((t) => {
    const rows = t.shape[0] ?? 1;
    const per = t.data.length / rows;
    const Ctor = t.data.constructor as new (n: number) => OipTypedArray;
    const out = new Ctor(per * count);
    for (let r = 0; r < count; r++) {
      const src = (from + r) % rows;
      (out as unknown as { set(a: ArrayLike<number | bigint>, o: number): void }).set(
        (t.data as unknown as { subarray(a: number, b: number): ArrayLike<number | bigint> }).subarray(
          src * per,
          (src + 1) * per,
        ),
        r * per,
      );
    }
    return { ...t, shape: [count, ...t.shape.slice(1)], data: out };
  });
}

/**
 * Resolves the shape random inputs use for one spec (leading −1 kept for the batch), or throws
 * naming the dynamic dimension that needs `inputShapes`.
 * @example
 * plannedShape({ name: 'x', datatype: 'FP32', shape: [-1, 16] }, {}) // [-1, 16]
 */
export function plannedShape(spec: TensorSpec, inputShapes: Record<string, number[]> = {}): number[] {
  const given = inputShapes[spec.name];
  const shape = given ?? spec.shape;
  if (given !== undefined) {
    if (
      !Array.isArray(given) ||
      given.some((d, i) => !Number.isInteger(d) || d < (i === 0 ? -1 : 1) || d === 0)
    ) {
      throw new InvalidArgumentError(
        `evaluation.inputShapes.${spec.name} must be positive integers (-1 allowed for the leading batch dimension)`,
      );
    }
    if (
      !spec.unknownRank &&
      (given.length !== spec.shape.length ||
        spec.shape.some((d, i) => d !== -1 && d !== given[i] && !(i === 0 && given[0] === -1)))
    ) {
      throw new InvalidArgumentError(
        `evaluation.inputShapes.${spec.name} [${given.join(', ')}] does not fit the model's [${spec.shape.join(', ')}]`,
      );
    }
  } else if (spec.unknownRank) {
    throw new InvalidArgumentError(
      `input "${spec.name}" has no recorded shape: give evaluation.inputShapes.${spec.name} (or referenceInputs)`,
      { input: spec.name },
    );
  }
  const dynamic = shape.findIndex((d, i) => i > 0 && d < 0);
  if (dynamic >= 0) {
    throw new InvalidArgumentError(
      `input "${spec.name}" has dynamic dimension ${dynamic} ([${spec.shape.join(', ')}]); random evaluation inputs need its size: give evaluation.inputShapes.${spec.name} (or referenceInputs)`,
      { input: spec.name, dimension: dynamic },
    );
  }
  if (shape.length === 0)
    throw new InvalidArgumentError(
      `input "${spec.name}" is a scalar; give its value in evaluation.values.${spec.name} (or referenceInputs)`,
      {
        input: spec.name,
      },
    );
  return shape;
}

/**
 * Checks, before a job is queued, that evaluation inputs can be produced for this signature
 * (without reading anything): a request with a bad shape or a BYTES input fails with 400 here.
 * @example
 * assertInputsPlannable(version.onnx.inputs, request.referenceInputs, request.evaluation?.inputShapes);
 */
export function assertInputsPlannable(
  specs: readonly TensorSpec[],
  reference: ReferenceInputs | undefined,
  inputShapes?: Record<string, number[]>,
  values: Record<string, unknown> = {},
): void {
  for (const name of Object.keys(values)) {
    const spec = specs.find((s) => s.name === name);
    if (!spec)
      throw new InvalidArgumentError(
        `evaluation.values.${name}: the model has no input ${name} (inputs: ${specs.map((s) => s.name).join(', ')})`,
      );
    inlineValueTensor(spec, values[name]);
  }
  if (reference && 'inputs' in reference) {
    parseOipInputs(reference.inputs, specs);
    return;
  }
  if (reference) return; // a store key is read (and checked) by the worker
  for (const spec of specs) {
    if (values[spec.name] !== undefined) continue;
    if (spec.datatype === 'BYTES')
      throw new InvalidArgumentError(
        `input "${spec.name}" is BYTES: random inputs cannot be generated; give referenceInputs`,
      );
    plannedShape(spec, inputShapes);
  }
}

function randomTensor(spec: TensorSpec, shape: number[], rand: () => number): EvalTensor {
  const datatype = spec.datatype as NumericOipDatatype;
  const count = shape.reduce((a, b) => a * b, 1);
  const Ctor = typedArrayConstructorOf(datatype) as unknown as new (n: number) => OipTypedArray;
  const data = new Ctor(count);
  const target = data as unknown as { [i: number]: number | bigint };
  for (let i = 0; i < count; i++) {
    const u = rand();
    if (datatype === 'FP32' || datatype === 'FP64') target[i] = 2 * u - 1;
    else if (datatype === 'FP16') target[i] = float32ToFloat16Bits(2 * u - 1);
    else if (datatype === 'BOOL') target[i] = u < 0.5 ? 0 : 1;
    // Small non-negative integers: valid indices for embeddings/Gather of any realistic size.
    else if (datatype === 'INT64' || datatype === 'UINT64') target[i] = BigInt(Math.floor(u * 10));
    else target[i] = Math.floor(u * 10);
  }
  return { name: spec.name, datatype, shape, data };
}

function fromFeed(
  source: InputSource,
  feed: InputFeed,
  batchDynamic: boolean,
  key?: string,
): EvaluationInputs {
  const rows = feedRows(feed);
  const accuracy: InputFeed[] = [];
  // Accuracy in chunks of at most 32 rows (bounded memory per run) when the batch may vary.
  const chunk = batchDynamic ? 32 : rows;
  for (let from = 0; from < rows; from += chunk)
    accuracy.push(takeRows(feed, from, Math.min(chunk, rows - from)));
  const latency = batchDynamic
    ? LATENCY_BATCHES.map((batch) => ({ batch, feed: takeRows(feed, 0, batch) }))
    : [{ batch: rows, feed }];
  return { source, accuracy, samples: rows, latency, ...(key ? { key } : {}) };
}

/**
 * Produces the evaluation inputs for a model signature (see the module comment for the order).
 *
 * @example
 * const inputs = await resolveEvaluationInputs(version.onnx.inputs, { store, model: 'mlp', version: 1, reference: undefined });
 */
export async function resolveEvaluationInputs(
  specs: readonly TensorSpec[],
  context: {
    store: ObjectStore;
    model: string;
    version: number;
    reference?: ReferenceInputs | undefined;
    capturedInputs?: CapturedInputsProvider;
    options?: EvaluationInputOptions;
  },
): Promise<EvaluationInputs> {
  const options = context.options ?? {};
  const batchDynamic = specs.every((s) => s.unknownRank || s.shape[0] === -1);
  const reference = context.reference;
  if (reference && 'inputs' in reference)
    return fromFeed('request', parseOipInputs(reference.inputs, specs), batchDynamic);
  if (reference && 'key' in reference) {
    let found: { doc: { inputs?: unknown } | null } | undefined;
    try {
      found = await readJson<{ inputs?: unknown } | null>(context.store, reference.key);
    } catch (e) {
      if (e instanceof SyntaxError)
        throw new UnprocessableError(`referenceInputs key ${reference.key} is not JSON`);
      throw e;
    }
    if (!found)
      throw new NotFoundError(`referenceInputs key ${reference.key} not found`, { key: reference.key });
    const inputs = found.doc?.inputs;
    // Inline request inputs are saved beside the job record and read back by the worker: still 'request'.
    return fromFeed(
      reference.inline ? 'request' : 'store',
      parseOipInputs(inputs, specs),
      batchDynamic,
      reference.key,
    );
  }
  const captured = await (context.capturedInputs ?? noCapturedInputs)(context.model, context.version, specs);
  if (captured && captured.length > 0) return fromFeed('captured', captured, batchDynamic);

  const seed = options.seed ?? 1;
  const samples = options.samples ?? 256;
  const rand = mulberry32(seed);
  const fixed = new Map(
    Object.entries(options.values ?? {}).map(([name, v]) => {
      const spec = specs.find((s) => s.name === name);
      if (!spec) throw new InvalidArgumentError(`evaluation.values.${name}: the model has no input ${name}`);
      return [name, inlineValueTensor(spec, v)] as const;
    }),
  );
  const generated = specs.filter((s) => !fixed.has(s.name));
  const shapes = generated.map((s) => plannedShape(s, options.inputShapes));
  for (const s of generated)
    if (s.datatype === 'BYTES')
      throw new InvalidArgumentError(`input "${s.name}" is BYTES: give referenceInputs`);
  const make = (batch: number): InputFeed =>
    specs.map((s) => {
      const value = fixed.get(s.name);
      if (value) return value;
      const i = generated.indexOf(s);
      return randomTensor(
        s,
        (shapes[i] ?? []).map((d, j) => (j === 0 && d < 0 ? batch : d)),
        rand,
      );
    });
  // Inline values are not batched: only the generated inputs decide whether the batch may vary.
  const randomBatchDynamic =
    generated.length > 0 && generated.every((s) => s.unknownRank || s.shape[0] === -1);
  if (!randomBatchDynamic) {
    const rows = shapes[0]?.[0] ?? 1;
    const runs = Math.max(1, Math.ceil(samples / rows));
    const accuracy = Array.from({ length: runs }, () => make(rows));
    return {
      source: 'random',
      accuracy,
      samples: runs * rows,
      latency: [{ batch: rows, feed: accuracy[0] as InputFeed }],
      seed,
    };
  }
  const accuracy: InputFeed[] = [];
  for (let done = 0; done < samples; done += 32) accuracy.push(make(Math.min(32, samples - done)));
  return {
    source: 'random',
    accuracy,
    samples,
    latency: LATENCY_BATCHES.map((batch) => ({ batch, feed: make(batch) })),
    seed,
  };
}
