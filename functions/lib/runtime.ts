import { ModelRegistry } from '../../shared/registry';
import { createObjectStore, DEFAULT_STORE_URL, type ObjectStore } from '../../shared/store';

/**
 * Per-container singletons, built on first use from the environment and reused by every
 * warm invocation (clients and their connection pools are expensive to build).
 */
let store: ObjectStore | undefined;
let registry: ModelRegistry | undefined;

export function getStore(): ObjectStore {
  store ??= createObjectStore(process.env.MAAS_STORE ?? DEFAULT_STORE_URL);
  return store;
}

export function getRegistry(): ModelRegistry {
  if (!registry) {
    const max = process.env.MAAS_MAX_MODEL_BYTES ? Number(process.env.MAAS_MAX_MODEL_BYTES) : undefined;
    registry = new ModelRegistry(getStore(), max ? { maxModelBytes: max } : {});
  }
  return registry;
}

/** Tests: forget the singletons so the next call re-reads the environment. */
export function resetRuntime(): void {
  store = undefined;
  registry = undefined;
}
