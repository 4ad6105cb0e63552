import type { S3Event } from 'aws-lambda';
import {
  decodeS3EventKey,
  type IngestOutcome,
  ingestIncomingObject,
  storeKeyOfBucketKey,
} from '../../shared/registry/incoming';
import { logger } from '../lib/logger';
import { getRegistry, getStore } from '../lib/runtime';

export interface S3EventReport {
  outcomes: (IngestOutcome | { status: 'ignored'; key: string; reason: string })[];
}

/**
 * Adapts an S3 notification to {@link ingestIncomingObject}: decodes each record's key, maps it
 * into the store's key space, and ingests records one by one. Every record is attempted; if any
 * failed transiently the invocation throws afterwards so Lambda retries it (ingestion is
 * idempotent, so records already handled are harmless on retry). Each record's `versionId` or
 * `eTag` pins the object: a re-upload under the same key is left for its own event.
 *
 * @example
 * ```ts
 * const { outcomes } = await handleS3Event(event); // [{ status: 'registered', name: 'iris', version: 4, key }]
 * ```
 */
export async function handleS3Event(event: S3Event): Promise<S3EventReport> {
  const store = getStore();
  const registry = getRegistry();
  const outcomes: S3EventReport['outcomes'] = [];
  const failures: unknown[] = [];
  for (const record of event.Records) {
    const rawKey = record.s3.object.key;
    if (!record.eventName.startsWith('ObjectCreated:')) {
      outcomes.push({
        status: 'ignored',
        key: rawKey,
        reason: `event ${record.eventName} is not ObjectCreated`,
      });
      continue;
    }
    let bucketKey: string;
    try {
      bucketKey = decodeS3EventKey(rawKey);
    } catch (e) {
      outcomes.push({ status: 'ignored', key: rawKey, reason: (e as Error).message }); // retrying cannot fix a malformed key
      continue;
    }
    try {
      const key = storeKeyOfBucketKey(store, record.s3.bucket.name, bucketKey);
      const outcome =
        key === undefined
          ? {
              status: 'ignored' as const,
              key: bucketKey,
              reason: `s3://${record.s3.bucket.name}/${bucketKey} is outside the store ${store.location}`,
            }
          : await ingestIncomingObject(store, registry, key, {
              source: `s3://${record.s3.bucket.name}/${bucketKey}`,
              // Exactly the object this event announces: never a later upload under the same key.
              ...(record.s3.object.versionId ? { versionId: record.s3.object.versionId } : {}),
              ...(record.s3.object.eTag ? { etag: record.s3.object.eTag } : {}),
            });
      outcomes.push(outcome);
      if (outcome.status === 'rejected') logger.warn('incoming object', { ...outcome });
      else logger.info('incoming object', { ...outcome });
    } catch (e) {
      failures.push(e);
      logger.error('incoming object failed; will be retried', { key: rawKey, error: e as Error });
    }
  }
  if (failures.length > 0)
    throw new AggregateError(failures, `${failures.length} of ${event.Records.length} records failed`);
  return { outcomes };
}
