import type { Logger } from '@aws-lambda-powertools/logger';
import { ModelRegistry } from '../../shared/registry';
import { MisconfiguredError, readSettings } from '../../shared/settings';
import { createObjectStore, DEFAULT_STORE_URL, type ObjectStore } from '../../shared/store';
import { logger } from './logger';

/**
 * Per-container singletons, built on first use from the environment and reused by every
 * warm invocation (clients and their connection pools are expensive to build).
 */
let store: ObjectStore | undefined;
let registry: ModelRegistry | undefined;
let settings: RuntimeSettings | undefined;
let misconfigured: MisconfiguredError | undefined;
const reported = new WeakSet<MisconfiguredError>();

/** The store and registry settings every function shares, read through `shared/settings.ts`. */
export interface RuntimeSettings {
  /** `MAAS_STORE`: `s3://bucket[/prefix]` or `file://path`. */
  store: string;
  /** `MAAS_MAX_MODEL_BYTES`: largest model the registry accepts (unset: the registry's default). */
  maxModelBytes: number | undefined;
}

/**
 * The shared settings; an invalid one throws `MisconfiguredError` (a 500 `misconfigured`).
 * @example
 * const { store } = runtimeSettings();
 */
export function runtimeSettings(env: NodeJS.ProcessEnv = process.env): RuntimeSettings {
  return readSettings(
    (r) => ({
      store: r.getStringFromEnv({
        key: 'MAAS_STORE',
        defaultValue: DEFAULT_STORE_URL,
        pattern: /^(s3|file):\/\/./,
        expected: 's3://bucket[/prefix] or file://path',
      }),
      maxModelBytes:
        r.getNumberFromEnv({ key: 'MAAS_MAX_MODEL_BYTES', defaultValue: 0, min: 1, integer: true }) ||
        undefined,
    }),
    env,
  );
}

/**
 * Logs each invalid setting of `error` once (one Powertools error line per setting, with its
 * value and what was expected): the start-up report of a misconfigured container.
 * @example
 * reportMisconfigured(error, logger);
 */
export function reportMisconfigured(error: MisconfiguredError, log: Logger = logger): void {
  if (reported.has(error)) return;
  reported.add(error);
  for (const problem of error.problems) log.error('misconfigured: refusing to serve', { ...problem });
}

/**
 * The container's shared settings, read once; an invalid one is reported once and thrown as
 * `MisconfiguredError` by this and every later call (until {@link resetRuntime}).
 * @example
 * middy().use(httpErrors()).use(refuseWhenMisconfigured(getRuntimeSettings));
 */
export function getRuntimeSettings(): RuntimeSettings {
  if (misconfigured) throw misconfigured;
  if (!settings) {
    try {
      settings = runtimeSettings();
    } catch (error) {
      if (error instanceof MisconfiguredError) {
        misconfigured = error;
        reportMisconfigured(error);
      }
      throw error;
    }
  }
  return settings;
}

export function getStore(): ObjectStore {
  store ??= createObjectStore(getRuntimeSettings().store);
  return store;
}

export function getRegistry(): ModelRegistry {
  if (!registry) {
    const { maxModelBytes } = getRuntimeSettings();
    registry = new ModelRegistry(getStore(), maxModelBytes ? { maxModelBytes } : {});
  }
  return registry;
}

/** Tests: forget the singletons so the next call re-reads the environment. */
export function resetRuntime(): void {
  store = undefined;
  registry = undefined;
  settings = undefined;
  misconfigured = undefined;
}
