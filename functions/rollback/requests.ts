import { InvalidArgumentError } from '../../shared/errors';
import { type CanarySplit, parseVersionNumber } from '../../shared/registry';
import { type HttpEvent, header } from '../lib/http';

/**
 * The alias precondition a request states: `If-Match: "etag"` → the etag (quotes and `W/`
 * dropped); `If-None-Match: *` → null (the alias must not exist yet); neither → undefined.
 *
 * @example
 * ```ts
 * const ifMatch = precondition(event);
 * await registry.setAlias(name, alias, version, { ...(ifMatch !== undefined ? { ifMatch } : {}) });
 * ```
 */
export function precondition(event: HttpEvent): string | null | undefined {
  const ifMatch = header(event, 'if-match');
  if (ifMatch !== undefined) return ifMatch.trim().replace(/^W\//, '').replace(/^"|"$/g, '');
  return header(event, 'if-none-match')?.trim() === '*' ? null : undefined;
}

/**
 * A field that must be a string when present.
 *
 * @example
 * ```ts
 * const reason = optionalString(jsonBody(event), 'reason');
 * ```
 */
export function optionalString(body: Record<string, unknown>, field: string): string | undefined {
  const v = body[field];
  if (v !== undefined && typeof v !== 'string')
    throw new InvalidArgumentError(`${field} must be a string`, { field });
  return v;
}

/**
 * `{version, weight}` of a canary split, if the body has one (the registry checks the weight).
 *
 * @example
 * ```ts
 * parseCanary({ canary: { version: 4, weight: 0.1 } }); // { version: 4, weight: 0.1 }
 * ```
 */
export function parseCanary(body: Record<string, unknown>): CanarySplit | undefined {
  const canary = body.canary as Partial<CanarySplit> | undefined;
  if (canary === undefined) return undefined;
  if (typeof canary !== 'object' || canary === null || Array.isArray(canary))
    throw new InvalidArgumentError('canary must be {version, weight}', { field: 'canary' });
  return { version: parseVersionNumber(canary.version), weight: canary.weight as number };
}
