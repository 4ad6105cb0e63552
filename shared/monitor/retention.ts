/**
 * Retention: what maas writes for a while (captures, prediction records, feedback, reports,
 * optimize jobs, idempotency records, async inference files, abandoned uploads, rejected files)
 * expires on a schedule, and model blobs no version references any more are collected.
 *
 * On AWS the bucket's lifecycle rules expire the prefixes (serverless.yml, one rule per prefix
 * with the same days as the settings here); S3 cannot match `models/{name}/optimizations/`, so
 * finished optimize jobs and orphaned blobs are swept by the monitor's scheduled run everywhere.
 * Locally (no lifecycle rules) the same run also expires the prefixes.
 *
 * Everything is listed page by page and deleted as it goes: memory is bounded by one listing
 * page plus, for the blob sweep, the set of blobs older than the grace period.
 *
 * Why blob collection is safe: a registration stores the blob before it commits the manifest
 * that references it, so a blob without a manifest may be a registration in flight. Only blobs
 * older than `blobGraceHours` (at least an hour: far above the dedupe claim lease of a minute and
 * the longest registering function, optimize, at 15 minutes) are candidates; the manifests are
 * read after the candidates were chosen (a registration that wrote a candidate's blob committed
 * before that); a blob whose content hash has a dedupe claim (`models/{name}/sha256/{hex}.json`)
 * written within the grace period, or an unsettled claim not older than it, is kept; and each
 * candidate's age is checked again right before its delete. The bucket's versioning keeps a
 * deleted blob restorable for `noncurrentVersionDays` on AWS.
 */
import type { OptimizationJob } from '../optimize/jobs';
import { IDEMPOTENCY_PREFIX } from '../registry/idempotency';
import { layout } from '../registry/layout';
import type { ModelVersion } from '../registry/types';
import type { SettingsReader } from '../settings';
import { ObjectNotFoundError, type ObjectStore } from '../store';
import { KEEP, updateJson } from '../store/documents';
import { mapLimit } from '../util/concurrency';

/** How long each kind of record is kept (settings `MAAS_RETENTION_*`). */
export interface RetentionSettings {
  /** `monitoring/captures/` (MAAS_RETENTION_CAPTURES_DAYS, 30). */
  capturesDays: number;
  /** `monitoring/predictions/`, what feedback joins to (MAAS_RETENTION_PREDICTIONS_DAYS, 8: above the 7-day feedback window). */
  predictionsDays: number;
  /** `monitoring/feedback/` (MAAS_RETENTION_FEEDBACK_DAYS, 90). */
  feedbackDays: number;
  /** `monitoring/reports/`, `latest.json` included (MAAS_RETENTION_REPORTS_DAYS, 90). */
  reportsDays: number;
  /** Finished optimize jobs, `models/{name}/optimizations/` (MAAS_RETENTION_OPTIMIZE_JOBS_DAYS, 30). */
  optimizeJobsDays: number;
  /** `async/` (MAAS_RETENTION_ASYNC_DAYS, 7). */
  asyncDays: number;
  /** `uploads/`, presigned uploads never registered (MAAS_RETENTION_UPLOADS_DAYS, 2). */
  uploadsDays: number;
  /** `rejected/` (MAAS_RETENTION_REJECTED_DAYS, 30). */
  rejectedDays: number;
  /** `idempotency/`: records older than their TTL (MAAS_IDEMPOTENCY_TTL_SECONDS, a day). */
  idempotencyTtlSeconds: number;
  /** Unreferenced blobs older than this are deleted (MAAS_BLOB_GC_GRACE_HOURS, 24, at least 1). */
  blobGraceHours: number;
  /** The sweep runs at most once per this many minutes (MAAS_RETENTION_EVERY_MINUTES, 360). */
  everyMinutes: number;
}

/**
 * The retention settings through a caller's reader.
 *
 * @example
 * ```ts
 * const settings = readSettings((r) => readRetentionSettings(r));
 * ```
 */
export function readRetentionSettings(env: SettingsReader): RetentionSettings {
  const days = (key: string, defaultValue: number): number =>
    env.getNumberFromEnv({ key, defaultValue, min: 1, max: 36_500, integer: true });
  return {
    capturesDays: days('MAAS_RETENTION_CAPTURES_DAYS', 30),
    predictionsDays: days('MAAS_RETENTION_PREDICTIONS_DAYS', 8),
    feedbackDays: days('MAAS_RETENTION_FEEDBACK_DAYS', 90),
    reportsDays: days('MAAS_RETENTION_REPORTS_DAYS', 90),
    optimizeJobsDays: days('MAAS_RETENTION_OPTIMIZE_JOBS_DAYS', 30),
    asyncDays: days('MAAS_RETENTION_ASYNC_DAYS', 7),
    uploadsDays: days('MAAS_RETENTION_UPLOADS_DAYS', 2),
    rejectedDays: days('MAAS_RETENTION_REJECTED_DAYS', 30),
    idempotencyTtlSeconds: env.getNumberFromEnv({
      key: 'MAAS_IDEMPOTENCY_TTL_SECONDS',
      defaultValue: 86_400,
      min: 1,
      integer: true,
    }),
    blobGraceHours: env.getNumberFromEnv({
      key: 'MAAS_BLOB_GC_GRACE_HOURS',
      defaultValue: 24,
      min: 1,
      integer: true,
    }),
    everyMinutes: env.getNumberFromEnv({
      key: 'MAAS_RETENTION_EVERY_MINUTES',
      defaultValue: 360,
      min: 0,
      integer: true,
    }),
  };
}

/** One prefix and how long its objects live (by last-modified time). */
export interface PrefixRule {
  prefix: string;
  maxAgeMs: number;
}

const DAY_MS = 86_400_000;

/**
 * The prefix rules the bucket's lifecycle configuration implements on AWS, for stores without one.
 *
 * @example
 * ```ts
 * prefixRules(settings).find((r) => r.prefix === 'monitoring/captures/'); // { maxAgeMs: 30 days }
 * ```
 */
export function prefixRules(s: RetentionSettings): PrefixRule[] {
  return [
    { prefix: 'monitoring/captures/', maxAgeMs: s.capturesDays * DAY_MS },
    { prefix: 'monitoring/predictions/', maxAgeMs: s.predictionsDays * DAY_MS },
    { prefix: 'monitoring/feedback/', maxAgeMs: s.feedbackDays * DAY_MS },
    { prefix: 'monitoring/reports/', maxAgeMs: s.reportsDays * DAY_MS },
    { prefix: 'async/', maxAgeMs: s.asyncDays * DAY_MS },
    { prefix: 'uploads/', maxAgeMs: s.uploadsDays * DAY_MS },
    // What a registration that died mid-stream left (it runs at most 15 minutes; AWS: 1 day too).
    { prefix: layout.stagingPrefix, maxAgeMs: DAY_MS },
    { prefix: 'rejected/', maxAgeMs: s.rejectedDays * DAY_MS },
    // A record's expiresAt is its creation plus the TTL, and creation precedes its last write.
    { prefix: IDEMPOTENCY_PREFIX, maxAgeMs: s.idempotencyTtlSeconds * 1000 },
  ];
}

/** Options shared by the sweeps. */
export interface SweepOptions {
  now?: () => Date;
  /** Stop starting new work after this epoch-ms time (what is left waits for the next run). */
  deadlineMs?: number;
  /** Store requests in flight (default 8). */
  concurrency?: number;
}

/** What {@link expirePrefixes} did. */
export interface PrefixSweepResult {
  /** Objects deleted per prefix. */
  deleted: Record<string, number>;
  /** False when the deadline stopped it early. */
  complete: boolean;
}

/**
 * Deletes the objects under each rule's prefix whose last modification is older than its age.
 *
 * @example
 * ```ts
 * const { deleted } = await expirePrefixes(store, prefixRules(settings));
 * ```
 */
export async function expirePrefixes(
  store: ObjectStore,
  rules: readonly PrefixRule[],
  options: SweepOptions = {},
): Promise<PrefixSweepResult> {
  const now = (options.now ?? (() => new Date()))().getTime();
  const deleted: Record<string, number> = {};
  for (const rule of rules) {
    deleted[rule.prefix] = 0;
    let token: string | undefined;
    do {
      if (pastDeadline(options)) return { deleted, complete: false };
      const page = await store.list({ prefix: rule.prefix, ...(token ? { continuationToken: token } : {}) });
      const old = page.objects.filter((o) => now - o.lastModified.getTime() > rule.maxAgeMs);
      await mapLimit(old, options.concurrency ?? 8, (o) => store.delete(o.key));
      deleted[rule.prefix] = (deleted[rule.prefix] ?? 0) + old.length;
      token = page.nextToken;
    } while (token);
  }
  return { deleted, complete: true };
}

const FINISHED: ReadonlySet<OptimizationJob['status']> = new Set(['succeeded', 'failed', 'rejected']);
const JOB_RECORD = /^(opt-[0-9a-z]+-[0-9a-f]+)\.json$/;

/**
 * Deletes finished optimize jobs (record and saved reference inputs) last written more than
 * `maxAgeMs` ago. Queued and running jobs stay whatever their age (the optimize sweep owns them).
 *
 * @example
 * ```ts
 * const { deleted } = await expireOptimizeJobs(store, 30 * 86_400_000);
 * ```
 */
export async function expireOptimizeJobs(
  store: ObjectStore,
  maxAgeMs: number,
  options: SweepOptions = {},
): Promise<{ deleted: number; complete: boolean }> {
  const now = (options.now ?? (() => new Date()))().getTime();
  let deleted = 0;
  for await (const name of modelNames(store)) {
    if (pastDeadline(options)) return { deleted, complete: false };
    const prefix = `models/${name}/optimizations/`;
    let token: string | undefined;
    do {
      const page = await store.list({ prefix, ...(token ? { continuationToken: token } : {}) });
      const old = page.objects.filter(
        (o) => JOB_RECORD.test(o.key.slice(prefix.length)) && now - o.lastModified.getTime() > maxAgeMs,
      );
      const results = await mapLimit(old, options.concurrency ?? 8, async (o) => {
        const record = await store
          .get(o.key)
          .then((r) => JSON.parse(r.body.toString('utf8')) as OptimizationJob)
          .catch(() => undefined);
        if (!record || !FINISHED.has(record.status)) return 0;
        // Inputs first: a record never points at inputs that are gone while it is still listed.
        await store.delete(o.key.replace(/\.json$/, '.inputs.json'));
        await store.delete(o.key);
        return 1;
      });
      deleted += results.reduce<number>((a, b) => a + b, 0);
      token = page.nextToken;
    } while (token);
  }
  return { deleted, complete: true };
}

/** What {@link collectOrphanBlobs} did. */
export interface BlobSweepResult {
  /** Blobs older than the grace period (candidates). */
  candidates: number;
  /** Keys deleted. */
  deleted: string[];
  /** Candidates kept because a recent or unsettled dedupe claim names their content. */
  claimed: number;
  /** False when the deadline stopped the reference scan: nothing was deleted then. */
  complete: boolean;
}

/** `blobs/sha256/{hex}.onnx` or `….bin` (bundle data files) → hex. */
const BLOB_KEY = /^blobs\/sha256\/([0-9a-f]{64})\.[a-z0-9]+$/;

/**
 * Deletes blobs older than `graceMs` that no version's manifest references (its `blobKey` or a
 * bundle file's) and no recent dedupe claim names: see the module comment for why this is safe
 * against registrations in flight.
 *
 * @example
 * ```ts
 * const { deleted } = await collectOrphanBlobs(store, { graceMs: 24 * 3_600_000 });
 * ```
 */
export async function collectOrphanBlobs(
  store: ObjectStore,
  options: SweepOptions & { graceMs: number },
): Promise<BlobSweepResult> {
  const clock = options.now ?? (() => new Date());
  const chosenAt = clock().getTime();
  const concurrency = options.concurrency ?? 8;
  // 1. Candidates: old blobs. Chosen before any manifest is read (see the module comment).
  const candidates = new Map<string, string>(); // key -> hex
  let token: string | undefined;
  do {
    const page = await store.list({ prefix: 'blobs/', ...(token ? { continuationToken: token } : {}) });
    for (const o of page.objects) {
      const hex = BLOB_KEY.exec(o.key)?.[1];
      if (hex && chosenAt - o.lastModified.getTime() > options.graceMs) candidates.set(o.key, hex);
    }
    token = page.nextToken;
  } while (token);
  const result: BlobSweepResult = { candidates: candidates.size, deleted: [], claimed: 0, complete: true };
  if (candidates.size === 0) return result;
  const hexes = new Set(candidates.values());

  // 2. References: every manifest; and dedupe claims on candidate content.
  const claims: { key: string; lastModified: Date }[] = [];
  for await (const name of modelNames(store)) {
    if (pastDeadline(options)) return { ...result, complete: false };
    await forEachObject(store, layout.versionsPrefix(name), async (objects) => {
      await mapLimit(objects, concurrency, async (o) => {
        const manifest = await store
          .get(o.key)
          .then((r) => JSON.parse(r.body.toString('utf8')) as ModelVersion)
          .catch((e: unknown) => {
            if (e instanceof ObjectNotFoundError) return undefined;
            throw e; // an unreadable manifest may reference anything: stop rather than guess
          });
        if (!manifest) return;
        candidates.delete(manifest.blobKey);
        for (const file of manifest.files ?? []) candidates.delete(file.blobKey);
      });
    });
    await forEachObject(store, `models/${name}/sha256/`, async (objects) => {
      for (const o of objects) {
        const hex = /([0-9a-f]{64})\.json$/.exec(o.key)?.[1];
        if (hex && hexes.has(hex)) claims.push(o);
      }
    });
  }
  if (candidates.size === 0) return result;

  // 3. Claims: a registration in flight holds one (unsettled, recent) on its content.
  const protectedHex = new Set<string>();
  await mapLimit(claims, concurrency, async (claim) => {
    const hex = /([0-9a-f]{64})\.json$/.exec(claim.key)?.[1] as string;
    const now = clock().getTime();
    if (now - claim.lastModified.getTime() <= options.graceMs) {
      protectedHex.add(hex);
      return;
    }
    const doc = await store
      .get(claim.key)
      .then((r) => JSON.parse(r.body.toString('utf8')) as { version?: number; claimedAt?: string })
      .catch(() => undefined);
    if (doc && doc.version === undefined && now - Date.parse(doc.claimedAt ?? '') <= options.graceMs)
      protectedHex.add(hex);
  });

  // 4. Delete, re-checking each blob's age right before (a registration may have rewritten it).
  await mapLimit([...candidates], concurrency, async ([key, hex]) => {
    if (protectedHex.has(hex)) {
      result.claimed++;
      return;
    }
    const info = await store.head(key).catch(() => undefined);
    if (!info || clock().getTime() - info.lastModified.getTime() <= options.graceMs) return;
    await store.delete(key);
    result.deleted.push(key);
  });
  result.deleted.sort();
  return result;
}

/** What {@link sweepRetention} did. */
export interface RetentionResult {
  prefixes?: PrefixSweepResult;
  optimizeJobs: { deleted: number; complete: boolean };
  blobs: BlobSweepResult;
}

/**
 * The monitor's retention pass: prefix expiry (only where no lifecycle rules do it, `prefixes`),
 * finished optimize jobs and orphaned blobs.
 *
 * @example
 * ```ts
 * await sweepRetention(store, readSettings(readRetentionSettings), { prefixes: true });
 * ```
 */
export async function sweepRetention(
  store: ObjectStore,
  settings: RetentionSettings,
  options: SweepOptions & { prefixes: boolean },
): Promise<RetentionResult> {
  const prefixes = options.prefixes ? await expirePrefixes(store, prefixRules(settings), options) : undefined;
  const optimizeJobs = await expireOptimizeJobs(store, settings.optimizeJobsDays * DAY_MS, options);
  const blobs = await collectOrphanBlobs(store, { ...options, graceMs: settings.blobGraceHours * 3_600_000 });
  return { ...(prefixes ? { prefixes } : {}), optimizeJobs, blobs };
}

/** Where the last sweep's time is kept (one claimant per period). */
export const RETENTION_STATE_KEY = 'monitoring/state/retention.json';

/**
 * Claims this period's sweep: true for exactly one caller once the last claimed sweep is
 * `everyMinutes` old (scheduled runs every 5 minutes need not list every blob each time).
 *
 * @example
 * ```ts
 * if (await claimRetentionRun(store, settings.everyMinutes)) await sweepRetention(store, settings, { prefixes: true });
 * ```
 */
export async function claimRetentionRun(
  store: ObjectStore,
  everyMinutes: number,
  now: () => Date = () => new Date(),
): Promise<boolean> {
  const at = now();
  const { written } = await updateJson<{ lastRunAt: string }>(store, RETENTION_STATE_KEY, (current) =>
    current && at.getTime() - Date.parse(current.doc.lastRunAt) < everyMinutes * 60_000
      ? KEEP
      : { lastRunAt: at.toISOString() },
  );
  return written;
}

function pastDeadline(options: SweepOptions): boolean {
  return options.deadlineMs !== undefined && Date.now() > options.deadlineMs;
}

/** Model names, one listing page at a time. */
async function* modelNames(store: ObjectStore): AsyncGenerator<string> {
  let token: string | undefined;
  do {
    const page = await store.list({
      prefix: layout.modelsPrefix,
      delimiter: '/',
      ...(token ? { continuationToken: token } : {}),
    });
    for (const p of page.commonPrefixes) yield p.slice(layout.modelsPrefix.length, -1);
    token = page.nextToken;
  } while (token);
}

async function forEachObject(
  store: ObjectStore,
  prefix: string,
  fn: (objects: { key: string; lastModified: Date }[]) => Promise<void>,
): Promise<void> {
  let token: string | undefined;
  do {
    const page = await store.list({ prefix, ...(token ? { continuationToken: token } : {}) });
    await fn(page.objects);
    token = page.nextToken;
  } while (token);
}
