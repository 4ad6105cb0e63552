import { randomBytes } from 'node:crypto';
import { Logger } from '@aws-lambda-powertools/logger';
import type {
  GenerationObservation,
  GenerationObserver,
  InferenceObservation,
  InferenceObserver,
  ObservedTensor,
} from '../inference/observer';
import { float16BitsToFloat32 } from '../onnx/datatypes';
import type { ObjectStore } from '../store';
import { createJson } from '../store/documents';
import { mapLimit } from '../util/concurrency';
import { booleanSetting, numberSetting } from './config';
import { addValue, DenseHistogram, emptyHistogram, type Histogram } from './histogram';
import { monitoringLayout } from './layout';
import {
  type CaptureFile,
  emptyGenerationSummary,
  emptyVersionSummary,
  type GenerationSummary,
  mergeVersionSummary,
  type RawSample,
  type VersionSummary,
} from './summary';

/** What a prediction record keeps so later feedback can be scored against it. */
export interface PredictionRecord {
  id: string;
  model: string;
  version: number;
  /** `class`: top-1 class index (or integer label); `value`: regression output. */
  kind: 'class' | 'value';
  /** One entry per batch row (at most {@link MAX_PREDICTION_ROWS}). */
  predicted: number[];
  at: string;
  expiresAt: string;
}

export interface CaptureOptions {
  /** Flush at least this often while traffic flows, seconds. */
  flushSeconds?: number;
  /** Flush once this many requests were observed since the last flush. */
  flushRequests?: number;
  /** Input/output tensors with at most this many elements per row get one histogram per position; larger ones one aggregated histogram. */
  maxFeatures?: number;
  /** Values read per tensor per request at most (strided, with a rotating start, beyond): bounds the cost of observe() on large inputs. */
  maxValues?: number;
  /** Share (0..1) of requests carrying an `id` whose prediction is kept for feedback. */
  feedbackSample?: number;
  /** How long a prediction waits for its feedback, hours. */
  feedbackTtlHours?: number;
  /** Share (0..1) of requests kept raw (inputs and outputs, truncated); 0 disables. */
  payloadSample?: number;
  /**
   * Share (0..1) of finished generations whose prompt and completion text are kept as raw
   * samples (each truncated to {@link MAX_SAMPLE_TEXT_CHARS}); 0, the default, never keeps text.
   */
  textSample?: number;
  /** Longest time `flush()` holds its caller, milliseconds; writes go on in the background. */
  flushBudgetMs?: number;
  /** Most predictions held in memory between flushes; beyond, new ones are not kept (counted). */
  maxPendingPredictions?: number;
  /**
   * Estimated bytes held between flushes (live histograms, predictions, samples, capture files
   * waiting for a retry): reaching it makes a flush due; at twice it, new predictions and samples
   * are not kept and the oldest unsent capture files are dropped (all counted in `stats`).
   */
  maxPendingBytes?: number;
  /**
   * Flush from a timer `flushSeconds` after the first unflushed observation, so a burst followed
   * by silence still reaches the store (the timer is unref'd: it never keeps a process alive).
   * Default true; on Lambda the runtime is frozen between invocations, so there the shutdown
   * hook (`functions/lib/shutdown.ts`) does the last flush.
   */
  flushTimer?: boolean;
  /** Identifies this container in capture keys (random by default). */
  containerId?: string;
  /** Clock and randomness, for tests. */
  now?: () => number;
  random?: () => number;
  /** Where write failures are reported (never request data). */
  logger?: (message: string, error?: unknown) => void;
}

/** Default of {@link CaptureOptions.maxValues}: enough for stable drift statistics over a window, cheap per request. */
export const MAX_VALUES_PER_TENSOR = 128;

/** Where capture trouble goes unless the caller passes its own `logger` (Powertools JSON lines). */
const captureLogger = new Logger({ serviceName: 'maas-capture' });

const defaults: Required<Omit<CaptureOptions, 'containerId'>> = {
  flushSeconds: 60,
  flushRequests: 1000,
  maxFeatures: 32,
  maxValues: MAX_VALUES_PER_TENSOR,
  feedbackSample: 1,
  feedbackTtlHours: 168,
  payloadSample: 0,
  textSample: 0,
  flushBudgetMs: 50,
  maxPendingPredictions: 10_000,
  maxPendingBytes: 16 * 1024 * 1024,
  flushTimer: true,
  now: () => Date.now(),
  random: Math.random,
  logger: (message, error) =>
    captureLogger.warn(message, error === undefined ? {} : { error: String(error) }),
};

/** Rows of a batch whose predictions are kept for feedback. */
export const MAX_PREDICTION_ROWS = 256;
const MAX_SAMPLES_PER_FLUSH = 100;
/** Longest prompt or completion a text sample keeps, characters. */
export const MAX_SAMPLE_TEXT_CHARS = 16_384;
const SAMPLE_VALUES = 1000;
const WRITE_CONCURRENCY = 8;
/** The route of requests to an explicit version number (no alias): `/versions/{n}`. */
const DIRECT_ROUTE = '-';
/** Estimated bytes of one dense histogram (403 float64 bins and its counters). */
const HISTOGRAM_BYTES = 403 * 8 + 64;
/** Estimated bytes of a live version before its tensors (two latency histograms, maps). */
const VERSION_BYTES = 2 * HISTOGRAM_BYTES + 512;

/** Counters about the observer itself (exposed for logs and tests). */
export interface CaptureStats {
  observed: number;
  flushes: number;
  captureFilesWritten: number;
  predictionsWritten: number;
  predictionsDropped: number;
  /**
   * Prediction records not written because one already exists under that request `id` (ids
   * are chosen by clients, so another client may reuse one): the first writer keeps it, so
   * feedback joins to the prediction that id first named rather than to whoever came last.
   */
  predictionIdCollisions: number;
  writeFailures: number;
  /** Capture files given up on: their retry did not fit in `maxPendingBytes`. */
  capturesDropped: number;
  /** Raw samples not kept because pending bytes were over twice the budget. */
  samplesDropped: number;
}

/** A capture file whose write failed: retried as is, under the same key (the monitor de-duplicates by key). */
interface UnsentCapture {
  model: string;
  key: string;
  doc: CaptureFile;
  bytes: number;
}

/**
 * The monitoring {@link InferenceObserver}: keeps bounded in-memory summaries per model and
 * version (request/error counts, latency histograms, per-feature and per-output histograms
 * on the fixed bin scheme of `histogram.ts`) and writes them to the store as one create-only
 * capture object per model per flush (`monitoring/captures/...`), plus, for requests with an
 * `id`, a prediction record that `POST /models/{name}/feedback` joins ground truth to.
 *
 * `observe()` only records in memory. `flush()` swaps the buffers synchronously, starts the
 * writes and resolves after they finish or after `flushBudgetMs`, whichever comes first; the
 * writes carry on in the background (a failed capture write is merged back and retried with
 * the next flush). Call `drain()` before a process exits to wait for everything.
 *
 * @example
 * ```ts
 * const observer = new CaptureObserver(getStore(), { flushSeconds: 60, flushRequests: 1000 });
 * observer.observe(observation);
 * if (observer.flushDue) await observer.flush();
 * ```
 */
export class CaptureObserver implements InferenceObserver, GenerationObserver {
  readonly containerId: string;
  readonly stats: CaptureStats = {
    observed: 0,
    flushes: 0,
    captureFilesWritten: 0,
    predictionsWritten: 0,
    predictionsDropped: 0,
    predictionIdCollisions: 0,
    writeFailures: 0,
    capturesDropped: 0,
    samplesDropped: 0,
  };
  private readonly options: Required<Omit<CaptureOptions, 'containerId'>>;
  /** Per model, per version and route (`{version}/{alias}`, `-` for direct version calls). */
  private models = new Map<string, Map<string, LiveVersion>>();
  /** Capture files whose write failed, oldest first: written again, unchanged, with the next flush. */
  private unsent: UnsentCapture[] = [];
  private unsentBytes = 0;
  /** Estimated bytes of the live buffers (histograms, predictions, samples) since the last flush. */
  private liveBytes = 0;
  private timer: NodeJS.Timeout | undefined;
  /** Kept with a numeric time: the ISO strings are built at write time, off the request path. */
  private predictions: (Omit<PredictionRecord, 'at' | 'expiresAt'> & { atMs: number })[] = [];
  private samples = new Map<string, RawSample[]>();
  private sinceFlush = 0;
  private lastFlush: number;
  private firstObservation: number | undefined;
  private seq = 0;
  private readonly inflight = new Set<Promise<void>>();

  constructor(
    private readonly store: ObjectStore,
    options: CaptureOptions = {},
  ) {
    const given = Object.fromEntries(
      Object.entries(options).filter(([, v]) => v !== undefined),
    ) as CaptureOptions;
    this.options = { ...defaults, ...given };
    this.containerId = options.containerId ?? randomBytes(6).toString('hex');
    this.lastFlush = this.options.now();
  }

  get flushDue(): boolean {
    if (this.sinceFlush === 0) return false;
    return (
      this.sinceFlush >= this.options.flushRequests ||
      this.pendingBytes >= this.options.maxPendingBytes ||
      this.options.now() - this.lastFlush >= this.options.flushSeconds * 1000
    );
  }

  /** Estimated bytes held until the next flush (live buffers and capture files awaiting a retry). */
  get pendingBytes(): number {
    return this.liveBytes + this.unsentBytes;
  }

  /** Starts the flush timer when the first observation after a flush arrives (see {@link CaptureOptions.flushTimer}). */
  private armTimer(): void {
    if (!this.options.flushTimer || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (this.sinceFlush > 0) void this.flush();
    }, this.options.flushSeconds * 1000);
    this.timer.unref?.();
  }

  /** Counts one request of a version through a route and returns that slot's live summary. */
  private slotFor(model: string, version: number, alias: string | undefined, latencyMs: number): LiveVersion {
    this.stats.observed++;
    this.sinceFlush++;
    this.firstObservation ??= this.options.now();
    this.armTimer();
    let versions = this.models.get(model);
    if (!versions) {
      versions = new Map();
      this.models.set(model, versions);
    }
    const route = alias ?? DIRECT_ROUTE;
    const slot = `${version}/${route}`;
    let s = versions.get(slot);
    if (!s) {
      s = new LiveVersion(version, route);
      versions.set(slot, s);
      this.liveBytes += VERSION_BYTES;
    }
    s.requests++;
    s.aliases.set(route, (s.aliases.get(route) ?? 0) + 1);
    s.latency.add(latencyMs);
    return s;
  }

  /**
   * Records one finished generation (counts and timings; no text): a request of its version and
   * route like `observe`, plus the version's generation summary.
   */
  observeGeneration(o: GenerationObservation): void {
    const s = this.slotFor(o.model, o.version, o.alias, o.totalMs);
    s.rows++;
    if (!s.generation) {
      s.generation = new LiveGeneration();
      this.liveBytes += 2 * HISTOGRAM_BYTES;
    }
    s.generation.add(o);
    if (o.text && this.options.textSample > 0 && this.options.random() < this.options.textSample) {
      if (this.pendingBytes >= 2 * this.options.maxPendingBytes) this.stats.samplesDropped++;
      else this.keepTextSample(o, o.text);
    }
  }

  /** A generation's text as a raw sample: `prompt` (or `prompt_ids`) in, `completion` out. */
  private keepTextSample(o: GenerationObservation, text: NonNullable<GenerationObservation['text']>): void {
    const list = this.samples.get(o.model) ?? [];
    if (list.length >= MAX_SAMPLES_PER_FLUSH) return;
    const prompt =
      typeof text.prompt === 'string'
        ? { name: 'prompt', shape: [1], data: [text.prompt.slice(0, MAX_SAMPLE_TEXT_CHARS)] }
        : { name: 'prompt_ids', shape: [text.prompt.length], data: text.prompt.slice(0, SAMPLE_VALUES) };
    const completion = text.completion.slice(0, MAX_SAMPLE_TEXT_CHARS);
    this.liveBytes +=
      256 +
      2 *
        (completion.length +
          (typeof prompt.data[0] === 'string' ? prompt.data[0].length : 8 * prompt.data.length));
    list.push({
      version: o.version,
      status: 200,
      inputs: [prompt],
      outputs: [{ name: 'completion', shape: [1], data: [completion] }],
    });
    this.samples.set(o.model, list);
  }

  observe(o: InferenceObservation): void {
    const s = this.slotFor(o.model, o.version, o.alias, o.latencyMs);
    if (o.resources) {
      const r = s.resources;
      r.samples++;
      r.rssBytesSum += o.resources.rssBytes;
      r.rssBytesMax = Math.max(r.rssBytesMax, o.resources.rssBytes);
      r.sessionBytesMax = Math.max(r.sessionBytesMax, o.resources.sessionBytes);
      r.sessionCacheBytesMax = Math.max(r.sessionCacheBytesMax, o.resources.sessionCacheBytes);
    }
    if (o.status >= 500) s.errors++;
    else if (o.status >= 400) s.clientErrors++;
    // Only answered requests describe the data the model serves; rejected inputs would pollute drift.
    if (o.status >= 400) return;
    s.inference.add(o.inferenceMs);
    s.rows += o.batchSize;
    let histograms = 0;
    for (const t of o.inputs)
      histograms += recordLiveTensor(
        s.inputs,
        t,
        o.batchSize,
        this.options.maxFeatures,
        this.options.maxValues,
      );
    for (const t of o.outputs)
      histograms += recordLiveTensor(
        s.outputs,
        t,
        o.batchSize,
        this.options.maxFeatures,
        this.options.maxValues,
      );
    this.liveBytes += histograms * HISTOGRAM_BYTES;
    const full = this.pendingBytes >= 2 * this.options.maxPendingBytes;
    const first = o.outputs[0];
    const prediction = first ? summarizePrediction(first, o.batchSize) : undefined;
    if (prediction?.kind === 'class')
      for (const c of prediction.predicted) s.classes.set(c, (s.classes.get(c) ?? 0) + 1);
    if (o.requestId !== undefined && prediction && this.options.random() < this.options.feedbackSample) {
      if (full || this.predictions.length >= this.options.maxPendingPredictions)
        this.stats.predictionsDropped++;
      else {
        this.liveBytes += 128 + 2 * o.requestId.length + 8 * prediction.predicted.length;
        this.predictions.push({
          id: o.requestId,
          model: o.model,
          version: o.version,
          kind: prediction.kind,
          predicted: prediction.predicted,
          atMs: this.options.now(),
        });
      }
    }
    if (this.options.payloadSample > 0 && this.options.random() < this.options.payloadSample) {
      if (full) this.stats.samplesDropped++;
      else this.keepSample(o);
    }
  }

  flush(): Promise<void> {
    const work = this.startFlush();
    this.inflight.add(work);
    void work.finally(() => this.inflight.delete(work));
    let timer: NodeJS.Timeout | undefined;
    const budget = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, this.options.flushBudgetMs);
      timer.unref?.();
    });
    return Promise.race([work, budget]).finally(() => clearTimeout(timer));
  }

  /** Waits for every write started so far (call before the process exits, and in tests). */
  async drain(): Promise<void> {
    while (this.inflight.size > 0) await Promise.all([...this.inflight]);
  }

  /** Flushes whatever is buffered and waits for all writes (a failed write gets one more try here). */
  async close(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.sinceFlush > 0) await this.flush();
    await this.drain();
    if (this.unsent.length > 0) {
      await this.flush();
      await this.drain();
    }
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private keepSample(o: InferenceObservation): void {
    const list = this.samples.get(o.model) ?? [];
    if (list.length >= MAX_SAMPLES_PER_FLUSH) return;
    for (const t of [...o.inputs, ...o.outputs])
      this.liveBytes += 64 + 16 * Math.min(t.data.length, SAMPLE_VALUES);
    const raw = (t: ObservedTensor): RawSample['inputs'][number] => ({
      name: t.name,
      shape: [...t.shape],
      data: Array.from({ length: Math.min(t.data.length, SAMPLE_VALUES) }, (_, i) => {
        const v = t.data[i];
        return typeof v === 'string' ? v : Number(v);
      }),
    });
    list.push({
      version: o.version,
      ...(o.requestId !== undefined ? { requestId: o.requestId } : {}),
      status: o.status,
      inputs: o.inputs.map(raw),
      outputs: o.outputs.map(raw),
    });
    this.samples.set(o.model, list);
  }

  /** Takes the buffers (synchronously, so observations arriving during the writes go to the next flush) and writes them. */
  private startFlush(): Promise<void> {
    const models = new Map<string, LiveVersion[]>();
    for (const [model, versions] of this.models) models.set(model, [...versions.values()]);
    const unsent = this.unsent;
    this.unsent = [];
    this.unsentBytes = 0;
    this.liveBytes = 0;
    clearTimeout(this.timer);
    this.timer = undefined;
    const predictions = this.predictions;
    const samples = this.samples;
    const startedAt = this.firstObservation ?? this.options.now();
    this.models = new Map();
    this.predictions = [];
    this.samples = new Map();
    this.sinceFlush = 0;
    this.firstObservation = undefined;
    this.lastFlush = this.options.now();
    this.stats.flushes++;
    const endedAt = this.options.now();
    const captureWrites = [
      ...unsent.map((u) => this.writeCapture(u)),
      ...[...models].map(([model, versions]) =>
        this.writeCapture(this.captureFile(model, versions, samples.get(model), startedAt, endedAt)),
      ),
    ];
    const predictionWrites = mapLimit(predictions, WRITE_CONCURRENCY, (p) => this.writePrediction(p));
    return Promise.all([...captureWrites, predictionWrites]).then(() => undefined);
  }

  /** One capture file and its key, named once: a retry writes the same file under the same key. */
  private captureFile(
    model: string,
    live: LiveVersion[],
    samples: RawSample[] | undefined,
    startedAt: number,
    endedAt: number,
  ): UnsentCapture {
    const seq = ++this.seq;
    const versions = new Map<number, VersionSummary>();
    const routes: Record<string, Record<string, VersionSummary>> = {};
    for (const l of live) {
      const total = versions.get(l.version);
      versions.set(l.version, total ? mergeVersionSummary(total, l.toSummary()) : l.toSummary());
      if (l.route !== DIRECT_ROUTE) {
        const byVersion = routes[l.route] ?? {};
        byVersion[String(l.version)] = l.toSummary();
        routes[l.route] = byVersion;
      }
    }
    const doc: CaptureFile = {
      format: 'maas.capture/1',
      model,
      container: this.containerId,
      seq,
      startedAt: new Date(startedAt).toISOString(),
      endedAt: new Date(endedAt).toISOString(),
      versions: Object.fromEntries([...versions].map(([v, s]) => [String(v), s])),
      ...(Object.keys(routes).length > 0 ? { routes } : {}),
      ...(samples?.length ? { samples } : {}),
    };
    // The key's time is the flush's (endedAt), taken before the write starts: a write still in
    // flight carries a time the monitor's grace period keeps out of the current window.
    const key = monitoringLayout.capture(model, endedAt, this.containerId, seq);
    return { model, key, doc, bytes: 0 };
  }

  private async writeCapture(capture: UnsentCapture): Promise<void> {
    const { model, key, doc } = capture;
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        // Not created: a retried create-only write that finds its key already won the first time.
        await createJson(this.store, key, doc);
        this.stats.captureFilesWritten++;
        return;
      } catch (e) {
        if (attempt === 1) {
          this.stats.writeFailures++;
          this.options.logger(`capture write failed for ${model}; kept for the next flush`, e);
          this.requeue(capture);
        }
      }
    }
  }

  /**
   * Keeps a failed capture file for the next flush, unchanged and under its key: if the failed
   * write did land after all, the retry finds the key taken (create-only), and a retry landing
   * after the monitor's window is still merged once, since the monitor de-duplicates by key.
   */
  private requeue(capture: UnsentCapture): void {
    capture.bytes ||= Buffer.byteLength(JSON.stringify(capture.doc));
    this.unsent.push(capture);
    this.unsentBytes += capture.bytes;
    while (this.unsent.length > 1 && this.pendingBytes > 2 * this.options.maxPendingBytes) {
      const dropped = this.unsent.shift()!;
      this.unsentBytes -= dropped.bytes;
      this.stats.capturesDropped++;
      this.options.logger(
        `capture file ${dropped.key} dropped: pending captures over MAAS_CAPTURE_MAX_PENDING_BYTES`,
      );
    }
    this.sinceFlush++;
    this.armTimer();
  }

  private async writePrediction(
    pending: Omit<PredictionRecord, 'at' | 'expiresAt'> & { atMs: number },
  ): Promise<void> {
    const { atMs, ...rest } = pending;
    const p: PredictionRecord = {
      ...rest,
      at: new Date(atMs).toISOString(),
      expiresAt: new Date(atMs + this.options.feedbackTtlHours * 3_600_000).toISOString(),
    };
    try {
      // Create-only: a plain put would let any client overwrite another's prediction (and so
      // the ground truth joined to it) just by sending the same `id`.
      const { created } = await createJson(this.store, monitoringLayout.prediction(p.model, p.id), p);
      if (created) this.stats.predictionsWritten++;
      else this.stats.predictionIdCollisions++;
    } catch (e) {
      this.stats.writeFailures++;
      this.stats.predictionsDropped++;
      this.options.logger(`prediction record write failed for ${p.model}`, e);
    }
  }
}

/**
 * Builds the capture observer from `MAAS_CAPTURE*` settings, or returns undefined when
 * `MAAS_CAPTURE=false` (capture is on by default). Predict passes the result to its observers.
 *
 * @example
 * ```ts
 * const capture = createCaptureObserver(getStore());
 * const observers = capture ? [capture] : [];
 * ```
 */
export function createCaptureObserver(
  store: ObjectStore,
  env: NodeJS.ProcessEnv = process.env,
): CaptureObserver | undefined {
  if (!booleanSetting(env, 'MAAS_CAPTURE', true)) return undefined;
  return new CaptureObserver(store, {
    flushSeconds: numberSetting(env, 'MAAS_CAPTURE_FLUSH_SECONDS', defaults.flushSeconds, { min: 0 }),
    flushRequests: numberSetting(env, 'MAAS_CAPTURE_FLUSH_REQUESTS', defaults.flushRequests, { min: 1 }),
    maxFeatures: numberSetting(env, 'MAAS_CAPTURE_MAX_FEATURES', defaults.maxFeatures, { min: 0, max: 4096 }),
    maxValues: numberSetting(env, 'MAAS_CAPTURE_MAX_VALUES', defaults.maxValues, { min: 1 }),
    feedbackSample: numberSetting(env, 'MAAS_CAPTURE_FEEDBACK_SAMPLE', defaults.feedbackSample, {
      min: 0,
      max: 1,
    }),
    feedbackTtlHours: numberSetting(env, 'MAAS_CAPTURE_FEEDBACK_TTL_HOURS', defaults.feedbackTtlHours, {
      min: 0,
    }),
    payloadSample: numberSetting(env, 'MAAS_CAPTURE_PAYLOAD_SAMPLE', defaults.payloadSample, {
      min: 0,
      max: 1,
    }),
    textSample: numberSetting(env, 'MAAS_CAPTURE_TEXT_SAMPLE', defaults.textSample, { min: 0, max: 1 }),
    flushBudgetMs: numberSetting(env, 'MAAS_CAPTURE_FLUSH_BUDGET_MS', defaults.flushBudgetMs, { min: 0 }),
    maxPendingPredictions: numberSetting(env, 'MAAS_CAPTURE_MAX_PENDING', defaults.maxPendingPredictions, {
      min: 0,
    }),
    maxPendingBytes: numberSetting(env, 'MAAS_CAPTURE_MAX_PENDING_BYTES', defaults.maxPendingBytes, {
      min: 65_536,
      integer: true,
    }),
  });
}

/** Histograms of one tensor while recording: one per position, and/or one aggregated. */
interface LiveTensor {
  positions: DenseHistogram[];
  aggregated?: DenseHistogram;
}

/** The request-path form of a {@link VersionSummary}: dense histograms and maps, no string building per value. */
class LiveVersion {
  constructor(
    readonly version: number,
    /** The alias the requests came through, or {@link DIRECT_ROUTE}. */
    readonly route: string,
  ) {}
  requests = 0;
  rows = 0;
  errors = 0;
  clientErrors = 0;
  readonly aliases = new Map<string, number>();
  readonly latency = new DenseHistogram();
  readonly inference = new DenseHistogram();
  readonly inputs = new Map<string, LiveTensor>();
  readonly outputs = new Map<string, LiveTensor>();
  readonly classes = new Map<number, number>();
  readonly resources = emptyVersionSummary().resources;
  generation: LiveGeneration | undefined;

  toSummary(): VersionSummary {
    const features = (tensors: Map<string, LiveTensor>): Record<string, Histogram> => {
      const out: Record<string, Histogram> = {};
      for (const [name, t] of tensors) {
        t.positions.forEach((h, p) => {
          if (h.count + h.nonFinite > 0) out[`${name}[${p}]`] = h.toHistogram();
        });
        if (t.aggregated) out[`${name}[*]`] = t.aggregated.toHistogram();
      }
      return out;
    };
    return {
      requests: this.requests,
      rows: this.rows,
      errors: this.errors,
      clientErrors: this.clientErrors,
      aliases: Object.fromEntries(this.aliases),
      latencyMs: this.latency.toHistogram(),
      inferenceMs: this.inference.toHistogram(),
      inputs: features(this.inputs),
      outputs: features(this.outputs),
      predictedClasses: Object.fromEntries(this.classes),
      resources: { ...this.resources },
      ...(this.generation ? { generation: this.generation.toSummary() } : {}),
    };
  }
}

/** The request-path form of a {@link GenerationSummary}. */
class LiveGeneration {
  generations = 0;
  promptTokens = 0;
  completionTokens = 0;
  readonly finishReasons = new Map<string, number>();
  readonly timeToFirstToken = new DenseHistogram();
  readonly tokensPerSecond = new DenseHistogram();

  add(o: GenerationObservation): void {
    this.generations++;
    this.finishReasons.set(o.finishReason, (this.finishReasons.get(o.finishReason) ?? 0) + 1);
    this.promptTokens += o.promptTokens;
    this.completionTokens += o.completionTokens;
    if (o.completionTokens > 0) this.timeToFirstToken.add(o.timeToFirstTokenMs);
    if (o.tokensPerSecond > 0) this.tokensPerSecond.add(o.tokensPerSecond);
  }

  toSummary(): GenerationSummary {
    return {
      ...emptyGenerationSummary(),
      generations: this.generations,
      finishReasons: Object.fromEntries(this.finishReasons),
      promptTokens: this.promptTokens,
      completionTokens: this.completionTokens,
      timeToFirstTokenMs: this.timeToFirstToken.toHistogram(),
      tokensPerSecond: this.tokensPerSecond.toHistogram(),
    };
  }
}

/** {@link recordTensor} on the request path (same keys and sampling, dense histograms). */
let rotation = 0;

function recordLiveTensor(
  into: Map<string, LiveTensor>,
  t: ObservedTensor,
  batchSize: number,
  maxFeatures: number,
  maxValues: number,
): number {
  if (t.datatype === 'BYTES') return 0;
  const length = t.data.length;
  if (length === 0) return 0;
  const rows = Math.max(1, Math.min(batchSize, length));
  const perRow = Math.max(1, Math.floor(length / rows));
  const read = valueReader(t);
  let created = 0;
  let live = into.get(t.name);
  if (!live) {
    live = { positions: [] };
    into.set(t.name, live);
  }
  // Strided sampling starts at a rotating offset so that over many requests every row/element is seen.
  rotation = (rotation + 1) % 1_000_003;
  if (perRow <= maxFeatures) {
    const rowStep = Math.max(1, Math.ceil((rows * perRow) / maxValues));
    const positions = live.positions;
    while (positions.length < perRow) {
      positions.push(new DenseHistogram());
      created++;
    }
    for (let r = rotation % rowStep; r < rows; r += rowStep) {
      const base = r * perRow;
      for (let p = 0; p < perRow; p++) positions[p]!.add(read(base + p));
    }
  } else {
    if (!live.aggregated) {
      live.aggregated = new DenseHistogram();
      created++;
    }
    const h = live.aggregated;
    const step = Math.max(1, Math.ceil(length / maxValues));
    for (let i = rotation % step; i < length; i += step) h.add(read(i));
  }
  return created;
}

/**
 * Adds a tensor's values to feature histograms: one per position (`name[i]`) when a row has
 * at most `maxFeatures` elements, else one aggregated histogram (`name[*]`). Reads every value
 * unless `maxValues` is given (then strided). Used for reference baselines; the capture's
 * request path has its own dense, sampled variant with the same keys.
 *
 * @example
 * ```ts
 * const features: Record<string, Histogram> = {};
 * recordTensor(features, { name: 'x', datatype: 'FP32', shape: [2, 2], data: new Float32Array([1, 2, 3, 4]) }, 2, 32);
 * // features['x[0]'] holds 1 and 3, features['x[1]'] holds 2 and 4
 * ```
 */
export function recordTensor(
  into: Record<string, Histogram>,
  t: ObservedTensor,
  batchSize: number,
  maxFeatures: number,
  maxValues = Infinity,
): void {
  if (t.datatype === 'BYTES') return; // strings have no numeric distribution
  const length = t.data.length;
  if (length === 0) return;
  const rows = Math.max(1, Math.min(batchSize, length));
  const perRow = Math.max(1, Math.floor(length / rows));
  const read = valueReader(t);
  if (perRow <= maxFeatures) {
    // One histogram per position; stride over rows of very large batches.
    const rowStep = Math.max(1, Math.ceil((rows * perRow) / maxValues));
    for (let p = 0; p < perRow; p++) {
      const key = `${t.name}[${p}]`;
      let h = into[key];
      if (!h) {
        h = emptyHistogram();
        into[key] = h;
      }
      for (let r = 0; r < rows; r += rowStep) addValue(h, read(r * perRow + p));
    }
  } else {
    const key = `${t.name}[*]`;
    let h = into[key];
    if (!h) {
      h = emptyHistogram();
      into[key] = h;
    }
    const step = Math.max(1, Math.ceil(length / maxValues));
    for (let i = 0; i < length; i += step) addValue(h, read(i));
  }
}

/**
 * The top-1 class (outputs with several values per row, or one integer per row) or the
 * regression value (one float per row) of each batch row.
 *
 * @example
 * ```ts
 * summarizePrediction({ name: 'p', datatype: 'FP32', shape: [1, 3], data: new Float32Array([0.1, 0.7, 0.2]) }, 1); // { kind: 'class', predicted: [1] }
 * ```
 */
export function summarizePrediction(
  t: ObservedTensor,
  batchSize: number,
): Pick<PredictionRecord, 'kind' | 'predicted'> | undefined {
  if (t.datatype === 'BYTES' || t.data.length === 0) return undefined;
  const rows = Math.max(1, Math.min(batchSize, t.data.length));
  const perRow = Math.floor(t.data.length / rows);
  const read = valueReader(t);
  const kept = Math.min(rows, MAX_PREDICTION_ROWS);
  const predicted: number[] = [];
  if (perRow === 1) {
    for (let r = 0; r < kept; r++) predicted.push(read(r));
    const integral = !/^FP/.test(t.datatype);
    return { kind: integral ? 'class' : 'value', predicted };
  }
  for (let r = 0; r < kept; r++) {
    let best = 0;
    let bestValue = -Infinity;
    for (let i = 0; i < perRow; i++) {
      const v = read(r * perRow + i);
      if (v > bestValue) {
        bestValue = v;
        best = i;
      }
    }
    predicted.push(best);
  }
  return { kind: 'class', predicted };
}

/** Reads element i of a tensor as a number (FP16 bit patterns decoded, bigints and booleans converted). */
function valueReader(t: ObservedTensor): (i: number) => number {
  const data = t.data;
  if (t.datatype === 'FP16') return (i) => float16BitsToFloat32(Number(data[i]));
  return (i) => {
    const v = data[i];
    return typeof v === 'number'
      ? v
      : typeof v === 'bigint'
        ? Number(v)
        : typeof v === 'boolean'
          ? v
            ? 1
            : 0
          : NaN;
  };
}
