/**
 * Measures a candidate against its parent in this process: output agreement on the same inputs,
 * latency at batch 1 and 32 with parent and candidate runs interleaved (so background load hits
 * both alike), and artifact size.
 */

import * as ort from 'onnxruntime-node';
import {
  inferenceSettingsFromEnv,
  ortSessionOptions,
  textGenerationSessionOptions,
} from '../inference/config';
import { float16BitsToFloat32, ortTypeFromOip } from '../onnx/datatypes';
import { artifactSize, createSession, type ModelArtifact } from './artifacts';
import type { EvaluationInputs, InputFeed } from './inputs';

/** Agreement of one output between parent and candidate over all accuracy samples. */
export interface OutputAccuracy {
  name: string;
  /** max |candidate − parent| over all elements. */
  maxAbsError: number;
  /** maxAbsError divided by max |parent| (error relative to the output's scale; robust to near-zero elements). */
  maxRelError: number;
  /** Cosine similarity of the flattened outputs (1 = same direction). */
  cosine: number;
  /**
   * Share of rows whose argmax agrees, for classifier-like outputs [batch, classes] and token
   * logits (every position a row: next-token agreement); absent otherwise.
   */
  top1Agreement?: number;
  /** Elements that are NaN/Inf in one output but not the other. */
  nonFiniteMismatches: number;
}

/** Latency distribution of one model at one batch size, milliseconds. */
export interface LatencyStats {
  p50: number;
  p95: number;
  mean: number;
  runs: number;
}

/** Parent vs candidate latency at one batch size. */
export interface LatencyComparison {
  batch: number;
  parent: LatencyStats;
  candidate: LatencyStats;
  /**
   * Median over rounds of candidate time / parent time, each pair run back to back (below 1:
   * faster). Pairing cancels most of the drift in machine load that a ratio of two p50s keeps.
   */
  ratio: number;
  /** Share of those pairs in which the candidate was faster (0.5 for equal models under noise). */
  fasterShare: number;
}

/** Everything measured about one candidate. */
export interface EvaluationReport {
  inputs: { source: string; samples: number; seed?: number; key?: string };
  accuracy: {
    outputs: OutputAccuracy[];
    /** Worst values over all outputs (what the gate checks). */
    worst: { maxAbsError: number; maxRelError: number; cosine: number; top1Agreement?: number };
  };
  latency: LatencyComparison[];
  size: { parent: number; candidate: number; ratio: number };
  /** Median session creation time (cold start), milliseconds. */
  load: { parent: number; candidate: number; ratio: number };
}

/** Options of {@link evaluateCandidate}. */
export interface EvaluateOptions {
  /** Timed runs per model and batch size (default 20), after `warmup` (default 3) untimed ones. */
  iterations?: number;
  warmup?: number;
  /** Session creations timed per model (default 3; at least 1). */
  loadRuns?: number;
  /** Options of the candidate's sessions (default {@link evaluationSessionOptions}), as the parent's. */
  sessionOptions?: ort.InferenceSession.SessionOptions;
}

const defaults: Required<Omit<EvaluateOptions, 'sessionOptions'>> = {
  iterations: 20,
  warmup: 3,
  loadRuns: 3,
};

/**
 * Session options for every session the evaluation creates (parent and candidates alike): the
 * ones the model is served with (`MAAS_ORT_*` settings, shared/inference/config.ts: predict's,
 * or generate's for a text-generation model), so measured speed-ups are the ones traffic will see.
 * @example
 * const parent = await ort.InferenceSession.create(bytes, evaluationSessionOptions());
 */
export function evaluationSessionOptions(
  options: { textGeneration?: boolean } = {},
  env: NodeJS.ProcessEnv = process.env,
): ort.InferenceSession.SessionOptions {
  const { session } = inferenceSettingsFromEnv(env);
  return options.textGeneration ? textGenerationSessionOptions(session) : ortSessionOptions(session);
}

/**
 * onnxruntime feeds from evaluation tensors.
 * @example
 * const outputs = await session.run(toOrtFeeds(inputs.latency[0]!.feed));
 */
export function toOrtFeeds(feed: InputFeed): Record<string, ort.Tensor> {
  const feeds: Record<string, ort.Tensor> = {};
  for (const t of feed)
    feeds[t.name] = new ort.Tensor(ortTypeFromOip(t.datatype) as 'float32', t.data as Float32Array, t.shape);
  return feeds;
}

function asNumbers(t: ort.Tensor): Float64Array {
  const out = new Float64Array(t.size);
  const data = t.data as ArrayLike<number | bigint | boolean>;
  if (t.type === 'float16')
    for (let i = 0; i < out.length; i++) out[i] = float16BitsToFloat32(Number(data[i] ?? 0));
  else for (let i = 0; i < out.length; i++) out[i] = Number(data[i] ?? 0);
  return out;
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const at = Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1));
  return sorted[at] ?? NaN;
}

function stats(samples: number[]): LatencyStats {
  const sorted = [...samples].sort((a, b) => a - b);
  return {
    p50: percentile(sorted, 0.5),
    p95: percentile(sorted, 0.95),
    mean: samples.reduce((a, b) => a + b, 0) / samples.length,
    runs: samples.length,
  };
}

async function timeRun(session: ort.InferenceSession, feeds: Record<string, ort.Tensor>): Promise<number> {
  const start = process.hrtime.bigint();
  await session.run(feeds);
  return Number(process.hrtime.bigint() - start) / 1e6;
}

/**
 * Times two sessions on the same feeds, alternating which goes first in each round so that drift
 * in machine load affects both equally. Returns both distributions, the median paired ratio b/a
 * and the share of pairs in which b was faster.
 * @example
 * const [a, b, ratio, bFasterShare] = await interleavedLatency(parent, candidate, feeds, { iterations: 20, warmup: 3 });
 */
export async function interleavedLatency(
  a: ort.InferenceSession,
  b: ort.InferenceSession,
  feeds: Record<string, ort.Tensor>,
  options: { iterations: number; warmup: number },
): Promise<[LatencyStats, LatencyStats, number, number]> {
  for (let i = 0; i < options.warmup; i++) {
    await a.run(feeds);
    await b.run(feeds);
  }
  const ta: number[] = [];
  const tb: number[] = [];
  for (let i = 0; i < options.iterations; i++) {
    if (i % 2 === 0) {
      ta.push(await timeRun(a, feeds));
      tb.push(await timeRun(b, feeds));
    } else {
      tb.push(await timeRun(b, feeds));
      ta.push(await timeRun(a, feeds));
    }
  }
  const ratios = ta.map((t, i) => (tb[i] ?? NaN) / t).sort((x, y) => x - y);
  const fasterShare = ratios.filter((r) => r < 1).length / Math.max(1, ratios.length);
  return [stats(ta), stats(tb), percentile(ratios, 0.5), fasterShare];
}

/** Accumulates agreement statistics of one output over several runs. */
class OutputComparator {
  private maxAbs = 0;
  private maxRef = 0;
  private dot = 0;
  private na = 0;
  private nb = 0;
  private rows = 0;
  private agree = 0;
  private classifier = true;
  private nonFinite = 0;

  /** `lastAxisRows`: every position is a row over the last axis (token logits [batch, positions, vocab]). */
  constructor(
    readonly name: string,
    private readonly lastAxisRows = false,
  ) {}

  add(parent: ort.Tensor, candidate: ort.Tensor): void {
    const p = asNumbers(parent);
    const c = asNumbers(candidate);
    if (p.length !== c.length) {
      this.nonFinite += Math.abs(p.length - c.length);
      this.classifier = false;
      return;
    }
    for (let i = 0; i < p.length; i++) {
      const x = p[i] ?? 0;
      const y = c[i] ?? 0;
      if (!Number.isFinite(x) || !Number.isFinite(y)) {
        if (!(Object.is(x, y) || (Number.isNaN(x) && Number.isNaN(y)))) this.nonFinite += 1;
        continue;
      }
      this.maxAbs = Math.max(this.maxAbs, Math.abs(x - y));
      this.maxRef = Math.max(this.maxRef, Math.abs(x));
      this.dot += x * y;
      this.na += x * x;
      this.nb += y * y;
    }
    const dims = parent.dims;
    const floatish = parent.type.startsWith('float');
    const lastAxis = dims[dims.length - 1] ?? 0;
    if (floatish && lastAxis >= 2 && (dims.length === 2 || (this.lastAxisRows && dims.length > 2))) {
      const cols = lastAxis;
      const rows = p.length / cols;
      for (let r = 0; r < rows; r++) {
        let ap = 0;
        let ac = 0;
        for (let k = 1; k < cols; k++) {
          if ((p[r * cols + k] ?? -Infinity) > (p[r * cols + ap] ?? -Infinity)) ap = k;
          if ((c[r * cols + k] ?? -Infinity) > (c[r * cols + ac] ?? -Infinity)) ac = k;
        }
        this.rows += 1;
        if (ap === ac) this.agree += 1;
      }
    } else {
      this.classifier = false;
    }
  }

  result(): OutputAccuracy {
    const cosine =
      this.na === 0 && this.nb === 0
        ? 1
        : this.na === 0 || this.nb === 0
          ? 0
          : this.dot / Math.sqrt(this.na * this.nb);
    return {
      name: this.name,
      maxAbsError: this.maxAbs,
      maxRelError: this.maxRef === 0 ? (this.maxAbs === 0 ? 0 : Infinity) : this.maxAbs / this.maxRef,
      cosine,
      ...(this.classifier && this.rows > 0 ? { top1Agreement: this.agree / this.rows } : {}),
      nonFiniteMismatches: this.nonFinite,
    };
  }
}

async function medianLoadMs(
  model: ModelArtifact,
  runs: number,
  sessionOptions: ort.InferenceSession.SessionOptions,
): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < Math.max(1, runs); i++) {
    const start = process.hrtime.bigint();
    const s = await createSession(model, sessionOptions);
    times.push(Number(process.hrtime.bigint() - start) / 1e6);
    await s.release();
  }
  return percentile(
    [...times].sort((a, b) => a - b),
    0.5,
  );
}

/**
 * Evaluates a candidate against its parent. `parent` may be shared across candidates (its session is
 * reused; create it with {@link evaluationSessionOptions}, or the options passed as
 * `opts.sessionOptions`); the candidate's session is created and released here.
 *
 * @example
 * const parentSession = await ort.InferenceSession.create(parentBytes, evaluationSessionOptions());
 * const report = await evaluateCandidate({ model: parentBytes, session: parentSession }, candidateBytes, inputs);
 * console.log(report.accuracy.worst.cosine, report.latency[0]?.ratio);
 */
export async function evaluateCandidate(
  parent: { model: ModelArtifact; session: ort.InferenceSession; loadMs?: number },
  candidateModel: ModelArtifact,
  inputs: EvaluationInputs,
  opts: EvaluateOptions = {},
): Promise<EvaluationReport> {
  const options = { ...defaults, ...opts };
  const sessionOptions = opts.sessionOptions ?? evaluationSessionOptions();
  const candidateLoadMs = await medianLoadMs(candidateModel, options.loadRuns, sessionOptions);
  const candidate = await createSession(candidateModel, sessionOptions);
  try {
    const rowsOf = new Set(inputs.tokenDistributions ?? []);
    const comparators = new Map(
      parent.session.outputNames.map((n) => [n, new OutputComparator(n, rowsOf.has(n))]),
    );
    for (const feed of inputs.accuracy) {
      const feeds = toOrtFeeds(feed);
      const expected = await parent.session.run(feeds);
      const actual = await candidate.run(feeds);
      for (const [name, cmp] of comparators) {
        const e = expected[name];
        const a = actual[name];
        if (e && a) cmp.add(e, a);
      }
    }
    const outputs = [...comparators.values()].map((c) => c.result());
    const tops = outputs.map((o) => o.top1Agreement).filter((t): t is number => t !== undefined);
    const worst = {
      maxAbsError: Math.max(0, ...outputs.map((o) => (o.nonFiniteMismatches > 0 ? Infinity : o.maxAbsError))),
      maxRelError: Math.max(0, ...outputs.map((o) => (o.nonFiniteMismatches > 0 ? Infinity : o.maxRelError))),
      cosine: Math.min(1, ...outputs.map((o) => o.cosine)),
      ...(tops.length > 0 ? { top1Agreement: Math.min(...tops) } : {}),
    };
    const latency: LatencyComparison[] = [];
    for (const { batch, feed } of inputs.latency) {
      const [p, c, ratio, fasterShare] = await interleavedLatency(
        parent.session,
        candidate,
        toOrtFeeds(feed),
        options,
      );
      latency.push({ batch, parent: p, candidate: c, ratio, fasterShare });
    }
    const parentLoad = parent.loadMs ?? (await medianLoadMs(parent.model, options.loadRuns, sessionOptions));
    const sizes = { parent: artifactSize(parent.model), candidate: artifactSize(candidateModel) };
    return {
      inputs: {
        source: inputs.source,
        samples: inputs.samples,
        ...(inputs.seed !== undefined ? { seed: inputs.seed } : {}),
        ...(inputs.key ? { key: inputs.key } : {}),
      },
      accuracy: { outputs, worst },
      latency,
      size: { ...sizes, ratio: sizes.candidate / sizes.parent },
      load: { parent: parentLoad, candidate: candidateLoadMs, ratio: candidateLoadMs / parentLoad },
    };
  } finally {
    await candidate.release();
  }
}

/**
 * Median session creation time of a model, milliseconds (what a cold start pays).
 * @example
 * const loadMs = await measureLoadMs(bytes, 3);
 */
export async function measureLoadMs(
  model: ModelArtifact,
  runs = 3,
  sessionOptions: ort.InferenceSession.SessionOptions = evaluationSessionOptions(),
): Promise<number> {
  return medianLoadMs(model, runs, sessionOptions);
}
