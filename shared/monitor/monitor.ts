import { randomBytes } from 'node:crypto';
import type { StandardUnit } from '@aws-sdk/client-cloudwatch';
import type { ModelRegistry } from '../registry/model-registry';
import type { AliasRecord } from '../registry/types';
import {
  listAll,
  type ObjectInfoSummary,
  ObjectNotFoundError,
  ObjectPreconditionError,
  type ObjectStore,
} from '../store';
import { readJson } from '../store/documents';
import { mapLimit } from '../util/concurrency';
import { type BaselineDoc, baselineHistogram, extendTrafficBaseline, readBaseline } from './baseline';
import { compareHistograms, type DriftStats } from './drift';
import type { FeedbackFile } from './feedback';
import { binMidpoint, type Histogram, quantile, sortedBins } from './histogram';
import { monitoringLayout, timeKey } from './layout';
import { effectivePolicy, type RollbackPolicy } from './policy';
import type { MetricPoint, MetricSink, SinkResult } from './sink';
import {
  type CaptureFile,
  emptyVersionSummary,
  mergeVersionSummary,
  type VersionSummary,
  versionSummaryFromJson,
} from './summary';

/** What the monitor remembers per model between runs (compare-and-swapped: the watermark). */
export interface MonitorState {
  /** Last capture key (relative to the model's capture prefix) merged. */
  captureAfter: string;
  /** Last feedback key (relative to the model's feedback prefix) merged. */
  feedbackAfter: string;
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
  sink: MetricSink;
  /** CloudWatch namespace (default `maas`). */
  namespace?: string;
  /** Captures younger than this are left for the next run, seconds (default 120): covers flushes still being written. */
  graceSeconds?: number;
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
  now?: () => Date;
  runId?: string;
  logger?: (message: string, details?: unknown) => void;
}

/** Quality of one version's predictions, from joined feedback. */
export interface QualityStats {
  kind: 'class' | 'value';
  /** Rows scored. */
  n: number;
  accuracy?: number;
  mae?: number;
  rmse?: number;
}

export interface VersionReport {
  requests: number;
  rows: number;
  errors: number;
  clientErrors: number;
  errorRate: number;
  aliases: Record<string, number>;
  latencyMs: { p50: number; p90: number; p99: number; max: number };
  inferenceMs: { p50: number; p90: number; p99: number };
  drift: {
    baseline: 'reference' | 'traffic' | 'building' | 'none';
    baselineRequests: number;
    inputs: Record<string, DriftStats>;
    outputs: Record<string, DriftStats>;
    maxInputPsi: number | null;
    maxOutputPsi: number | null;
  };
  quality?: QualityStats;
  /** Memory of the containers that served the window's requests, bytes (absent without samples). */
  resources?: {
    samples: number;
    rssBytesMean: number;
    rssBytesMax: number;
    sessionBytesMax: number;
    sessionCacheBytesMax: number;
  };
}

export interface RoleEvaluation {
  alias: string;
  role: 'primary' | 'canary';
  version: number;
  evidence: boolean;
  breaches: string[];
  consecutive: number;
  autoRollback: boolean;
}

export interface MonitorAction {
  type: 'canary_removed' | 'rolled_back';
  alias: string;
  version: number;
  to?: number;
  reason: string;
  ok: boolean;
  error?: string;
}

/** The JSON report each run writes per model (`monitoring/reports/{name}/...`). */
export interface MonitorReport {
  format: 'maas.monitor-report/1';
  runId: string;
  model: string;
  window: { number: number; from: string | null; to: string };
  generatedAt: string;
  captures: { files: number; firstKey?: string; lastKey?: string };
  feedback: { files: number; records: number };
  policy: RollbackPolicy;
  versions: Record<string, VersionReport>;
  evaluations: RoleEvaluation[];
  actions: MonitorAction[];
  metrics: { sink: string; namespace: string; points: number } & SinkResult;
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
}

const defaults = {
  namespace: 'maas',
  graceSeconds: 120,
  baselineRequests: 1000,
  driftGroups: 10,
  maxFiles: 5000,
};
const READ_CONCURRENCY = 8;
const STATE_ATTEMPTS = 4;
const ACTOR = 'maas-monitor';

/**
 * One monitor run: for each model with captured traffic, merges every capture and feedback
 * object that arrived since the model's watermark (up to now − grace), computes per-version
 * health, drift and quality, advances the watermark by compare-and-swap, then (only if that
 * swap won) extends traffic baselines, applies automatic rollbacks, pushes metrics and writes
 * the report.
 *
 * Exactly once: a run's window is the key range (watermark, cutoff]; the swap of the state
 * object from the etag the run read to the new watermark succeeds for exactly one of several
 * overlapping runs. A loser re-reads the state and merges only what lies after the winner's
 * watermark, so every capture is counted in exactly one report and one metric push. (A run
 * that dies after its swap loses that window's metrics: at most once beats counting twice.)
 *
 * @example
 * ```ts
 * const result = await runMonitor({ store, registry, sink: createMetricSink(), policy: policyFromEnv() });
 * for (const m of result.models) console.log(m.model, m.status, m.reportKey);
 * ```
 */
export async function runMonitor(options: MonitorOptions): Promise<MonitorRunResult> {
  const o = { ...defaults, ...stripUndefined(options) };
  const now = options.now ?? (() => new Date());
  const runId = options.runId ?? `${timeKey(now().getTime())}-${randomBytes(4).toString('hex')}`;
  const startedAt = now().toISOString();
  const models = options.models ?? (await modelsWithMonitoringData(o.store));
  const results: ModelRunResult[] = [];
  for (const model of models) {
    try {
      results.push(await monitorModel(model, { ...o, now, runId }));
    } catch (e) {
      // One model's bad data or policy must not stop the others; the caller decides how to surface it.
      options.logger?.(`monitor failed for ${model}`, String((e as Error)?.stack ?? e));
      results.push({ model, status: 'failed', conflicts: 0, error: String((e as Error)?.message ?? e) });
    }
  }
  return { runId, startedAt, models: results };
}

type ResolvedOptions = Required<
  Pick<
    MonitorOptions,
    | 'store'
    | 'registry'
    | 'sink'
    | 'namespace'
    | 'graceSeconds'
    | 'baselineRequests'
    | 'policy'
    | 'driftGroups'
    | 'maxFiles'
  >
> & {
  now: () => Date;
  runId: string;
};

async function monitorModel(model: string, o: ResolvedOptions): Promise<ModelRunResult> {
  const { store } = o;
  const policy = await effectivePolicy(store, model, o.policy);
  let conflicts = 0;
  for (let attempt = 0; attempt < STATE_ATTEMPTS; attempt++) {
    const nowDate = o.now();
    const cutoff = nowDate.getTime() - o.graceSeconds * 1000;
    const stateFound = await readJson<MonitorState>(store, monitoringLayout.state(model));
    const state: MonitorState = stateFound?.doc ?? {
      captureAfter: '',
      feedbackAfter: '',
      window: 0,
      breaches: {},
      lastRunId: '',
      updatedAt: '',
      lastCutoff: '',
    };
    const capturePrefix = monitoringLayout.capturesPrefix(model);
    const feedbackPrefix = monitoringLayout.feedbackPrefix(model);
    const [captureKeys, feedbackKeys] = await Promise.all([
      listWindow(store, capturePrefix, state.captureAfter, cutoff, o.maxFiles),
      listWindow(store, feedbackPrefix, state.feedbackAfter, cutoff, o.maxFiles),
    ]);
    if (captureKeys.length === 0 && feedbackKeys.length === 0) return { model, status: 'idle', conflicts };

    const captures = await mapLimit(captureKeys, READ_CONCURRENCY, (k) =>
      readJson<CaptureFile>(store, k.key),
    );
    const feedbackFiles = await mapLimit(feedbackKeys, READ_CONCURRENCY, (k) =>
      readJson<FeedbackFile>(store, k.key),
    );
    const summaries = new Map<number, VersionSummary>();
    for (const c of captures) {
      for (const [v, raw] of Object.entries(c?.doc.versions ?? {})) {
        const version = Number(v);
        summaries.set(
          version,
          mergeVersionSummary(summaries.get(version) ?? emptyVersionSummary(), versionSummaryFromJson(raw)),
        );
      }
    }
    const quality = scoreFeedback(feedbackFiles.flatMap((f) => f?.doc.records ?? []));
    const aliases = await o.registry.listAliases(model).catch((e: unknown) => {
      if (e instanceof ObjectNotFoundError) return [] as AliasRecord[];
      throw e;
    });
    const versionsSeen = new Set<number>([...summaries.keys(), ...quality.keys()]);
    // Kept with their etags: extending a traffic baseline below reuses this read instead of a second get.
    const baselineReads = new Map<number, { doc: BaselineDoc; etag: string } | undefined>();
    await Promise.all(
      [...versionsSeen].map(async (v) => baselineReads.set(v, await readBaseline(store, model, v))),
    );
    const baselines = new Map([...baselineReads].map(([v, found]) => [v, found?.doc]));

    const versions: Record<string, VersionReport> = {};
    for (const v of [...versionsSeen].sort((a, b) => a - b)) {
      versions[v] = versionReport(
        summaries.get(v) ?? emptyVersionSummary(),
        baselines.get(v),
        quality.get(v),
        o.driftGroups,
      );
    }
    const { evaluations, breaches } = evaluate(aliases, versions, baselines, state.breaches, policy);

    const lastCapture = captureKeys.at(-1)?.key.slice(capturePrefix.length);
    const lastFeedback = feedbackKeys.at(-1)?.key.slice(feedbackPrefix.length);
    const next: MonitorState = {
      captureAfter: lastCapture ?? state.captureAfter,
      feedbackAfter: lastFeedback ?? state.feedbackAfter,
      window: state.window + 1,
      breaches,
      lastRunId: o.runId,
      updatedAt: nowDate.toISOString(),
      lastCutoff: new Date(cutoff).toISOString(),
    };
    try {
      await store.put(monitoringLayout.state(model), JSON.stringify(next), {
        contentType: 'application/json',
        ...(stateFound ? { ifMatch: stateFound.etag } : { ifNoneMatch: '*' as const }),
      });
    } catch (e) {
      if (e instanceof ObjectPreconditionError || e instanceof ObjectNotFoundError) {
        conflicts++;
        continue; // another run took this window: re-read and take what is left
      }
      throw e;
    }

    // The window is ours alone from here on.
    for (const [v, s] of summaries) {
      const found = baselineReads.get(v);
      const b = found?.doc;
      if (!b || (b.source === 'traffic' && !b.complete)) {
        const updated = await extendTrafficBaseline(
          store,
          model,
          v,
          s,
          o.baselineRequests,
          nowDate,
          found ?? null,
        );
        const report = versions[v];
        if (updated && report) {
          report.drift.baseline = updated.complete ? 'traffic' : 'building';
          report.drift.baselineRequests = updated.requests;
        }
      }
    }
    await recordBreaches(o.registry, model, evaluations, o.runId, nowDate);
    const actions = await applyRollbacks(o.registry, model, aliases, evaluations, policy, o.runId);
    const points = metricPoints(
      model,
      versions,
      evaluations,
      new Date(cutoff),
      new Map([...summaries].map(([v, x]) => [v, x.latencyMs])),
    );
    const sinkResult = await o.sink.put(o.namespace, points);
    const report: MonitorReport = {
      format: 'maas.monitor-report/1',
      runId: o.runId,
      model,
      window: { number: next.window, from: state.lastCutoff || null, to: next.lastCutoff },
      generatedAt: o.now().toISOString(),
      captures: {
        files: captureKeys.length,
        ...(captureKeys[0] ? { firstKey: captureKeys[0].key } : {}),
        ...(lastCapture ? { lastKey: captureKeys.at(-1)!.key } : {}),
      },
      feedback: { files: feedbackKeys.length, records: [...quality.values()].reduce((s, q) => s + q.n, 0) },
      policy,
      versions,
      evaluations,
      actions,
      metrics: { sink: o.sink.kind, namespace: o.namespace, points: points.length, ...sinkResult },
    };
    const reportKey = monitoringLayout.report(model, next.lastCutoff.replace(/[:.]/g, '-'), o.runId);
    const body = JSON.stringify(report);
    await store.put(reportKey, body, { contentType: 'application/json', ifNoneMatch: '*' });
    await store.put(monitoringLayout.latestReport(model), body, { contentType: 'application/json' });
    return { model, status: 'processed', conflicts, reportKey, report };
  }
  return { model, status: 'skipped', conflicts };
}

/**
 * The latest report of a model (what `maas monitor NAME` prints), or undefined before the first run.
 *
 * @example
 * ```ts
 * const report = await latestReport(store, 'iris');
 * ```
 */
export async function latestReport(store: ObjectStore, model: string): Promise<MonitorReport | undefined> {
  return (await readJson<MonitorReport>(store, monitoringLayout.latestReport(model)))?.doc;
}

function versionReport(
  s: VersionSummary,
  baseline: BaselineDoc | undefined,
  quality: QualityStats | undefined,
  groups: number,
): VersionReport {
  const usable = baseline?.complete;
  const inputs: Record<string, DriftStats> = {};
  const outputs: Record<string, DriftStats> = {};
  if (usable) {
    for (const [k, h] of Object.entries(s.inputs)) {
      const b = baselineHistogram(baseline.inputs, k);
      if (b && h.count > 0) inputs[k] = compareHistograms(b, h, groups);
    }
    for (const [k, h] of Object.entries(s.outputs)) {
      const b = baselineHistogram(baseline.outputs, k);
      if (b && h.count > 0) outputs[k] = compareHistograms(b, h, groups);
    }
  }
  const maxPsi = (d: Record<string, DriftStats>): number | null => {
    const values = Object.values(d)
      .map((x) => x.psi)
      .filter(Number.isFinite);
    return values.length > 0 ? Math.max(...values) : null;
  };
  return {
    requests: s.requests,
    rows: s.rows,
    errors: s.errors,
    clientErrors: s.clientErrors,
    errorRate: s.requests > 0 ? s.errors / s.requests : 0,
    aliases: s.aliases,
    latencyMs: {
      p50: quantile(s.latencyMs, 0.5),
      p90: quantile(s.latencyMs, 0.9),
      p99: quantile(s.latencyMs, 0.99),
      max: s.latencyMs.count > 0 ? s.latencyMs.max : NaN,
    },
    inferenceMs: {
      p50: quantile(s.inferenceMs, 0.5),
      p90: quantile(s.inferenceMs, 0.9),
      p99: quantile(s.inferenceMs, 0.99),
    },
    drift: {
      baseline: !baseline ? 'none' : baseline.complete ? baseline.source : 'building',
      baselineRequests: baseline?.requests ?? 0,
      inputs,
      outputs,
      maxInputPsi: maxPsi(inputs),
      maxOutputPsi: maxPsi(outputs),
    },
    ...(quality ? { quality } : {}),
    ...(s.resources.samples > 0
      ? {
          resources: {
            samples: s.resources.samples,
            rssBytesMean: s.resources.rssBytesSum / s.resources.samples,
            rssBytesMax: s.resources.rssBytesMax,
            sessionBytesMax: s.resources.sessionBytesMax,
            sessionCacheBytesMax: s.resources.sessionCacheBytesMax,
          },
        }
      : {}),
  };
}

/**
 * Scores joined feedback per version: accuracy for classification (predicted class equals
 * the target), MAE and RMSE for regression. Exported for tests and the CLI.
 *
 * @example
 * ```ts
 * scoreFeedback([{ id: 'a', version: 1, kind: 'class', predicted: [2], target: [2], predictedAt: '' }]).get(1); // { kind: 'class', n: 1, accuracy: 1 }
 * ```
 */
export function scoreFeedback(
  records: readonly FeedbackFile['records'][number][],
): Map<number, QualityStats> {
  const acc = new Map<
    number,
    { kind: 'class' | 'value'; n: number; correct: number; abs: number; sq: number }
  >();
  for (const r of records) {
    const a = acc.get(r.version) ?? { kind: r.kind, n: 0, correct: 0, abs: 0, sq: 0 };
    for (let i = 0; i < r.predicted.length && i < r.target.length; i++) {
      const p = r.predicted[i]!;
      const t = r.target[i]!;
      a.n++;
      if (p === t) a.correct++;
      a.abs += Math.abs(p - t);
      a.sq += (p - t) ** 2;
    }
    acc.set(r.version, a);
  }
  const out = new Map<number, QualityStats>();
  for (const [v, a] of acc) {
    if (a.n === 0) continue;
    out.set(
      v,
      a.kind === 'class'
        ? { kind: 'class', n: a.n, accuracy: a.correct / a.n }
        : { kind: 'value', n: a.n, mae: a.abs / a.n, rmse: Math.sqrt(a.sq / a.n) },
    );
  }
  return out;
}

function evaluate(
  aliases: readonly AliasRecord[],
  versions: Record<string, VersionReport>,
  baselines: Map<number, BaselineDoc | undefined>,
  previous: Record<string, number>,
  policy: RollbackPolicy,
): { evaluations: RoleEvaluation[]; breaches: Record<string, number> } {
  const evaluations: RoleEvaluation[] = [];
  const breaches: Record<string, number> = {};
  const t = policy.thresholds;
  for (const a of aliases) {
    const roles: [RoleEvaluation['role'], number][] = [['primary', a.version]];
    if (a.canary) roles.push(['canary', a.canary.version]);
    for (const [role, version] of roles) {
      const key = `${a.alias}/${role}/${version}`;
      const r = versions[version];
      const found: string[] = [];
      const evidence = !!r && r.requests >= policy.minRequests && r.requests > 0;
      if (r && evidence) {
        if (t.errorRate !== undefined && r.errorRate > t.errorRate)
          found.push(`error rate ${fmt(r.errorRate)} > ${t.errorRate}`);
        if (t.p99LatencyMs !== undefined && r.latencyMs.p99 > t.p99LatencyMs)
          found.push(`p99 latency ${fmt(r.latencyMs.p99)} ms > ${t.p99LatencyMs} ms`);
        const psi = Math.max(r.drift.maxInputPsi ?? -Infinity, r.drift.maxOutputPsi ?? -Infinity);
        if (t.psi !== undefined && psi > t.psi) found.push(`PSI ${fmt(psi)} > ${t.psi}`);
        if (
          t.accuracyDrop !== undefined &&
          r.quality?.accuracy !== undefined &&
          r.quality.n >= policy.minFeedback
        ) {
          const ref = role === 'canary' ? versions[a.version]?.quality : undefined;
          const reference =
            role === 'canary'
              ? ref && ref.n >= policy.minFeedback
                ? ref.accuracy
                : undefined
              : baselines.get(version)?.metrics?.accuracy;
          if (reference !== undefined && reference - r.quality.accuracy > t.accuracyDrop) {
            found.push(
              `accuracy ${fmt(r.quality.accuracy)} is ${fmt(reference - r.quality.accuracy)} below ${role === 'canary' ? `primary version ${a.version}` : 'baseline'} (> ${t.accuracyDrop})`,
            );
          }
        }
      }
      const consecutive = !evidence ? (previous[key] ?? 0) : found.length > 0 ? (previous[key] ?? 0) + 1 : 0;
      breaches[key] = consecutive;
      evaluations.push({
        alias: a.alias,
        role,
        version,
        evidence,
        breaches: found,
        consecutive,
        autoRollback: role === 'canary' ? policy.canary : policy.primary,
      });
    }
  }
  return { evaluations, breaches };
}

/**
 * One `monitor_breach` history entry per breaching alias role of this window (published as a
 * `monitor.breach` event). Only the run that won the window gets here, so each breach is written once.
 */
async function recordBreaches(
  registry: ModelRegistry,
  model: string,
  evaluations: readonly RoleEvaluation[],
  runId: string,
  now: Date,
): Promise<void> {
  for (const e of evaluations.filter((x) => x.breaches.length > 0)) {
    await registry.appendEvent(model, {
      type: 'monitor_breach',
      time: now.toISOString(),
      actor: ACTOR,
      alias: e.alias,
      version: e.version,
      reason: e.breaches.join('; '),
      details: { role: e.role, consecutive: e.consecutive, autoRollback: e.autoRollback, runId },
    });
  }
}

async function applyRollbacks(
  registry: ModelRegistry,
  model: string,
  aliases: readonly AliasRecord[],
  evaluations: readonly RoleEvaluation[],
  policy: RollbackPolicy,
  runId: string,
): Promise<MonitorAction[]> {
  const actions: MonitorAction[] = [];
  for (const e of evaluations) {
    if (!e.autoRollback || e.breaches.length === 0 || e.consecutive < policy.windows) continue;
    const alias = aliases.find((a) => a.alias === e.alias);
    if (!alias) continue;
    const reason = `automatic rollback by monitor (run ${runId}): ${e.role} version ${e.version} of alias ${e.alias} breached ${e.breaches.join('; ')} for ${e.consecutive} consecutive windows`;
    try {
      if (e.role === 'canary') {
        // Same primary version, no canary: the split is removed. ifMatch: never undo a move made since we read the alias.
        await registry.setAlias(model, e.alias, alias.version, { ifMatch: alias.etag, actor: ACTOR, reason });
        actions.push({
          type: 'canary_removed',
          alias: e.alias,
          version: e.version,
          to: alias.version,
          reason,
          ok: true,
        });
      } else {
        // ifMatch: a promotion made since the window was read is never undone (412 instead).
        const moved = await registry.rollback(model, e.alias, { actor: ACTOR, reason, ifMatch: alias.etag });
        actions.push({
          type: 'rolled_back',
          alias: e.alias,
          version: e.version,
          to: moved.version,
          reason,
          ok: true,
        });
      }
    } catch (err) {
      actions.push({
        type: e.role === 'canary' ? 'canary_removed' : 'rolled_back',
        alias: e.alias,
        version: e.version,
        reason,
        ok: false,
        error: String((err as Error).message ?? err),
      });
    }
  }
  return actions;
}

/**
 * The metrics a window produces (see docs/api/monitor.md for the catalogue).
 *
 * @example
 * ```ts
 * await sink.put('maas', metricPoints('iris', report.versions, report.evaluations, new Date()));
 * ```
 */
export function metricPoints(
  model: string,
  versions: Record<string, VersionReport>,
  evaluations: readonly RoleEvaluation[],
  timestamp: Date,
  latency: ReadonlyMap<number, Histogram> = new Map(),
): MetricPoint[] {
  const points: MetricPoint[] = [];
  const add = (
    name: string,
    dimensions: Record<string, string>,
    value: number | null | undefined,
    unit: StandardUnit = 'None',
  ): void => {
    if (value === null || value === undefined || !Number.isFinite(value)) return;
    points.push({ name, dimensions, value, unit, timestamp });
  };
  for (const [v, r] of Object.entries(versions)) {
    const d = { model, version: v };
    add('Invocations', d, r.requests, 'Count');
    add('Errors', d, r.errors, 'Count');
    add('ClientErrors', d, r.clientErrors, 'Count');
    if (r.requests > 0) {
      add('ErrorRate', d, r.errorRate);
      add('LatencyP50', d, r.latencyMs.p50, 'Milliseconds');
      add('LatencyP90', d, r.latencyMs.p90, 'Milliseconds');
      add('LatencyP99', d, r.latencyMs.p99, 'Milliseconds');
    }
    const h = latency.get(Number(v));
    const dist = h ? distributionPoint('Latency', d, h, timestamp) : undefined;
    if (dist) points.push(dist);
    add('MaxInputPSI', d, r.drift.maxInputPsi);
    add('MaxOutputPSI', d, r.drift.maxOutputPsi);
    for (const [kind, features] of [
      ['input', r.drift.inputs],
      ['output', r.drift.outputs],
    ] as const) {
      for (const [f, s] of Object.entries(features)) {
        const fd = { ...d, feature: `${kind}:${f}` };
        add('PSI', fd, s.psi);
        add('KS', fd, s.ks);
        add('JSDivergence', fd, s.js);
      }
    }
    if (r.quality) {
      add('FeedbackCount', d, r.quality.n, 'Count');
      add('Accuracy', d, r.quality.accuracy);
      add('MAE', d, r.quality.mae);
      add('RMSE', d, r.quality.rmse);
    }
  }
  // Per alias role: stable dimensions for alarms while versions come and go.
  for (const e of evaluations) {
    const r = versions[e.version];
    if (!r || r.requests === 0) continue;
    const d = { model, alias: e.alias, role: e.role };
    add('Invocations', d, r.requests, 'Count');
    add('ErrorRate', d, r.errorRate);
    add('LatencyP99', d, r.latencyMs.p99, 'Milliseconds');
    add('MaxInputPSI', d, r.drift.maxInputPsi);
    add('Accuracy', d, r.quality?.accuracy);
  }
  return points;
}

/**
 * Latency distribution as CloudWatch Values/Counts (bin midpoints), so CloudWatch can compute its own percentiles.
 *
 * @example
 * ```ts
 * const p = distributionPoint('Latency', { model: 'iris', version: '3' }, latencyHistogram, new Date());
 * ```
 */
export function distributionPoint(
  name: string,
  dimensions: Record<string, string>,
  h: Histogram,
  timestamp: Date,
): MetricPoint | undefined {
  const bins = sortedBins(h);
  if (bins.length === 0) return undefined;
  return {
    name,
    dimensions,
    unit: 'Milliseconds',
    timestamp,
    values: bins.map(binMidpoint),
    counts: bins.map((b) => h.bins[b] ?? 0),
  };
}

async function modelsWithMonitoringData(store: ObjectStore): Promise<string[]> {
  const names = new Set<string>();
  for (const root of [monitoringLayout.capturesRoot, monitoringLayout.feedbackRoot]) {
    // One common prefix per model: small even with many files under each.
    const { commonPrefixes } = await listAll(store, { prefix: root, delimiter: '/' });
    for (const p of commonPrefixes) names.add(p.slice(root.length).replace(/\/$/, ''));
  }
  return [...names].sort();
}

/** Keys after `after` (relative) and written no later than `cutoff` (their time prefix), in order. */
async function listWindow(
  store: ObjectStore,
  prefix: string,
  after: string,
  cutoff: number,
  limit: number,
): Promise<ObjectInfoSummary[]> {
  const bound = prefix + timeKey(cutoff + 1);
  const out: ObjectInfoSummary[] = [];
  let token: string | undefined;
  do {
    const page = await store.list({
      prefix,
      ...(token ? { continuationToken: token } : after ? { startAfter: prefix + after } : {}),
    });
    for (const o of page.objects) {
      if (o.key >= bound || out.length >= limit) return out;
      out.push(o);
    }
    token = page.nextToken;
  } while (token);
  return out;
}

function fmt(x: number): string {
  return Number.isFinite(x) ? Number(x.toPrecision(3)).toString() : String(x);
}

function stripUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}
