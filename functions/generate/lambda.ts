/**
 * The deployable text-generation function: {@link createGenerateHandler} over the registry and
 * store of this container (as predict's), with predict's model cache, alias TTL and canary
 * secret, and EMF metrics. Serve it from a Function URL with `InvokeMode: RESPONSE_STREAM`.
 */
import { registryTextResolver } from '../../shared/generate/registry-resolver';
import type { TextModelResolver } from '../../shared/generate/routes';
import { inferenceSettingsFromEnv, textGenerationSessionOptions } from '../../shared/inference';
import { type CaptureObserver, createCaptureObserver } from '../../shared/monitor/capture';
import { createRequestMetrics, type RequestMetrics } from '../../shared/request-metrics';
import { getRegistry, getStore } from '../lib/runtime';
import { onShutdown } from '../lib/shutdown';
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
    containerCapture(); // an invalid MAAS_CAPTURE* setting refuses requests before generation starts
    resolver = registryTextResolver({
      registry: getRegistry(),
      store: getStore(),
      cacheDir: inference.modelCacheDir,
      materialize: inference.materialize,
      aliasTtlMs: inference.aliasTtlMs,
      canarySecret: inference.canarySecret,
      generator: {
        sessionOptions: textGenerationSessionOptions(inference.session),
      },
    });
  }
  return resolver;
}

/** Monitoring's capture (on unless MAAS_CAPTURE=false), built on first use like the resolver. */
let capture: CaptureObserver | null | undefined;
const containerCapture = (): CaptureObserver | null => {
  capture ??= createCaptureObserver(getStore()) ?? null;
  return capture;
};
// Registered during init (when extensions may register): the last generations' captures are
// written before the container goes away (see functions/lib/shutdown.ts).
onShutdown(async () => {
  await capture?.close();
});

export const handler = createGenerateHandler(
  { resolve: (ref) => containerResolver().resolve(ref), list: () => containerResolver().list() },
  {
    // Lazy like the resolver (MAAS_METRICS and MAAS_CAPTURE* are read on first use).
    metrics: { add: (...point) => containerMetrics().add(...point), flush: () => containerMetrics().flush() },
    observer: {
      observeGeneration: (o) => containerCapture()?.observeGeneration(o),
      flush: async () => containerCapture()?.flush(),
      get flushDue() {
        return containerCapture()?.flushDue ?? false;
      },
    },
  },
);
