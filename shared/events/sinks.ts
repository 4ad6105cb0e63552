/**
 * Where registry events go: Amazon EventBridge (a bus of the stack; rules are the user's) and
 * HTTP webhooks signed with HMAC-SHA256. A sink either delivers a whole batch or throws; the
 * outbox then retries the batch later, so a sink may deliver an event more than once and
 * consumers de-duplicate on the event id.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
// Types only: the SDK client is loaded on first publish, so functions that never publish (predict
// reads the registry) do not pay for loading it in their cold start.
import type { EventBridgeClient, EventBridgeClientConfig } from '@aws-sdk/client-eventbridge';
import type { RegistryEvent } from './schema';

/** A destination of events. */
export interface EventSink {
  /** Stable name: each sink keeps its own cursor (`events/cursors/{name}/…`). */
  readonly name: string;
  /** Most events per {@link publish} call. */
  readonly maxBatch: number;
  /** Delivers every event of the batch, in order, or throws. */
  publish(events: readonly RegistryEvent[]): Promise<void>;
}

/** `Source` of every EventBridge entry maas puts. */
export const EVENTBRIDGE_SOURCE = 'maas.registry';

/** Options of {@link EventBridgeSink}. */
export interface EventBridgeSinkOptions {
  /** Bus name or ARN. */
  busName: string;
  client?: EventBridgeClient;
  /** Client settings when no client is given (region, endpoint, retries). */
  clientConfig?: EventBridgeClientConfig;
}

/**
 * PutEvents to one bus: `Source` {@link EVENTBRIDGE_SOURCE}, `DetailType` the event type,
 * `Detail` the event JSON, `Resources` empty. Up to 10 entries per call (the API's limit).
 * @example
 * ```ts
 * const sink = new EventBridgeSink({ busName: 'maas-prod-events' });
 * await sink.publish([event]);
 * ```
 */
export class EventBridgeSink implements EventSink {
  readonly name = 'eventbridge';
  readonly maxBatch = 10;
  private client: EventBridgeClient | undefined;
  private readonly busName: string;
  private readonly clientConfig: EventBridgeClientConfig;

  constructor(options: EventBridgeSinkOptions) {
    this.busName = options.busName;
    this.client = options.client;
    this.clientConfig = options.clientConfig ?? {};
  }

  async publish(events: readonly RegistryEvent[]): Promise<void> {
    const { EventBridgeClient, PutEventsCommand } = await import('@aws-sdk/client-eventbridge');
    this.client ??= new EventBridgeClient(this.clientConfig);
    for (let i = 0; i < events.length; i += this.maxBatch) {
      const chunk = events.slice(i, i + this.maxBatch);
      const out = await this.client.send(
        new PutEventsCommand({
          Entries: chunk.map((e) => ({
            EventBusName: this.busName,
            Source: EVENTBRIDGE_SOURCE,
            DetailType: e.type,
            Detail: JSON.stringify(e),
            Time: new Date(e.time),
          })),
        }),
      );
      // PutEvents answers 200 with per-entry failures: any failed entry fails the batch.
      if ((out.FailedEntryCount ?? 0) > 0) {
        const failed = (out.Entries ?? []).find((x) => x.ErrorCode);
        throw new Error(
          `EventBridge refused ${out.FailedEntryCount} of ${chunk.length} events (${failed?.ErrorCode ?? 'unknown'}: ${failed?.ErrorMessage ?? ''})`,
        );
      }
    }
  }
}

/** Header carrying the webhook signature: `v1=<hex HMAC-SHA256(secret, "{timestamp}.{body}")>`. */
export const SIGNATURE_HEADER = 'x-maas-signature';
/** Header carrying the signing time (Unix seconds), part of the signed text. */
export const TIMESTAMP_HEADER = 'x-maas-timestamp';
/** Header carrying the event id (the same as the body's `id`). */
export const EVENT_ID_HEADER = 'x-maas-event-id';

/**
 * The signature of a webhook body, as sent in {@link SIGNATURE_HEADER}.
 * @example
 * signWebhook('s3cret', '1764620000', '{"id":"…"}') // 'v1=…'
 */
export function signWebhook(secret: string, timestamp: string, body: string): string {
  return `v1=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

/**
 * Checks a received webhook (receivers: also reject timestamps too far from now, against replay).
 * @example
 * if (!verifyWebhook(secret, req.headers['x-maas-timestamp'], body, req.headers['x-maas-signature'])) reject();
 */
export function verifyWebhook(
  secret: string,
  timestamp: string | undefined,
  body: string,
  signature: string | undefined,
): boolean {
  if (!timestamp || !signature) return false;
  const expected = Buffer.from(signWebhook(secret, timestamp, body));
  const given = Buffer.from(signature);
  return expected.length === given.length && timingSafeEqual(expected, given);
}

/** Options of {@link WebhookSink}. */
export interface WebhookSinkOptions {
  url: string;
  /** HMAC key of the signature header. */
  secret: string;
  /** Per-request timeout, ms (default 5000). */
  timeoutMs?: number;
  now?: () => number;
}

/**
 * POSTs each event as its own JSON body, signed; any status but 2xx fails the batch.
 * @example
 * ```ts
 * const sink = new WebhookSink({ url: 'https://ci.example.com/maas', secret: process.env.HOOK_SECRET! });
 * ```
 */
export class WebhookSink implements EventSink {
  readonly name = 'webhook';
  readonly maxBatch = 10;
  private readonly o: WebhookSinkOptions;

  constructor(options: WebhookSinkOptions) {
    this.o = options;
  }

  async publish(events: readonly RegistryEvent[]): Promise<void> {
    for (const event of events) {
      const body = JSON.stringify(event);
      const timestamp = String(Math.floor((this.o.now?.() ?? Date.now()) / 1000));
      const res = await fetch(this.o.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'user-agent': 'maas-events/1',
          [EVENT_ID_HEADER]: event.id,
          [TIMESTAMP_HEADER]: timestamp,
          [SIGNATURE_HEADER]: signWebhook(this.o.secret, timestamp, body),
        },
        body,
        signal: AbortSignal.timeout(this.o.timeoutMs ?? 5000),
      });
      await res.body?.cancel().catch(() => undefined);
      if (!res.ok) throw new Error(`webhook answered ${res.status} for event ${event.id}`);
    }
  }
}
