import type { Logger } from '@aws-lambda-powertools/logger';
import type { LogAttributes } from '@aws-lambda-powertools/logger/types';
import {
  createEventOutbox,
  type EventOutbox,
  type EventSettings,
  readEventSettings,
} from '../../shared/events';
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
let outbox: EventOutbox | null | undefined;
let settings: RuntimeSettings | undefined;
let misconfigured: MisconfiguredError | undefined;
const reported = new WeakSet<MisconfiguredError>();

/** The store, registry and event settings every function shares, read through `shared/settings.ts`. */
export interface RuntimeSettings {
  /** `MAAS_STORE`: `s3://bucket[/prefix]` or `file://path`. */
  store: string;
  /** `MAAS_MAX_MODEL_BYTES`: largest model the registry accepts (unset: the registry's default). */
  maxModelBytes: number | undefined;
  /** `MAAS_EVENT_*`: where the registry publishes its changes (every function's registry does). */
  events: EventSettings;
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
      events: readEventSettings(r),
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
    const events = getEventOutbox();
    registry = new ModelRegistry(getStore(), {
      ...(maxModelBytes ? { maxModelBytes } : {}),
      // Every change is published right after it is stored (docs/api/events.md).
      ...(events ? { onEvent: events.hook() } : {}),
    });
  }
  return registry;
}

/**
 * The event outbox over the configured sinks (`MAAS_EVENT_BUS`, `MAAS_EVENT_WEBHOOK_URL`), or
 * undefined when none is configured.
 * @example
 * await getEventOutbox()?.sweep();
 */
export function getEventOutbox(): EventOutbox | undefined {
  if (outbox === undefined) {
    outbox =
      createEventOutbox(getStore(), getRuntimeSettings().events, {
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
  settings = undefined;
  misconfigured = undefined;
}
