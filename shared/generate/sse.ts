/**
 * Server-sent events encoding (the `text/event-stream` wire format OpenAI's streaming API and the
 * OIP `generate_stream` route use): one `data: <json>` line per event, a blank line after each.
 */

/** Content type of an SSE response. */
export const SSE_CONTENT_TYPE = 'text/event-stream; charset=utf-8';

/** Headers of an SSE response (no caching or proxy buffering, so chunks reach the client as sent). */
export const SSE_HEADERS: Readonly<Record<string, string>> = {
  'content-type': SSE_CONTENT_TYPE,
  'cache-control': 'no-cache',
  'x-accel-buffering': 'no',
};

/** The terminating event OpenAI streams end with. */
export const SSE_DONE = 'data: [DONE]\n\n';

/**
 * Encodes one event.
 * @example
 * sseEvent({ a: 1 }); // 'data: {"a":1}\n\n'
 */
export function sseEvent(data: unknown): string {
  // JSON.stringify never emits a raw newline, so one data line per event is always enough.
  return `data: ${JSON.stringify(data)}\n\n`;
}

/**
 * Encodes a stream of objects as SSE text, optionally ending with `data: [DONE]`.
 * @example
 * for await (const text of sseStream(chunks, { done: true })) res.write(text);
 */
export async function* sseStream(
  events: AsyncIterable<unknown>,
  options: { done?: boolean } = {},
): AsyncGenerator<string> {
  for await (const event of events) yield sseEvent(event);
  if (options.done) yield SSE_DONE;
}
