import { ModelRegistry } from '../../shared/registry';
import { readSettings } from '../../shared/settings';
import { createObjectStore, DEFAULT_STORE_URL, type ObjectStore } from '../../shared/store';

/**
 * Per-container singletons, built on first use from the environment and reused by every
 * warm invocation (clients and their connection pools are expensive to build).
 */
let store: ObjectStore | undefined;
let registry: ModelRegistry | undefined;

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

export function getStore(): ObjectStore {
  store ??= createObjectStore(runtimeSettings().store);
  return store;
}

export function getRegistry(): ModelRegistry {
  if (!registry) {
    const { maxModelBytes } = runtimeSettings();
    registry = new ModelRegistry(getStore(), maxModelBytes ? { maxModelBytes } : {});
  }
  return registry;
}

/** Tests: forget the singletons so the next call re-reads the environment. */
export function resetRuntime(): void {
  store = undefined;
  registry = undefined;
}
