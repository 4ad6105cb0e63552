/**
 * The predict-side {@link TextModelResolver}: the same version / alias resolution and canary split
 * as `/v2/.../infer` (`RouteResolver`, `chooseVersion`), the version's bundle files downloaded and
 * verified into the model cache (`ModelMaterializer`), and a {@link TextGenerator} loaded from that
 * folder, kept for the next requests (a small LRU: language models are big).
 */
import { randomUUID } from 'node:crypto';
import * as path from 'node:path';
import { UnprocessableError } from '../errors';
import type { MaterializeSettings } from '../inference/config';
import { ModelMaterializer, type RangeReader } from '../inference/materialize';
import { chooseVersion, RouteResolver } from '../inference/routing';
import { type ModelRegistry, type ModelVersion, versionFiles } from '../registry';
import { loadTextGenerator, type TextGenerator, type TextGeneratorOptions } from './engine';
import { REQUIRED_TEXT_FILES } from './model-kind';
import type { TextModelResolver } from './routes';

/** Options of {@link registryTextResolver}. */
export interface RegistryTextResolverOptions {
  registry: ModelRegistry;
  /** The registry's store (ranged reads of the bundle files). */
  store: RangeReader;
  /** Local model cache folder (e.g. `/tmp/maas-models`, shared with predict's sessions). */
  cacheDir: string;
  materialize: MaterializeSettings;
  /** How long an alias resolution is reused (default 5000 ms). */
  aliasTtlMs?: number;
  /** Key of the canary split hash (as predict's `MAAS_CANARY_SECRET`). */
  canarySecret?: string;
  /** Loaded generators kept (default 2). */
  maxModels?: number;
  generator?: TextGeneratorOptions;
}

/**
 * A resolver over the registry, for the generate routes.
 * @example
 * const resolver = registryTextResolver({ registry, store, cacheDir: '/tmp/maas-models', materialize: settings.materialize });
 * const reply = await handleGenerateRequest(request, resolver);
 */
export function registryTextResolver(options: RegistryTextResolverOptions): TextModelResolver {
  const routes = new RouteResolver(options.registry, { ttlMs: options.aliasTtlMs ?? 5000 });
  const materializer = new ModelMaterializer({
    store: options.store,
    cacheDir: options.cacheDir,
    settings: options.materialize,
    inUse: () => [...loaded.keys()],
  });
  const max = Math.max(1, options.maxModels ?? 2);
  /** Cache entry (the version's folder) → its generator, least recently used first. */
  const loaded = new Map<string, Promise<TextGenerator>>();

  async function load(version: ModelVersion): Promise<TextGenerator> {
    const names = versionFiles(version).map((f) => f.name);
    const missing = REQUIRED_TEXT_FILES.filter((f) => !names.includes(f));
    if (missing.length > 0)
      throw new UnprocessableError(
        `model ${version.name} version ${version.version} is not a text-generation model (its bundle has no ${missing.join(' or ')})`,
      );
    const { graphPath, entry } = await materializer.materialize(version);
    let generator = loaded.get(entry);
    if (generator) {
      loaded.delete(entry); // re-insert: most recently used last
    } else {
      generator = loadTextGenerator(path.dirname(graphPath), {
        ...options.generator,
        graph: path.basename(graphPath),
      });
      generator.catch(() => loaded.delete(entry));
    }
    loaded.set(entry, generator);
    while (loaded.size > max) {
      const [oldest, evicted] = loaded.entries().next().value as [string, Promise<TextGenerator>];
      loaded.delete(oldest);
      // Sessions in use finish their request first: release after a grace period.
      void evicted.then((g) => setTimeout(() => void g.session.release(), 60_000).unref()).catch(() => {});
    }
    materializer.touch(entry);
    return generator;
  }

  return {
    async resolve(ref) {
      const route = await routes.resolve(
        ref.name,
        ref.alias ?? (ref.version !== undefined ? String(ref.version) : undefined),
      );
      const version = chooseVersion(route, randomUUID(), Math.random, options.canarySecret);
      return {
        engine: await load(version),
        name: version.name,
        version: version.version,
        ...(route.alias !== undefined ? { alias: route.alias } : {}),
      };
    },
    async list() {
      // The text-generation index (one list request per 1,000 text models, no manifest reads),
      // so the listing is complete and cheap whatever the number of models.
      const out: { id: string; created: number }[] = [];
      let cursor: string | undefined;
      do {
        const page = await options.registry.listTextModels(cursor ? { cursor } : {});
        for (const m of page.items)
          out.push({ id: m.name, created: Math.floor(Date.parse(m.createdAt) / 1000) });
        cursor = page.nextCursor;
      } while (cursor);
      return out;
    },
  };
}
