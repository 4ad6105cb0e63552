import { MaasError } from '../errors';
import type { ObjectStore } from '../store';
import { EventOutbox, type EventOutboxOptions } from './outbox';
import { EventBridgeSink, type EventSink, WebhookSink } from './sinks';

/**
 * The sinks the environment configures (none: events are not published).
 *
 * | variable | meaning |
 * | --- | --- |
 * | `MAAS_EVENT_BUS` | EventBridge bus name or ARN (set by serverless.yml to the stack's bus) |
 * | `MAAS_EVENT_WEBHOOK_URL` | webhook receiving each event as a signed JSON POST |
 * | `MAAS_EVENT_WEBHOOK_SECRET` | HMAC-SHA256 key of the signature header (required with the URL) |
 *
 * @example
 * ```ts
 * const sinks = eventSinksFromEnv({ MAAS_EVENT_WEBHOOK_URL: 'http://127.0.0.1:9000/hook', MAAS_EVENT_WEBHOOK_SECRET: 'x' });
 * ```
 */
export function eventSinksFromEnv(env: NodeJS.ProcessEnv = process.env): EventSink[] {
  const sinks: EventSink[] = [];
  if (env.MAAS_EVENT_BUS) sinks.push(new EventBridgeSink({ busName: env.MAAS_EVENT_BUS }));
  if (env.MAAS_EVENT_WEBHOOK_URL) {
    const secret = env.MAAS_EVENT_WEBHOOK_SECRET;
    // Unsigned events would let anyone who finds the URL forge registry changes: refuse to start.
    if (!secret)
      throw new MaasError('internal', 'MAAS_EVENT_WEBHOOK_URL is set but MAAS_EVENT_WEBHOOK_SECRET is empty');
    sinks.push(new WebhookSink({ url: env.MAAS_EVENT_WEBHOOK_URL, secret }));
  }
  return sinks;
}

/**
 * The outbox over the environment's sinks, or undefined when none is configured.
 * `MAAS_EVENTS_LOOKBACK_SECONDS` (default 900) sets how late an entry may be stored and still go out.
 * @example
 * ```ts
 * const outbox = createEventOutbox(store);
 * const registry = new ModelRegistry(store, outbox ? { onEvent: outbox.hook() } : {});
 * ```
 */
export function createEventOutbox(
  store: ObjectStore,
  env: NodeJS.ProcessEnv = process.env,
  options: Pick<EventOutboxOptions, 'logger'> = {},
): EventOutbox | undefined {
  const sinks = eventSinksFromEnv(env);
  if (sinks.length === 0) return undefined;
  const lookback = Number(env.MAAS_EVENTS_LOOKBACK_SECONDS ?? 900);
  if (!Number.isFinite(lookback) || lookback < 0)
    throw new MaasError('internal', 'MAAS_EVENTS_LOOKBACK_SECONDS must be a non-negative number');
  return new EventOutbox({ store, sinks, lookbackMs: lookback * 1000, ...options });
}
