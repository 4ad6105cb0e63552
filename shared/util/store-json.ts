import { ObjectNotFoundError, type ObjectStore } from '../store';

/**
 * Reads a JSON object from the store with its etag (for a later compare-and-swap put), or
 * undefined when the key does not exist. Other store errors and malformed JSON propagate: a
 * missing object is an expected state (first run, no override), a broken one is not.
 *
 * The result is parsed, not validated: callers that read documents written by other code
 * check the fields they rely on.
 *
 * @example
 * ```ts
 * const found = await readJson<MonitorState>(store, monitoringLayout.state('iris'));
 * await store.put(key, JSON.stringify(next), found ? { ifMatch: found.etag } : { ifNoneMatch: '*' });
 * ```
 */
export async function readJson<T>(
  store: ObjectStore,
  key: string,
): Promise<{ doc: T; etag: string } | undefined> {
  try {
    const { body, etag } = await store.get(key);
    return { doc: JSON.parse(body.toString('utf8')) as T, etag };
  } catch (e) {
    if (e instanceof ObjectNotFoundError) return undefined;
    throw e;
  }
}
