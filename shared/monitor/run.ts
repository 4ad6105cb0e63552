import { randomBytes } from 'node:crypto';
import type { ModelRegistry } from '../registry/model-registry';
import type { AliasRecord } from '../registry/types';
import { type ObjectInfoSummary, ObjectNotFoundError, type ObjectStore } from '../store';
import { DocumentConflictError, KEEP, readJson, type StoredDocument, updateJson } from '../store/documents';
import { mapLimit } from '../util/concurrency';
import { type BaselineDoc, extendTrafficBaseline, readBaseline } from './baseline';
import { modelsWithMonitoringData } from './fanout';
import type { FeedbackFile } from './feedback';
import { monitoringLayout, timeKey } from './layout';
import { metricPoints } from './metric-points';
import type { MonitorMetricsSink } from './metrics-sink';
import { effectivePolicy, type RollbackPolicy } from './policy';
import { FeedbackScore, type MonitorReport, type VersionReport, versionReport, writeReport } from './report';
import { applyRollbacks, recordBreaches } from './rollback-actions';
import { evaluateRollbacks, type RoleEvaluation } from './rollback-evaluation';
import {
  type CaptureFile,
  emptyVersionSummary,
  mergeVersionSummary,
  type VersionSummary,
  versionSummaryFromJson,
} from './summary';

/** What the monitor remembers per model between runs (compare-and-swapped: the watermark). */
export interface MonitorState {
  /**
   * Every capture key (relative to the model's capture prefix) up to this one is merged; keys
   * after it are merged iff listed in `captureSeen`. It trails the cutoff by `lateSeconds`, so a
   * capture write that lands late (a retry, a slow container) is still merged, exactly once.
   */
  captureAfter: string;
  /** Capture keys after `captureAfter` already merged (absent in states written before it existed). */
  captureSeen?: string[];
  /** The same for feedback keys (relative to the model's feedback prefix). */
  feedbackAfter: string;
  feedbackSeen?: string[];
  /** Windows processed so far. */
  window: number;
  /** Consecutive breaching windows per `{alias}/{role}/{version}`. */
  breaches: Record<string, number>;
  lastRunId: string;
  updatedAt: string;
  /** End of the last window (ISO). */
  lastCutoff: string;
}

export interface MonitorOptions {
  store: ObjectStore;
  registry: ModelRegistry;
  sink: MonitorMetricsSink;
  /** CloudWatch namespace (default `maas`). */
  namespace?: string;
  /** Captures younger than this are left for the next run, seconds (default 120): covers flushes still being written. */
  graceSeconds?: number;
  /**
   * How long after its key time a capture (or feedback) file that lands late is still merged,
   * seconds (default 900). Each file is merged once: the state remembers the keys of that span.
   */
  lateSeconds?: number;
  /** Requests a traffic baseline is built from (default 1000). */
  baselineRequests?: number;
  /** Rollback policy defaults (a model's stored override applies on top). */
  policy: RollbackPolicy;
  /** Restrict the run to these models (default: every model with captures or feedback). */
  models?: string[];
  /** Coarse groups PSI/JS are computed on (default 10: baseline deciles). */
  driftGroups?: number;
  /** Capture (and feedback) objects merged per model per run at most; a backlog beyond is left for the next runs (default 5000). */
  maxFiles?: number;
  /**
   * The run's time: its cutoff is `now() − graceSeconds`. Batches of one scheduled run share it,
   * so a batch delivered twice merges nothing the second time (shared/monitor/fanout.ts).
   */
  now?: () => Date;
  runId?: string;
  /** Wall-clock time (epoch ms) after which no further model is started; those left are in `remaining`. */
  deadline?: number;
  logger?: (message: string, details?: unknown) => void;
}

export interface ModelRunResult {
  model: string;
  /** `processed`: a window was merged; `idle`: nothing new; `skipped`: other runs kept winning the watermark; `failed`: see `error`. */
  status: 'processed' | 'idle' | 'skipped' | 'failed';
  /** Why the model failed (the other models of the run still went ahead). */
  error?: string;
  /** Times this run lost the watermark swap to a concurrent run and re-read it. */
  conflicts: number;
  reportKey?: string;
  report?: MonitorReport;
}

export interface MonitorRunResult {
  runId: string;
  startedAt: string;
  models: ModelRunResult[];
  /** Models not started because the `deadline` had passed (absent when every model had its turn). */
  remaining?: string[];
}

const defaults = {
  namespace: 'maas',
  graceSeconds: 120,
  lateSeconds: 900,
  baselineRequests: 1000,
  driftGroups: 10,
  maxFiles: 5000,
};
const READ_CONCURRENCY = 8;
const STATE_ATTEMPTS = 4;

/**
 * One monitor run: for each model with captured traffic, merges every capture and feedback
 * object that arrived since the model's watermark (up to now − grace), computes per-version
 * health, drift and quality, advances the watermark by compare-and-swap, then (only if that
 * swap won) extends traffic baselines, applies automatic rollbacks, pushes metrics and writes
 * the report.
 *
 * At most once: a run's window is the key range (watermark, cutoff]; the swap of the state
 * object from the etag the run read to the new watermark succeeds for only one of several
 * overlapping runs. A loser re-reads the state and merges only what lies after the winner's
 * watermark, so no capture is counted in two reports or two metric pushes. A run that dies
 * after its swap loses that window's report and metrics: at most once beats counting twice.
 *
 * @example
 * ```ts
 * const result = await runMonitor({ store, registry, sink: createMonitorMetricsSink(), policy: policyFromEnv() });
 * for (const m of result.models) console.log(m.model, m.status, m.reportKey);
 * ```
 */
export async function runMonitor(options: MonitorOptions): Promise<MonitorRunResult> {
  const o = { ...defaults, ...stripUndefined(options) };
  const now = options.now ?? (() => new Date());
  const runId = options.runId ?? newRunId(now());
  const startedAt = now().toISOString();
  const models: Iterable<string> | AsyncIterable<string> =
    options.models ?? modelsWithMonitoringData(o.store);
  const results: ModelRunResult[] = [];
  const remaining: string[] = [];
  for await (const model of models) {
    // Past the deadline no model is started: the caller hands the rest on (same cutoff, so no double count).
    if (options.deadline !== undefined && (remaining.length > 0 || Date.now() >= options.deadline)) {
      remaining.push(model);
      continue;
    }
    try {
      results.push(await monitorModel(model, { ...o, now, runId }));
    } catch (e) {
      // One model's bad data or policy must not stop the others; the caller decides how to surface it.
      options.logger?.(`monitor failed for ${model}`, String((e as Error)?.stack ?? e));
      results.push({ model, status: 'failed', conflicts: 0, error: String((e as Error)?.message ?? e) });
    }
  }
  return { runId, startedAt, models: results, ...(remaining.length > 0 ? { remaining } : {}) };
}

type ResolvedOptions = Required<
  Pick<
    MonitorOptions,
    | 'store'
    | 'registry'
    | 'sink'
    | 'namespace'
    | 'graceSeconds'
    | 'lateSeconds'
    | 'baselineRequests'
    | 'policy'
    | 'driftGroups'
    | 'maxFiles'
  >
> & {
  now: () => Date;
  runId: string;
};

/** Everything one attempt at a window computed before its watermark swap. */
interface WindowWork {
  now: Date;
  cutoff: number;
  previous: MonitorState;
  captureKeys: ObjectInfoSummary[];
  feedbackKeys: ObjectInfoSummary[];
  /** The watermarks the swap writes (see {@link MonitorState.captureAfter}). */
  captureCursor: SeenCursor;
  feedbackCursor: SeenCursor;
  summaries: Map<number, VersionSummary>;
  /** Per version, the traffic that came through any alias (traffic baselines are built from it). */
  aliasTraffic: Map<number, VersionSummary>;
  feedbackRecords: number;
  aliases: AliasRecord[];
  /** Kept with their etags: extending a traffic baseline after the swap reuses this read. */
  baselines: Map<number, StoredDocument<BaselineDoc> | undefined>;
  versions: Record<string, VersionReport>;
  evaluations: RoleEvaluation[];
  /** The breach streaks the new watermark carries. */
  breaches: Record<string, number>;
}

const INITIAL_STATE: MonitorState = {
  captureAfter: '',
  feedbackAfter: '',
  window: 0,
  breaches: {},
  lastRunId: '',
  updatedAt: '',
  lastCutoff: '',
};

async function monitorModel(model: string, o: ResolvedOptions): Promise<ModelRunResult> {
  const { store } = o;
  const policy = await effectivePolicy(store, model, o.policy);
  let work: WindowWork | undefined;
  let conflicts = 0;
  try {
    // The change only reads (listings, captures, baselines): safe to compute again after a lost swap.
    const swap = await updateJson<MonitorState>(
      store,
      monitoringLayout.state(model),
      async (current, attempt) => {
        conflicts = attempt;
        work = await readWindow(model, current?.doc ?? INITIAL_STATE, policy, o);
        if (!work) return KEEP;
        return {
          captureAfter: work.captureCursor.after,
          captureSeen: work.captureCursor.seen,
          feedbackAfter: work.feedbackCursor.after,
          feedbackSeen: work.feedbackCursor.seen,
          window: work.previous.window + 1,
          breaches: work.breaches,
          lastRunId: o.runId,
          updatedAt: work.now.toISOString(),
          lastCutoff: new Date(work.cutoff).toISOString(),
        };
      },
      { attempts: STATE_ATTEMPTS },
    );
    if (!swap.written || !work || !swap.doc) return { model, status: 'idle', conflicts };
    return await finishWindow(model, work, swap.doc, policy, conflicts, o);
  } catch (e) {
    // Other runs kept taking the window: theirs is counted, this run has nothing left to add.
    if (e instanceof DocumentConflictError) return { model, status: 'skipped', conflicts: STATE_ATTEMPTS };
    throw e;
  }
}

/** Lists and merges what arrived after the watermark; undefined when nothing did. */
async function readWindow(
  model: string,
  previous: MonitorState,
  policy: RollbackPolicy,
  o: ResolvedOptions,
): Promise<WindowWork | undefined> {
  const { store } = o;
  const now = o.now();
  const cutoff = now.getTime() - o.graceSeconds * 1000;
  const floor = timeKey(cutoff - o.lateSeconds * 1000);
  const [captureWindow, feedbackWindow] = await Promise.all([
    listWindow(
      store,
      monitoringLayout.capturesPrefix(model),
      { after: previous.captureAfter, seen: previous.captureSeen ?? [] },
      floor,
      cutoff,
      o.maxFiles,
    ),
    listWindow(
      store,
      monitoringLayout.feedbackPrefix(model),
      { after: previous.feedbackAfter, seen: previous.feedbackSeen ?? [] },
      floor,
      cutoff,
      o.maxFiles,
    ),
  ]);
  const captureKeys = captureWindow.keys;
  const feedbackKeys = feedbackWindow.keys;
  if (captureKeys.length === 0 && feedbackKeys.length === 0) return undefined;
  // Feedback is scored file by file, like captures below: nothing of a file outlives its turn.
  const feedbackScore = new FeedbackScore();
  await mapLimit(feedbackKeys, READ_CONCURRENCY, async (k) => {
    feedbackScore.add((await readJson<FeedbackFile>(store, k.key))?.doc.records ?? []);
  });
  const summaries = new Map<number, VersionSummary>();
  /** Only traffic routed through an alias: what rollbacks and traffic baselines are built from. */
  const byAlias = new Map<string, Map<number, VersionSummary>>();
  const aliasTraffic = new Map<number, VersionSummary>();
  const add = (into: Map<number, VersionSummary>, v: string, raw: unknown) => {
    const version = Number(v);
    into.set(
      version,
      mergeVersionSummary(into.get(version) ?? emptyVersionSummary(), versionSummaryFromJson(raw)),
    );
  };
  // Each file is merged as soon as it is read and then dropped: a window's memory is its summaries
  // (bounded by versions × features), never the sum of its capture files.
  await mapLimit(captureKeys, READ_CONCURRENCY, async (k) => {
    const c = await readJson<CaptureFile>(store, k.key);
    for (const [v, raw] of Object.entries(c?.doc.versions ?? {})) add(summaries, v, raw);
    for (const [alias, versions] of Object.entries(c?.doc.routes ?? {})) {
      let into = byAlias.get(alias);
      if (!into) {
        into = new Map();
        byAlias.set(alias, into);
      }
      for (const [v, raw] of Object.entries(versions ?? {})) {
        add(into, v, raw);
        add(aliasTraffic, v, raw);
      }
    }
  });
  const quality = feedbackScore.result();
  const aliases = await o.registry.listAliases(model).catch((e: unknown) => {
    if (e instanceof ObjectNotFoundError) return [] as AliasRecord[];
    throw e;
  });
  const versionsSeen = [...new Set<number>([...summaries.keys(), ...quality.keys()])].sort((a, b) => a - b);
  const baselines = new Map<number, StoredDocument<BaselineDoc> | undefined>();
  await Promise.all(versionsSeen.map(async (v) => baselines.set(v, await readBaseline(store, model, v))));
  const versions: Record<string, VersionReport> = {};
  for (const v of versionsSeen)
    versions[v] = versionReport(
      summaries.get(v) ?? emptyVersionSummary(),
      baselines.get(v)?.doc,
      quality.get(v),
      o.driftGroups,
    );
  // Each alias is judged on its own traffic only; quality (feedback, API-key protected) is per version.
  const aliasReports = new Map<string, Record<string, VersionReport>>();
  for (const a of aliases) {
    const traffic = byAlias.get(a.alias);
    const reports: Record<string, VersionReport> = {};
    for (const v of [a.version, ...(a.canary ? [a.canary.version] : [])])
      reports[v] = versionReport(
        traffic?.get(v) ?? emptyVersionSummary(),
        baselines.get(v)?.doc,
        quality.get(v),
        o.driftGroups,
      );
    aliasReports.set(a.alias, reports);
  }
  const { evaluations, breaches } = evaluateRollbacks(
    aliases,
    aliasReports,
    new Map([...baselines].map(([v, found]) => [v, found?.doc])),
    previous.breaches,
    policy,
  );
  return {
    now,
    cutoff,
    previous,
    captureKeys,
    feedbackKeys,
    captureCursor: captureWindow.next,
    feedbackCursor: feedbackWindow.next,
    summaries,
    aliasTraffic,
    feedbackRecords: [...quality.values()].reduce((s, q) => s + q.n, 0),
    aliases,
    baselines,
    versions,
    evaluations,
    breaches,
  };
}

/** After the won swap, the window is this run's alone: baselines, rollbacks, metrics, report. */
async function finishWindow(
  model: string,
  work: WindowWork,
  next: MonitorState,
  policy: RollbackPolicy,
  conflicts: number,
  o: ResolvedOptions,
): Promise<ModelRunResult> {
  const { store } = o;
  const { versions, evaluations, captureKeys } = work;
  // Baselines from alias traffic only: direct `/versions/{n}` calls cannot shape what drift is measured against.
  for (const [v, s] of work.aliasTraffic) {
    const found = work.baselines.get(v);
    if (found && (found.doc.source === 'reference' || found.doc.complete)) continue;
    const updated = await extendTrafficBaseline(
      store,
      model,
      v,
      s,
      o.baselineRequests,
      work.now,
      found ?? null,
    );
    const report = versions[v];
    if (updated && report) {
      report.drift.baseline = updated.complete ? 'traffic' : 'building';
      report.drift.baselineRequests = updated.requests;
    }
  }
  await recordBreaches(o.registry, model, evaluations, o.runId, work.now);
  const actions = await applyRollbacks(o.registry, model, work.aliases, evaluations, policy, o.runId);
  const points = metricPoints(
    model,
    versions,
    evaluations,
    new Date(work.cutoff),
    new Map([...work.summaries].map(([v, x]) => [v, x.latencyMs])),
    new Map(
      [...work.summaries].flatMap(([v, x]) =>
        x.generation ? [[v, x.generation.timeToFirstTokenMs] as const] : [],
      ),
    ),
  );
  const sinkResult = await o.sink.put(o.namespace, points);
  const report: MonitorReport = {
    format: 'maas.monitor-report/1',
    runId: o.runId,
    model,
    window: { number: next.window, from: work.previous.lastCutoff || null, to: next.lastCutoff },
    generatedAt: o.now().toISOString(),
    captures: {
      files: captureKeys.length,
      ...(captureKeys[0] ? { firstKey: captureKeys[0].key } : {}),
      ...(captureKeys.length > 0 ? { lastKey: captureKeys.at(-1)!.key } : {}),
    },
    feedback: { files: work.feedbackKeys.length, records: work.feedbackRecords },
    policy,
    versions,
    evaluations,
    actions,
    metrics: { sink: o.sink.kind, namespace: o.namespace, points: points.length, ...sinkResult },
  };
  const reportKey = await writeReport(store, report);
  return { model, status: 'processed', conflicts, reportKey, report };
}

/** A watermark that tolerates late writes: every key ≤ `after` is merged, and the keys in `seen` (all > `after`). */
interface SeenCursor {
  after: string;
  seen: string[];
}

/** Most keys a cursor remembers past its `after`; beyond, `after` moves up (older late arrivals are then not merged). */
const MAX_SEEN_KEYS = 20_000;

/**
 * The keys not merged yet (after `cursor.after`, not in `cursor.seen`) written no later than
 * `cutoff` (their time prefix), in order, at most `limit`; and the cursor once they are merged:
 * its `after` moves up to `floor` (the oldest key time still accepted late) but never past a key
 * left unlisted by `limit`.
 */
async function listWindow(
  store: ObjectStore,
  prefix: string,
  cursor: SeenCursor,
  floor: string,
  cutoff: number,
  limit: number,
): Promise<{ keys: ObjectInfoSummary[]; next: SeenCursor }> {
  const bound = prefix + timeKey(cutoff + 1);
  const seen = new Set(cursor.seen);
  const keys: ObjectInfoSummary[] = [];
  let truncated = false;
  let token: string | undefined;
  outer: do {
    const page = await store.list({
      prefix,
      ...(token ? { continuationToken: token } : cursor.after ? { startAfter: prefix + cursor.after } : {}),
    });
    for (const o of page.objects) {
      if (o.key >= bound) break outer;
      if (seen.has(o.key.slice(prefix.length))) continue;
      if (keys.length >= limit) {
        truncated = true;
        break outer;
      }
      keys.push(o);
    }
    token = page.nextToken;
  } while (token);
  const merged = [...seen, ...keys.map((k) => k.key.slice(prefix.length))].sort();
  let after = cursor.after > floor ? cursor.after : floor;
  const lastListed = keys.at(-1)?.key.slice(prefix.length);
  if (truncated && lastListed !== undefined && lastListed < after) after = lastListed;
  let kept = merged.filter((k) => k > after);
  if (kept.length > MAX_SEEN_KEYS) {
    after = kept[kept.length - MAX_SEEN_KEYS - 1]!;
    kept = kept.slice(-MAX_SEEN_KEYS);
  }
  return { keys, next: { after, seen: kept } };
}

/**
 * A fresh run id: the run's time (sortable) and 32 random bits.
 * @example
 * newRunId(new Date()); // '1764671234567-9f3a01bc'
 */
export function newRunId(at: Date): string {
  return `${timeKey(at.getTime())}-${randomBytes(4).toString('hex')}`;
}

function stripUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}
