import { httpStatusOf, MaasError } from '../errors';
import { MisconfiguredError } from '../settings';

/** The one error body every maas HTTP route returns (the Open Inference Protocol's shape). */
export interface ErrorBody {
  error: string;
  /** Stable machine-readable kind, e.g. `not_found`. */
  code?: string;
  details?: Record<string, unknown>;
}

/**
 * Status and body for any thrown value. Messages of unexpected errors are not echoed to
 * clients (they may reveal internals); they are logged by the caller instead.
 *
 * @example
 * ```ts
 * const { status, body } = errorToHttp(new NotFoundError('model x does not exist'));
 * // status 404, body { error: 'model x does not exist', code: 'not_found' }
 * ```
 */
export function errorToHttp(error: unknown): { status: number; body: ErrorBody } {
  const status = httpStatusOf(error);
  // The deployment's fault, not the client's: name the settings (never their values, which may be secret).
  if (error instanceof MisconfiguredError) {
    return {
      status: 500,
      body: {
        error: `misconfigured: invalid ${error.settings.join(', ')} (see the function's start-up log)`,
        code: 'misconfigured',
        details: { settings: error.settings },
      },
    };
  }
  if (error instanceof MaasError && status < 500) {
    return {
      status,
      body: { error: error.message, code: error.kind, ...(error.details ? { details: error.details } : {}) },
    };
  }
  // The message names only the model and the hashes: operators and clients both need to know
  // the model was refused, not merely that something failed.
  if (error instanceof MaasError && error.kind === 'integrity_error') {
    return { status, body: { error: error.message, code: error.kind } };
  }
  if (error instanceof MaasError && error.kind === 'unavailable') {
    return { status, body: { error: 'service temporarily unavailable, retry later', code: error.kind } };
  }
  return { status, body: { error: 'internal error', code: 'internal' } };
}
