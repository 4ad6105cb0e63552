/**
 * Typed errors shared by every maas component.
 *
 * The core never speaks HTTP, but every failure belongs to one of a few kinds that
 * adapters (the Lambda handlers, the CLI) map to a status code with {@link httpStatusOf}.
 */
export type ErrorKind =
  | 'invalid_argument'
  | 'not_found'
  | 'conflict'
  | 'precondition_failed'
  | 'too_large'
  | 'unsupported_media_type'
  | 'unprocessable'
  | 'unavailable'
  | 'integrity_error'
  | 'internal';

const STATUS: Record<ErrorKind, number> = {
  invalid_argument: 400,
  not_found: 404,
  conflict: 409,
  precondition_failed: 412,
  too_large: 413,
  unsupported_media_type: 415,
  unprocessable: 422,
  unavailable: 503,
  integrity_error: 500,
  internal: 500,
};

/** Base class: a message meant for the caller, a kind, and optional structured details. */
export class MaasError extends Error {
  readonly kind: ErrorKind;
  readonly details: Record<string, unknown> | undefined;
  constructor(
    kind: ErrorKind,
    message: string,
    details?: Record<string, unknown>,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
    this.kind = kind;
    this.details = details;
  }
}

export class InvalidArgumentError extends MaasError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('invalid_argument', message, details);
  }
}
export class NotFoundError extends MaasError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('not_found', message, details);
  }
}
export class ConflictError extends MaasError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('conflict', message, details);
  }
}
export class PreconditionFailedError extends MaasError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('precondition_failed', message, details);
  }
}
export class PayloadTooLargeError extends MaasError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('too_large', message, details);
  }
}
export class UnsupportedMediaTypeError extends MaasError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('unsupported_media_type', message, details);
  }
}
/** The request is well-formed but its content cannot be used (e.g. a file that is not ONNX). */
export class UnprocessableError extends MaasError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('unprocessable', message, details);
  }
}

/**
 * Stored model bytes do not hash to the sha256 (or size) their version recorded: corruption or
 * tampering, never the caller's fault (500). The registry raises it from every verified read, so
 * such bytes are never served, downloaded or optimized.
 */
export class IntegrityError extends MaasError {
  constructor(
    readonly model: string,
    readonly version: number,
    readonly expected: string,
    readonly actual: string,
  ) {
    super(
      'integrity_error',
      `model ${model} version ${version} failed its integrity check (sha256 ${actual} ≠ recorded ${expected}); refusing to use it`,
      { model, version },
    );
  }
}

/** HTTP status for any thrown value: MaasError kinds map to 4xx/5xx, anything else is a 500. */
export function httpStatusOf(error: unknown): number {
  return error instanceof MaasError ? STATUS[error.kind] : 500;
}
