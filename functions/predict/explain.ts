import { ExplainService } from '../../shared/explain';
import { type HttpEvent, type HttpResult, header, pathParam } from '../lib/http';
import { inferBody, inferResponse } from './http';
import { getInferenceService, getPredictStore } from './runtime';

/** Header that turns an infer request into an explain request (off unless `true`). */
export const EXPLAIN_HEADER = 'x-maas-explain';

/** Whether an infer request asked for an explanation with {@link EXPLAIN_HEADER}. */
export function wantsExplanation(event: HttpEvent): boolean {
  return header(event, EXPLAIN_HEADER)?.trim().toLowerCase() === 'true';
}

/**
 * `POST /v2/models/{name}[/versions/{version}]/explain` (and infer with `x-maas-explain: true`):
 * the OIP response of the instance plus its explanation; see docs/api/predict.md.
 * @example
 * { method: 'POST', path: '/v2/models/{name}/explain', handler: explain }
 */
export async function explain(event: HttpEvent): Promise<HttpResult> {
  // Stateless over the warm inference core: its routes and sessions are what explanations run on.
  const result = await new ExplainService({
    inference: getInferenceService(),
    store: getPredictStore(),
  }).explain(
    pathParam(event, 'name'),
    event.pathParameters?.version ? pathParam(event, 'version') : undefined,
    inferBody(event),
    {
      contentType: header(event, 'content-type'),
      headerLength: header(event, 'inference-header-content-length'),
    },
  );
  // Same response path as infer: JSON body, version header, 413 beyond Lambda's payload limit.
  return inferResponse(result);
}
