/**
 * Which version serves a request: `{version}` in the URL is a number or an alias; without one,
 * the `production` alias, else the newest active version. Resolutions are cached for a short
 * TTL so the warm path makes no store request, while a rollback reaches warm containers within
 * the TTL.
 *
 * Status rules (a version's status can change after an alias was pointed at it):
 * - through an alias (explicit, or the default `production`), only `active` versions are served;
 *   an alias pointing at a rejected/archived version answers 409 rather than silently serving
 *   something else. A canary that is no longer active gets no traffic.
 * - an explicit version number serves `active` and `archived` versions (clients pinned to a
 *   number keep working while they migrate) but never `rejected` ones (409): rejection means
 *   the model must not be used.
 */
import { createHmac } from 'node:crypto';
import { ConflictError, httpStatusOf, NotFoundError } from '../errors';
import type { AliasRecord, ModelRegistry, ModelVersion } from '../registry';
import { assertAliasName, assertModelName, parseVersionNumber } from '../registry';

export const DEFAULT_ALIAS = 'production';
/** Default bound of cached resolutions (routes are small; this is ~1 MB at most). */
export const DEFAULT_MAX_ROUTES = 1000;

/** A resolved target: one version, or a primary with a weighted canary. */
export interface ModelRoute {
  name: string;
  /** The alias the request went through (`production` by default), if any. */
  alias?: string;
  primary: ModelVersion;
  canary?: { version: ModelVersion; weight: number };
}

interface CachedRoute {
  route: Promise<ModelRoute>;
  expires: number;
  /** The last route that resolved, kept to ride out store outages. */
  last?: ModelRoute;
}

export interface RouteResolverOptions {
  ttlMs: number;
  /**
   * Most resolutions kept (oldest dropped first). Failed ones are cached too, and their names
   * come from clients, so the map must not grow with every name a client makes up.
   */
  maxEntries?: number;
  now?: () => number;
  /**
   * Called when a refresh failed with a server-side error (store unreachable, …) and the
   * previous route is served for another TTL instead of failing the request.
   */
  onStale?: (name: string, ref: string | undefined, error: unknown) => void;
}

/**
 * Resolves and caches {@link ModelRoute}s.
 * @example
 * ```ts
 * const routes = new RouteResolver(registry, { ttlMs: 5000 });
 * const route = await routes.resolve('iris');          // production alias, else latest active
 * const version = chooseVersion(route, request.id);     // canary split by request id
 * ```
 */
export class RouteResolver {
  private readonly cache = new Map<string, CachedRoute>();
  private readonly now: () => number;
  private readonly maxEntries: number;

  constructor(
    private readonly registry: ModelRegistry,
    private readonly options: RouteResolverOptions,
  ) {
    this.now = options.now ?? Date.now;
    this.maxEntries = Math.max(1, options.maxEntries ?? DEFAULT_MAX_ROUTES);
  }

  /** Number of cached resolutions (successful and failed). */
  get size(): number {
    return this.cache.size;
  }

  /** The route for `name` and an optional version number or alias. */
  resolve(name: string, ref?: string): Promise<ModelRoute> {
    const key = `${name}\u0000${ref ?? ''}`;
    const now = this.now();
    const cached = this.cache.get(key);
    if (cached && cached.expires > now) return cached.route;
    // The promise is cached, so concurrent cold requests share one lookup. Client errors (an
    // unknown model, nothing active to serve: 4xx) are cached for the TTL like routes, so a
    // client retrying them costs no store request; server errors are not kept.
    // When the store fails (5xx kinds, not "not found" or "conflict"), the last good route keeps
    // serving: an S3 hiccup must not take down a model that was serving a second ago.
    const last = cached?.last;
    const route = this.lookup(name, ref).catch((e: unknown) => {
      if (!last || httpStatusOf(e) < 500) throw e;
      this.options.onStale?.(name, ref, e);
      return last;
    });
    const entry: CachedRoute = { route, expires: now + this.options.ttlMs, ...(last ? { last } : {}) };
    // Delete first so the key moves to the end: Map order is then oldest-refreshed first.
    this.cache.delete(key);
    this.cache.set(key, entry);
    this.trim(now);
    route.then(
      (r) => {
        entry.last = r;
      },
      (e: unknown) => {
        if (httpStatusOf(e) < 500) return;
        if (this.cache.get(key) === entry) this.cache.delete(key);
      },
    );
    return route;
  }

  /** Drops expired entries when over the bound, then the oldest ones. */
  private trim(now: number): void {
    if (this.cache.size <= this.maxEntries) return;
    for (const [key, entry] of this.cache) if (entry.expires <= now) this.cache.delete(key);
    for (const key of this.cache.keys()) {
      if (this.cache.size <= this.maxEntries) break;
      this.cache.delete(key);
    }
  }

  /** Forgets every cached resolution. */
  clear(): void {
    this.cache.clear();
  }

  private async lookup(name: string, ref: string | undefined): Promise<ModelRoute> {
    assertModelName(name);
    if (ref !== undefined && /^[0-9]+$/.test(ref)) {
      const version = await this.registry.getVersion(name, parseVersionNumber(ref));
      if (version.status === 'rejected') {
        throw new ConflictError(`version ${version.version} of ${name} is rejected and is not served`, {
          name,
          version: version.version,
          status: version.status,
        });
      }
      return { name, primary: version };
    }
    if (ref === 'latest') return { name, primary: await this.latestActive(name) };
    const alias = ref ?? DEFAULT_ALIAS;
    if (ref !== undefined) assertAliasName(alias);
    let record: AliasRecord;
    try {
      record = await this.registry.getAlias(name, alias);
    } catch (e) {
      if (ref === undefined && e instanceof NotFoundError)
        return { name, primary: await this.latestActive(name) };
      throw e;
    }
    const [primary, canary] = await Promise.all([
      this.registry.getVersion(name, record.version),
      record.canary
        ? this.registry.getVersion(name, record.canary.version).catch(() => undefined)
        : undefined,
    ]);
    if (primary.status !== 'active') {
      throw new ConflictError(
        `alias ${alias} of ${name} points at version ${primary.version}, which is ${primary.status}; move or roll back the alias`,
        {
          name,
          alias,
          version: primary.version,
          status: primary.status,
        },
      );
    }
    const route: ModelRoute = { name, alias, primary };
    if (record.canary && canary?.status === 'active')
      route.canary = { version: canary, weight: record.canary.weight };
    return route;
  }

  /** `latest` means what it means everywhere: the registry's newest active version. */
  private latestActive(name: string): Promise<ModelVersion> {
    return this.registry.resolveLatest(name);
  }
}

/**
 * The version that serves one request: the canary for a `weight` share of request ids (a stable
 * hash, so retries of the same id land on the same version), random without an id. With a
 * `secret` (`MAAS_CANARY_SECRET`) the hash is HMAC-SHA256 keyed with it, so a client cannot pick
 * ids that steer its requests onto (or away from) the canary; without one, unkeyed FNV-1a.
 * @example
 * chooseVersion({ name: 'm', primary: v1, canary: { version: v2, weight: 0.1 } }, 'req-42', Math.random, secret)
 */
export function chooseVersion(
  route: ModelRoute,
  requestId?: string,
  random: () => number = Math.random,
  secret = '',
): ModelVersion {
  if (!route.canary) return route.primary;
  const u =
    requestId === undefined
      ? random()
      : secret
        ? createHmac('sha256', secret)
            .update(route.name)
            .update('\0')
            .update(requestId)
            .digest()
            .readUInt32BE(0) / 0x100000000
        : fnv1a(requestId) / 0x100000000;
  return u < route.canary.weight ? route.canary.version : route.primary;
}

function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}
