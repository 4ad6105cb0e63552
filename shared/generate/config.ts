/**
 * Settings of text generation, read once from the environment (`MAAS_GENERATE_*`).
 *
 * | variable | default |
 * | --- | --- |
 * | `MAAS_GENERATE_DEFAULT_MAX_TOKENS` | 1024 (max_tokens of a request that gives none, capped by the context) |
 * | `MAAS_GENERATE_DEADLINE_MARGIN_MS` | 2000 (generation ends this long before the function's time limit, with finish_reason "length") |
 */
import { readSettings, type SettingsReader } from '../settings';

export interface GenerateSettings {
  defaultMaxTokens: number;
  deadlineMarginMs: number;
}

/**
 * The generation settings through a caller's reader (so every invalid setting is reported at once).
 * @example
 * const settings = readGenerateSettings(new SettingsReader(process.env));
 */
export function readGenerateSettings(reader: SettingsReader): GenerateSettings {
  return {
    defaultMaxTokens: reader.getNumberFromEnv({
      key: 'MAAS_GENERATE_DEFAULT_MAX_TOKENS',
      defaultValue: 1024,
      min: 1,
      integer: true,
    }),
    deadlineMarginMs: reader.getNumberFromEnv({
      key: 'MAAS_GENERATE_DEADLINE_MARGIN_MS',
      defaultValue: 2000,
      min: 0,
      integer: true,
    }),
  };
}

/**
 * The generation settings of an environment; MisconfiguredError for an invalid one.
 * @example
 * const { deadlineMarginMs } = generateSettingsFromEnv();
 */
export function generateSettingsFromEnv(env: NodeJS.ProcessEnv = process.env): GenerateSettings {
  return readSettings(readGenerateSettings, env);
}
