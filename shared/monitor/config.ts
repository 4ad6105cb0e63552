import { InvalidArgumentError } from '../errors';

/**
 * Reads a numeric `MAAS_*` setting: the default when unset or empty, a clear error when it is
 * not a number within bounds (a typo in a setting should fail loudly at start-up, not silently
 * disable monitoring).
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
  bounds: { min?: number; max?: number } = {},
): number {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const value = Number(raw);
  const { min = -Infinity, max = Infinity } = bounds;
  if (!Number.isFinite(value) || value < min || value > max) {
    throw new InvalidArgumentError(
      `${name} must be a number between ${min} and ${max}, got ${JSON.stringify(raw)}`,
      { setting: name },
    );
  }
  return value;
}

/**
 * Reads a boolean `MAAS_*` setting (`true/false/1/0/on/off/yes/no`).
 *
 * @example
 * ```ts
 * const on = booleanSetting(process.env, 'MAAS_CAPTURE', true);
 * ```
 */
export function booleanSetting(env: NodeJS.ProcessEnv, name: string, fallback: boolean): boolean {
  const raw = env[name]?.trim().toLowerCase();
  if (raw === undefined || raw === '') return fallback;
  if (['1', 'true', 'on', 'yes'].includes(raw)) return true;
  if (['0', 'false', 'off', 'no'].includes(raw)) return false;
  throw new InvalidArgumentError(`${name} must be true or false, got ${JSON.stringify(env[name])}`, {
    setting: name,
  });
}
