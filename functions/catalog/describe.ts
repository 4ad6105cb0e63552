import { NotFoundError } from '../../shared/errors';
import { layout, type AliasRecord, type ModelRegistry, type ModelVersion, type VersionStatus } from '../../shared/registry';
import { listAll } from '../../shared/store';

export interface ModelDescription {
  name: string;
  latestVersion: number;
  latestActiveVersion: number | null;
  /** Versions are numbered 1..latestVersion without gaps, so the count is per status. */
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
  const [summary, aliases, statusKeys] = await Promise.all([
    registry.getModelSummary(name),
    registry.listAliases(name),
    listAll(registry.store, { prefix: layout.statusPrefix(name) }),
  ]);
  if (summary.latestVersion === 0) throw new NotFoundError(`model ${name} does not exist`, { name });
  // Only versions whose status was ever changed have a status document: usually a handful.
  const changed = await Promise.all(statusKeys.objects.map((o) => registry.getVersion(name, Number(/([0-9]+)\.json$/.exec(o.key)?.[1]))));
  const counts = { versions: summary.latestVersion, active: summary.latestVersion, rejected: 0, archived: 0 };
  for (const v of changed) if (v.status !== 'active') (counts.active--, counts[v.status]++);
  const [latest, latestActive] = await Promise.all([registry.getVersion(name, summary.latestVersion), registry.latestActiveVersion(name)]);
  return {
    name,
    latestVersion: summary.latestVersion,
    latestActiveVersion: latestActive?.version ?? null,
    counts,
    aliases: Object.fromEntries(aliases.map(({ name: _n, ...a }) => [a.alias, a])),
    latest,
  };
}
