/**
 * The optimization techniques and how a candidate (one technique, or several chained with '+')
 * turns parent bytes into candidate bytes.
 *
 * | technique | what it does | where |
 * | --- | --- | --- |
 * | `graph` | onnxruntime's own graph optimizations, saved with `optimizedModelFilePath` | onnxruntime |
 * | `int8` | dynamic quantization of MatMul/Gemm (and opt-in Conv) weights, weight-only int8 of embedding Gathers, bodies included | shared/onnx/quantize.ts |
 * | `int8-static` | static QDQ quantization of Conv/MatMul/Gemm, activations calibrated | shared/onnx/qdq.ts |
 * | `fp16` | float16 weights and compute, float32 signature | shared/onnx/fp16.ts |
 * | `prune` | magnitude pruning to a target sparsity | shared/onnx/prune.ts |
 *
 * A chain runs left to right and must respect the order prune → int8 / fp16 → graph: pruning and
 * quantization read float32 weights, and after `graph` the model may hold com.microsoft operators
 * the other rewriters do not know.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { InvalidArgumentError, UnprocessableError } from '../errors';
import { CALIBRATION_METHODS } from '../onnx/calibrate';
import { decodeModel, encodeModel, type ModelProto } from '../onnx/codec';
import { convertToFloat16, type Float16Options, type Float16Report } from '../onnx/fp16';
import { ensureOpsetImport, isDefaultDomain, operatorsOf, setMetadataProp } from '../onnx/graph';
import { type PruneOptions, type PruneReport, pruneByMagnitude } from '../onnx/prune';
import {
  DEFAULT_MIN_SQNR_DB,
  type QuantizeStaticOptions,
  type QuantizeStaticReport,
  quantizeStatic,
  STATIC_QUANTIZABLE_OPS,
  type StaticQuantizableOp,
} from '../onnx/qdq';
import {
  QUANTIZABLE_OPS,
  type QuantizeDynamicOptions,
  type QuantizeReport,
  quantizeDynamic,
} from '../onnx/quantize';
import { inlineSize, PROTOBUF_LIMIT_BYTES } from './artifacts';
import { evaluationSessionOptions, toOrtFeeds } from './evaluate';
import { calibrationFeeds, feedRows, type InputFeed } from './inputs';

/** A single optimization step. */
export type Technique = 'graph' | 'int8' | 'int8-static' | 'fp16' | 'prune';
export const TECHNIQUES: readonly Technique[] = ['graph', 'int8', 'int8-static', 'fp16', 'prune'];

/** Parameters of the `int8-static` technique. */
export interface StaticInt8Parameters extends QuantizeStaticOptions {
  /** Calibration rows taken from the evaluation inputs (default 32). */
  samples?: number;
}

/** Default `targetCosine` of int8-static: a little above the gate's default minimum cosine (0.99). */
export const DEFAULT_STATIC_TARGET_COSINE = 0.995;

/** Parameters of the `graph` technique. */
export interface GraphOptimizationParameters {
  /**
   * onnxruntime optimization level. Default 'extended'. 'all' adds layout transformations (NCHWc)
   * specific to the CPU that ran them, so the saved model may not load elsewhere.
   */
  level?: 'basic' | 'extended' | 'all';
}

/** Parameters per technique (each applies wherever that technique appears in a chain). */
export interface TechniqueParameters {
  graph?: GraphOptimizationParameters;
  int8?: QuantizeDynamicOptions;
  'int8-static'?: StaticInt8Parameters;
  fp16?: Float16Options;
  prune?: PruneOptions;
}

/** What one step did. */
export type StepDetails =
  | { technique: 'graph'; level: string; operatorsBefore: string[]; operatorsAfter: string[] }
  | { technique: 'int8'; report: QuantizeReport }
  | { technique: 'int8-static'; report: QuantizeStaticReport }
  | { technique: 'fp16'; report: Float16Report }
  | { technique: 'prune'; report: PruneReport };

/** A built candidate: its bytes and what each step did. */
export interface TransformedCandidate {
  /** The candidate's name: techniques joined by '+', e.g. 'prune+int8'. */
  technique: string;
  steps: Technique[];
  /** The parameters each step used (defaults filled in). */
  parameters: Partial<Record<Technique, unknown>>;
  /** The candidate model (lineage in its metadata_props). */
  model: ModelProto;
  details: StepDetails[];
  /**
   * Operators outside the standard ONNX domain ('com.microsoft:FusedMatMul', …): the model then
   * needs onnxruntime (not just any ONNX runtime) to run.
   */
  runtimeSpecificOps: string[];
}

/** A candidate encoded as one ONNX file ({@link buildCandidate}). */
export interface BuiltCandidate extends Omit<TransformedCandidate, 'model'> {
  bytes: Uint8Array;
}

const ORDER: Record<Technique, number> = { prune: 0, int8: 1, 'int8-static': 1, fp16: 1, graph: 2 };

/**
 * Parses a candidate spec ('int8', 'prune+int8', …) into steps, checking names and order.
 * @example
 * parseCandidate('prune+int8') // ['prune', 'int8']
 */
export function parseCandidate(spec: string): Technique[] {
  if (typeof spec !== 'string' || spec.trim() === '')
    throw new InvalidArgumentError('each technique must be a non-empty string');
  const steps = spec.split('+').map((s) => s.trim());
  for (const step of steps) {
    if (!(TECHNIQUES as readonly string[]).includes(step)) {
      throw new InvalidArgumentError(
        `unknown technique "${step}" in "${spec}"; known: ${TECHNIQUES.join(', ')} (chain with +, e.g. prune+int8)`,
        { technique: spec },
      );
    }
  }
  const typed = steps as Technique[];
  if (new Set(typed).size !== typed.length)
    throw new InvalidArgumentError(`technique "${spec}" repeats a step`, { technique: spec });
  for (let i = 1; i < typed.length; i++) {
    const [a, b] = [typed[i - 1] as Technique, typed[i] as Technique];
    if (
      ORDER[a] > ORDER[b] ||
      (a === 'fp16' && b.startsWith('int8')) ||
      (a.startsWith('int8') && b.startsWith('int8'))
    ) {
      throw new InvalidArgumentError(
        `technique "${spec}": ${b} cannot follow ${a}; order steps prune → int8 → fp16 → graph (quantization and pruning need float32 weights, graph output may hold runtime-specific operators)`,
        { technique: spec },
      );
    }
  }
  return typed;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function checkKeys(where: string, value: Record<string, unknown>, allowed: readonly string[]): void {
  const unknown = Object.keys(value).filter((k) => !allowed.includes(k));
  if (unknown.length > 0)
    throw new InvalidArgumentError(
      `${where}: unknown parameter(s) ${unknown.join(', ')}; allowed: ${allowed.join(', ')}`,
      { parameters: unknown },
    );
}

/** `v` when it is one of `allowed`, else a 400 naming the choices (`a, b or c`). */
function oneOf<T extends string>(where: string, v: unknown, allowed: readonly T[]): T {
  if ((allowed as readonly unknown[]).includes(v)) return v as T;
  throw new InvalidArgumentError(`${where} must be ${allowed.slice(0, -1).join(', ')} or ${allowed.at(-1)}`);
}

function stringList(where: string, v: unknown): string[] {
  if (!Array.isArray(v) || v.some((s) => typeof s !== 'string'))
    throw new InvalidArgumentError(`${where} must be an array of strings`);
  return v as string[];
}

/**
 * Validates untrusted technique parameters (from a request body) and returns them typed.
 * Throws InvalidArgumentError naming the offending field.
 * @example
 * const parameters = parseTechniqueParameters({ int8: { perChannel: true }, prune: { sparsity: 0.5 } });
 */
export function parseTechniqueParameters(input: unknown): TechniqueParameters {
  if (input === undefined) return {};
  if (!isRecord(input)) throw new InvalidArgumentError('parameters must be an object keyed by technique');
  checkKeys('parameters', input, TECHNIQUES);
  const out: TechniqueParameters = {};
  if (input.graph !== undefined) {
    if (!isRecord(input.graph)) throw new InvalidArgumentError('parameters.graph must be an object');
    checkKeys('parameters.graph', input.graph, ['level']);
    const level = input.graph.level;
    out.graph =
      level !== undefined
        ? { level: oneOf('parameters.graph.level', level, ['basic', 'extended', 'all'] as const) }
        : {};
  }
  if (input.int8 !== undefined) {
    const p = input.int8;
    if (!isRecord(p)) throw new InvalidArgumentError('parameters.int8 must be an object');
    checkKeys('parameters.int8', p, ['perChannel', 'weightType', 'opTypes', 'nodesToExclude', 'reduceRange']);
    const q: QuantizeDynamicOptions = {};
    for (const flag of ['perChannel', 'reduceRange'] as const) {
      if (p[flag] !== undefined) {
        if (typeof p[flag] !== 'boolean')
          throw new InvalidArgumentError(`parameters.int8.${flag} must be a boolean`);
        q[flag] = p[flag];
      }
    }
    if (p.weightType !== undefined)
      q.weightType = oneOf('parameters.int8.weightType', p.weightType, ['int8', 'uint8'] as const);
    if (p.opTypes !== undefined) {
      const ops = stringList('parameters.int8.opTypes', p.opTypes);
      const bad = ops.filter((o) => !(QUANTIZABLE_OPS as readonly string[]).includes(o));
      if (bad.length > 0 || ops.length === 0)
        throw new InvalidArgumentError(
          `parameters.int8.opTypes must be a non-empty subset of ${QUANTIZABLE_OPS.join(', ')}`,
        );
      q.opTypes = ops as QuantizeDynamicOptions['opTypes'];
    }
    if (p.nodesToExclude !== undefined)
      q.nodesToExclude = stringList('parameters.int8.nodesToExclude', p.nodesToExclude);
    out.int8 = q;
  }
  if (input['int8-static'] !== undefined) out['int8-static'] = parseStaticInt8(input['int8-static']);
  if (input.fp16 !== undefined) {
    const p = input.fp16;
    if (!isRecord(p)) throw new InvalidArgumentError('parameters.fp16 must be an object');
    checkKeys('parameters.fp16', p, ['mode', 'blockList', 'nodeBlockList']);
    const f: Float16Options = {};
    if (p.mode !== undefined) f.mode = oneOf('parameters.fp16.mode', p.mode, ['compute', 'weights'] as const);
    if (p.blockList !== undefined) f.blockList = stringList('parameters.fp16.blockList', p.blockList);
    if (p.nodeBlockList !== undefined)
      f.nodeBlockList = stringList('parameters.fp16.nodeBlockList', p.nodeBlockList);
    out.fp16 = f;
  }
  if (input.prune !== undefined) {
    const p = input.prune;
    if (!isRecord(p)) throw new InvalidArgumentError('parameters.prune must be an object');
    checkKeys('parameters.prune', p, ['sparsity', 'scope', 'opTypes', 'nodesToExclude']);
    if (typeof p.sparsity !== 'number' || !Number.isFinite(p.sparsity) || p.sparsity < 0 || p.sparsity >= 1) {
      throw new InvalidArgumentError('parameters.prune.sparsity is required: a number in [0, 1)');
    }
    const o: PruneOptions = { sparsity: p.sparsity };
    if (p.scope !== undefined)
      o.scope = oneOf('parameters.prune.scope', p.scope, ['layer', 'global'] as const);
    if (p.opTypes !== undefined) o.opTypes = stringList('parameters.prune.opTypes', p.opTypes);
    if (p.nodesToExclude !== undefined)
      o.nodesToExclude = stringList('parameters.prune.nodesToExclude', p.nodesToExclude);
    out.prune = o;
  }
  return out;
}

function parseStaticInt8(p: unknown): StaticInt8Parameters {
  const where = "parameters['int8-static']";
  if (!isRecord(p)) throw new InvalidArgumentError(`${where} must be an object`);
  checkKeys(where, p, [
    'method',
    'percentile',
    'perChannel',
    'activationType',
    'opTypes',
    'nodesToExclude',
    'minSqnrDb',
    'targetCosine',
    'biasCorrection',
    'sensitiveWeights',
    'samples',
  ]);
  const q: StaticInt8Parameters = {};
  if (p.method !== undefined) q.method = oneOf(`${where}.method`, p.method, CALIBRATION_METHODS);
  if (p.percentile !== undefined) {
    if (typeof p.percentile !== 'number' || !(p.percentile > 50 && p.percentile <= 100))
      throw new InvalidArgumentError(`${where}.percentile must be a number in (50, 100]`);
    q.percentile = p.percentile;
  }
  if (p.perChannel !== undefined) {
    if (typeof p.perChannel !== 'boolean')
      throw new InvalidArgumentError(`${where}.perChannel must be a boolean`);
    q.perChannel = p.perChannel;
  }
  if (p.activationType !== undefined)
    q.activationType = oneOf(`${where}.activationType`, p.activationType, ['uint8', 'int8'] as const);
  if (p.opTypes !== undefined) {
    const ops = stringList(`${where}.opTypes`, p.opTypes);
    if (ops.length === 0 || ops.some((o) => !(STATIC_QUANTIZABLE_OPS as readonly string[]).includes(o)))
      throw new InvalidArgumentError(
        `${where}.opTypes must be a non-empty subset of ${STATIC_QUANTIZABLE_OPS.join(', ')}`,
      );
    q.opTypes = ops as StaticQuantizableOp[];
  }
  if (p.nodesToExclude !== undefined)
    q.nodesToExclude = stringList(`${where}.nodesToExclude`, p.nodesToExclude);
  if (p.minSqnrDb !== undefined) {
    if (typeof p.minSqnrDb !== 'number' || !Number.isFinite(p.minSqnrDb))
      throw new InvalidArgumentError(`${where}.minSqnrDb must be a number (dB)`);
    q.minSqnrDb = p.minSqnrDb;
  }
  if (p.targetCosine !== undefined) {
    if (typeof p.targetCosine !== 'number' || !(p.targetCosine > 0 && p.targetCosine <= 1))
      throw new InvalidArgumentError(`${where}.targetCosine must be a number in (0, 1]`);
    q.targetCosine = p.targetCosine;
  }
  if (p.biasCorrection !== undefined) {
    if (typeof p.biasCorrection !== 'boolean')
      throw new InvalidArgumentError(`${where}.biasCorrection must be a boolean`);
    q.biasCorrection = p.biasCorrection;
  }
  if (p.sensitiveWeights !== undefined)
    q.sensitiveWeights = oneOf(`${where}.sensitiveWeights`, p.sensitiveWeights, ['float', 'int8'] as const);
  if (p.samples !== undefined) {
    if (typeof p.samples !== 'number' || !Number.isInteger(p.samples) || p.samples < 1 || p.samples > 1024)
      throw new InvalidArgumentError(`${where}.samples must be an integer in [1, 1024]`);
    q.samples = p.samples;
  }
  return q;
}

/**
 * Checks up front that every step of every candidate has the parameters it needs (prune needs a
 * sparsity), so a bad request fails with 400 before a job is queued.
 * @example
 * assertParametersComplete([['prune', 'int8']], { prune: { sparsity: 0.5 } });
 */
export function assertParametersComplete(
  candidates: readonly (readonly Technique[])[],
  parameters: TechniqueParameters,
): void {
  if (candidates.some((steps) => steps.includes('prune')) && parameters.prune === undefined) {
    throw new InvalidArgumentError(
      'technique prune needs parameters.prune.sparsity (e.g. {"prune": {"sparsity": 0.5}})',
    );
  }
}

/** onnxruntime's graph optimizations, saved by onnxruntime itself. */
async function optimizeGraph(bytes: Uint8Array, level: 'basic' | 'extended' | 'all'): Promise<Uint8Array> {
  // onnxruntime writes the optimized model to a file path; a private temp dir keeps concurrent jobs apart.
  const dir = await mkdtemp(path.join(tmpdir(), 'maas-graph-'));
  try {
    const file = path.join(dir, 'optimized.onnx');
    const session = await ort.InferenceSession.create(bytes, {
      graphOptimizationLevel: level,
      optimizedModelFilePath: file,
    });
    await session.release();
    return new Uint8Array(await readFile(file));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Data a build may need besides the parent's bytes. */
export interface BuildContext {
  /**
   * Calibration inputs for `int8-static` (the optimizer passes the evaluation inputs: captured
   * traffic, reference inputs or seeded random, in that order of preference).
   */
  calibration?: readonly InputFeed[];
  /** Where they came from ('captured', 'request', 'store', 'random'), recorded in the parameters. */
  calibrationSource?: string;
  /** Whether the candidate's accuracy is measured on other rows than these, recorded too. */
  calibrationHeldOut?: boolean;
  /** Options of the sessions a build runs (the evaluation's; default {@link evaluationSessionOptions}). */
  sessionOptions?: ort.InferenceSession.SessionOptions;
}

/** Calibration rows of `int8-static` unless its `samples` parameter says otherwise. */
export const DEFAULT_CALIBRATION_ROWS = 32;

/**
 * Builds one candidate from the parent's bytes, as one ONNX file (see {@link transformCandidate}).
 *
 * @example
 * const candidate = await buildCandidate(parentBytes, 'prune+int8', { prune: { sparsity: 0.5 } }, { model: 'mnist', version: 3 });
 */
export async function buildCandidate(
  parentBytes: Uint8Array,
  spec: string,
  parameters: TechniqueParameters,
  lineage: { model: string; version: number; sha256?: string },
  context: BuildContext = {},
): Promise<BuiltCandidate> {
  // decodeModel may keep views into its input: decode a private copy so the parent stays untouched.
  const { model, ...rest } = await transformCandidate(
    decodeModel(parentBytes.slice()),
    spec,
    parameters,
    lineage,
    context,
  );
  return { ...rest, bytes: encodeModel(model) };
}

/**
 * Turns a decoded parent (a private copy: it is changed in place) into one candidate. Lineage
 * (parent, technique, parameters) is also written into the candidate's metadata_props as
 * `maas.optimization`, so the file describes itself wherever it is copied.
 *
 * @example
 * const { model } = await transformCandidate(await parent.decode(), 'int8', {}, { model: 'llm', version: 3 });
 */
export async function transformCandidate(
  parent: ModelProto,
  spec: string,
  parameters: TechniqueParameters,
  lineage: { model: string; version: number; sha256?: string },
  context: BuildContext = {},
): Promise<TransformedCandidate> {
  const steps = parseCandidate(spec);
  let model = parent;
  const details: StepDetails[] = [];
  const used: Partial<Record<Technique, unknown>> = {};
  for (const step of steps) {
    if (step === 'prune') {
      if (!parameters.prune)
        throw new InvalidArgumentError('technique prune needs parameters.prune.sparsity');
      details.push({ technique: 'prune', report: pruneByMagnitude(model, parameters.prune) });
      used.prune = { scope: 'layer', opTypes: ['MatMul', 'Gemm', 'Conv'], ...parameters.prune };
    } else if (step === 'int8') {
      details.push({ technique: 'int8', report: quantizeDynamic(model, parameters.int8 ?? {}) });
      used.int8 = {
        perChannel: false,
        weightType: 'int8',
        opTypes: ['MatMul', 'Gemm', 'Gather'],
        reduceRange: false,
        ...parameters.int8,
      };
    } else if (step === 'int8-static') {
      const p = { targetCosine: DEFAULT_STATIC_TARGET_COSINE, ...parameters['int8-static'] };
      const samples = p.samples ?? DEFAULT_CALIBRATION_ROWS;
      if (!context.calibration || context.calibration.length === 0)
        throw new UnprocessableError(
          'technique int8-static needs calibration inputs (the evaluation inputs)',
        );
      const chosen = calibrationFeeds(context.calibration, samples);
      const feeds = chosen.map(toOrtFeeds);
      // The search measures candidates with the session options the evaluation uses.
      const sessionOptions = context.sessionOptions ?? evaluationSessionOptions();
      const report = await quantizeStatic(model, feeds, { ...p, sessionOptions });
      details.push({ technique: 'int8-static', report });
      used['int8-static'] = {
        method: 'minmax',
        perChannel: true,
        activationType: 'uint8',
        opTypes: [...STATIC_QUANTIZABLE_OPS],
        minSqnrDb: DEFAULT_MIN_SQNR_DB,
        biasCorrection: true,
        sensitiveWeights: 'int8',
        ...p,
        samples,
        // What it calibrated on: `samples` is what was asked, this is what there was.
        calibrationRows: chosen.reduce((n, f) => n + feedRows(f), 0),
        calibrationSource: context.calibrationSource ?? 'unknown',
        ...(context.calibrationHeldOut !== undefined
          ? { calibrationHeldOut: context.calibrationHeldOut }
          : {}),
      };
    } else if (step === 'fp16') {
      details.push({ technique: 'fp16', report: convertToFloat16(model, parameters.fp16 ?? {}) });
      used.fp16 = { mode: 'compute', ...parameters.fp16 };
    } else {
      const level = parameters.graph?.level ?? 'extended';
      const size = inlineSize(model);
      if (size >= PROTOBUF_LIMIT_BYTES)
        throw new UnprocessableError(
          `technique graph saves the model through onnxruntime as one ONNX file, and this one would hold ${size} bytes (protobuf's limit is 2 GiB)`,
        );
      const before = operatorsOf(model);
      model = decodeModel(await optimizeGraph(encodeModel(model), level));
      details.push({
        technique: 'graph',
        level,
        operatorsBefore: before,
        operatorsAfter: operatorsOf(model),
      });
      used.graph = { level };
    }
  }
  const runtimeSpecificOps = operatorsOf(model).filter((op) => op.includes(':'));
  // The registry's inspect accepts a non-default domain only if the model imports its opset.
  for (const domain of new Set(runtimeSpecificOps.map((op) => op.slice(0, op.lastIndexOf(':'))))) {
    if (!model.opsetImport.some((o) => !isDefaultDomain(o.domain) && o.domain === domain))
      ensureOpsetImport(model, domain, 1);
  }
  setMetadataProp(
    model,
    'maas.optimization',
    JSON.stringify({ parent: lineage, technique: steps.join('+'), parameters: used, runtimeSpecificOps }),
  );
  return {
    technique: steps.join('+'),
    steps,
    parameters: used,
    model,
    details,
    runtimeSpecificOps,
  };
}
