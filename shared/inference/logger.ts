/**
 * The logging port of the inference core: structured messages with attributes. Powertools'
 * `Logger` satisfies it; {@link silentLogger} is the default. Never pass tensor data as attributes.
 */
export interface InferenceLogger {
  info(message: string, attributes?: Record<string, unknown>): void;
  warn(message: string, attributes?: Record<string, unknown>): void;
  error(message: string, attributes?: Record<string, unknown>): void;
}

/** Drops everything (the core's default when no logger is given). */
export const silentLogger: InferenceLogger = { info() {}, warn() {}, error() {} };
