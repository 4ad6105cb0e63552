import { emptyHistogram, type Histogram, histogramFromJson, mergeHistogram } from './histogram';

/**
 * What one container saw of one model version between two flushes. Every field merges by
 * addition, so summaries from any number of containers and flushes combine exactly.
 */
export interface VersionSummary {
  /** Requests observed (one per inference call, whatever its batch size). */
  requests: number;
  /** Rows (batch elements) of successful requests. */
  rows: number;
  /** Requests answered with a 5xx status: the model or the service failed. */
  errors: number;
  /** Requests answered with a 4xx status: the caller sent something unusable (not a model failure). */
  clientErrors: number;
  /** Requests per alias they were routed through (`-` for direct version calls). */
  aliases: Record<string, number>;
  latencyMs: Histogram;
  inferenceMs: Histogram;
  /** Input feature histograms: `{tensor}[{position}]`, or `{tensor}[*]` when aggregated. */
  inputs: Record<string, Histogram>;
  /** Output histograms, named the same way. */
  outputs: Record<string, Histogram>;
  /** Top-1 class counts (classification outputs) or empty. */
  predictedClasses: Record<string, number>;
  /** Memory predict reported with the requests (sums and maxima merge exactly). */
  resources: ResourceSummary;
  /** Text generation (the generate function's requests), absent for other models. */
  generation?: GenerationSummary;
}

/** Finished generations of a version: counts add, histograms merge exactly. */
export interface GenerationSummary {
  generations: number;
  /** Generations per finish reason (`stop`, `length`, `abort`). */
  finishReasons: Record<string, number>;
  promptTokens: number;
  completionTokens: number;
  /** Time to first token of generations that produced one, milliseconds. */
  timeToFirstTokenMs: Histogram;
  /** Decode rate of generations with at least two tokens. */
  tokensPerSecond: Histogram;
}

/** Memory of the containers that served a version, bytes, over `samples` requests. */
export interface ResourceSummary {
  samples: number;
  rssBytesSum: number;
  rssBytesMax: number;
  sessionBytesMax: number;
  sessionCacheBytesMax: number;
}

/** One raw request kept by payload sampling (off by default). */
export interface RawSample {
  version: number;
  requestId?: string;
  status: number;
  inputs: { name: string; shape: number[]; data: (number | string)[] }[];
  outputs: { name: string; shape: number[]; data: (number | string)[] }[];
}

/** The document a capture flush writes. */
export interface CaptureFile {
  format: 'maas.capture/1';
  model: string;
  container: string;
  seq: number;
  startedAt: string;
  endedAt: string;
  /** Per version, all its traffic (through aliases and direct `/versions/{n}` calls). */
  versions: Record<string, VersionSummary>;
  /**
   * Per alias, per version: only the traffic routed through that alias. Automatic rollback and
   * traffic baselines use these alone, so calls to `/versions/{n}` cannot steer them.
   */
  routes?: Record<string, Record<string, VersionSummary>>;
  samples?: RawSample[];
}

/**
 * An empty summary.
 *
 * @example
 * ```ts
 * const s = emptyVersionSummary(); s.requests++;
 * ```
 */
export function emptyVersionSummary(): VersionSummary {
  return {
    requests: 0,
    rows: 0,
    errors: 0,
    clientErrors: 0,
    aliases: {},
    latencyMs: emptyHistogram(),
    inferenceMs: emptyHistogram(),
    inputs: {},
    outputs: {},
    predictedClasses: {},
    resources: { samples: 0, rssBytesSum: 0, rssBytesMax: 0, sessionBytesMax: 0, sessionCacheBytesMax: 0 },
  };
}

/**
 * Adds `from` into `into` (exact). Returns `into`.
 *
 * @example
 * ```ts
 * const total = [a, b, c].reduce(mergeVersionSummary, emptyVersionSummary());
 * ```
 */
export function mergeVersionSummary(into: VersionSummary, from: VersionSummary): VersionSummary {
  into.requests += from.requests;
  into.rows += from.rows;
  into.errors += from.errors;
  into.clientErrors += from.clientErrors;
  addCounts(into.aliases, from.aliases);
  addCounts(into.predictedClasses, from.predictedClasses);
  mergeHistogram(into.latencyMs, from.latencyMs);
  mergeHistogram(into.inferenceMs, from.inferenceMs);
  mergeHistograms(into.inputs, from.inputs);
  mergeHistograms(into.outputs, from.outputs);
  const a = into.resources;
  const b = from.resources;
  a.samples += b.samples;
  a.rssBytesSum += b.rssBytesSum;
  a.rssBytesMax = Math.max(a.rssBytesMax, b.rssBytesMax);
  a.sessionBytesMax = Math.max(a.sessionBytesMax, b.sessionBytesMax);
  a.sessionCacheBytesMax = Math.max(a.sessionCacheBytesMax, b.sessionCacheBytesMax);
  if (from.generation) {
    into.generation ??= emptyGenerationSummary();
    const g = into.generation;
    const h = from.generation;
    g.generations += h.generations;
    addCounts(g.finishReasons, h.finishReasons);
    g.promptTokens += h.promptTokens;
    g.completionTokens += h.completionTokens;
    mergeHistogram(g.timeToFirstTokenMs, h.timeToFirstTokenMs);
    mergeHistogram(g.tokensPerSecond, h.tokensPerSecond);
  }
  return into;
}

/**
 * An empty generation summary.
 *
 * @example
 * ```ts
 * const g = emptyGenerationSummary(); g.generations++;
 * ```
 */
export function emptyGenerationSummary(): GenerationSummary {
  return {
    generations: 0,
    finishReasons: {},
    promptTokens: 0,
    completionTokens: 0,
    timeToFirstTokenMs: emptyHistogram(),
    tokensPerSecond: emptyHistogram(),
  };
}

/**
 * Re-hydrates a summary read from JSON, tolerating missing fields (older writers).
 *
 * @example
 * ```ts
 * const s = versionSummaryFromJson(captureFile.versions['3']);
 * ```
 */
export function versionSummaryFromJson(raw: unknown): VersionSummary {
  const r = (raw ?? {}) as Partial<Record<keyof VersionSummary, unknown>>;
  const num = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
  const counts = (v: unknown): Record<string, number> =>
    Object.fromEntries(
      Object.entries((v as Record<string, unknown>) ?? {}).filter(
        (e): e is [string, number] => typeof e[1] === 'number',
      ),
    );
  const hists = (v: unknown): Record<string, Histogram> =>
    Object.fromEntries(
      Object.entries((v as Record<string, unknown>) ?? {}).map(([k, h]) => [k, histogramFromJson(h)]),
    );
  return {
    requests: num(r.requests),
    rows: num(r.rows),
    errors: num(r.errors),
    clientErrors: num(r.clientErrors),
    aliases: counts(r.aliases),
    latencyMs: histogramFromJson(r.latencyMs),
    inferenceMs: histogramFromJson(r.inferenceMs),
    inputs: hists(r.inputs),
    outputs: hists(r.outputs),
    predictedClasses: counts(r.predictedClasses),
    resources: ((x) => ({
      samples: num(x.samples),
      rssBytesSum: num(x.rssBytesSum),
      rssBytesMax: num(x.rssBytesMax),
      sessionBytesMax: num(x.sessionBytesMax),
      sessionCacheBytesMax: num(x.sessionCacheBytesMax),
    }))((r.resources ?? {}) as Partial<Record<keyof ResourceSummary, unknown>>),
    ...(r.generation && typeof r.generation === 'object'
      ? {
          generation: ((g) => ({
            generations: num(g.generations),
            finishReasons: counts(g.finishReasons),
            promptTokens: num(g.promptTokens),
            completionTokens: num(g.completionTokens),
            timeToFirstTokenMs: histogramFromJson(g.timeToFirstTokenMs),
            tokensPerSecond: histogramFromJson(g.tokensPerSecond),
          }))(r.generation as Partial<Record<keyof GenerationSummary, unknown>>),
        }
      : {}),
  };
}

function addCounts(into: Record<string, number>, from: Record<string, number>): void {
  for (const [k, c] of Object.entries(from)) into[k] = (into[k] ?? 0) + c;
}

function mergeHistograms(into: Record<string, Histogram>, from: Record<string, Histogram>): void {
  for (const [k, h] of Object.entries(from)) into[k] = mergeHistogram(into[k] ?? emptyHistogram(), h);
}
