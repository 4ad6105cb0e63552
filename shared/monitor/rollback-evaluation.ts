import type { AliasRecord } from '../registry/types';
import type { BaselineDoc } from './baseline';
import type { RollbackPolicy } from './policy';
import type { VersionReport } from './report';

/** How one role of an alias (its primary version or its canary) fared in a window. */
export interface RoleEvaluation {
  alias: string;
  role: 'primary' | 'canary';
  version: number;
  /** The window had at least `minRequests` requests for this version. */
  evidence: boolean;
  /** Thresholds exceeded in this window, as readable sentences. */
  breaches: string[];
  /** Consecutive breaching windows, this one included. */
  consecutive: number;
  /** Whether the policy lets the monitor roll this role back. */
  autoRollback: boolean;
}

/**
 * Judges every alias role against the policy's thresholds, each on the reports of the traffic
 * routed through that alias alone (`versionsByAlias`: calls to `/versions/{n}` never count), and carries the breach streaks
 * (`{alias}/{role}/{version}` → count) from the previous window to this one. A window without
 * evidence leaves a streak unchanged; a clean one resets it. Pure: decides, never acts (see
 * `rollback-actions.ts`).
 *
 * @example
 * ```ts
 * const { evaluations, breaches } = evaluateRollbacks(aliases, new Map([['production', reports]]), baselines, state.breaches, policy);
 * ```
 */
export function evaluateRollbacks(
  aliases: readonly AliasRecord[],
  versionsByAlias: ReadonlyMap<string, Record<string, VersionReport>>,
  baselines: ReadonlyMap<number, BaselineDoc | undefined>,
  previous: Record<string, number>,
  policy: RollbackPolicy,
): { evaluations: RoleEvaluation[]; breaches: Record<string, number> } {
  const evaluations: RoleEvaluation[] = [];
  const breaches: Record<string, number> = {};
  const t = policy.thresholds;
  for (const a of aliases) {
    const versions = versionsByAlias.get(a.alias) ?? {};
    const roles: [RoleEvaluation['role'], number][] = [['primary', a.version]];
    if (a.canary) roles.push(['canary', a.canary.version]);
    for (const [role, version] of roles) {
      const key = `${a.alias}/${role}/${version}`;
      const r = versions[version];
      const found: string[] = [];
      const evidence = !!r && r.requests >= policy.minRequests && r.requests > 0;
      if (r && evidence) {
        if (t.errorRate !== undefined && r.errorRate > t.errorRate)
          found.push(`error rate ${fmt(r.errorRate)} > ${t.errorRate}`);
        if (t.p99LatencyMs !== undefined && r.latencyMs.p99 > t.p99LatencyMs)
          found.push(`p99 latency ${fmt(r.latencyMs.p99)} ms > ${t.p99LatencyMs} ms`);
        const psi = Math.max(r.drift.maxInputPsi ?? -Infinity, r.drift.maxOutputPsi ?? -Infinity);
        if (t.psi !== undefined && psi > t.psi) found.push(`PSI ${fmt(psi)} > ${t.psi}`);
        if (
          t.accuracyDrop !== undefined &&
          r.quality?.accuracy !== undefined &&
          r.quality.n >= policy.minFeedback
        ) {
          const ref = role === 'canary' ? versions[a.version]?.quality : undefined;
          const reference =
            role === 'canary'
              ? ref && ref.n >= policy.minFeedback
                ? ref.accuracy
                : undefined
              : baselines.get(version)?.metrics?.accuracy;
          if (reference !== undefined && reference - r.quality.accuracy > t.accuracyDrop) {
            found.push(
              `accuracy ${fmt(r.quality.accuracy)} is ${fmt(reference - r.quality.accuracy)} below ${role === 'canary' ? `primary version ${a.version}` : 'baseline'} (> ${t.accuracyDrop})`,
            );
          }
        }
      }
      const consecutive = !evidence ? (previous[key] ?? 0) : found.length > 0 ? (previous[key] ?? 0) + 1 : 0;
      breaches[key] = consecutive;
      evaluations.push({
        alias: a.alias,
        role,
        version,
        evidence,
        breaches: found,
        consecutive,
        autoRollback: role === 'canary' ? policy.canary : policy.primary,
      });
    }
  }
  return { evaluations, breaches };
}

function fmt(x: number): string {
  return Number.isFinite(x) ? Number(x.toPrecision(3)).toString() : String(x);
}
