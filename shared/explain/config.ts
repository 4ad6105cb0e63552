import { MaasError } from '../errors';

/** Limits of the explain route (what one request may cost). */
export interface ExplainSettings {
  /** Most samples (model rows) one explanation may evaluate. */
  maxSamples: number;
  /** Wall-clock budget of one explanation's model calls, ms. */
  timeBudgetMs: number;
  /** Rows per model call when the model has a dynamic batch dimension. */
  batchSize: number;
  /** Most features (input elements) Kernel SHAP accepts; larger inputs use occlusion. */
  maxFeatures: number;
  /** Most elements one batched model call may hold (bounds memory per call). */
  maxBatchElements: number;
}

/**
 * Reads the explain limits from the environment.
 *
 * | variable | default |
 * | --- | --- |
 * | `MAAS_EXPLAIN_MAX_SAMPLES` | 8192 |
 * | `MAAS_EXPLAIN_TIME_BUDGET_MS` | 10000 (well inside API Gateway's 30 s) |
 * | `MAAS_EXPLAIN_BATCH_SIZE` | 64 |
 * | `MAAS_EXPLAIN_MAX_FEATURES` | 128 |
 * | `MAAS_EXPLAIN_MAX_BATCH_ELEMENTS` | 4194304 (16 MiB of FP32 per call) |
 *
 * @example
 * ```ts
 * const settings = explainSettingsFromEnv({ MAAS_EXPLAIN_MAX_SAMPLES: '2048' });
 * ```
 */
export function explainSettingsFromEnv(env: NodeJS.ProcessEnv = process.env): ExplainSettings {
  return {
    maxSamples: int(env, 'MAAS_EXPLAIN_MAX_SAMPLES', 8192),
    timeBudgetMs: int(env, 'MAAS_EXPLAIN_TIME_BUDGET_MS', 10_000),
    batchSize: int(env, 'MAAS_EXPLAIN_BATCH_SIZE', 64),
    maxFeatures: int(env, 'MAAS_EXPLAIN_MAX_FEATURES', 128),
    maxBatchElements: int(env, 'MAAS_EXPLAIN_MAX_BATCH_ELEMENTS', 4 * 1024 * 1024),
  };
}

function int(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  // A bad setting is the operator's problem: a server error, never blamed on the client.
  if (!Number.isSafeInteger(n) || n < 1)
    throw new MaasError('internal', `${name} must be a positive integer, got ${JSON.stringify(raw)}`);
  return n;
}
