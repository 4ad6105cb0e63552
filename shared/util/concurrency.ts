/**
 * Runs `fn` over `items` with at most `limit` calls in flight, and resolves to the results in
 * the order of `items` (not of completion). Stores and CloudWatch throttle bursts, and a
 * `Promise.all` over thousands of keys opens thousands of sockets; a small pool keeps the
 * request rate bounded without serialising the work.
 *
 * The first rejection rejects the whole call (like `Promise.all`); the other workers stop taking
 * new items but calls already in flight finish on their own. Callers that want every item tried
 * catch inside `fn`.
 *
 * @example
 * ```ts
 * const docs = await mapLimit(keys, 8, (key) => store.get(key));
 * ```
 */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  if (!(limit >= 1)) throw new RangeError(`mapLimit: limit must be at least 1, got ${limit}`);
  const out = new Array<R>(items.length);
  let next = 0;
  let failed = false;
  const worker = async (): Promise<void> => {
    while (!failed && next < items.length) {
      const i = next++;
      try {
        out[i] = await fn(items[i] as T, i);
      } catch (e) {
        failed = true;
        throw e;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(Math.floor(limit), items.length) }, worker));
  return out;
}

/**
 * Runs background tasks in this process one after another, each after the current event-loop
 * turn (so the caller's reply goes out first): the local stand-in for an asynchronous Lambda
 * invocation. A task's rejection is handed to its `onError` and never stops the ones queued after it.
 *
 * @example
 * ```ts
 * const runner = new SerialRunner();
 * runner.enqueue(() => runJob(ref), (e) => logger.error('job failed', { job: ref.job, error: String(e) }));
 * await runner.idle(); // tests: wait for everything queued so far
 * ```
 */
export class SerialRunner {
  private chain: Promise<void> = Promise.resolve();

  enqueue(task: () => Promise<unknown>, onError: (error: unknown) => void): void {
    this.chain = this.chain.then(
      () =>
        new Promise<void>((resolve) => {
          setImmediate(() => {
            task().then(
              () => resolve(),
              (e: unknown) => {
                onError(e);
                resolve();
              },
            );
          });
        }),
    );
  }

  /** Resolves when every task queued so far has finished. */
  idle(): Promise<void> {
    return this.chain;
  }
}
