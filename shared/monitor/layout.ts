import { createHash } from 'node:crypto';

/**
 * Where monitoring keeps things in the object store (all under `monitoring/`).
 *
 * | key | written | content |
 * | --- | --- | --- |
 * | `monitoring/captures/{name}/{ms13}-{container}-{seq6}.json` | create-only, once per flush | {@link CaptureFile} |
 * | `monitoring/predictions/{name}/{sha256(id)[0..40]}.json` | create-only (the first request with that id keeps it) | {@link PredictionRecord}: what feedback joins to |
 * | `monitoring/feedback/{name}/{ms13}-{random}.json` | create-only, once per POST | joined feedback batch |
 * | `monitoring/baselines/{name}/{version}.json` | create-only (API) or CAS (built from traffic) | baseline histograms |
 * | `monitoring/policies/{name}.json` | plain put | rollback policy overrides |
 * | `monitoring/state/{name}.json` | compare-and-swap: the monitor's watermark | {@link MonitorState} |
 * | `monitoring/reports/{name}/{iso}-{run}.json`, `…/latest.json` | create-only / plain put | one report per processed window |
 *
 * Capture and feedback keys start with a 13-digit epoch-millisecond time so that a listing
 * with `startAfter` the watermark key returns what follows it in time order. A key's time is
 * taken before its write lands: the monitor leaves the last `graceSeconds` for a later run so a
 * write still in flight does not end up behind the watermark.
 */
export const monitoringLayout = {
  capturesPrefix: (name: string): string => `monitoring/captures/${name}/`,
  capture: (name: string, ms: number, container: string, seq: number): string =>
    `monitoring/captures/${name}/${timeKey(ms)}-${container}-${String(seq).padStart(6, '0')}.json`,
  capturesRoot: 'monitoring/captures/',
  prediction: (name: string, id: string): string => `monitoring/predictions/${name}/${idHash(id)}.json`,
  feedbackPrefix: (name: string): string => `monitoring/feedback/${name}/`,
  feedbackRoot: 'monitoring/feedback/',
  feedback: (name: string, ms: number, suffix: string): string =>
    `monitoring/feedback/${name}/${timeKey(ms)}-${suffix}.json`,
  baseline: (name: string, version: number): string => `monitoring/baselines/${name}/${version}.json`,
  policy: (name: string): string => `monitoring/policies/${name}.json`,
  state: (name: string): string => `monitoring/state/${name}.json`,
  reportsPrefix: (name: string): string => `monitoring/reports/${name}/`,
  report: (name: string, iso: string, runId: string): string =>
    `monitoring/reports/${name}/${iso}-${runId}.json`,
  latestReport: (name: string): string => `monitoring/reports/${name}/latest.json`,
};

/**
 * 13-digit zero-padded epoch milliseconds: sorts lexicographically in time order until year 2286.
 *
 * @example
 * ```ts
 * timeKey(1795920000000); // '1795920000000'
 * ```
 */
export function timeKey(ms: number): string {
  return String(Math.max(0, Math.floor(ms))).padStart(13, '0');
}

/**
 * Client request ids may hold any character: keys use a hash of them (the record keeps the id).
 *
 * @example
 * ```ts
 * monitoringLayout.prediction('iris', 'req-1'); // uses idHash('req-1')
 * ```
 */
export function idHash(id: string): string {
  return createHash('sha256').update(id).digest('hex').slice(0, 40);
}
