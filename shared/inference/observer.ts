import type { OipDatatype } from '../onnx/datatypes';

/** One tensor as predict saw it (data is the decoded typed array or string list). */
export interface ObservedTensor {
  name: string;
  datatype: OipDatatype;
  shape: number[];
  data: ArrayLike<number | bigint | boolean | string>;
}

/** What predict reports about each inference request, after the response is computed. */
export interface InferenceObservation {
  model: string;
  version: number;
  /** The Open Inference Protocol request `id`, if the client sent one. */
  requestId?: string;
  /** The alias the request was routed through, if any (e.g. `production`). */
  alias?: string;
  /** Whole-request latency inside the handler, milliseconds. */
  latencyMs: number;
  /** Time spent in `session.run`, milliseconds (0 when it failed before running). */
  inferenceMs: number;
  batchSize: number;
  /** HTTP status returned to the client. */
  status: number;
  inputs: ObservedTensor[];
  outputs: ObservedTensor[];
  /** Memory when the request ended: see {@link ResourceUsage}. */
  resources?: ResourceUsage;
}

/** Memory a predict container holds, bytes. */
export interface ResourceUsage {
  /** Resident set size of the container's process. */
  rssBytes: number;
  /** The version's onnxruntime session (what the session cache counts for it, 0 when not cached). */
  sessionBytes: number;
  /** Every session the container holds. */
  sessionCacheBytes: number;
}

/**
 * Hook for components that watch inference traffic (monitoring, data capture). Predict calls
 * `observe` synchronously on its request path, so implementations must only record in memory
 * (bounded) and do I/O in `flush`, which predict calls without making the client wait longer
 * than the observer's own budget.
 */
export interface InferenceObserver {
  observe(observation: InferenceObservation): void;
  /** Persist what was recorded; called by predict when the observer says it is due. */
  flush(): Promise<void>;
  /** True when enough time or requests have accumulated to flush. */
  readonly flushDue: boolean;
}

/**
 * What the generate function reports about each finished generation: counts and timings only
 * (prompts and completions never reach monitoring).
 */
export interface GenerationObservation {
  model: string;
  version: number;
  /** The alias the request was routed through, if any. */
  alias?: string;
  /** `stop`, `length` or `abort`. */
  finishReason: string;
  promptTokens: number;
  completionTokens: number;
  /** Call to first token, milliseconds (meaningful when `completionTokens > 0`). */
  timeToFirstTokenMs: number;
  /** Decode rate after the first token (0 with fewer than two tokens). */
  tokensPerSecond: number;
  /** Whole generation, milliseconds. */
  totalMs: number;
  /**
   * The prompt as the model read it (chat template applied; or token ids) and the completion.
   * Observers keep neither unless told to: capture only with `MAAS_CAPTURE_TEXT_SAMPLE` > 0.
   */
  text?: { prompt: string | readonly number[]; completion: string };
}

/**
 * The text-generation counterpart of {@link InferenceObserver}: `observeGeneration` records in
 * memory on the request path, `flush` persists when `flushDue`.
 */
export interface GenerationObserver {
  observeGeneration(observation: GenerationObservation): void;
  flush(): Promise<void>;
  readonly flushDue: boolean;
}
