import { getBooleanFromEnv, getNumberFromEnv } from '../settings';

/**
 * Reads a numeric `MAAS_*` setting through the one settings reader (`shared/settings.ts`): the
 * default when unset or empty, a `MisconfiguredError` (a 500 `misconfigured`, never a
 * client 400) when it is not a number within bounds — a typo in a setting fails loudly at
 * start-up instead of silently disabling monitoring.
 *
 * @example
 * ```ts
 * const every = numberSetting(process.env, 'MAAS_CAPTURE_FLUSH_SECONDS', 60, { min: 1 });
 * ```
 */
export function numberSetting(
  env: NodeJS.ProcessEnv,
  name: string,
  fallback: number,
  bounds: { min?: number; max?: number; integer?: boolean } = {},
): number {
  return getNumberFromEnv({ key: name, defaultValue: fallback, ...bounds }, env);
}

/**
 * Reads a boolean `MAAS_*` setting (`true/false/1/0/on/off/yes/no`) through the settings reader.
 *
 * @example
 * ```ts
 * const on = booleanSetting(process.env, 'MAAS_CAPTURE', true);
 * ```
 */
export function booleanSetting(env: NodeJS.ProcessEnv, name: string, fallback: boolean): boolean {
  return getBooleanFromEnv({ key: name, defaultValue: fallback }, env);
}
