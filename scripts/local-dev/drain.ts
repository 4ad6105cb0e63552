import { randomBytes } from 'node:crypto';
import { BroadcastChannel } from 'node:worker_threads';
import { type DrainMessage, LOCAL_DRAIN_CHANNEL } from '../../functions/lib/shutdown';

/** Options of {@link drainLocalHandlers}. */
export interface DrainOptions {
  /** How long handler threads have to acknowledge the request, ms (default 300). */
  ackMs?: number;
  /** Longest wait for the acknowledged ones to finish, ms (default 10000). */
  timeoutMs?: number;
}

/**
 * Asks every handler thread of `npm start` (serverless-offline runs each warm handler in a
 * worker thread of this process) to run its shutdown hooks — predict writes its pending
 * captures — and waits until each one that answered is done. Called by plugins/local-dev.js
 * when `npm start` stops (SIGINT/SIGTERM), before serverless-offline terminates the threads.
 *
 * @example
 * ```ts
 * const { drained } = await drainLocalHandlers(); // number of handler threads that flushed
 * ```
 */
export async function drainLocalHandlers(
  options: DrainOptions = {},
): Promise<{ drained: number; timedOut: number }> {
  const { ackMs = 300, timeoutMs = 10_000 } = options;
  const id = randomBytes(6).toString('hex');
  const channel = new BroadcastChannel(LOCAL_DRAIN_CHANNEL);
  const acked = new Set<number>();
  const drained = new Set<number>();
  let wake: (() => void) | undefined;
  channel.onmessage = (event) => {
    const message = (event as { data?: DrainMessage }).data;
    if (!message || message.id !== id) return;
    if (message.type === 'ack') acked.add(message.thread);
    if (message.type === 'drained') drained.add(message.thread);
    wake?.();
  };
  try {
    channel.postMessage({ type: 'drain', id } satisfies DrainMessage);
    const wait = (ms: number) =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, ms);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    await wait(ackMs);
    // Acks that arrived while waiting re-armed the wait: give the rest of the ack window.
    await new Promise((r) => setTimeout(r, ackMs));
    const deadline = Date.now() + timeoutMs;
    while ([...acked].some((t) => !drained.has(t)) && Date.now() < deadline)
      await wait(deadline - Date.now());
    return { drained: drained.size, timedOut: [...acked].filter((t) => !drained.has(t)).length };
  } finally {
    channel.close();
  }
}
