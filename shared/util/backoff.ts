import { setTimeout as delay } from 'node:timers/promises';

/**
 * Resolves after `ms` milliseconds: the one way maas waits.
 *
 * @example
 * ```ts
 * await sleep(50);
 * ```
 */
export function sleep(ms: number): Promise<void> {
  return delay(ms).then(() => undefined);
}

/** Exponential backoff bounds, in milliseconds. */
export interface BackoffOptions {
  /** Delay before the second attempt (default 10). */
  baseMs?: number;
  /** Largest delay between two attempts (default 500). */
  maxMs?: number;
}

/**
 * The delay before retry number `attempt` (0-based): exponential growth (×1.5) capped at `maxMs`,
 * with "equal jitter" (50–150 % of the step) so writers that lost the same race spread out
 * instead of colliding again.
 *
 * @example
 * ```ts
 * await sleep(backoffDelay(attempt, { baseMs: 20, maxMs: 500 }));
 * ```
 */
export function backoffDelay(attempt: number, options: BackoffOptions = {}): number {
  const { baseMs = 10, maxMs = 500 } = options;
  return Math.min(baseMs * 1.5 ** attempt, maxMs) * (0.5 + Math.random());
}
