import { InvalidArgumentError } from '../errors';
import { assertModelName } from '../registry/names';
import type { ObjectStore } from '../store';
import { putJson, readJson } from '../store/documents';
import { booleanSetting, numberSetting } from './config';
import { monitoringLayout } from './layout';

/**
 * When the monitor takes a version back. A version behind an alias that breaches any
 * threshold for `windows` consecutive monitor runs with at least `minRequests` requests is
 * rolled back: a canary loses its split (the alias keeps its primary version), a primary
 * version is replaced by the alias's previous version (`registry.rollback`). Runs with fewer
 * requests are no evidence either way and leave the count unchanged.
 *
 * Defaults come from `MAAS_ROLLBACK_*` settings; a per-model object stored at
 * `monitoring/policies/{name}.json` overrides any field.
 */
export interface RollbackPolicy {
  /** Roll back canaries automatically (default on: `MAAS_ROLLBACK_CANARY`). */
  canary: boolean;
  /** Roll back primary alias versions automatically (default off: `MAAS_ROLLBACK_PRIMARY`). */
  primary: boolean;
  /** K: consecutive breaching windows needed (`MAAS_ROLLBACK_WINDOWS`, default 3). */
  windows: number;
  /** Requests a window needs to count as evidence (`MAAS_ROLLBACK_MIN_REQUESTS`, default 20). */
  minRequests: number;
  /** Joined feedback records needed before accuracy is judged (`MAAS_ROLLBACK_MIN_FEEDBACK`, default 20). */
  minFeedback: number;
  thresholds: {
    /** 5xx share of requests (`MAAS_ROLLBACK_ERROR_RATE`, default 0.05). */
    errorRate?: number;
    /** p99 latency, ms (`MAAS_ROLLBACK_P99_MS`, default 5000). */
    p99LatencyMs?: number;
    /** Largest input or output PSI (`MAAS_ROLLBACK_PSI`, default 0.25). */
    psi?: number;
    /** Accuracy below the reference by more than this (`MAAS_ROLLBACK_ACCURACY_DROP`, default 0.1): a canary against the primary in the same window, a primary against its baseline's `metrics.accuracy`. */
    accuracyDrop?: number;
  };
}

/**
 * The policy from `MAAS_ROLLBACK_*` settings. A threshold set to `0`… is still a threshold;
 * set it to `off` to disable it.
 *
 * @example
 * ```ts
 * const policy = policyFromEnv({ MAAS_ROLLBACK_WINDOWS: '2' }); // policy.windows === 2
 * ```
 */
export function policyFromEnv(env: NodeJS.ProcessEnv = process.env): RollbackPolicy {
  const threshold = (name: string, fallback: number): number | undefined =>
    env[name]?.trim().toLowerCase() === 'off' ? undefined : numberSetting(env, name, fallback, { min: 0 });
  const thresholds: RollbackPolicy['thresholds'] = {};
  const errorRate = threshold('MAAS_ROLLBACK_ERROR_RATE', 0.05);
  const p99 = threshold('MAAS_ROLLBACK_P99_MS', 5000);
  const psi = threshold('MAAS_ROLLBACK_PSI', 0.25);
  const drop = threshold('MAAS_ROLLBACK_ACCURACY_DROP', 0.1);
  if (errorRate !== undefined) thresholds.errorRate = errorRate;
  if (p99 !== undefined) thresholds.p99LatencyMs = p99;
  if (psi !== undefined) thresholds.psi = psi;
  if (drop !== undefined) thresholds.accuracyDrop = drop;
  return {
    canary: booleanSetting(env, 'MAAS_ROLLBACK_CANARY', true),
    primary: booleanSetting(env, 'MAAS_ROLLBACK_PRIMARY', false),
    windows: numberSetting(env, 'MAAS_ROLLBACK_WINDOWS', 3, { min: 1, max: 1000 }),
    minRequests: numberSetting(env, 'MAAS_ROLLBACK_MIN_REQUESTS', 20, { min: 0 }),
    minFeedback: numberSetting(env, 'MAAS_ROLLBACK_MIN_FEEDBACK', 20, { min: 0 }),
    thresholds,
  };
}

/** A per-model override: any subset of the policy (thresholds merge field by field; `null` disables one). */
export interface RollbackPolicyOverride {
  canary?: boolean;
  primary?: boolean;
  windows?: number;
  minRequests?: number;
  minFeedback?: number;
  thresholds?: { [K in keyof RollbackPolicy['thresholds']]?: number | null };
}

/**
 * Validates an override (what the monitor function's `policy` action stores).
 *
 * @example
 * ```ts
 * parsePolicyOverride({ windows: 2, thresholds: { psi: null } });
 * ```
 */
export function parsePolicyOverride(raw: unknown): RollbackPolicyOverride {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw new InvalidArgumentError('policy must be an object');
  const r = raw as Record<string, unknown>;
  const out: RollbackPolicyOverride = {};
  for (const k of ['canary', 'primary'] as const) {
    if (r[k] === undefined) continue;
    if (typeof r[k] !== 'boolean')
      throw new InvalidArgumentError(`policy.${k} must be true or false`, { field: k });
    out[k] = r[k];
  }
  for (const k of ['windows', 'minRequests', 'minFeedback'] as const) {
    if (r[k] === undefined) continue;
    const v = r[k];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < (k === 'windows' ? 1 : 0))
      throw new InvalidArgumentError(
        `policy.${k} must be ${k === 'windows' ? 'a positive' : 'a non-negative'} integer`,
        { field: k },
      );
    out[k] = v;
  }
  if (r.thresholds !== undefined) {
    if (typeof r.thresholds !== 'object' || r.thresholds === null)
      throw new InvalidArgumentError('policy.thresholds must be an object');
    const t = r.thresholds as Record<string, unknown>;
    out.thresholds = {};
    for (const k of ['errorRate', 'p99LatencyMs', 'psi', 'accuracyDrop'] as const) {
      const v = t[k];
      if (v === undefined) continue;
      if (v !== null && (typeof v !== 'number' || !Number.isFinite(v) || v < 0))
        throw new InvalidArgumentError(`policy.thresholds.${k} must be a non-negative number or null`, {
          field: k,
        });
      out.thresholds[k] = v;
    }
    for (const k of Object.keys(t))
      if (!['errorRate', 'p99LatencyMs', 'psi', 'accuracyDrop'].includes(k))
        throw new InvalidArgumentError(`unknown threshold ${k}`, { field: k });
  }
  return out;
}

/**
 * Applies an override to a policy.
 *
 * @example
 * ```ts
 * const policy = applyOverride(policyFromEnv(), { primary: true });
 * ```
 */
export function applyOverride(base: RollbackPolicy, o: RollbackPolicyOverride): RollbackPolicy {
  const thresholds = { ...base.thresholds };
  for (const [k, v] of Object.entries(o.thresholds ?? {}) as [
    keyof RollbackPolicy['thresholds'],
    number | null,
  ][]) {
    if (v === null) delete thresholds[k];
    else thresholds[k] = v;
  }
  const { thresholds: _ignored, ...rest } = o;
  return { ...base, ...rest, thresholds };
}

/**
 * Stores a model's policy override (validated).
 *
 * @example
 * ```ts
 * await putPolicyOverride(store, 'iris', { primary: true, thresholds: { psi: 0.5 } });
 * ```
 */
export async function putPolicyOverride(
  store: ObjectStore,
  model: string,
  raw: unknown,
): Promise<RollbackPolicyOverride> {
  assertModelName(model);
  const override = parsePolicyOverride(raw);
  await putJson(store, monitoringLayout.policy(model), override);
  return override;
}

/**
 * The effective policy of a model: env defaults with its stored override applied.
 *
 * @example
 * ```ts
 * const policy = await effectivePolicy(store, 'iris', policyFromEnv());
 * ```
 */
export async function effectivePolicy(
  store: ObjectStore,
  model: string,
  defaults: RollbackPolicy,
): Promise<RollbackPolicy> {
  const found = await readJson<unknown>(store, monitoringLayout.policy(model));
  return found ? applyOverride(defaults, parsePolicyOverride(found.doc)) : defaults;
}
