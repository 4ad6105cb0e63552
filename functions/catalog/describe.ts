import type { AliasRecord, ModelRegistry, ModelVersion, VersionStatus } from '../../shared/registry';

export interface ModelDescription {
  name: string;
  latestVersion: number;
  latestActiveVersion: number | null;
  counts: { versions: number } & Record<VersionStatus, number>;
  aliases: Record<string, Omit<AliasRecord, 'name'>>;
  latest: ModelVersion;
}

/**
 * `GET /models/{name}`: aliases, latest version and counts in one response.
 *
 * @example
 * ```ts
 * const { counts, aliases } = await describeModel(registry, 'iris');
 * ```
 */
export async function describeModel(registry: ModelRegistry, name: string): Promise<ModelDescription> {
  // getModelSummary is the existence check: a model without versions is a NotFoundError (404).
  const [summary, aliases, statuses] = await Promise.all([
    registry.getModelSummary(name),
    registry.listAliases(name),
    registry.versionStatuses(name),
  ]);
  const counts = { versions: statuses.length, active: 0, rejected: 0, archived: 0 };
  for (const v of statuses) counts[v.status]++;
  const [latest, latestActive] = await Promise.all([
    registry.getVersion(name, summary.latestVersion),
    registry.getLatestActiveVersion(name),
  ]);
  return {
    name,
    latestVersion: summary.latestVersion,
    latestActiveVersion: latestActive?.version ?? null,
    counts,
    aliases: Object.fromEntries(aliases.map(({ name: _n, ...a }) => [a.alias, a])),
    latest,
  };
}
