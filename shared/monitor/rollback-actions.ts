import type { ModelRegistry } from '../registry/model-registry';
import type { AliasRecord } from '../registry/types';
import type { RollbackPolicy } from './policy';
import type { RoleEvaluation } from './rollback-evaluation';

/** One rollback the monitor attempted (`ok: false` with `error` when the registry refused it). */
export interface MonitorAction {
  type: 'canary_removed' | 'rolled_back';
  alias: string;
  version: number;
  to?: number;
  reason: string;
  ok: boolean;
  error?: string;
}

const ACTOR = 'maas-monitor';

/**
 * Carries out what {@link RoleEvaluation}s call for: a role that breached for `policy.windows`
 * consecutive windows, with automatic rollback on for it, loses its canary split or is rolled
 * back to the alias's previous version. Every move is conditional on the alias etag the run
 * read, so a promotion made meanwhile is never undone; a refused move is reported, not thrown.
 *
 * @example
 * ```ts
 * const actions = await applyRollbacks(registry, 'iris', aliases, evaluations, policy, runId);
 * ```
 */
export async function applyRollbacks(
  registry: ModelRegistry,
  model: string,
  aliases: readonly AliasRecord[],
  evaluations: readonly RoleEvaluation[],
  policy: RollbackPolicy,
  runId: string,
): Promise<MonitorAction[]> {
  const actions: MonitorAction[] = [];
  for (const e of evaluations) {
    if (!e.autoRollback || e.breaches.length === 0 || e.consecutive < policy.windows) continue;
    const alias = aliases.find((a) => a.alias === e.alias);
    if (!alias) continue;
    const reason = `automatic rollback by monitor (run ${runId}): ${e.role} version ${e.version} of alias ${e.alias} breached ${e.breaches.join('; ')} for ${e.consecutive} consecutive windows`;
    const type = e.role === 'canary' ? 'canary_removed' : 'rolled_back';
    try {
      // Canary: same primary version, no canary (the split is removed). Primary: the previous version.
      const to =
        e.role === 'canary'
          ? (
              await registry.setAlias(model, e.alias, alias.version, {
                ifMatch: alias.etag,
                actor: ACTOR,
                reason,
              })
            ).version
          : (await registry.rollback(model, e.alias, { actor: ACTOR, reason, ifMatch: alias.etag })).version;
      actions.push({ type, alias: e.alias, version: e.version, to, reason, ok: true });
    } catch (err) {
      actions.push({
        type,
        alias: e.alias,
        version: e.version,
        reason,
        ok: false,
        error: String((err as Error).message ?? err),
      });
    }
  }
  return actions;
}

/**
 * One `monitor_breach` history entry per breaching alias role of this window (published as a
 * `monitor.breach` event). Only the run that won the window gets here, so each breach is written once.
 *
 * @example
 * ```ts
 * await recordBreaches(registry, 'iris', evaluations, runId, new Date());
 * ```
 */
export async function recordBreaches(
  registry: ModelRegistry,
  model: string,
  evaluations: readonly RoleEvaluation[],
  runId: string,
  now: Date,
): Promise<void> {
  for (const e of evaluations.filter((x) => x.breaches.length > 0)) {
    await registry.appendEvent(model, {
      type: 'monitor_breach',
      time: now.toISOString(),
      actor: ACTOR,
      alias: e.alias,
      version: e.version,
      reason: e.breaches.join('; '),
      details: { role: e.role, consecutive: e.consecutive, autoRollback: e.autoRollback, runId },
    });
  }
}
