import { InvalidArgumentError, UnsupportedMediaTypeError } from '../../shared/errors';
import type { RegisterOptions } from '../../shared/registry';
import { bodyBytes, type HttpEvent, header, jsonBody } from '../lib/http';

/** What `POST /models/{name}/versions` asked for: bytes inline, or the key of an earlier upload. */
export type RegisterRequest = { options: RegisterOptions } & ({ bytes: Uint8Array } | { uploadKey: string });

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/**
 * Parses the three accepted forms of a registration request:
 * - `application/json` `{uploadKey | modelBase64, description?, tags?, alias?, reason?, metadata?, force?}`;
 * - `application/octet-stream` (API Gateway delivers it base64-encoded) with the metadata in query
 *   parameters `description`, `alias`, `reason`, `tags` (a JSON object), `force=true`.
 *
 * @example
 * ```ts
 * const request = parseRegisterRequest(event);
 * if ('uploadKey' in request) await registerFromUpload(registry, name, request.uploadKey, request.options);
 * ```
 */
export function parseRegisterRequest(event: HttpEvent): RegisterRequest {
  const type = (header(event, 'content-type') ?? '').split(';')[0]!.trim().toLowerCase();
  if (type === 'application/json' || type.endsWith('+json')) {
    const body = jsonBody(event);
    const options = registerOptions(body);
    const hasKey = body.uploadKey !== undefined;
    const hasBytes = body.modelBase64 !== undefined;
    if (hasKey === hasBytes) throw new InvalidArgumentError('give exactly one of uploadKey or modelBase64');
    if (hasKey) {
      if (typeof body.uploadKey !== 'string')
        throw new InvalidArgumentError('uploadKey must be a string', { field: 'uploadKey' });
      return { uploadKey: body.uploadKey, options };
    }
    const b64 = typeof body.modelBase64 === 'string' ? body.modelBase64.replace(/\s+/g, '') : undefined;
    if (!b64 || b64.length % 4 !== 0 || !BASE64.test(b64))
      throw new InvalidArgumentError('modelBase64 must be non-empty standard base64', {
        field: 'modelBase64',
      });
    return { bytes: Buffer.from(b64, 'base64'), options };
  }
  if (
    type === 'application/octet-stream' ||
    type === 'application/onnx' ||
    (type === '' && event.isBase64Encoded)
  ) {
    const bytes = bodyBytes(event);
    if (bytes.length === 0) throw new InvalidArgumentError('request body is empty: send the model bytes');
    const q = event.queryStringParameters ?? {};
    let tags: unknown;
    if (q.tags !== undefined) {
      try {
        tags = JSON.parse(q.tags);
      } catch {
        throw new InvalidArgumentError('query parameter tags must be a JSON object', { field: 'tags' });
      }
    }
    return { bytes, options: registerOptions({ ...q, tags, force: q.force === 'true' }) };
  }
  throw new UnsupportedMediaTypeError(
    `send application/json or application/octet-stream, got ${type || 'no content-type'}`,
  );
}

/**
 * Copies the recognised registration fields (`description`, `tags`, `alias`, `reason`,
 * `metadata`, `force`); the registry validates their types and sizes.
 *
 * @example
 * ```ts
 * const options = registerOptions(jsonBody(event)); // the body of an upload session's complete
 * ```
 */
export function registerOptions(b: Record<string, unknown>): RegisterOptions {
  const o: Record<string, unknown> = {};
  for (const k of ['description', 'tags', 'alias', 'reason', 'metadata'] as const)
    if (b[k] !== undefined) o[k] = b[k];
  if (b.force !== undefined && b.force !== false) {
    if (b.force !== true) throw new InvalidArgumentError('force must be a boolean', { field: 'force' });
    o.force = true;
  }
  return o as RegisterOptions;
}
