/**
 * The gate: a candidate is kept only if it is close to its parent (accuracy tolerances) and worth
 * having (smaller or faster, without being much slower anywhere).
 */
import { InvalidArgumentError } from '../errors';
import type { EvaluationReport } from './evaluate';

/** Gate thresholds; every field optional in requests, defaults in {@link DEFAULT_TOLERANCES}. */
export interface Tolerances {
  /** Minimum top-1 agreement on classifier-like outputs ([batch, classes]). */
  minTop1Agreement: number;
  /** Minimum cosine similarity of every output. */
  minCosine: number;
  /**
   * Text-generation models: minimum share of positions of the sample prompts whose next token
   * (argmax of the logits) the candidate predicts as the parent does. Replaces `minTop1Agreement`.
   */
  minNextTokenAgreement: number;
  /** Text-generation models: minimum cosine of the logits (over all positions). Replaces `minCosine`. */
  minLogitsCosine: number;
  /** Maximum absolute error of any output element (no limit when null). */
  maxAbsError: number | null;
  /** Maximum error relative to the output's largest magnitude (no limit when null). */
  maxRelError: number | null;
  /** "Smaller" means the file shrank by at least this fraction. */
  minSizeReduction: number;
  /** "Faster" means the p50 latency at some measured batch size dropped by at least this fraction. */
  minSpeedup: number;
  /**
   * Refuse a candidate whose p50 latency at any measured batch size grows by more than this fraction
   * (e.g. weight-only DequantizeLinear → MatMul: smaller but 3–12× slower on CPU).
   */
  maxSlowdown: number;
  /**
   * A speed verdict (faster, or too slow) also needs this share of the paired runs to point the
   * same way, so a burst of background load cannot make a candidate look faster or slower.
   */
  speedConsistency: number;
}

export const DEFAULT_TOLERANCES: Tolerances = {
  minTop1Agreement: 0.99,
  minCosine: 0.999,
  // int8 of real language models keeps ~95–99 % of next tokens; a few flips among near-ties are normal.
  minNextTokenAgreement: 0.9,
  minLogitsCosine: 0.99,
  maxAbsError: null,
  maxRelError: null,
  minSizeReduction: 0.1,
  minSpeedup: 0.1,
  maxSlowdown: 0.25,
  speedConsistency: 0.75,
};

/** One gate check and its outcome. */
export interface GateCheck {
  check:
    | 'top1Agreement'
    | 'cosine'
    | 'nextTokenAgreement'
    | 'logitsCosine'
    | 'maxAbsError'
    | 'maxRelError'
    | 'smallerOrFaster'
    | 'slowdown';
  passed: boolean;
  actual: number | string;
  limit: number | string;
  message: string;
}

/** The gate's verdict. */
export interface GateDecision {
  passed: boolean;
  checks: GateCheck[];
  /** Why it failed, one line per failed check (empty when passed). */
  reasons: string[];
}

/**
 * Validates untrusted tolerance overrides and merges them with the defaults.
 * @example
 * const t = parseTolerances({ minCosine: 0.99 }); // other fields default
 */
export function parseTolerances(input: unknown): Tolerances {
  if (input === undefined) return { ...DEFAULT_TOLERANCES };
  if (typeof input !== 'object' || input === null || Array.isArray(input))
    throw new InvalidArgumentError('tolerances must be an object');
  const out: Tolerances = { ...DEFAULT_TOLERANCES };
  for (const [key, value] of Object.entries(input)) {
    if (!(key in DEFAULT_TOLERANCES))
      throw new InvalidArgumentError(
        `unknown tolerance ${key}; known: ${Object.keys(DEFAULT_TOLERANCES).join(', ')}`,
      );
    const k = key as keyof Tolerances;
    const nullable = k === 'maxAbsError' || k === 'maxRelError';
    if (value === null && nullable) {
      out[k] = null;
      continue;
    }
    if (typeof value !== 'number' || !Number.isFinite(value) || value < 0)
      throw new InvalidArgumentError(
        `tolerances.${key} must be a non-negative number${nullable ? ' or null' : ''}`,
      );
    if (
      (k === 'minTop1Agreement' ||
        k === 'minCosine' ||
        k === 'minNextTokenAgreement' ||
        k === 'minLogitsCosine' ||
        k === 'minSizeReduction' ||
        k === 'minSpeedup' ||
        k === 'speedConsistency') &&
      value > 1
    ) {
      throw new InvalidArgumentError(`tolerances.${key} must be at most 1`);
    }
    (out as unknown as Record<string, number>)[k] = value;
  }
  return out;
}

const pct = (x: number): string => `${(x * 100).toFixed(1)}%`;

/**
 * Applies the tolerances to an evaluation.
 *
 * @example
 * const decision = gate(report, DEFAULT_TOLERANCES, { technique: 'int8' });
 * if (!decision.passed) console.log(decision.reasons.join('; '));
 */
export function gate(
  report: EvaluationReport,
  tolerances: Tolerances,
  context: { technique: string; textGeneration?: boolean },
): GateDecision {
  const checks: GateCheck[] = [];
  const worst = report.accuracy.worst;
  // A text model is judged on its logits (next token and their direction), not on its KV-cache outputs.
  const logits = context.textGeneration
    ? report.accuracy.outputs.find((o) => o.name === 'logits')
    : undefined;
  if (context.textGeneration) {
    const agreement = logits?.top1Agreement ?? 0;
    const cosine = logits?.cosine ?? 0;
    checks.push({
      check: 'nextTokenAgreement',
      passed: agreement >= tolerances.minNextTokenAgreement,
      actual: agreement,
      limit: tolerances.minNextTokenAgreement,
      message: `next-token agreement ${pct(agreement)} (minimum ${pct(tolerances.minNextTokenAgreement)})`,
    });
    checks.push({
      check: 'logitsCosine',
      passed: cosine >= tolerances.minLogitsCosine,
      actual: cosine,
      limit: tolerances.minLogitsCosine,
      message: `logits cosine ${cosine.toFixed(6)} (minimum ${tolerances.minLogitsCosine})`,
    });
  } else {
    if (worst.top1Agreement !== undefined) {
      checks.push({
        check: 'top1Agreement',
        passed: worst.top1Agreement >= tolerances.minTop1Agreement,
        actual: worst.top1Agreement,
        limit: tolerances.minTop1Agreement,
        message: `top-1 agreement ${pct(worst.top1Agreement)} (minimum ${pct(tolerances.minTop1Agreement)})`,
      });
    }
    checks.push({
      check: 'cosine',
      passed: worst.cosine >= tolerances.minCosine,
      actual: worst.cosine,
      limit: tolerances.minCosine,
      message: `cosine similarity ${worst.cosine.toFixed(6)} (minimum ${tolerances.minCosine})`,
    });
  }
  // Both error bounds are optional (null = not checked) and read the same way.
  for (const [check, label] of [
    ['maxAbsError', 'max absolute error'],
    ['maxRelError', 'max relative error'],
  ] as const) {
    const limit = tolerances[check];
    if (limit === null) continue;
    const actual = worst[check];
    checks.push({
      check,
      passed: actual <= limit,
      actual,
      limit,
      message: `${label} ${actual.toExponential(3)} (maximum ${limit})`,
    });
  }
  const smaller = report.size.ratio <= 1 - tolerances.minSizeReduction;
  const consistent = tolerances.speedConsistency;
  const fasterAt = report.latency.filter(
    (l) => l.ratio <= 1 - tolerances.minSpeedup && l.fasterShare >= consistent,
  );
  const faster = fasterAt.length > 0;
  const sizeText = `size ${report.size.ratio.toFixed(3)}× the parent`;
  const speedText = report.latency
    .map(
      (l) => `latency ${l.ratio.toFixed(2)}× at batch ${l.batch} (faster in ${pct(l.fasterShare)} of pairs)`,
    )
    .join(', ');
  const pruneOnly = context.technique.split('+').every((s) => s === 'prune');
  checks.push({
    check: 'smallerOrFaster',
    passed: smaller || faster,
    actual: `${sizeText}; ${speedText}`,
    limit: `size ≤ ${(1 - tolerances.minSizeReduction).toFixed(2)}×, or latency ≤ ${(1 - tolerances.minSpeedup).toFixed(2)}× and faster in ≥ ${pct(consistent)} of pairs`,
    message:
      smaller || faster
        ? `${smaller ? 'smaller' : 'faster'} than the parent (${sizeText}; ${speedText})`
        : `neither smaller nor faster than the parent (${sizeText}; ${speedText})` +
          (pruneOnly
            ? ': pruning only zeroes weights, which a dense ONNX file stores like any other value and dense kernels multiply anyway; combine it with int8 (prune+int8) or skip it'
            : ': not worth keeping'),
  });
  const slowest = report.latency.reduce(
    (worstL, l) => (l.ratio > worstL.ratio ? l : worstL),
    report.latency[0] ?? { batch: 0, ratio: 0, fasterShare: 0.5 },
  );
  checks.push({
    check: 'slowdown',
    passed: slowest.ratio <= 1 + tolerances.maxSlowdown || 1 - slowest.fasterShare < consistent,
    actual: slowest.ratio,
    limit: 1 + tolerances.maxSlowdown,
    message: `slowest latency ratio ${slowest.ratio.toFixed(2)}× at batch ${slowest.batch}, slower in ${pct(1 - slowest.fasterShare)} of paired runs (maximum ${(1 + tolerances.maxSlowdown).toFixed(2)}× unless under ${pct(consistent)} of pairs agree)`,
  });
  const failed = checks.filter((c) => !c.passed);
  return { passed: failed.length === 0, checks, reasons: failed.map((c) => c.message) };
}
