import { readSettings, type SettingsReader } from '../settings';

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
 * Reads the explain limits from the environment; an invalid one throws `MisconfiguredError`
 * (`shared/settings.ts`), a server error naming the setting, never blamed on the client.
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
  return readSettings((reader) => readExplainSettings(reader), env);
}

/**
 * The explain limits read through a caller's {@link SettingsReader}, so that a function
 * reading several groups reports every invalid setting at once.
 * @example
 * const reader = new SettingsReader(process.env);
 * const explain = readExplainSettings(reader);
 * reader.check();
 */
export function readExplainSettings(env: SettingsReader): ExplainSettings {
  const int = (key: string, defaultValue: number): number =>
    env.getNumberFromEnv({ key, defaultValue, min: 1, integer: true });
  return {
    maxSamples: int('MAAS_EXPLAIN_MAX_SAMPLES', 8192),
    timeBudgetMs: int('MAAS_EXPLAIN_TIME_BUDGET_MS', 10_000),
    batchSize: int('MAAS_EXPLAIN_BATCH_SIZE', 64),
    maxFeatures: int('MAAS_EXPLAIN_MAX_FEATURES', 128),
    maxBatchElements: int('MAAS_EXPLAIN_MAX_BATCH_ELEMENTS', 4 * 1024 * 1024),
  };
}
