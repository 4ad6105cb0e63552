import { Logger } from '@aws-lambda-powertools/logger';
import type { LogAttributes } from '@aws-lambda-powertools/logger/types';
import { explainSettingsFromEnv } from '../../shared/explain';
import {
  AsyncInferenceService,
  asyncSettingsFromEnv,
  type InferenceLogger,
  type InferenceObserver,
  InferenceService,
} from '../../shared/inference';
import { type CaptureObserver, createCaptureObserver } from '../../shared/monitor/capture';
import { createRequestMetrics } from '../../shared/request-metrics';
import { getStringFromEnv, MisconfiguredError } from '../../shared/settings';
import type { ObjectStore } from '../../shared/store';
import { invokeEvent } from '../../shared/util/lambda-event';
import { getRegistry, getStore, reportMisconfigured } from '../lib/runtime';
import { onShutdown } from '../lib/shutdown';

/** Structured JSON logs of the predict function (request ids are added per invocation). */
export const logger = new Logger({ serviceName: 'maas-predict' });

/** The core's logging port on top of Powertools (attributes become top-level JSON keys). */
const coreLogger: InferenceLogger = {
  info: (message, attributes = {}) => logger.info(message, attributes as LogAttributes),
  warn: (message, attributes = {}) => logger.warn(message, attributes as LogAttributes),
  error: (message, attributes = {}) => logger.error(message, attributes as LogAttributes),
};

let service: InferenceService | undefined;
/** The store of an installed core's registry (tests, benchmarks); else the container's store. */
let serviceStore: ObjectStore | undefined;
const observers: InferenceObserver[] = [];
let capture: CaptureObserver | null | undefined;
// Registered while the module loads (Lambda's init phase, when extensions may register): the
// container's last observations are written before it goes away (see functions/lib/shutdown.ts).
onShutdown(async () => {
  await capture?.close();
});
/** An invalid setting found when the core was built: kept, so it is logged once per container. */
let misconfigured: MisconfiguredError | undefined;

/**
 * The container's inference core, built on first use from the environment (`MAAS_STORE`,
 * `MAAS_*` settings) and kept warm across invocations with its session and alias caches. An
 * invalid setting is logged once (setting, value, what was expected) and thrown as
 * `MisconfiguredError` by this and every later call.
 * @example
 * const result = await getInferenceService().infer('iris', undefined, body);
 */
export function getInferenceService(): InferenceService {
  if (misconfigured) throw misconfigured;
  if (!service) {
    try {
      // Explanations and asynchronous requests read their limits (MAAS_EXPLAIN_*, MAAS_ASYNC_*) on
      // use; checked here too, so that an invalid one refuses every request from the start like
      // the core's own settings.
      explainSettingsFromEnv();
      asyncSettingsFromEnv();
      // Monitoring's data capture is on unless MAAS_CAPTURE=false; built once per container.
      capture ??= createCaptureObserver(getStore()) ?? null;
      const all = capture ? [capture, ...observers] : [...observers];
      service = new InferenceService({
        registry: getRegistry(),
        store: getStore(),
        metrics: createRequestMetrics(),
        logger: coreLogger,
        observers: all,
      });
    } catch (error) {
      if (!(error instanceof MisconfiguredError)) throw error;
      misconfigured = error;
      reportMisconfigured(error, logger);
      throw error;
    }
  }
  return service;
}

/**
 * Replaces the core (tests, benchmarks), or with no argument forgets it so the next call
 * re-reads the environment. Releases the previous core's sessions. `store` is the store the
 * new core's registry reads (explanations read baselines there; default: `MAAS_STORE`).
 * @example
 * setInferenceService(new InferenceService({ registry, metrics }), store);
 */
export async function setInferenceService(next?: InferenceService, store?: ObjectStore): Promise<void> {
  const previous = service;
  service = next;
  serviceStore = next ? store : undefined;
  misconfigured = undefined;
  if (previous && previous !== next) await previous.close();
}

/**
 * The store the core's registry reads: where explanations find monitoring baselines and
 * reference data.
 * @example
 * const explainer = new ExplainService({ inference: getInferenceService(), store: getPredictStore() });
 */
export function getPredictStore(): ObjectStore {
  return serviceStore ?? getStore();
}

/**
 * Adds an observer to the current and every future core (monitoring wires its capture here).
 * @example
 * addInferenceObserver(new CaptureObserver(store));
 */
export function addInferenceObserver(observer: InferenceObserver): void {
  observers.push(observer);
  service?.addObserver(observer);
}

let asyncService: AsyncInferenceService | undefined;
let asyncFor: InferenceService | undefined;

/**
 * The container's asynchronous inference core, on the same inference core and store as
 * synchronous requests. The worker is `MAAS_ASYNC_WORKER_FUNCTION` (invoked asynchronously) on
 * AWS; under serverless-offline (`IS_OFFLINE`), in tests and plain Node runs happen in-process.
 * @example
 * const record = await getAsyncInference().submit('iris', undefined, { inputKey });
 */
export function getAsyncInference(): AsyncInferenceService {
  const inference = getInferenceService();
  if (!asyncService || asyncFor !== inference) {
    const worker = process.env.IS_OFFLINE
      ? undefined
      : getStringFromEnv({ key: 'MAAS_ASYNC_WORKER_FUNCTION', defaultValue: undefined });
    asyncService = new AsyncInferenceService({
      store: getPredictStore(),
      inference,
      logger: coreLogger,
      ...(worker
        ? {
            dispatch: (id: string) =>
              invokeEvent(worker, { maasAsyncInference: { id } }, 'the async inference worker'),
          }
        : {}),
    });
    asyncFor = inference;
  }
  return asyncService;
}
