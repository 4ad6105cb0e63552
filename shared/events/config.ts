import { readSettings, type SettingsReader } from '../settings';
import type { ObjectStore } from '../store';
import { EventOutbox, type EventOutboxOptions } from './outbox';
import { EventBridgeSink, type EventSink, WebhookSink } from './sinks';

/** Where registry events go, and how late an entry may be stored and still go out. */
export interface EventSettings {
  /** `MAAS_EVENT_BUS`: EventBridge bus name or ARN (unset: no EventBridge sink). */
  bus: string | undefined;
  /** `MAAS_EVENT_WEBHOOK_URL` and its `MAAS_EVENT_WEBHOOK_SECRET` (unset: no webhook sink). */
  webhook: { url: string; secret: string } | undefined;
  /** `MAAS_EVENTS_LOOKBACK_SECONDS` in ms. */
  lookbackMs: number;
}

/**
 * The event settings read through a caller's {@link SettingsReader} (`shared/settings.ts`), so
 * that a function reading several groups reports every invalid setting at once.
 *
 * | variable | meaning |
 * | --- | --- |
 * | `MAAS_EVENT_BUS` | EventBridge bus name or ARN (set by serverless.yml to the stack's bus) |
 * | `MAAS_EVENT_WEBHOOK_URL` | webhook receiving each event as a signed JSON POST (`http(s)://…`) |
 * | `MAAS_EVENT_WEBHOOK_SECRET` | HMAC-SHA256 key of the signature header (required with the URL) |
 * | `MAAS_EVENTS_LOOKBACK_SECONDS` | how late an entry may be stored and still go out (default 900) |
 *
 * @example
 * ```ts
 * const reader = new SettingsReader(process.env);
 * const events = readEventSettings(reader);
 * reader.check();
 * ```
 */
export function readEventSettings(env: SettingsReader): EventSettings {
  const bus = env.getStringFromEnv({ key: 'MAAS_EVENT_BUS', defaultValue: undefined });
  const url = env.getStringFromEnv({
    key: 'MAAS_EVENT_WEBHOOK_URL',
    defaultValue: undefined,
    pattern: /^https?:\/\/./,
    expected: 'an http(s):// URL',
  });
  const secret = env.getStringFromEnv({ key: 'MAAS_EVENT_WEBHOOK_SECRET', defaultValue: undefined });
  // Unsigned events would let anyone who finds the URL forge registry changes: refuse to start.
  if (url && !secret) env.invalid('MAAS_EVENT_WEBHOOK_SECRET', 'set when MAAS_EVENT_WEBHOOK_URL is set');
  const lookbackSeconds = env.getNumberFromEnv({
    key: 'MAAS_EVENTS_LOOKBACK_SECONDS',
    defaultValue: 900,
    min: 0,
  });
  return {
    bus,
    webhook: url && secret ? { url, secret } : undefined,
    lookbackMs: lookbackSeconds * 1000,
  };
}

/**
 * The event settings of an environment; an invalid one throws `MisconfiguredError`.
 * @example
 * ```ts
 * const settings = eventSettingsFromEnv({ MAAS_EVENT_WEBHOOK_URL: 'http://127.0.0.1:9000/hook', MAAS_EVENT_WEBHOOK_SECRET: 'x' });
 * ```
 */
export function eventSettingsFromEnv(env: NodeJS.ProcessEnv = process.env): EventSettings {
  return readSettings((reader) => readEventSettings(reader), env);
}

/**
 * The sinks the settings configure (none: events are not published).
 * @example
 * ```ts
 * const sinks = eventSinks(eventSettingsFromEnv());
 * ```
 */
export function eventSinks(settings: EventSettings): EventSink[] {
  const sinks: EventSink[] = [];
  if (settings.bus) sinks.push(new EventBridgeSink({ busName: settings.bus }));
  if (settings.webhook) sinks.push(new WebhookSink(settings.webhook));
  return sinks;
}

/**
 * The outbox over the configured sinks, or undefined when none is configured.
 * @example
 * ```ts
 * const outbox = createEventOutbox(store, eventSettingsFromEnv());
 * const registry = new ModelRegistry(store, outbox ? { onEvent: outbox.hook() } : {});
 * ```
 */
export function createEventOutbox(
  store: ObjectStore,
  settings: EventSettings = eventSettingsFromEnv(),
  options: Pick<EventOutboxOptions, 'logger'> = {},
): EventOutbox | undefined {
  const sinks = eventSinks(settings);
  if (sinks.length === 0) return undefined;
  return new EventOutbox({ store, sinks, lookbackMs: settings.lookbackMs, ...options });
}
