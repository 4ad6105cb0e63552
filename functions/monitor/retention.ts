import {
  claimRetentionRun,
  type RetentionResult,
  readRetentionSettings,
  sweepRetention,
} from '../../shared/monitor/retention';
import { readSettings } from '../../shared/settings';
import { getStore } from '../lib/runtime';

/**
 * The scheduled run's retention pass (shared/monitor/retention.ts), at most once per
 * `MAAS_RETENTION_EVERY_MINUTES`. Prefix expiry runs only where no lifecycle rules do it: on a
 * real Lambda the bucket's rules expire prefixes, under `npm start` (serverless-offline) and in
 * plain Node this sweep does.
 *
 * @example
 * ```ts
 * const swept = await sweepRetentionIfDue(Date.now() + 60_000); // { skipped } or what was deleted
 * ```
 */
export async function sweepRetentionIfDue(
  deadlineMs?: number,
  env: NodeJS.ProcessEnv = process.env,
): Promise<RetentionResult | { skipped: string }> {
  const settings = readSettings((r) => readRetentionSettings(r), env);
  const store = getStore();
  if (!(await claimRetentionRun(store, settings.everyMinutes)))
    return { skipped: `swept less than ${settings.everyMinutes} minutes ago` };
  const onLambda = Boolean(env.AWS_LAMBDA_FUNCTION_NAME) && !env.IS_OFFLINE;
  return sweepRetention(store, settings, {
    prefixes: !onLambda,
    ...(deadlineMs !== undefined ? { deadlineMs } : {}),
  });
}
