import type { PublishResult } from '../../shared/events';
import { getEventOutbox } from '../lib/runtime';

/**
 * The scheduled run's event sweep: republishes registry changes whose publication failed
 * (models marked pending), and once a day every model's history (shared/events/outbox.ts).
 * Skipped when no sink is configured.
 * @example
 * ```ts
 * const swept = await sweepEvents(); // { full: false, published: 3, failed: [] }
 * ```
 */
export async function sweepEvents(): Promise<
  { full: boolean; published: number; failed: PublishResult[] } | { skipped: string }
> {
  const outbox = getEventOutbox();
  if (!outbox) return { skipped: 'no event sink is configured' };
  const { full, results } = await outbox.sweep();
  return {
    full,
    published: results.reduce((n, r) => n + r.published, 0),
    failed: results.filter((r) => r.error),
  };
}
