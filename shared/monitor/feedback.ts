import { randomBytes } from 'node:crypto';
import { InvalidArgumentError, PayloadTooLargeError } from '../errors';
import { assertModelName } from '../registry/names';
import type { ObjectStore } from '../store';
import { createJson, readJson } from '../store/documents';
import { mapLimit } from '../util/concurrency';
import type { PredictionRecord } from './capture';
import { monitoringLayout } from './layout';

/** Most feedback items one call accepts. */
export const MAX_FEEDBACK_ITEMS = 1000;
const MAX_ID_LENGTH = 256;
const LOOKUP_CONCURRENCY = 16;

/** One outcome posted by a client: the inference request `id` and the true target(s). */
export interface FeedbackItem {
  id: string;
  /** The true class index / label, or the true value; an array with one entry per batch row. */
  target: number | number[];
}

/** A feedback item joined to the prediction it scores (what the monitor reads). */
export interface JoinedFeedback {
  id: string;
  version: number;
  kind: PredictionRecord['kind'];
  predicted: number[];
  target: number[];
  predictedAt: string;
}

/** The document one feedback call writes. */
export interface FeedbackFile {
  format: 'maas.feedback/1';
  model: string;
  receivedAt: string;
  records: JoinedFeedback[];
}

export interface FeedbackResult {
  model: string;
  received: number;
  /** Items joined to a prediction and stored. */
  accepted: number;
  /** Ids with no prediction on record (never captured, not sampled, or from another model). */
  unknown: number;
  /** Ids whose prediction is older than the feedback time-to-live. */
  expired: number;
  /** Items whose target has a different number of rows than the prediction. */
  mismatched: number;
  /** Store key of the stored batch (absent when nothing was accepted). */
  key?: string;
}

/**
 * Validates a feedback body: an array of `{id, target}` or `{feedback: [...]}`. Throws an
 * InvalidArgumentError naming the first bad item; nothing is stored for a bad body.
 *
 * @example
 * ```ts
 * parseFeedback([{ id: 'req-1', target: 2 }]); // [{ id: 'req-1', target: 2 }]
 * ```
 */
export function parseFeedback(body: unknown): FeedbackItem[] {
  const list = Array.isArray(body)
    ? body
    : typeof body === 'object' && body !== null && Array.isArray((body as { feedback?: unknown }).feedback)
      ? (body as { feedback: unknown[] }).feedback
      : undefined;
  if (!list)
    throw new InvalidArgumentError('feedback body must be an array of {id, target} or {"feedback": [...]}');
  if (list.length === 0) throw new InvalidArgumentError('feedback is empty');
  if (list.length > MAX_FEEDBACK_ITEMS)
    throw new PayloadTooLargeError(`at most ${MAX_FEEDBACK_ITEMS} feedback items per call`, {
      limit: MAX_FEEDBACK_ITEMS,
    });
  return list.map((item, index) => {
    const i = item as { id?: unknown; target?: unknown } | null;
    if (typeof i !== 'object' || i === null)
      throw new InvalidArgumentError(`feedback[${index}] must be an object`, { index });
    if (typeof i.id !== 'string' || i.id.length === 0 || i.id.length > MAX_ID_LENGTH) {
      throw new InvalidArgumentError(
        `feedback[${index}].id must be a non-empty string of at most ${MAX_ID_LENGTH} characters`,
        { index },
      );
    }
    const t = i.target;
    const finite = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
    if (!(finite(t) || (Array.isArray(t) && t.length > 0 && t.every(finite)))) {
      throw new InvalidArgumentError(
        `feedback[${index}].target must be a finite number or a non-empty array of them`,
        { index },
      );
    }
    return { id: i.id, target: t as number | number[] };
  });
}

/**
 * Joins outcomes to the predictions captured for their request ids and stores the joined
 * records as one create-only batch under `monitoring/feedback/{name}/`. Unknown and expired
 * ids are counted, not errors: feedback is often posted for requests that were not sampled.
 *
 * @example
 * ```ts
 * const result = await recordFeedback(store, 'iris', parseFeedback(body));
 * // { accepted: 98, unknown: 2, ... }
 * ```
 */
export async function recordFeedback(
  store: ObjectStore,
  model: string,
  items: readonly FeedbackItem[],
  options: { now?: () => number } = {},
): Promise<FeedbackResult> {
  assertModelName(model);
  const now = options.now?.() ?? Date.now();
  const result: FeedbackResult = {
    model,
    received: items.length,
    accepted: 0,
    unknown: 0,
    expired: 0,
    mismatched: 0,
  };
  const records: JoinedFeedback[] = [];
  await mapLimit(items, LOOKUP_CONCURRENCY, async (item) => {
    const prediction = await readPrediction(store, model, item.id);
    if (!prediction) result.unknown++;
    else if (Date.parse(prediction.expiresAt) < now) result.expired++;
    else {
      const target = Array.isArray(item.target) ? item.target : [item.target];
      if (target.length !== prediction.predicted.length) result.mismatched++;
      else
        records.push({
          id: item.id,
          version: prediction.version,
          kind: prediction.kind,
          predicted: prediction.predicted,
          target,
          predictedAt: prediction.at,
        });
    }
  });
  result.accepted = records.length;
  if (records.length > 0) {
    const key = monitoringLayout.feedback(model, now, randomBytes(6).toString('hex'));
    const doc: FeedbackFile = {
      format: 'maas.feedback/1',
      model,
      receivedAt: new Date(now).toISOString(),
      records,
    };
    // The key holds 48 random bits: taken only by a retried write of this very batch.
    await createJson(store, key, doc);
    result.key = key;
  }
  return result;
}

async function readPrediction(
  store: ObjectStore,
  model: string,
  id: string,
): Promise<PredictionRecord | undefined> {
  const record = (await readJson<PredictionRecord>(store, monitoringLayout.prediction(model, id)))?.doc;
  // Keys are hashes of the id: compare the id itself so a collision can never join wrongly.
  return record?.id === id && record.model === model ? record : undefined;
}
