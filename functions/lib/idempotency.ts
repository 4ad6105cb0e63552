import { Idempotency } from '../../shared/registry/idempotency';
import { actorOf, type HttpEvent, type HttpResult, header } from './http';
import { getStore } from './runtime';

/** Request header carrying the client's key (IETF draft `Idempotency-Key`, as Stripe sends it). */
export const IDEMPOTENCY_HEADER = 'idempotency-key';
/** Response header set on a replayed answer. */
export const REPLAYED_HEADER = 'idempotent-replayed';

/**
 * Runs a changing route at most once per `Idempotency-Key` (shared/registry/idempotency.ts):
 * without the header it just runs; with it, a retry gets the first answer (same status and
 * body, plus `idempotent-replayed: true`). Keys are scoped by caller, method and path; the
 * payload compared is the body and the precondition headers.
 *
 * @example
 * ```ts
 * route('POST', '/models/{name}/rollback', (event) =>
 *   idempotentRoute(event, async (requestId) => aliasResponse(200, await rollback({ requestId }))),
 * );
 * ```
 */
export async function idempotentRoute(
  event: HttpEvent,
  run: (requestId: string | undefined) => Promise<HttpResult>,
): Promise<HttpResult> {
  const key = header(event, IDEMPOTENCY_HEADER);
  if (key === undefined) return run(undefined);
  const scope = `${actorOf(event)} ${event.requestContext.http.method} ${event.rawPath}`;
  const payload = {
    body: event.body ?? null,
    base64: event.isBase64Encoded ?? false,
    ifMatch: header(event, 'if-match') ?? null,
    ifNoneMatch: header(event, 'if-none-match') ?? null,
  };
  const outcome = await new Idempotency(getStore()).run(scope, key, payload, async (requestId) => {
    const res = await run(requestId);
    return {
      statusCode: res.statusCode ?? 200,
      headers: Object.fromEntries(Object.entries(res.headers ?? {}).map(([k, v]) => [k, String(v)])),
      body: typeof res.body === 'string' ? res.body : '',
    };
  });
  return {
    statusCode: outcome.statusCode,
    headers: { ...outcome.headers, ...(outcome.replayed ? { [REPLAYED_HEADER]: 'true' } : {}) },
    body: outcome.body,
  };
}
