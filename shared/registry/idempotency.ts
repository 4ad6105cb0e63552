/**
 * Idempotency keys for registry changes (alias moves, rollbacks), in the style of Powertools'
 * idempotency utility and the IETF `Idempotency-Key` header draft: the first request with a key
 * stores an `in_progress` record create-only, runs, then stores its response; a retry with the
 * same key and the same payload gets that response back instead of running again; the same key
 * with another payload is refused (422), and a retry while the first is still running waits (409).
 * Records live under `idempotency/` and expire after a TTL (checked on read; the bucket's
 * lifecycle rule and the local retention sweep delete them).
 */
import { createHash } from 'node:crypto';
import { ConflictError, InvalidArgumentError, UnprocessableError } from '../errors';
import { readSettings, type SettingsReader } from '../settings';
import type { ObjectStore } from '../store';
import { createJson, type StoredDocument } from '../store/documents';
import { ObjectPreconditionError } from '../store/object-store';

/** Store prefix of the records (one object per scope and key). */
export const IDEMPOTENCY_PREFIX = 'idempotency/';

/** A response as a handler produced it, stored verbatim and replayed. */
export interface IdempotentResponse {
  statusCode: number;
  headers: Record<string, string>;
  body: string;
}

/** One stored record. */
export interface IdempotencyRecord {
  status: 'in_progress' | 'completed';
  /** sha256 of the request's payload: a reused key with another payload is refused. */
  payloadHash: string;
  createdAt: string;
  /** After this the record counts as absent (a new request with the key runs again). */
  expiresAt: string;
  /** An `in_progress` record older than this was left by a run that died: a retry takes over. */
  lockedUntil: string;
  response?: IdempotentResponse;
}

/** How long records live and how long a running request holds its key. */
export interface IdempotencySettings {
  /** `MAAS_IDEMPOTENCY_TTL_SECONDS` (default 86400: a day, as Stripe keeps keys). */
  ttlSeconds: number;
  /** `MAAS_IDEMPOTENCY_LOCK_SECONDS` (default 60: well above the rollback function's 10 s timeout). */
  lockSeconds: number;
}

/**
 * The idempotency settings through a caller's reader.
 * @example
 * const settings = readSettings((r) => readIdempotencySettings(r));
 */
export function readIdempotencySettings(env: SettingsReader): IdempotencySettings {
  return {
    ttlSeconds: env.getNumberFromEnv({
      key: 'MAAS_IDEMPOTENCY_TTL_SECONDS',
      defaultValue: 86_400,
      min: 1,
      integer: true,
    }),
    lockSeconds: env.getNumberFromEnv({
      key: 'MAAS_IDEMPOTENCY_LOCK_SECONDS',
      defaultValue: 60,
      min: 1,
      integer: true,
    }),
  };
}

/**
 * The idempotency settings from the environment (invalid values throw `MisconfiguredError`).
 * @example
 * const { ttlSeconds } = idempotencySettingsFromEnv();
 */
export function idempotencySettingsFromEnv(env: NodeJS.ProcessEnv = process.env): IdempotencySettings {
  return readSettings((r) => readIdempotencySettings(r), env);
}

/**
 * The create-only write of a new record found one already there (Powertools'
 * `IdempotencyItemAlreadyExistsError`): carries the existing record so the caller decides
 * (replay, refuse, wait or take over) without another read.
 */
export class IdempotencyRecordExistsError extends ConflictError {
  constructor(
    readonly key: string,
    readonly existing: StoredDocument<IdempotencyRecord>,
  ) {
    super(`idempotency record ${key} exists`, { key });
  }
}

/** A request with this key is still running (409): retry later. */
export class IdempotencyInProgressError extends ConflictError {
  constructor(until: string) {
    super('a request with this Idempotency-Key is still in progress; retry later', { lockedUntil: until });
  }
}

/** The key was used before with a different request (422). */
export class IdempotencyKeyReusedError extends UnprocessableError {
  constructor() {
    super('this Idempotency-Key was already used with a different request', { field: 'Idempotency-Key' });
  }
}

/** Longest key accepted (the draft leaves it open; Stripe allows 255). */
export const MAX_IDEMPOTENCY_KEY_LENGTH = 255;

/**
 * Checks a client's key: 1–255 visible ASCII characters, else a 400.
 * @example
 * assertIdempotencyKey(header(event, 'idempotency-key')!);
 */
export function assertIdempotencyKey(key: string): void {
  if (key.length === 0 || key.length > MAX_IDEMPOTENCY_KEY_LENGTH || !/^[\x21-\x7e]+$/.test(key))
    throw new InvalidArgumentError(
      `Idempotency-Key must be 1–${MAX_IDEMPOTENCY_KEY_LENGTH} visible ASCII characters`,
      { field: 'Idempotency-Key' },
    );
}

/** What {@link Idempotency.run} answered. */
export interface IdempotentOutcome extends IdempotentResponse {
  /** The response is the stored one of an earlier request. */
  replayed: boolean;
}

/** JSON with object keys sorted, so equal payloads hash equally whatever their key order. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value !== null && typeof value === 'object')
    return `{${Object.keys(value)
      .sort()
      .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${canonical((value as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  return JSON.stringify(value) ?? 'null';
}

const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex');

/**
 * Runs requests at most once per (scope, key) within the TTL.
 *
 * @example
 * ```ts
 * const idem = new Idempotency(store);
 * const res = await idem.run(`POST /models/iris/rollback ${actor}`, key, body, async (requestKey) =>
 *   respond(await registry.rollback('iris', 'production', { requestKey })),
 * );
 * ```
 */
export class Idempotency {
  readonly settings: IdempotencySettings;

  constructor(
    private readonly store: ObjectStore,
    settings: Partial<IdempotencySettings> = {},
    private readonly now: () => Date = () => new Date(),
  ) {
    this.settings = { ...idempotencySettingsFromEnv(), ...settings };
  }

  /** The store key of a scope's key (hashed: client keys never become store paths). */
  static recordKey(scope: string, key: string): string {
    return `${IDEMPOTENCY_PREFIX}${sha256(`${scope}\n${key}`)}.json`;
  }

  /**
   * Runs `fn` unless an earlier request with this scope and key completed (its response is
   * returned) or is still running (409); a different payload under the key is a 422. `fn` gets
   * a request id derived from the scope and key, to record with what it writes, so that a retry
   * after a failure that followed the write can recognise the write as its own. When `fn`
   * throws, the record is removed so that the client's retry runs again.
   */
  async run(
    scope: string,
    key: string,
    payload: unknown,
    fn: (requestId: string) => Promise<IdempotentResponse>,
  ): Promise<IdempotentOutcome> {
    assertIdempotencyKey(key);
    const recordKey = Idempotency.recordKey(scope, key);
    const payloadHash = sha256(canonical(payload));
    const requestId = recordKey.slice(IDEMPOTENCY_PREFIX.length, IDEMPOTENCY_PREFIX.length + 32);
    const begun = await this.begin(recordKey, payloadHash);
    if ('replay' in begun) return { ...begun.replay, replayed: true };
    let response: IdempotentResponse;
    try {
      response = await fn(requestId);
    } catch (e) {
      await this.store.delete(recordKey).catch(() => undefined);
      throw e;
    }
    const done: IdempotencyRecord = { ...begun.record, status: 'completed', response };
    // Not saving the response does not undo the change: the client still gets it, and a retry
    // (after the lock) runs again and finds its own write by the request id.
    await this.store
      .put(recordKey, JSON.stringify(done), { contentType: 'application/json', ifMatch: begun.etag })
      .catch(() => undefined);
    return { ...response, replayed: false };
  }

  private fresh(payloadHash: string): IdempotencyRecord {
    const now = this.now().getTime();
    return {
      status: 'in_progress',
      payloadHash,
      createdAt: new Date(now).toISOString(),
      expiresAt: new Date(now + this.settings.ttlSeconds * 1000).toISOString(),
      lockedUntil: new Date(now + this.settings.lockSeconds * 1000).toISOString(),
    };
  }

  /** Takes the key (a new record, or one that expired or was abandoned), or finds what to replay. */
  private async begin(
    recordKey: string,
    payloadHash: string,
  ): Promise<{ record: IdempotencyRecord; etag: string } | { replay: IdempotentResponse }> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const record = this.fresh(payloadHash);
      try {
        return { record, etag: await this.saveInProgress(recordKey, record) };
      } catch (e) {
        if (!(e instanceof IdempotencyRecordExistsError)) throw e;
        const found = e.existing;
        const now = this.now().toISOString();
        const expired = found.doc.expiresAt <= now;
        if (!expired) {
          if (found.doc.payloadHash !== payloadHash) throw new IdempotencyKeyReusedError();
          if (found.doc.status === 'completed' && found.doc.response) return { replay: found.doc.response };
          if (found.doc.lockedUntil > now) throw new IdempotencyInProgressError(found.doc.lockedUntil);
        }
        // Expired, or left in progress by a run that died: take it over if nobody else did first.
        try {
          const { etag } = await this.store.put(recordKey, JSON.stringify(record), {
            contentType: 'application/json',
            ifMatch: found.etag,
          });
          return { record, etag };
        } catch (put) {
          if (!(put instanceof ObjectPreconditionError)) throw put;
        }
      }
    }
    throw new IdempotencyInProgressError(this.now().toISOString());
  }

  /** Create-only write of a new record; a taken key is an {@link IdempotencyRecordExistsError}. */
  private async saveInProgress(recordKey: string, record: IdempotencyRecord): Promise<string> {
    for (;;) {
      const result = await createJson(this.store, recordKey, record);
      if (result.created) return result.etag;
      // Deleted again between the failed write and the read-back: the key is free, try again.
      if (result.existing) throw new IdempotencyRecordExistsError(recordKey, result.existing);
    }
  }
}
