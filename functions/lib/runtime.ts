import { Logger } from '@aws-lambda-powertools/logger';
import type { LogAttributes } from '@aws-lambda-powertools/logger/types';
import { createEventOutbox, type EventOutbox } from '../../shared/events';
import { ModelRegistry } from '../../shared/registry';
import { createObjectStore, DEFAULT_STORE_URL, type ObjectStore } from '../../shared/store';

/**
 * Per-container singletons, built on first use from the environment and reused by every
 * warm invocation (clients and their connection pools are expensive to build).
 */
let store: ObjectStore | undefined;
let registry: ModelRegistry | undefined;
let outbox: EventOutbox | null | undefined;

export function getStore(): ObjectStore {
  store ??= createObjectStore(process.env.MAAS_STORE ?? DEFAULT_STORE_URL);
  return store;
}

export function getRegistry(): ModelRegistry {
  if (!registry) {
    const max = process.env.MAAS_MAX_MODEL_BYTES ? Number(process.env.MAAS_MAX_MODEL_BYTES) : undefined;
    const events = getEventOutbox();
    registry = new ModelRegistry(getStore(), {
      ...(max ? { maxModelBytes: max } : {}),
      // Every change is published right after it is stored (docs/api/events.md).
      ...(events ? { onEvent: events.hook() } : {}),
    });
  }
  return registry;
}

/** The event outbox over the configured sinks (`MAAS_EVENT_BUS`, `MAAS_EVENT_WEBHOOK_URL`), or undefined. */
export function getEventOutbox(): EventOutbox | undefined {
  if (outbox === undefined) {
    const logger = new Logger({ serviceName: 'maas-events' });
    outbox =
      createEventOutbox(getStore(), process.env, {
        logger: { warn: (message, attributes = {}) => logger.warn(message, attributes as LogAttributes) },
      }) ?? null;
  }
  return outbox ?? undefined;
}

/** Tests: forget the singletons so the next call re-reads the environment. */
export function resetRuntime(): void {
  store = undefined;
  registry = undefined;
  outbox = undefined;
}
