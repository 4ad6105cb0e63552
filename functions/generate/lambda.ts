/**
 * The deployable text-generation function: {@link createGenerateHandler} over the registry and
 * store of this container (as predict's), with predict's model cache, alias TTL and canary
 * secret, and EMF metrics. Serve it from a Function URL with `InvokeMode: RESPONSE_STREAM`.
 */
import { registryTextResolver } from '../../shared/generate/registry-resolver';
import type { TextModelResolver } from '../../shared/generate/routes';
import { inferenceSettingsFromEnv } from '../../shared/inference';
import { createRequestMetrics, type RequestMetrics } from '../../shared/request-metrics';
import { getRegistry, getStore } from '../lib/runtime';
import { createGenerateHandler } from './handler';

let resolver: TextModelResolver | undefined;
let metrics: RequestMetrics | undefined;
const containerMetrics = (): RequestMetrics => {
  metrics ??= createRequestMetrics();
  return metrics;
};

/** Built on first use, so an invalid setting is a 500 per request rather than a failed init. */
function containerResolver(): TextModelResolver {
  if (!resolver) {
    const inference = inferenceSettingsFromEnv();
    resolver = registryTextResolver({
      registry: getRegistry(),
      store: getStore(),
      cacheDir: inference.modelCacheDir,
      materialize: inference.materialize,
      aliasTtlMs: inference.aliasTtlMs,
      canarySecret: inference.canarySecret,
      generator: {
        sessionOptions: {
          intraOpNumThreads: inference.session.intraOpThreads,
          interOpNumThreads: inference.session.interOpThreads,
          graphOptimizationLevel: inference.session.graphOptimizationLevel,
        },
      },
    });
  }
  return resolver;
}

export const handler = createGenerateHandler(
  { resolve: (ref) => containerResolver().resolve(ref), list: () => containerResolver().list() },
  undefined,
  // Lazy like the resolver (MAAS_METRICS is read on first use).
  { add: (...point) => containerMetrics().add(...point), flush: () => containerMetrics().flush() },
);
