/**
 * How much memory one optimize run needs, decided before the job is queued: a parent too big for
 * the function gets a 413 naming the memory it needs, instead of a worker that runs out of memory
 * three times (each retry of the sweep) and then fails.
 */
import { PayloadTooLargeError } from '../errors';
import type { MemorySettings } from '../inference/config';
import { isBundle, type ModelVersion, versionFiles } from '../registry';
import { parseCandidate } from './techniques';

/** Candidate size per parent byte: the smallest encoding among a candidate's steps. */
function candidateFactor(spec: string): number {
  const steps = parseCandidate(spec);
  if (steps.includes('int8') || steps.includes('int8-static')) return 0.25;
  if (steps.includes('fp16')) return 0.5;
  return 1;
}

/**
 * Peak bytes of one run (docs/api/optimize.md, "Bundles and memory"): for a parent of P model
 * bytes and its largest candidate C, the parent's session and a decoded copy (2 × P), the
 * candidate's bytes and session (2 × C), and a single-file parent's bytes held throughout (P; a
 * bundle parent stays on disk).
 *
 * @example
 * const bytes = optimizeMemoryEstimate(version, ['int8', 'fp16']);
 */
export function optimizeMemoryEstimate(version: ModelVersion, techniques: readonly string[]): number {
  const parent = versionFiles(version)
    .filter((f) => f.role !== 'companion')
    .reduce((n, f) => n + f.size, 0);
  const candidate = Math.max(...techniques.map((t) => candidateFactor(t) * parent));
  return (isBundle(version) ? 0 : parent) + 2 * parent + 2 * candidate;
}

/**
 * Refuses (413 `too_large`) a run that would not fit the function's memory, naming what it needs.
 *
 * @example
 * assertOptimizeFits(version, request.techniques, inferenceSettingsFromEnv().memory);
 */
export function assertOptimizeFits(
  version: ModelVersion,
  techniques: readonly string[],
  memory: MemorySettings,
): void {
  const needed = optimizeMemoryEstimate(version, techniques);
  const available = memory.limitBytes - memory.reservedBytes;
  if (needed <= available) return;
  const mib = (n: number): number => Math.ceil(n / (1024 * 1024));
  throw new PayloadTooLargeError(
    `optimizing ${version.name} version ${version.version} (${mib(version.size)} MiB) with ${techniques.join(', ')} ` +
      `needs about ${mib(needed)} MiB of memory, more than this function can hold (${mib(available)} MiB: ` +
      `${mib(memory.limitBytes)} MiB memory, ${mib(memory.reservedBytes)} MiB of it for the runtime); deploy ` +
      `optimize with at least ${mib(needed + memory.reservedBytes)} MB of memory (up to 10240), or ask for fewer techniques`,
    {
      model: version.name,
      version: version.version,
      neededBytes: needed,
      availableBytes: available,
      memoryBytes: memory.limitBytes,
    },
  );
}
