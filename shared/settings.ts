/**
 * The one way maas reads its `MAAS_*` settings from the environment (modelled on Powertools'
 * `getNumberFromEnv`): typed readers with defaults and bounds, and one error policy.
 *
 * A value that is set but invalid is never silently replaced by the default and never becomes
 * `NaN`: the reader records a {@link SettingProblem} (setting, value, what was expected) and
 * {@link SettingsReader.check} throws one {@link MisconfiguredError} naming them all. The
 * function runtimes read their settings once per container, log that error at start-up and
 * refuse every request with a 500 `misconfigured` (a typo in the deployment is the operator's
 * problem, not the client's: never a 400).
 */
import { MaasError } from './errors';

/** One invalid setting: its name, the value found, and what was expected. */
export interface SettingProblem {
  setting: string;
  value: string;
  expected: string;
}

/**
 * One or more settings are invalid. The message (for logs) quotes the values; clients only see
 * the setting names (see `shared/http/errors.ts`), as values may be secrets.
 */
export class MisconfiguredError extends MaasError {
  readonly problems: SettingProblem[];
  constructor(problems: SettingProblem[]) {
    super(
      'internal',
      `misconfigured: ${problems
        .map((p) => `${p.setting} must be ${p.expected}, got ${JSON.stringify(p.value)}`)
        .join('; ')}`,
      { settings: problems.map((p) => p.setting) },
    );
    this.problems = problems;
  }
  /** The invalid settings' names (safe to show to clients). */
  get settings(): string[] {
    return this.problems.map((p) => p.setting);
  }
}

/** Options of {@link SettingsReader.getNumberFromEnv}. */
export interface NumberSettingOptions {
  /** The environment variable, e.g. `MAAS_CAPTURE_FLUSH_SECONDS`. */
  key: string;
  /** Returned when the variable is unset or empty. */
  defaultValue: number;
  /** Smallest valid value (default: no bound). */
  min?: number;
  /** Largest valid value (default: no bound). */
  max?: number;
  /** Only whole numbers are valid (default false). */
  integer?: boolean;
}

/** Options of {@link SettingsReader.getBooleanFromEnv}. */
export interface BooleanSettingOptions {
  key: string;
  defaultValue: boolean;
}

/** Options of {@link SettingsReader.getEnumFromEnv}. */
export interface EnumSettingOptions<T extends string> {
  key: string;
  /** The valid values, compared case-insensitively after trimming. */
  values: readonly T[];
  defaultValue: T;
}

/** Options of {@link SettingsReader.getStringFromEnv}. */
export interface StringSettingOptions<D extends string | undefined> {
  key: string;
  /** Returned when the variable is unset or empty. */
  defaultValue: D;
  /** When given, a set value must match it (e.g. a URL shape). */
  pattern?: RegExp;
  /** Says what `pattern` means, for the error (default: the pattern itself). */
  expected?: string;
}

const TRUE = ['1', 'true', 'on', 'yes'];
const FALSE = ['0', 'false', 'off', 'no'];

/**
 * Reads settings from one environment and collects every invalid value instead of stopping at
 * the first: an operator fixes them all in one deployment. Each reader returns the default for
 * an invalid value so that reading can go on; call {@link check} before using the results.
 *
 * @example
 * ```ts
 * const env = new SettingsReader(process.env);
 * const flushSeconds = env.getNumberFromEnv({ key: 'MAAS_CAPTURE_FLUSH_SECONDS', defaultValue: 60, min: 0 });
 * const capture = env.getBooleanFromEnv({ key: 'MAAS_CAPTURE', defaultValue: true });
 * env.check(); // throws MisconfiguredError naming every invalid setting
 * ```
 */
export class SettingsReader {
  readonly problems: SettingProblem[] = [];
  constructor(private readonly env: NodeJS.ProcessEnv = process.env) {}

  /** A number within bounds; `integer` also refuses fractions. */
  getNumberFromEnv({ key, defaultValue, min, max, integer = false }: NumberSettingOptions): number {
    const raw = this.raw(key);
    if (raw === undefined) return defaultValue;
    const value = Number(raw);
    const ok =
      Number.isFinite(value) &&
      (!integer || Number.isSafeInteger(value)) &&
      (min === undefined || value >= min) &&
      (max === undefined || value <= max);
    if (ok) return value;
    const kind = integer ? 'an integer' : 'a number';
    const range =
      min !== undefined && max !== undefined
        ? ` between ${min} and ${max}`
        : min !== undefined
          ? ` ≥ ${min}`
          : max !== undefined
            ? ` ≤ ${max}`
            : '';
    return this.problem(key, `${kind}${range}`, defaultValue);
  }

  /** `true/false/1/0/on/off/yes/no`, case-insensitively. */
  getBooleanFromEnv({ key, defaultValue }: BooleanSettingOptions): boolean {
    const raw = this.raw(key)?.toLowerCase();
    if (raw === undefined) return defaultValue;
    if (TRUE.includes(raw)) return true;
    if (FALSE.includes(raw)) return false;
    return this.problem(key, 'true or false', defaultValue);
  }

  /** One of `values`. */
  getEnumFromEnv<T extends string>({ key, values, defaultValue }: EnumSettingOptions<T>): T {
    const raw = this.raw(key)?.toLowerCase();
    if (raw === undefined) return defaultValue;
    const found = values.find((v) => v.toLowerCase() === raw);
    const list = values.length > 1 ? `${values.slice(0, -1).join(', ')} or ${values.at(-1)}` : `${values[0]}`;
    return found ?? this.problem(key, list, defaultValue);
  }

  /** A string as set (trimmed), or the default when unset or empty. */
  getStringFromEnv<D extends string | undefined>({
    key,
    defaultValue,
    pattern,
    expected,
  }: StringSettingOptions<D>): string | D {
    const raw = this.raw(key);
    if (raw === undefined) return defaultValue;
    if (pattern && !pattern.test(raw))
      return this.problem(key, expected ?? `to match ${pattern}`, defaultValue);
    return raw;
  }

  /**
   * Records a setting as invalid by a rule no single reader expresses (a value required once
   * another is set); {@link check} reports it with the others.
   * @example
   * if (url && !secret) reader.invalid('MAAS_EVENT_WEBHOOK_SECRET', 'set when MAAS_EVENT_WEBHOOK_URL is set');
   */
  invalid(key: string, expected: string): void {
    this.problem(key, expected, undefined);
  }

  /**
   * Throws a {@link MisconfiguredError} naming every invalid setting read so far.
   * @example
   * reader.check();
   */
  check(): void {
    if (this.problems.length > 0) throw new MisconfiguredError([...this.problems]);
  }

  private raw(key: string): string | undefined {
    const raw = this.env[key]?.trim();
    return raw === undefined || raw === '' ? undefined : raw;
  }

  private problem<T>(setting: string, expected: string, fallback: T): T {
    this.problems.push({ setting, value: this.env[setting] ?? '', expected });
    return fallback;
  }
}

/**
 * Reads a group of settings with one reader and returns them, or throws one
 * {@link MisconfiguredError} naming every invalid one.
 *
 * @example
 * ```ts
 * const settings = readSettings((env) => ({
 *   ttlMs: env.getNumberFromEnv({ key: 'MAAS_ALIAS_TTL_MS', defaultValue: 5000, min: 0, integer: true }),
 * }));
 * ```
 */
export function readSettings<T>(
  read: (reader: SettingsReader) => T,
  env: NodeJS.ProcessEnv = process.env,
): T {
  const reader = new SettingsReader(env);
  const settings = read(reader);
  reader.check();
  return settings;
}

/**
 * One numeric setting, throwing {@link MisconfiguredError} when it is invalid.
 *
 * @example
 * ```ts
 * const expires = getNumberFromEnv({ key: 'MAAS_UPLOAD_EXPIRES_SECONDS', defaultValue: 900, min: 1, integer: true });
 * ```
 */
export function getNumberFromEnv(
  options: NumberSettingOptions,
  env: NodeJS.ProcessEnv = process.env,
): number {
  return readSettings((r) => r.getNumberFromEnv(options), env);
}

/**
 * One boolean setting, throwing {@link MisconfiguredError} when it is invalid.
 *
 * @example
 * ```ts
 * const on = getBooleanFromEnv({ key: 'MAAS_CAPTURE', defaultValue: true });
 * ```
 */
export function getBooleanFromEnv(
  options: BooleanSettingOptions,
  env: NodeJS.ProcessEnv = process.env,
): boolean {
  return readSettings((r) => r.getBooleanFromEnv(options), env);
}

/**
 * One string setting (trimmed; the default when unset or empty), throwing
 * {@link MisconfiguredError} when it does not match `pattern`.
 *
 * @example
 * ```ts
 * const namespace = getStringFromEnv({ key: 'MAAS_METRICS_NAMESPACE', defaultValue: 'maas' });
 * ```
 */
export function getStringFromEnv<D extends string | undefined>(
  options: StringSettingOptions<D>,
  env: NodeJS.ProcessEnv = process.env,
): string | D {
  return readSettings((r) => r.getStringFromEnv(options), env);
}

/**
 * One setting out of a fixed set of values, throwing {@link MisconfiguredError} otherwise.
 *
 * @example
 * ```ts
 * const sink = getEnumFromEnv({ key: 'MAAS_METRICS_SINK', values: ['cloudwatch', 'local'], defaultValue: 'local' });
 * ```
 */
export function getEnumFromEnv<T extends string>(
  options: EnumSettingOptions<T>,
  env: NodeJS.ProcessEnv = process.env,
): T {
  return readSettings((r) => r.getEnumFromEnv(options), env);
}
