/**
 * The optimize request (`POST /models/{name}/versions/{version}/optimize` body), validated.
 */
import { InvalidArgumentError } from '../errors';
import type { ModelVersion } from '../registry';
import { assertAliasName } from '../registry';
import { parseTolerances, type Tolerances } from './gate';
import {
  assertInputsPlannable,
  type EvaluationInputOptions,
  MAX_INLINE_VALUE_ELEMENTS,
  type ReferenceInputs,
} from './inputs';
import {
  assertParametersComplete,
  parseCandidate,
  parseTechniqueParameters,
  type TechniqueParameters,
} from './techniques';

/** Evaluation settings of a request. */
export interface EvaluationSettings extends EvaluationInputOptions {
  /** Timed runs per model and batch size (default 20, max 200). */
  iterations?: number;
  /** Text-generation models: sample prompts the logits are compared on (default: text-inputs.ts). */
  prompts?: string[];
}

/** Most sample prompts per request, and characters per prompt. */
export const MAX_PROMPTS = 64;
export const MAX_PROMPT_CHARS = 8192;

/** A validated optimize request. */
export interface OptimizeRequest {
  /** Candidates, each a technique or a '+' chain: ['int8', 'fp16', 'prune+int8']. */
  techniques: string[];
  parameters: TechniqueParameters;
  tolerances: Tolerances;
  /** Alias to point at the best passing candidate (e.g. 'staging'); never 'production'. */
  alias?: string;
  referenceInputs?: ReferenceInputs;
  evaluation: EvaluationSettings;
}

const FIELDS = ['techniques', 'parameters', 'tolerances', 'alias', 'referenceInputs', 'evaluation'];
/** Upper bound on candidates per job: each one costs a full evaluation in one Lambda run. */
export const MAX_CANDIDATES = 8;

function positiveInt(where: string, v: unknown, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > max)
    throw new InvalidArgumentError(`${where} must be an integer in [1, ${max}]`);
  return v;
}

/**
 * Validates an untrusted request body. Throws InvalidArgumentError (HTTP 400) naming the field.
 * @example
 * const request = parseOptimizeRequest({ techniques: ['int8'], alias: 'staging' });
 */
export function parseOptimizeRequest(body: Record<string, unknown>): OptimizeRequest {
  const unknown = Object.keys(body).filter((k) => !FIELDS.includes(k));
  if (unknown.length > 0)
    throw new InvalidArgumentError(`unknown field(s) ${unknown.join(', ')}; allowed: ${FIELDS.join(', ')}`);
  const techniques = body.techniques;
  if (
    !Array.isArray(techniques) ||
    techniques.length === 0 ||
    techniques.some((t) => typeof t !== 'string')
  ) {
    throw new InvalidArgumentError(
      'techniques must be a non-empty array such as ["int8", "fp16", "prune+int8"]',
    );
  }
  if (techniques.length > MAX_CANDIDATES)
    throw new InvalidArgumentError(`at most ${MAX_CANDIDATES} techniques per job`);
  const candidates = (techniques as string[]).map(parseCandidate);
  const normalized = candidates.map((steps) => steps.join('+'));
  if (new Set(normalized).size !== normalized.length)
    throw new InvalidArgumentError('techniques lists the same candidate twice');
  const parameters = parseTechniqueParameters(body.parameters);
  assertParametersComplete(candidates, parameters);
  const tolerances = parseTolerances(body.tolerances);

  const request: OptimizeRequest = { techniques: normalized, parameters, tolerances, evaluation: {} };
  if (body.alias !== undefined) {
    if (typeof body.alias !== 'string')
      throw new InvalidArgumentError('alias must be a string such as "staging"');
    assertAliasName(body.alias);
    // Optimized versions reach production only through an explicit promotion (PUT /aliases), after review.
    if (body.alias === 'production')
      throw new InvalidArgumentError(
        'optimize does not move the production alias; use e.g. "staging" and promote with PUT /models/{name}/aliases/production',
      );
    request.alias = body.alias;
  }
  const ref = body.referenceInputs;
  if (ref !== undefined) {
    if (typeof ref !== 'object' || ref === null || Array.isArray(ref))
      throw new InvalidArgumentError(
        'referenceInputs must be {"inputs": [...]} or {"key": "path/in/store.json"}',
      );
    const r = ref as Record<string, unknown>;
    if (typeof r.key === 'string' && r.inputs === undefined) {
      if (r.key === '' || r.key.startsWith('/') || r.key.split('/').includes('..'))
        throw new InvalidArgumentError('referenceInputs.key must be a relative store key');
      request.referenceInputs = { key: r.key };
    } else if (Array.isArray(r.inputs) && r.key === undefined) {
      request.referenceInputs = { inputs: r.inputs };
    } else {
      throw new InvalidArgumentError(
        'referenceInputs must be {"inputs": [...]} or {"key": "path/in/store.json"}',
      );
    }
  }
  const ev = body.evaluation;
  if (ev !== undefined) {
    if (typeof ev !== 'object' || ev === null || Array.isArray(ev))
      throw new InvalidArgumentError('evaluation must be an object');
    const e = ev as Record<string, unknown>;
    const allowed = ['inputShapes', 'samples', 'seed', 'iterations', 'values', 'prompts'];
    const extra = Object.keys(e).filter((k) => !allowed.includes(k));
    if (extra.length > 0)
      throw new InvalidArgumentError(
        `unknown evaluation field(s) ${extra.join(', ')}; allowed: ${allowed.join(', ')}`,
      );
    if (e.samples !== undefined)
      request.evaluation.samples = positiveInt('evaluation.samples', e.samples, 4096);
    if (e.iterations !== undefined)
      request.evaluation.iterations = positiveInt('evaluation.iterations', e.iterations, 200);
    if (e.seed !== undefined) {
      if (typeof e.seed !== 'number' || !Number.isInteger(e.seed))
        throw new InvalidArgumentError('evaluation.seed must be an integer');
      request.evaluation.seed = e.seed;
    }
    if (e.prompts !== undefined) {
      const prompts = e.prompts;
      if (
        !Array.isArray(prompts) ||
        prompts.length === 0 ||
        prompts.length > MAX_PROMPTS ||
        prompts.some((p) => typeof p !== 'string' || p.length === 0 || p.length > MAX_PROMPT_CHARS)
      )
        throw new InvalidArgumentError(
          `evaluation.prompts must be 1 to ${MAX_PROMPTS} non-empty strings of at most ${MAX_PROMPT_CHARS} characters`,
        );
      request.evaluation.prompts = prompts as string[];
    }
    if (e.values !== undefined) {
      const values = e.values;
      if (typeof values !== 'object' || values === null || Array.isArray(values))
        throw new InvalidArgumentError(
          'evaluation.values must map input names to a number or an array of numbers',
        );
      for (const [k, v] of Object.entries(values)) {
        const ok =
          (typeof v === 'number' && Number.isFinite(v)) ||
          (Array.isArray(v) &&
            v.length > 0 &&
            v.length <= MAX_INLINE_VALUE_ELEMENTS &&
            v.every((x) => typeof x === 'number' && Number.isFinite(x)));
        if (!ok)
          throw new InvalidArgumentError(
            `evaluation.values.${k} must be a finite number or a flat array of at most ${MAX_INLINE_VALUE_ELEMENTS} finite numbers`,
          );
      }
      request.evaluation.values = values as Record<string, number | number[]>;
    }
    if (e.inputShapes !== undefined) {
      const shapes = e.inputShapes;
      if (typeof shapes !== 'object' || shapes === null || Array.isArray(shapes))
        throw new InvalidArgumentError('evaluation.inputShapes must map input names to shapes');
      for (const [k, v] of Object.entries(shapes)) {
        if (!Array.isArray(v) || v.some((d) => !Number.isInteger(d)))
          throw new InvalidArgumentError(`evaluation.inputShapes.${k} must be an array of integers`);
      }
      request.evaluation.inputShapes = shapes as Record<string, number[]>;
    }
  }
  return request;
}

/**
 * Checks, before a job is queued, that the request's evaluation fits the version: a
 * text-generation model is evaluated on prompts (tensors, shapes and values do not apply), any
 * other model on tensors (prompts do not apply, and its inputs must be plannable). 400 otherwise.
 * @example
 * assertEvaluationFits(version, request);
 */
export function assertEvaluationFits(version: ModelVersion, request: OptimizeRequest): void {
  const e = request.evaluation;
  if (version.textGeneration) {
    const tensorFields = [
      request.referenceInputs ? 'referenceInputs' : undefined,
      e.inputShapes ? 'evaluation.inputShapes' : undefined,
      e.values ? 'evaluation.values' : undefined,
      e.samples ? 'evaluation.samples' : undefined,
    ].filter((f) => f !== undefined);
    if (tensorFields.length > 0)
      throw new InvalidArgumentError(
        `${version.name} version ${version.version} is a text-generation model, evaluated on prompts: ${tensorFields.join(', ')} do not apply (use evaluation.prompts)`,
      );
    return;
  }
  if (e.prompts)
    throw new InvalidArgumentError(
      `evaluation.prompts apply to text-generation models only; ${version.name} version ${version.version} is evaluated on tensors`,
    );
  assertInputsPlannable(version.onnx.inputs, request.referenceInputs, e.inputShapes, e.values);
}
