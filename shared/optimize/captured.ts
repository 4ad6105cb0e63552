/**
 * Evaluation inputs from captured traffic: the raw request samples the monitoring capture observer
 * writes into `monitoring/captures/{model}/…` (format `maas.capture/1`, enabled with
 * `MAAS_CAPTURE_PAYLOAD_SAMPLE` > 0). Real inputs beat random ones: quantization error depends on
 * the activation ranges real data produces.
 *
 * Only complete samples are used: the capture truncates large tensors, and a truncated tensor is
 * not a valid input. Samples of any version of the model qualify if they fit the signature.
 */

import { monitoringLayout, timeKey } from '../monitor/layout';
import type { CaptureFile, RawSample } from '../monitor/summary';
import type { NumericOipDatatype } from '../onnx/datatypes';
import type { TensorSpec } from '../onnx/inspect';
import { listAll, type ObjectStore } from '../store';
import { readJson } from '../store/documents';
import { type CapturedInputsProvider, type InputFeed, typedFromNumbers } from './inputs';
import { MAX_PROMPTS } from './request';

/** Options of {@link capturedInputsFromMonitoring}. */
export interface CapturedInputsOptions {
  /** Only captures from this far back, hours (default 24): bounds the listing. */
  lookbackHours?: number;
  /** Capture files read at most, newest first (default 50). */
  maxFiles?: number;
  /** Rows collected at most (default 256). */
  maxRows?: number;
  now?: () => number;
}

/** One sample's tensors fitted to the signature, or undefined when it does not fit. */
function fitSample(
  sample: CaptureFile['samples'] extends (infer S)[] | undefined ? S : never,
  specs: readonly TensorSpec[],
): { spec: TensorSpec; shape: number[]; data: number[] }[] | undefined {
  const out: { spec: TensorSpec; shape: number[]; data: number[] }[] = [];
  for (const spec of specs) {
    const t = sample.inputs.find((i) => i.name === spec.name);
    if (!t || spec.datatype === 'BYTES' || t.shape.length === 0) return undefined;
    const count = t.shape.reduce((a, b) => a * b, 1);
    if (t.data.length !== count || t.data.some((v) => typeof v !== 'number')) return undefined; // truncated or strings
    if (
      !spec.unknownRank &&
      (t.shape.length !== spec.shape.length || spec.shape.some((d, i) => d !== -1 && d !== t.shape[i]))
    )
      return undefined;
    out.push({ spec, shape: t.shape, data: t.data as number[] });
  }
  return out;
}

/**
 * The answered (status 200) raw samples of a model's recent capture files, newest file first.
 * Captures are an optional source: a listing the function may not read (no permission on
 * `monitoring/`) yields nothing, and unreadable files are skipped.
 */
async function* recentSamples(
  store: ObjectStore,
  model: string,
  options: CapturedInputsOptions,
): AsyncGenerator<RawSample> {
  const lookbackMs = (options.lookbackHours ?? 24) * 3600_000;
  const now = options.now ?? Date.now;
  const prefix = monitoringLayout.capturesPrefix(model);
  let listed: Awaited<ReturnType<typeof listAll>>;
  try {
    listed = await listAll(store, { prefix, startAfter: `${prefix}${timeKey(now() - lookbackMs)}` });
  } catch {
    return;
  }
  const keys = listed.objects
    .map((o) => o.key)
    .slice(-(options.maxFiles ?? 50))
    .reverse();
  for (const key of keys) {
    let doc: CaptureFile | undefined;
    try {
      doc = (await readJson<CaptureFile>(store, key))?.doc;
    } catch {
      continue; // unreadable: other files still count
    }
    if (doc?.format !== 'maas.capture/1') continue; // removed since listing, or not a capture
    for (const sample of doc.samples ?? []) if (sample.status === 200) yield sample;
  }
}

/**
 * A {@link CapturedInputsProvider} reading monitoring captures from the store.
 *
 * @example
 * const report = await optimizeVersion(registry, 'mlp', 1, request, { store, capturedInputs: capturedInputsFromMonitoring(store) });
 */
export function capturedInputsFromMonitoring(
  store: ObjectStore,
  options: CapturedInputsOptions = {},
): CapturedInputsProvider {
  const maxRows = options.maxRows ?? 256;
  return async (
    model: string,
    _version: number,
    specs: readonly TensorSpec[],
  ): Promise<InputFeed | undefined> => {
    const rows: { spec: TensorSpec; shape: number[]; data: number[] }[][] = [];
    let count = 0;
    for await (const sample of recentSamples(store, model, options)) {
      if (count >= maxRows) break;
      const fitted = fitSample(sample, specs);
      // All rows must share the trailing (non-batch) shape of the first one to stack into a batch.
      if (
        !fitted ||
        (rows[0] && fitted.some((t, i) => t.shape.slice(1).join() !== rows[0]?.[i]?.shape.slice(1).join()))
      )
        continue;
      rows.push(fitted);
      count += fitted[0]?.shape[0] ?? 0;
    }
    if (rows.length === 0) return undefined;
    return specs.map((spec, i) => {
      const parts = rows.map((r) => r[i] as { shape: number[]; data: number[] });
      const batch = parts.reduce((a, p) => a + (p.shape[0] ?? 0), 0);
      const datatype = spec.datatype as NumericOipDatatype;
      const data = typedFromNumbers(
        datatype,
        parts.flatMap((p) => p.data),
      );
      return { name: spec.name, datatype, shape: [batch, ...(parts[0]?.shape.slice(1) ?? [])], data };
    });
  };
}

/** Prompts from captured traffic for a text-generation model, or undefined when there are none. */
export type CapturedPromptsProvider = (model: string) => Promise<string[] | undefined>;

/**
 * Prompts of recent generations (the text samples `MAAS_CAPTURE_TEXT_SAMPLE` keeps, as the model
 * read them), distinct, newest first, at most `maxRows` (default 64): a text model is then
 * evaluated on what its users really ask instead of the built-in sample prompts.
 *
 * @example
 * const report = await optimizeVersion(registry, 'llm', 1, request, { store, capturedPrompts: capturedPromptsFromMonitoring(store) });
 */
export function capturedPromptsFromMonitoring(
  store: ObjectStore,
  options: CapturedInputsOptions = {},
): CapturedPromptsProvider {
  const max = options.maxRows ?? MAX_PROMPTS;
  return async (model: string) => {
    const prompts = new Set<string>();
    for await (const sample of recentSamples(store, model, options)) {
      if (prompts.size >= max) break;
      const p = sample.inputs[0];
      if (p?.name === 'prompt' && typeof p.data[0] === 'string' && p.data[0].length > 0)
        prompts.add(p.data[0]);
    }
    return prompts.size > 0 ? [...prompts] : undefined;
  };
}
