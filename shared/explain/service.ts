/**
 * `POST /v2/models/{name}[/versions/{v}]/explain`: an Open Inference Protocol request for one
 * instance, answered with the prediction (OIP outputs) and an explanation of one output value
 * (Kernel SHAP for tabular-shaped inputs, occlusion for image-shaped ones). Runs on the
 * inference core's routes and session cache, so an explained model is the served model.
 */
import * as ort from 'onnxruntime-node';
import { InvalidArgumentError, MaasError, NotFoundError, UnprocessableError } from '../errors';
import {
  type DecodeOptions,
  decodeInferRequest,
  encodeInferResponse,
  type InferOutput,
} from '../inference/codec';
import type { InferenceService } from '../inference/service';
import { checkRequest } from '../inference/signature';
import { readBaseline } from '../monitor/baseline';
import {
  float16BitsToFloat32,
  type OipDatatype,
  type OipTypedArray,
  oipFromOrtType,
  ortTypeFromOip,
} from '../onnx/datatypes';
import type { TensorSpec } from '../onnx/inspect';
import { parseOipInputs, typedFromNumbers } from '../optimize/inputs';
import type { ModelVersion } from '../registry/types';
import type { ObjectStore } from '../store';
import { readJson, type StoredDocument } from '../store/documents';
import { type ExplainSettings, explainSettingsFromEnv } from './config';
import { exactCoalitions, kernelShap } from './kernel-shap';
import { MaskedModel } from './masked-model';
import { type ImageLayout, occlusion, occlusionPatches, patchCount } from './occlusion';

export type ExplainMethod = 'kernel_shap' | 'occlusion';
export const EXPLAIN_METHODS: readonly ExplainMethod[] = ['kernel_shap', 'occlusion'];

/** Where masked-out features take their values from. */
export type BaselineChoice =
  | { kind: 'auto' }
  | { kind: 'zeros' }
  | { kind: 'traffic' }
  | { kind: 'reference'; key: string };

/** Store keys a reference baseline may be read from (predict's IAM role reads only these). */
export const REFERENCE_PREFIX = 'references/';

/** The explanation part of an explain response (`explanation`, snake_case on the wire). */
export interface Explanation {
  method: ExplainMethod;
  input: string;
  output: string;
  /** Element of the output's row that is explained. */
  class: number;
  baseline: 'zeros' | 'traffic' | 'reference';
  baseline_key?: string;
  /** The explained value, f(x). */
  prediction: number;
  /** f(baseline): the value attributions are measured from. */
  expected_value: number;
  /** In the input's shape (batch dimension of 1 included when the model has one). */
  attributions: { shape: number[]; data: number[] };
  /** Kernel SHAP: Σ attributions + expected_value against the prediction. */
  additivity?: { sum: number; prediction: number; gap: number; ok: boolean };
  /** Kernel SHAP: every coalition was enumerated (exact Shapley values). */
  exact?: boolean;
  /** Occlusion: patch side, in elements of the two trailing dimensions. */
  patch?: number;
  /** Perturbed samples evaluated (coalitions or patches). */
  samples: number;
  /** Model calls made (session runs), the prediction's included. */
  model_calls: number;
  batch_size: number;
  time_ms: number;
}

/** An explain response: the OIP infer response of the instance plus `explanation`. */
export interface ExplainResult {
  body: string;
  contentType: 'application/json';
  model: string;
  version: number;
  explanation: Explanation;
}

/** Options of {@link ExplainService}. */
export interface ExplainServiceOptions {
  inference: InferenceService;
  /** The store of the inference core's registry: monitoring baselines and reference data are read there. */
  store: ObjectStore;
  settings?: Partial<ExplainSettings>;
}

/** Tolerance of the additivity check, relative to the larger of |prediction| and 1. */
const ADDITIVITY_TOLERANCE = 1e-3;

/**
 * @example
 * ```ts
 * const explainer = new ExplainService({ inference: service, store });
 * const result = await explainer.explain('iris', undefined, JSON.stringify({ inputs, parameters: { explain_samples: 512 } }));
 * ```
 */
export class ExplainService {
  readonly settings: ExplainSettings;
  private readonly inference: InferenceService;
  private readonly store: ObjectStore;

  constructor(options: ExplainServiceOptions) {
    this.inference = options.inference;
    this.store = options.store;
    this.settings = { ...explainSettingsFromEnv(), ...options.settings };
  }

  /** Decodes, validates and explains one request; throws typed errors (4xx) for bad requests. */
  async explain(
    name: string,
    ref: string | undefined,
    body: Uint8Array | string,
    options: DecodeOptions = {},
  ): Promise<ExplainResult> {
    const started = performance.now();
    const route = await this.inference.routes.resolve(name, ref);
    // The primary version: an explanation describes one model, never a canary coin flip.
    const version = route.primary;
    const request = decodeInferRequest(body, options);
    const plan = checkRequest(request, version.onnx);
    if (version.onnx.inputs.length !== 1 || request.inputs.length !== 1)
      throw new UnprocessableError('explain supports models with exactly one input');
    const input = request.inputs[0]!;
    const spec = version.onnx.inputs[0]!;
    if (input.datatype === 'BYTES') throw new UnprocessableError('explain needs a numeric input, not BYTES');
    const shape = instanceShape(spec, input.shape);
    const p = parseParameters(request.parameters ?? {}, version, shape, this.settings);
    const values = input.data as OipTypedArray;
    const elements = values.length;
    const baseline = await this.baseline(version, input.name, input.datatype, elements, p.baseline);

    const lease = await this.inference.sessions.acquire(version);
    try {
      const ortType = ortTypeFromOip(input.datatype);
      const feed = (data: OipTypedArray, rows: number): Record<string, ort.Tensor> => ({
        [input.name]: new ort.Tensor(ortType, data, shape.batched ? [rows, ...shape.instance] : input.shape),
      });
      // The prediction: what infer would answer for this request.
      const t0 = performance.now();
      const results = await lease.run(feed(values, 1), plan.names).catch(unprocessable);
      const firstRunMs = performance.now() - t0;
      const outputs: InferOutput[] = plan.names.map((outputName) => outputOf(outputName, results));
      const explained =
        (results[p.output] as ort.Tensor | undefined) ??
        ((await lease.run(feed(values, 1), [p.output]).catch(unprocessable))[p.output] as ort.Tensor);
      const row = numbersOf(explained);
      const cls = p.class ?? (row.length > 1 ? argmax(row) : 0);
      if (cls >= row.length)
        throw new InvalidArgumentError(
          `parameters.explain_class ${cls} is out of range: output '${p.output}' has ${row.length} values per instance`,
          { field: 'explain_class' },
        );

      const batchSize = shape.batched
        ? Math.max(
            1,
            Math.min(
              this.settings.batchSize,
              Math.floor(this.settings.maxBatchElements / Math.max(1, elements)),
            ),
          )
        : 1;
      const run = async (data: OipTypedArray, rows: number): Promise<Float64Array> => {
        const out = (await lease.run(feed(data, rows), [p.output]).catch(unprocessable))[
          p.output
        ] as ort.Tensor;
        const all = numbersOf(out);
        const per = all.length / rows;
        if (!Number.isInteger(per) || per !== row.length)
          throw new UnprocessableError(
            `output '${p.output}' does not follow the input's batch dimension; this model cannot be explained in batches`,
          );
        const picked = new Float64Array(rows);
        for (let r = 0; r < rows; r++) picked[r] = all[r * per + cls]!;
        return picked;
      };
      const budget = Math.min(this.settings.timeBudgetMs, p.timeBudgetMs ?? Infinity) - firstRunMs;
      let explanation: Omit<
        Explanation,
        'model_calls' | 'batch_size' | 'time_ms' | 'input' | 'output' | 'class'
      >;
      let model: MaskedModel;
      if (p.method === 'kernel_shap') {
        const groups = Array.from({ length: elements }, (_, j) => Int32Array.of(j));
        model = new MaskedModel({
          instance: values,
          baseline: baseline.values,
          groups,
          run,
          batchSize,
          timeBudgetMs: budget,
          plannedRows: p.samples + 2,
        });
        const r = await kernelShap(model, { samples: p.samples, seed: p.seed });
        const sum = r.attributions.reduce((a, b) => a + b, 0) + r.expectedValue;
        const gap = Math.abs(sum - r.prediction);
        explanation = {
          method: 'kernel_shap',
          ...baseline.describe,
          prediction: r.prediction,
          expected_value: r.expectedValue,
          attributions: { shape: [...input.shape], data: Array.from(r.attributions) },
          additivity: {
            sum,
            prediction: r.prediction,
            gap,
            ok: gap <= ADDITIVITY_TOLERANCE * Math.max(1, Math.abs(r.prediction)),
          },
          exact: r.exact,
          samples: r.samples,
        };
      } else {
        const layout = imageLayout(shape.instance);
        const patches = occlusionPatches(layout, p.patch);
        model = new MaskedModel({
          instance: values,
          baseline: baseline.values,
          groups: patches,
          run,
          batchSize,
          timeBudgetMs: budget,
          plannedRows: patches.length + 2,
        });
        const r = await occlusion(model, patches, elements);
        explanation = {
          method: 'occlusion',
          ...baseline.describe,
          prediction: r.prediction,
          expected_value: r.expectedValue,
          attributions: { shape: [...input.shape], data: Array.from(r.attributions) },
          patch: p.patch,
          samples: r.samples,
        };
      }
      const full: Explanation = {
        ...explanation,
        input: input.name,
        output: p.output,
        class: cls,
        model_calls: model.calls + 1,
        batch_size: batchSize,
        time_ms: performance.now() - started,
      };
      const encoded = encodeInferResponse(
        {
          modelName: name,
          modelVersion: String(version.version),
          ...(request.id !== undefined ? { id: request.id } : {}),
        },
        outputs,
      );
      // The infer response is a JSON object (no binary outputs here): the explanation joins it.
      const text = encoded.body as string;
      return {
        body: `${text.slice(0, -1)},"explanation":${JSON.stringify(full)}}`,
        contentType: 'application/json',
        model: name,
        version: version.version,
        explanation: full,
      };
    } finally {
      lease.release();
    }
  }

  /** The baseline instance as typed values of the input's datatype. */
  private async baseline(
    version: ModelVersion,
    inputName: string,
    datatype: OipDatatype,
    elements: number,
    choice: BaselineChoice,
  ): Promise<{ values: OipTypedArray; describe: Pick<Explanation, 'baseline' | 'baseline_key'> }> {
    const numeric = datatype as Parameters<typeof typedFromNumbers>[0];
    if (choice.kind === 'zeros')
      return {
        values: typedFromNumbers(numeric, new Float64Array(elements)),
        describe: { baseline: 'zeros' },
      };
    if (choice.kind === 'reference') {
      let found: StoredDocument<unknown> | undefined;
      try {
        found = await readJson<unknown>(this.store, choice.key);
      } catch (e) {
        if (e instanceof SyntaxError)
          throw new UnprocessableError(`reference data ${choice.key} is not JSON`);
        throw e;
      }
      if (!found) throw new NotFoundError(`reference data ${choice.key} does not exist`, { key: choice.key });
      const doc = found.doc;
      const feed = parseOipInputs((doc as { inputs?: unknown } | null)?.inputs, version.onnx.inputs);
      const t = feed.find((x) => x.name === inputName)!;
      if (t.data.length % elements !== 0)
        throw new UnprocessableError(
          `reference data ${choice.key} does not hold whole instances of input '${inputName}'`,
        );
      const rows = t.data.length / elements;
      const means = new Float64Array(elements);
      for (let i = 0; i < t.data.length; i++) means[i % elements]! += Number(t.data[i]!) / rows;
      return {
        values: typedFromNumbers(numeric, means),
        describe: { baseline: 'reference', baseline_key: choice.key },
      };
    }
    const found = await readBaseline(this.store, version.name, version.version);
    const means = new Float64Array(elements);
    let missing = found ? 0 : elements;
    if (found) {
      for (let j = 0; j < elements; j++) {
        const h = found.doc.inputs[`${inputName}[${j}]`] ?? found.doc.inputs[`${inputName}[*]`];
        if (h && h.count > 0) means[j] = h.sum / h.count;
        else missing++;
      }
    }
    if (missing > 0) {
      if (choice.kind === 'auto')
        return {
          values: typedFromNumbers(numeric, new Float64Array(elements)),
          describe: { baseline: 'zeros' },
        };
      throw new UnprocessableError(
        found
          ? `the monitoring baseline of version ${version.version} of ${version.name} has no values for ${missing} elements of input '${inputName}'`
          : `version ${version.version} of ${version.name} has no monitoring baseline yet; use explain_baseline "zeros" or a reference key`,
        { model: version.name, version: version.version },
      );
    }
    return { values: typedFromNumbers(numeric, means), describe: { baseline: 'traffic' } };
  }
}

interface InstanceShape {
  /** The model takes several rows per call along its leading dimension. */
  batched: boolean;
  /** Shape of one instance (batch dimension removed when the model has one). */
  instance: number[];
}

/** Splits the request's shape into batch and instance, refusing batches of more than one. */
function instanceShape(spec: TensorSpec, shape: readonly number[]): InstanceShape {
  const leading = spec.unknownRank ? undefined : spec.shape[0];
  const hasBatch =
    leading !== undefined &&
    spec.shape.length >= 1 &&
    (leading < 0 || (leading === 1 && spec.shape.length >= 2));
  if (!hasBatch) return { batched: false, instance: [...shape] };
  if (shape[0] !== 1)
    throw new InvalidArgumentError(
      `explain takes one instance: input '${spec.name}' must have a batch dimension of 1, got ${shape[0]}`,
      { input: spec.name },
    );
  return { batched: (leading ?? 0) < 0, instance: shape.slice(1) };
}

function imageLayout(instance: readonly number[]): ImageLayout {
  const height = instance[instance.length - 2] ?? 1;
  const width = instance[instance.length - 1] ?? 1;
  const channels = instance.slice(0, -2).reduce((a, b) => a * b, 1);
  return { channels, height, width };
}

interface ParsedParameters {
  method: ExplainMethod;
  output: string;
  class?: number;
  samples: number;
  patch: number;
  baseline: BaselineChoice;
  seed: number;
  timeBudgetMs?: number;
}

const KNOWN = new Set([
  'explain_method',
  'explain_output',
  'explain_class',
  'explain_samples',
  'explain_patch',
  'explain_baseline',
  'explain_seed',
  'explain_time_budget_ms',
]);

/** The `explain_*` request parameters, validated against the model and the limits. */
function parseParameters(
  raw: Record<string, unknown>,
  version: ModelVersion,
  shape: InstanceShape,
  settings: ExplainSettings,
): ParsedParameters {
  for (const k of Object.keys(raw))
    if (k.startsWith('explain_') && !KNOWN.has(k))
      throw new InvalidArgumentError(`unknown parameter ${k}; known: ${[...KNOWN].join(', ')}`, { field: k });
  const elements = shape.instance.reduce((a, b) => a * b, 1);
  const method = raw.explain_method ?? (shape.instance.length >= 2 ? 'occlusion' : 'kernel_shap');
  if (!EXPLAIN_METHODS.includes(method as ExplainMethod))
    throw new InvalidArgumentError(`parameters.explain_method must be one of ${EXPLAIN_METHODS.join(', ')}`, {
      field: 'explain_method',
    });
  const output = raw.explain_output ?? version.onnx.outputs[0]?.name;
  if (typeof output !== 'string' || !version.onnx.outputs.some((o) => o.name === output))
    throw new InvalidArgumentError(
      `parameters.explain_output must name an output of the model (${version.onnx.outputs.map((o) => `'${o.name}'`).join(', ')})`,
      { field: 'explain_output' },
    );
  const cls = optionalInt(raw, 'explain_class', 0);
  const seed = optionalInt(raw, 'explain_seed', 0) ?? 1;
  const timeBudgetMs = optionalInt(raw, 'explain_time_budget_ms', 1);
  const baseline = parseBaseline(raw.explain_baseline);
  let samples = 0;
  let patch = 0;
  if (method === 'kernel_shap') {
    if (elements > settings.maxFeatures)
      throw new InvalidArgumentError(
        `input has ${elements} features, more than Kernel SHAP's limit of ${settings.maxFeatures}; use explain_method "occlusion" for image-shaped inputs`,
        { field: 'explain_method', limit: settings.maxFeatures },
      );
    const requested = optionalInt(raw, 'explain_samples', 1);
    const wanted = requested ?? Math.min(exactCoalitions(elements), 2 * elements + 2048);
    samples = Math.min(wanted, exactCoalitions(elements));
    if (samples + 2 > settings.maxSamples)
      throw new InvalidArgumentError(
        `explain_samples ${wanted} needs ${samples + 2} model rows, more than the limit of ${settings.maxSamples}`,
        { field: 'explain_samples', limit: settings.maxSamples - 2 },
      );
    if (samples < Math.min(elements + 1, exactCoalitions(elements)))
      throw new InvalidArgumentError(
        `explain_samples must be at least ${elements + 1} for ${elements} features (one equation per unknown)`,
        { field: 'explain_samples' },
      );
  } else {
    if (shape.instance.length < 2)
      throw new InvalidArgumentError(
        'occlusion needs an image-shaped input (at least two dimensions per instance); use explain_method "kernel_shap"',
        { field: 'explain_method' },
      );
    if (raw.explain_samples !== undefined)
      throw new InvalidArgumentError(
        'occlusion evaluates one sample per patch: set explain_patch, not explain_samples',
        {
          field: 'explain_samples',
        },
      );
    const layout = imageLayout(shape.instance);
    patch =
      optionalInt(raw, 'explain_patch', 1) ??
      Math.max(1, Math.ceil(Math.min(layout.height, layout.width) / 8));
    if (patch > Math.max(layout.height, layout.width))
      throw new InvalidArgumentError(
        `explain_patch ${patch} is larger than the image (${layout.height}×${layout.width})`,
        { field: 'explain_patch' },
      );
    const rows = patchCount(layout, patch) + 2;
    if (rows > settings.maxSamples)
      throw new InvalidArgumentError(
        `explain_patch ${patch} makes ${rows - 2} patches, more than the limit of ${settings.maxSamples - 2} samples; use a larger patch`,
        { field: 'explain_patch', limit: settings.maxSamples - 2 },
      );
  }
  return {
    method: method as ExplainMethod,
    output,
    ...(cls !== undefined ? { class: cls } : {}),
    samples,
    patch,
    baseline,
    seed,
    ...(timeBudgetMs !== undefined ? { timeBudgetMs } : {}),
  };
}

function optionalInt(raw: Record<string, unknown>, field: string, min: number): number | undefined {
  const v = raw[field];
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min)
    throw new InvalidArgumentError(`parameters.${field} must be an integer ≥ ${min}`, { field });
  return v;
}

function parseBaseline(v: unknown): BaselineChoice {
  if (v === undefined || v === 'auto') return { kind: 'auto' };
  if (v === 'zeros') return { kind: 'zeros' };
  if (v === 'traffic') return { kind: 'traffic' };
  const key = (v as { key?: unknown } | null)?.key;
  if (typeof v === 'object' && v !== null && typeof key === 'string') {
    if (!key.startsWith(REFERENCE_PREFIX) || key.includes('..') || key.length > 1024)
      throw new InvalidArgumentError(`explain_baseline.key must be a store key under ${REFERENCE_PREFIX}`, {
        field: 'explain_baseline',
      });
    return { kind: 'reference', key };
  }
  throw new InvalidArgumentError(
    'parameters.explain_baseline must be "auto", "zeros", "traffic" or {"key": "references/…"}',
    { field: 'explain_baseline' },
  );
}

function unprocessable(e: unknown): never {
  throw new UnprocessableError(`onnxruntime could not run the model on this input: ${(e as Error).message}`);
}

function outputOf(name: string, results: ort.InferenceSession.OnnxValueMapType): InferOutput {
  const tensor = results[name] as ort.Tensor;
  const datatype = oipFromOrtType(tensor.type);
  if (!datatype)
    throw new MaasError(
      'internal',
      `output '${name}' has type ${tensor.type}, which the Open Inference Protocol cannot carry`,
    );
  return { name, datatype, shape: tensor.dims, data: tensor.data as InferOutput['data'], binary: false };
}

/** A numeric tensor's values as float64 (FP16 bit patterns decoded, 64-bit integers rounded). */
function numbersOf(tensor: ort.Tensor): Float64Array {
  const data = tensor.data as ArrayLike<number | bigint>;
  if (tensor.type === 'string') throw new UnprocessableError('the explained output must be numeric');
  const out = new Float64Array(data.length);
  const fp16 = tensor.type === 'float16';
  for (let i = 0; i < data.length; i++) {
    const v = data[i]!;
    out[i] = fp16 ? float16BitsToFloat32(v as number) : Number(v);
  }
  return out;
}

function argmax(values: Float64Array): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return best;
}
