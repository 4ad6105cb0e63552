import type { ObjectStore } from '../store';
import { createJson, putJson, readJson } from '../store/documents';
import { type BaselineDoc, baselineHistogram } from './baseline';
import { compareHistograms, type DriftStats } from './drift';
import type { FeedbackFile } from './feedback';
import { quantile } from './histogram';
import { monitoringLayout } from './layout';
import type { MonitorSinkResult } from './metrics-sink';
import type { RollbackPolicy } from './policy';
import type { MonitorAction } from './rollback-actions';
import type { RoleEvaluation } from './rollback-evaluation';
import type { GenerationSummary, VersionSummary } from './summary';

/** Quality of one version's predictions, from joined feedback. */
export interface QualityStats {
  kind: 'class' | 'value';
  /** Rows scored. */
  n: number;
  accuracy?: number;
  mae?: number;
  rmse?: number;
}

/** Health, drift and quality of one version in one window. */
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
  /** Text generation: finished generations, token counts and timings (absent for other models). */
  generation?: GenerationReport;
}

/** A version's text generation in one window. */
export interface GenerationReport {
  generations: number;
  finishReasons: Record<string, number>;
  promptTokens: number;
  completionTokens: number;
  /** Call to first token, milliseconds. */
  timeToFirstTokenMs: { p50: number; p90: number; p99: number };
  /** Decode rate; p10 is the slow tail. */
  tokensPerSecond: { p10: number; p50: number; mean: number };
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
  metrics: { sink: string; namespace: string; points: number } & MonitorSinkResult;
}

/**
 * The report of one version for one window: counts and percentiles from its merged summary,
 * drift against its baseline once that is complete, and quality from joined feedback.
 *
 * @example
 * ```ts
 * const report = versionReport(summary, baseline, quality.get(3), 10);
 * ```
 */
export function versionReport(
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
    ...(s.generation ? { generation: generationReport(s.generation) } : {}),
  };
}

function generationReport(g: GenerationSummary): GenerationReport {
  const tps = g.tokensPerSecond;
  return {
    generations: g.generations,
    finishReasons: g.finishReasons,
    promptTokens: g.promptTokens,
    completionTokens: g.completionTokens,
    timeToFirstTokenMs: {
      p50: quantile(g.timeToFirstTokenMs, 0.5),
      p90: quantile(g.timeToFirstTokenMs, 0.9),
      p99: quantile(g.timeToFirstTokenMs, 0.99),
    },
    tokensPerSecond: {
      p10: quantile(tps, 0.1),
      p50: quantile(tps, 0.5),
      mean: tps.count > 0 ? tps.sum / tps.count : NaN,
    },
  };
}

/**
 * Scores joined feedback per version: accuracy for classification (predicted class equals
 * the target), MAE and RMSE for regression.
 *
 * @example
 * ```ts
 * scoreFeedback([{ id: 'a', version: 1, kind: 'class', predicted: [2], target: [2], predictedAt: '' }]).get(1); // { kind: 'class', n: 1, accuracy: 1 }
 * ```
 */
export function scoreFeedback(
  records: readonly FeedbackFile['records'][number][],
): Map<number, QualityStats> {
  const score = new FeedbackScore();
  score.add(records);
  return score.result();
}

/**
 * Running sums behind {@link scoreFeedback}, fed one feedback file at a time: a window's memory
 * is a few numbers per version, never the records of all its feedback files.
 *
 * @example
 * ```ts
 * const score = new FeedbackScore();
 * for (const file of files) score.add(file.records);
 * score.result().get(1); // { kind: 'class', n: 40, accuracy: 0.95 }
 * ```
 */
export class FeedbackScore {
  private readonly acc = new Map<
    number,
    { kind: 'class' | 'value'; n: number; correct: number; abs: number; sq: number }
  >();

  /** Adds records (of any versions). */
  add(records: readonly FeedbackFile['records'][number][]): void {
    for (const r of records) {
      const a = this.acc.get(r.version) ?? { kind: r.kind, n: 0, correct: 0, abs: 0, sq: 0 };
      for (let i = 0; i < r.predicted.length && i < r.target.length; i++) {
        const p = r.predicted[i]!;
        const t = r.target[i]!;
        a.n++;
        if (p === t) a.correct++;
        a.abs += Math.abs(p - t);
        a.sq += (p - t) ** 2;
      }
      this.acc.set(r.version, a);
    }
  }

  /** Quality per version with at least one scored row. */
  result(): Map<number, QualityStats> {
    const out = new Map<number, QualityStats>();
    for (const [v, a] of this.acc) {
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
}

/**
 * Stores a report: create-only under its window and run (one writer by construction), then as
 * the model's `latest.json` (last writer wins; only the run that won the window writes). Returns
 * the report's own key.
 *
 * @example
 * ```ts
 * const reportKey = await writeReport(store, report);
 * ```
 */
export async function writeReport(store: ObjectStore, report: MonitorReport): Promise<string> {
  const key = monitoringLayout.report(report.model, report.window.to.replace(/[:.]/g, '-'), report.runId);
  await createJson(store, key, report);
  await putJson(store, monitoringLayout.latestReport(report.model), report);
  return key;
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
