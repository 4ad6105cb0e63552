/**
 * Registry history as the outbox of event publication.
 *
 * History entries are create-only objects under `models/{name}/history/{time}-{id}.json`, so
 * the history already is a durable, ordered log of every change. A publisher keeps, per sink
 * and model, a cursor document (`events/cursors/{sink}/{model}.json`, compare-and-swapped with
 * updateJson): the newest key published and the keys published within the last `lookback`.
 * It lists the entries after `watermark − lookback`, publishes those not yet published, in key
 * order, and advances the cursor only after the sink accepted them. Nothing is lost:
 *
 * - a failed publish leaves the cursor where it was, so the same entries go out next time;
 * - an entry stored late with an earlier time (a writer slower than its clock) is still listed
 *   while it is younger than the watermark's time minus `lookback` (default 15 minutes);
 * - a change marks its model pending (`events/pending/{model}.json`) before publishing, and the
 *   mark is removed only once nothing is left, so the scheduled sweep retries exactly the models
 *   that need it; a full sweep over every model (daily by default) covers a process that died
 *   between storing an entry and marking it.
 *
 * Delivery is at least once: two publishers racing may both send an entry, and a sink may fail
 * after delivering part of a batch. Events carry the history id; consumers de-duplicate on it.
 */
import { layout } from '../registry/layout';
import type { HistoryEvent } from '../registry/types';
import { listAll, ObjectNotFoundError, type ObjectStore } from '../store';
import { KEEP, readJson, updateJson } from '../store/documents';
import { mapLimit } from '../util/concurrency';
import { type RegistryEvent, toRegistryEvent } from './schema';
import type { EventSink } from './sinks';

/** Where the outbox keeps its state. */
export const eventsLayout = {
  cursor: (sink: string, model: string): string => `events/cursors/${sink}/${model}.json`,
  pendingPrefix: 'events/pending/',
  pending: (model: string): string => `events/pending/${model}.json`,
  sweep: 'events/sweep.json',
};

/** Per sink and model: what was published. */
export interface OutboxCursor {
  /** Newest history key published (relative to the model's history prefix). */
  watermark: string;
  /** Keys published whose time is within `lookback` of the watermark's. */
  recent: string[];
  updatedAt: string;
}

/** Outcome of publishing one model's pending entries to one sink. */
export interface PublishResult {
  model: string;
  sink: string;
  published: number;
  /** Why the sink failed; the entries stay pending. */
  error?: string;
}

/** Options of {@link EventOutbox}. */
export interface EventOutboxOptions {
  store: ObjectStore;
  sinks: readonly EventSink[];
  /** How far before the watermark late entries are looked for, ms (default 15 minutes). */
  lookbackMs?: number;
  /** Most entries one model publishes per pass (default 1000); the rest stay pending. */
  maxEventsPerPass?: number;
  /** Time between full sweeps over every model, ms (default 24 h). */
  fullSweepEveryMs?: number;
  /** Longest a change waits for its own publication, ms (default 3000). */
  hookBudgetMs?: number;
  logger?: { warn(message: string, attributes?: Record<string, unknown>): void };
  now?: () => Date;
}

const READ_CONCURRENCY = 8;
const MODEL_CONCURRENCY = 4;
/** ISO 8601 times as history keys start with them (`2026-12-01T20:14:00.000Z`). */
const TIME_LENGTH = 24;

/**
 * @example
 * ```ts
 * const outbox = new EventOutbox({ store, sinks: [new WebhookSink({ url, secret })] });
 * const registry = new ModelRegistry(store, { onEvent: outbox.hook() });
 * await outbox.sweep(); // on a schedule: retries whatever failed
 * ```
 */
export class EventOutbox {
  private readonly o: Required<Omit<EventOutboxOptions, 'logger'>> & Pick<EventOutboxOptions, 'logger'>;

  constructor(options: EventOutboxOptions) {
    this.o = {
      lookbackMs: 15 * 60_000,
      maxEventsPerPass: 1000,
      fullSweepEveryMs: 24 * 3_600_000,
      hookBudgetMs: 3000,
      now: () => new Date(),
      ...options,
    };
  }

  /**
   * The registry's `onEvent` callback: publishes right after each change, never throws, and
   * waits at most `hookBudgetMs` so a slow sink cannot hold a management call past its timeout
   * (what is not done in time stays pending for the sweep).
   */
  hook(): (model: string, event: HistoryEvent) => Promise<void> {
    return async (model) => {
      const publishing = this.afterChange(model).catch((e: unknown) => {
        this.o.logger?.warn('event publication failed; the sweep will retry', { model, error: String(e) });
      });
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        publishing,
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, this.o.hookBudgetMs);
        }),
      ]);
      clearTimeout(timer);
    };
  }

  /** Marks the model pending, publishes its new entries to every sink, and clears the mark when nothing is left. */
  async afterChange(model: string): Promise<PublishResult[]> {
    await this.mark(model);
    return this.drain(model);
  }

  /**
   * Publishes what is pending: models marked pending, or every model on a full sweep (forced,
   * or when the last full sweep is older than `fullSweepEveryMs`).
   */
  async sweep(options: { full?: boolean } = {}): Promise<{ full: boolean; results: PublishResult[] }> {
    const full = options.full ?? (await this.fullSweepDue());
    const models = full ? await this.allModels() : await this.pendingModels();
    const results = (await mapLimit(models, MODEL_CONCURRENCY, (m) => this.drain(m))).flat();
    return { full, results };
  }

  /** Publishes one model's unpublished entries to one sink, in order. */
  async publishModel(model: string, sink: EventSink): Promise<PublishResult> {
    const cursorKey = eventsLayout.cursor(sink.name, model);
    const keys = await this.unpublished(model, sink);
    let published = 0;
    const prefix = layout.historyPrefix(model);
    for (let i = 0; i < keys.length; i += sink.maxBatch) {
      const chunk = keys.slice(i, i + sink.maxBatch);
      const entries = await mapLimit(chunk, READ_CONCURRENCY, (k) =>
        readJson<HistoryEvent>(this.o.store, prefix + k),
      );
      const events: RegistryEvent[] = entries.flatMap((e) => (e ? [toRegistryEvent(model, e.doc)] : []));
      try {
        if (events.length > 0) await sink.publish(events);
      } catch (e) {
        return { model, sink: sink.name, published, error: String((e as Error)?.message ?? e) };
      }
      await updateJson<OutboxCursor>(this.o.store, cursorKey, (current) => this.advance(current?.doc, chunk));
      published += events.length;
    }
    return { model, sink: sink.name, published };
  }

  private async drain(model: string): Promise<PublishResult[]> {
    const results: PublishResult[] = [];
    for (const sink of this.o.sinks) results.push(await this.publishModel(model, sink));
    if (results.some((r) => r.error)) {
      for (const r of results.filter((x) => x.error))
        this.o.logger?.warn('event sink failed; entries stay pending', { ...r });
      return results;
    }
    await this.o.store.delete(eventsLayout.pending(model)).catch((e: unknown) => {
      if (!(e instanceof ObjectNotFoundError)) throw e;
    });
    // A change that landed meanwhile may have seen its mark deleted above: look once more.
    for (const sink of this.o.sinks) {
      if ((await this.unpublished(model, sink)).length > 0) {
        await this.mark(model);
        break;
      }
    }
    return results;
  }

  /** History keys (relative) of a model that the sink has not had yet, oldest first. */
  private async unpublished(model: string, sink: EventSink): Promise<string[]> {
    const cursor = (await readJson<OutboxCursor>(this.o.store, eventsLayout.cursor(sink.name, model)))?.doc;
    const prefix = layout.historyPrefix(model);
    const from = cursor ? this.lookbackStart(cursor.watermark) : '';
    const done = new Set(cursor?.recent ?? []);
    const out: string[] = [];
    let token: string | undefined;
    do {
      const page = await this.o.store.list({
        prefix,
        ...(token ? { continuationToken: token } : from ? { startAfter: prefix + from } : {}),
      });
      for (const o of page.objects) {
        const key = o.key.slice(prefix.length);
        // Keys after the lookback start not in `recent` are new, or stored late with an earlier time.
        if (done.has(key)) continue;
        out.push(key);
        if (out.length >= this.o.maxEventsPerPass) return out;
      }
      token = page.nextToken;
    } while (token);
    return out;
  }

  /** The cursor after `keys` were published on top of `current`. */
  private advance(current: OutboxCursor | undefined, keys: readonly string[]): OutboxCursor | typeof KEEP {
    const all = new Set([...(current?.recent ?? []), ...keys]);
    let watermark = current?.watermark ?? '';
    for (const k of keys) if (k > watermark) watermark = k;
    const start = this.lookbackStart(watermark);
    const recent = [...all].filter((k) => k >= start).sort();
    if (current && current.watermark === watermark && recent.length === current.recent.length) return KEEP;
    return { watermark, recent, updatedAt: this.o.now().toISOString() };
  }

  /** The time prefix `lookback` before a key's time. */
  private lookbackStart(key: string): string {
    const t = Date.parse(key.slice(0, TIME_LENGTH));
    return Number.isFinite(t) ? new Date(t - this.o.lookbackMs).toISOString() : '';
  }

  private async mark(model: string): Promise<void> {
    await this.o.store.put(eventsLayout.pending(model), '{}', { contentType: 'application/json' });
  }

  private async pendingModels(): Promise<string[]> {
    const { objects } = await listAll(this.o.store, { prefix: eventsLayout.pendingPrefix });
    return objects.map((o) => o.key.slice(eventsLayout.pendingPrefix.length).replace(/\.json$/, ''));
  }

  private async allModels(): Promise<string[]> {
    const { commonPrefixes } = await listAll(this.o.store, { prefix: layout.modelsPrefix, delimiter: '/' });
    return commonPrefixes.map((p) => p.slice(layout.modelsPrefix.length).replace(/\/$/, ''));
  }

  /** Claims the full sweep when the last one is older than `fullSweepEveryMs` (one claimant per period). */
  private async fullSweepDue(): Promise<boolean> {
    const now = this.o.now();
    const { written } = await updateJson<{ lastFullAt: string }>(
      this.o.store,
      eventsLayout.sweep,
      (current) =>
        current && now.getTime() - Date.parse(current.doc.lastFullAt) < this.o.fullSweepEveryMs
          ? KEEP
          : { lastFullAt: now.toISOString() },
    );
    return written;
  }
}
