/**
 * Per-generation metrics through the request-metrics port (EMF on Lambda): time to first token,
 * tokens per second, prompt and completion tokens and the finish reason, per model and version.
 * Only counts and timings: prompts and completions never reach metrics or logs.
 */
import type { GenerationObservation } from '../inference/observer';
import type { RequestMetrics } from '../request-metrics';
import type { GenerateEvent } from './engine';

/** The final event of a generation. */
export type DoneEvent = Extract<GenerateEvent, { type: 'done' }>;

/**
 * Records one finished generation. `TokensPerSecond` is a rate stored with unit Count (the port's
 * units have no Count/Second); `Generations` carries the finish reason as a dimension (three values).
 * @example
 * recordGeneration(metrics, done, { model: 'tiny', version: '3' });
 */
export function recordGeneration(
  metrics: RequestMetrics,
  done: DoneEvent,
  model: { model: string; version: string },
): void {
  const dims = { model: model.model, version: model.version };
  metrics.add('Generations', 'Count', 1, { ...dims, finish_reason: done.finishReason });
  metrics.add('PromptTokens', 'Count', done.usage.promptTokens, dims);
  metrics.add('CompletionTokens', 'Count', done.usage.completionTokens, dims);
  metrics.add('GenerationTime', 'Milliseconds', done.timing.totalMs, dims);
  if (done.usage.completionTokens > 0)
    metrics.add('TimeToFirstToken', 'Milliseconds', done.timing.timeToFirstTokenMs, dims);
  if (done.timing.tokensPerSecond > 0)
    metrics.add('TokensPerSecond', 'Count', done.timing.tokensPerSecond, dims);
}

/**
 * What monitoring's capture keeps of one finished generation (counts and timings, no text).
 * @example
 * capture.observeGeneration(generationObservation(done, { name: 'tiny', version: 3, alias: 'production' }));
 */
export function generationObservation(
  done: DoneEvent,
  model: { name: string; version: number; alias?: string },
  prompt?: string | readonly number[],
): GenerationObservation {
  return {
    ...(prompt !== undefined ? { text: { prompt, completion: done.text } } : {}),
    model: model.name,
    version: model.version,
    ...(model.alias !== undefined ? { alias: model.alias } : {}),
    finishReason: done.finishReason,
    promptTokens: done.usage.promptTokens,
    completionTokens: done.usage.completionTokens,
    timeToFirstTokenMs: done.timing.timeToFirstTokenMs,
    tokensPerSecond: done.timing.tokensPerSecond,
    totalMs: done.timing.totalMs,
  };
}
