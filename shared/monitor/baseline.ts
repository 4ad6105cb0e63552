import { ConflictError, InvalidArgumentError } from '../errors';
import type { ObservedTensor } from '../inference/observer';
import { isOipDatatype } from '../onnx/datatypes';
import { assertModelName, parseVersionNumber } from '../registry/names';
import type { ObjectStore } from '../store';
import {
  createJson,
  DocumentConflictError,
  KEEP,
  putJson,
  readJson,
  type StoredDocument,
  updateJson,
} from '../store/documents';
import { recordTensor } from './capture';
import { numberSetting } from './config';
import { emptyHistogram, type Histogram, histogramFromJson, mergeHistogram } from './histogram';
import { monitoringLayout } from './layout';
import type { VersionSummary } from './summary';

/**
 * The reference distribution drift is measured against, per model version.
 *
 * - `reference`: computed from data given explicitly ({@link createBaselineFromData}: the
 *   monitor function's `baseline` action, or register/optimize passing their validation
 *   data). Written create-only; `replace` overwrites it.
 * - `traffic`: built by the monitor from the first `MAAS_BASELINE_REQUESTS` (default 1000)
 *   successful requests it sees for a version that has no baseline, that is the first traffic
 *   after the version started serving (promotion or canary). `complete` turns true once that
 *   many requests were folded in; the windows used to build it are not compared against it.
 */
export interface BaselineDoc {
  format: 'maas.baseline/1';
  model: string;
  version: number;
  source: 'reference' | 'traffic';
  complete: boolean;
  /** Requests (traffic) or rows (reference) folded in. */
  requests: number;
  createdAt: string;
  updatedAt: string;
  inputs: Record<string, Histogram>;
  outputs: Record<string, Histogram>;
  /** Reference quality, if known: the accuracy-drop threshold of production versions compares against it. */
  metrics?: { accuracy?: number; mae?: number; rmse?: number };
}

/** Reference data for a baseline: OIP-style tensors (first dimension = rows). */
export interface BaselineData {
  inputs: ObservedTensor[];
  outputs?: ObservedTensor[];
  metrics?: BaselineDoc['metrics'];
  /** Overwrite an existing baseline (default: refuse with 409). */
  replace?: boolean;
}

/**
 * Computes a `reference` baseline from given tensors and stores it at
 * `monitoring/baselines/{name}/{version}.json`. Bin edges are the fixed scheme, so the
 * baseline compares exactly with any capture.
 *
 * @example
 * ```ts
 * await createBaselineFromData(store, 'iris', 3, {
 *   inputs: [{ name: 'x', datatype: 'FP32', shape: [150, 4], data: trainingRows }],
 * });
 * ```
 */
export async function createBaselineFromData(
  store: ObjectStore,
  model: string,
  version: number,
  data: BaselineData,
  options: { env?: NodeJS.ProcessEnv; now?: () => Date } = {},
): Promise<BaselineDoc> {
  assertModelName(model);
  parseVersionNumber(version);
  const maxFeatures = numberSetting(options.env ?? process.env, 'MAAS_CAPTURE_MAX_FEATURES', 32, {
    min: 0,
    max: 4096,
  });
  if (!Array.isArray(data.inputs) || data.inputs.length === 0)
    throw new InvalidArgumentError('baseline needs at least one input tensor', { field: 'inputs' });
  const inputs = data.inputs.map((t, i) => validateTensor(t, `inputs[${i}]`));
  const outputs = (data.outputs ?? []).map((t, i) => validateTensor(t, `outputs[${i}]`));
  const rows = inputs[0]!.shape[0] ?? 1;
  const doc: BaselineDoc = {
    format: 'maas.baseline/1',
    model,
    version,
    source: 'reference',
    complete: true,
    requests: rows,
    createdAt: (options.now?.() ?? new Date()).toISOString(),
    updatedAt: (options.now?.() ?? new Date()).toISOString(),
    inputs: {},
    outputs: {},
    ...(data.metrics ? { metrics: validateMetrics(data.metrics) } : {}),
  };
  for (const t of inputs) recordTensor(doc.inputs, t, t.shape[0] ?? 1, maxFeatures);
  for (const t of outputs) recordTensor(doc.outputs, t, t.shape[0] ?? 1, maxFeatures);
  const key = monitoringLayout.baseline(model, version);
  if (data.replace) await putJson(store, key, doc);
  else if (!(await createJson(store, key, doc)).created)
    throw new ConflictError(
      `version ${version} of ${model} already has a baseline; pass replace: true to overwrite it`,
      { model, version },
    );
  return doc;
}

/**
 * The stored baseline of a version with its etag, or undefined.
 *
 * @example
 * ```ts
 * const found = await readBaseline(store, 'iris', 3); if (found?.doc.complete) use(found.doc);
 * ```
 */
export async function readBaseline(
  store: ObjectStore,
  model: string,
  version: number,
): Promise<StoredDocument<BaselineDoc> | undefined> {
  const found = await readJson<BaselineDoc>(store, monitoringLayout.baseline(model, version));
  return found && parsedBaseline(found);
}

/** A stored baseline with its histograms in memory form (JSON keeps only the sparse fields). */
function parsedBaseline(found: StoredDocument<BaselineDoc>): StoredDocument<BaselineDoc> {
  const hists = (v: Record<string, unknown> | undefined): Record<string, Histogram> =>
    Object.fromEntries(Object.entries(v ?? {}).map(([k, h]) => [k, histogramFromJson(h)]));
  return {
    doc: { ...found.doc, inputs: hists(found.doc.inputs), outputs: hists(found.doc.outputs) },
    etag: found.etag,
  };
}

/**
 * Folds one window of traffic into a version's `traffic` baseline (creating it), by
 * compare-and-swap; does nothing when a reference baseline exists or the baseline is complete.
 * Returns the baseline as it stands afterwards.
 *
 * `known` is the baseline as the caller just read it (or `null` when it read none): the first
 * attempt uses it instead of reading the object again, and its compare-and-swap put still
 * fails if the object changed since (then the object is read again). Returns undefined when
 * concurrent writers kept winning (this window is then left out of the baseline).
 *
 * @example
 * ```ts
 * await extendTrafficBaseline(store, 'iris', 3, windowSummary, 1000, new Date());
 * ```
 */
export async function extendTrafficBaseline(
  store: ObjectStore,
  model: string,
  version: number,
  window: VersionSummary,
  target: number,
  now: Date,
  known?: StoredDocument<BaselineDoc> | null,
): Promise<BaselineDoc | undefined> {
  const successful = window.requests - window.errors - window.clientErrors;
  try {
    const { doc } = await updateJson<BaselineDoc>(
      store,
      monitoringLayout.baseline(model, version),
      (stored) => {
        const found = stored && parsedBaseline(stored); // fresh objects: `known` is never changed
        if (found && (found.doc.complete || found.doc.source === 'reference')) return KEEP;
        if (successful <= 0) return KEEP;
        const doc: BaselineDoc = found
          ? found.doc
          : {
              format: 'maas.baseline/1',
              model,
              version,
              source: 'traffic',
              complete: false,
              requests: 0,
              createdAt: now.toISOString(),
              updatedAt: now.toISOString(),
              inputs: {},
              outputs: {},
            };
        for (const [k, h] of Object.entries(window.inputs))
          doc.inputs[k] = mergeHistogram(doc.inputs[k] ?? emptyHistogram(), h);
        for (const [k, h] of Object.entries(window.outputs))
          doc.outputs[k] = mergeHistogram(doc.outputs[k] ?? emptyHistogram(), h);
        doc.requests += successful;
        doc.complete = doc.requests >= target;
        doc.updatedAt = now.toISOString();
        return doc;
      },
      { attempts: 5, ...(known !== undefined ? { known } : {}) },
    );
    return doc && parsedBaseline({ doc, etag: '' }).doc;
  } catch (e) {
    // Other monitor runs kept extending it: this window's share is left out, never counted twice.
    if (e instanceof DocumentConflictError) return undefined;
    throw e;
  }
}

/**
 * The baseline histogram for a capture feature key. A capture may aggregate a tensor
 * (`x[*]`) that the baseline recorded per position (`x[0]`, `x[1]`, …) when the two were
 * made with different `MAAS_CAPTURE_MAX_FEATURES`; the positions then merge exactly into it.
 *
 * @example
 * ```ts
 * const b = baselineHistogram(baseline.inputs, 'x[*]'); // merges x[0], x[1], … if needed
 * ```
 */
export function baselineHistogram(features: Record<string, Histogram>, key: string): Histogram | undefined {
  const direct = features[key];
  if (direct) return direct;
  const m = /^(.*)\[\*\]$/.exec(key);
  if (!m) return undefined;
  const parts = Object.entries(features).filter(([k]) => k.startsWith(`${m[1]}[`) && /\[[0-9]+\]$/.test(k));
  return parts.length > 0
    ? parts.reduce((acc, [, h]) => mergeHistogram(acc, h), emptyHistogram())
    : undefined;
}

function validateTensor(t: unknown, where: string): ObservedTensor {
  const x = t as Partial<ObservedTensor> | null;
  if (typeof x !== 'object' || x === null)
    throw new InvalidArgumentError(`${where} must be a tensor object`, { field: where });
  if (typeof x.name !== 'string' || x.name.length === 0 || x.name.length > 256)
    throw new InvalidArgumentError(`${where}.name must be a non-empty string`, { field: where });
  if (!isOipDatatype(x.datatype))
    throw new InvalidArgumentError(`${where}.datatype must be an OIP datatype`, { field: where });
  if (
    !Array.isArray(x.shape) ||
    x.shape.length === 0 ||
    !x.shape.every((d) => Number.isSafeInteger(d) && d >= 0)
  ) {
    throw new InvalidArgumentError(`${where}.shape must be a non-empty array of non-negative integers`, {
      field: where,
    });
  }
  const size = x.shape.reduce((a, b) => a * b, 1);
  const data = x.data as ArrayLike<unknown> | undefined;
  if (!data || typeof data.length !== 'number' || data.length !== size)
    throw new InvalidArgumentError(
      `${where}.data must hold ${size} values (shape ${JSON.stringify(x.shape)})`,
      { field: where },
    );
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (typeof v !== 'number' && typeof v !== 'bigint' && typeof v !== 'boolean')
      throw new InvalidArgumentError(`${where}.data must be numeric`, { field: where });
  }
  return x as ObservedTensor;
}

function validateMetrics(m: unknown): NonNullable<BaselineDoc['metrics']> {
  const out: NonNullable<BaselineDoc['metrics']> = {};
  for (const k of ['accuracy', 'mae', 'rmse'] as const) {
    const v = (m as Record<string, unknown>)[k];
    if (v === undefined) continue;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0)
      throw new InvalidArgumentError(`metrics.${k} must be a non-negative number`, { field: `metrics.${k}` });
    out[k] = v;
  }
  return out;
}
