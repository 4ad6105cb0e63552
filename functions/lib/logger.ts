import { Logger } from '@aws-lambda-powertools/logger';

/**
 * The Powertools Logger of the functions that have no logger of their own (predict has
 * `maas-predict`): structured JSON lines to CloudWatch, level from `POWERTOOLS_LOG_LEVEL`.
 *
 * @example
 * ```ts
 * logger.warn('incoming object', { key, status: 'rejected' });
 * ```
 */
export const logger = new Logger({ serviceName: 'maas' });
