/**
 * The inference core behind the Open Inference Protocol routes (a KServe `ModelServer`-like
 * object, independent of Lambda): resolves which version serves a request, validates it
 * against the stored signature, runs it on a cached onnxruntime session, encodes the response,
 * and reports metrics and observations.
 */
import * as ort from 'onnxruntime-node';
import { httpStatusOf, MaasError, UnprocessableError } from '../errors';
import { oipFromOrtType, ortTypeFromOip } from '../onnx/datatypes';
import type { TensorSpec } from '../onnx/inspect';
import type { ModelRegistry, ModelVersion } from '../registry';
import { type MetricDimensions, NoopRequestMetrics, type RequestMetrics } from '../request-metrics';
import {
  type DecodeOptions,
  decodeInferRequest,
  encodeInferResponse,
  type InferOutput,
  type InferRequest,
} from './codec';
import { type InferenceSettings, type InferenceSettingsOverrides, inferenceSettingsFromEnv } from './config';
import { type InferenceLogger, silentLogger } from './logger';
import type { RangeReader } from './materialize';
import type { InferenceObservation, InferenceObserver, ObservedTensor, ResourceUsage } from './observer';
import { chooseVersion, DEFAULT_MAX_ROUTES, type ModelRoute, RouteResolver } from './routing';
import { SessionCache, type SessionLease } from './session-cache';
import { checkRequest } from './signature';

/** Metric names predict emits (dimensions: `model`, `version`). */
export const PREDICT_METRICS = {
  invocations: 'Invocations',
  latency: 'Latency',
  inferenceTime: 'InferenceTime',
  modelLoadTime: 'ModelLoadTime',
  coldStart: 'ColdStart',
  clientErrors: 'ClientErrors',
  serverErrors: 'ServerErrors',
  batchSize: 'BatchSize',
  integrityFailures: 'ModelIntegrityFailures',
  sessionMemory: 'SessionMemory',
  sessionCacheMemory: 'SessionCacheMemory',
  containerRss: 'ContainerRss',
} as const;

export const SERVER_NAME = 'maas';
export const SERVER_VERSION = '0.1.0';
/** OIP extensions this server implements (`GET /v2`). */
export const SERVER_EXTENSIONS: readonly string[] = ['binary_tensor_data', 'generate'];
export const PLATFORM = 'onnxruntime_onnx';

export interface InferenceServiceOptions {
  registry: ModelRegistry;
  /**
   * The registry's store, for ranged reads: bundles and big single-file models download with
   * parallel ranged GETs (verified against the manifest while they stream). Without it, models
   * are read whole through the registry and bundles cannot be served.
   */
  store?: RangeReader;
  /** Overrides of the environment's settings ({@link inferenceSettingsFromEnv}). */
  settings?: InferenceSettingsOverrides;
  metrics?: RequestMetrics;
  logger?: InferenceLogger;
  observers?: InferenceObserver[];
  /** Clock for alias TTLs (tests). */
  now?: () => number;
}

/** An encoded inference response. */
export interface InferResult {
  body: Buffer | string;
  contentType: string;
  /** `Inference-Header-Content-Length` for binary responses. */
  headerLength?: number;
  model: string;
  version: number;
}

/** OIP model metadata (`GET /v2/models/{name}[/versions/{v}]`). */
export interface ModelMetadata {
  name: string;
  versions: string[];
  platform: string;
  inputs: TensorMetadata[];
  outputs: TensorMetadata[];
}

export interface TensorMetadata {
  name: string;
  datatype: string;
  shape: number[];
}

/**
 * @example
 * ```ts
 * const service = new InferenceService({ registry, metrics: createRequestMetrics() });
 * const result = await service.infer('iris', undefined, body, { contentType: 'application/json' });
 * ```
 */
export class InferenceService {
  readonly settings: InferenceSettings;
  readonly sessions: SessionCache;
  readonly routes: RouteResolver;
  private readonly registry: ModelRegistry;
  private readonly metrics: RequestMetrics;
  private readonly logger: InferenceLogger;
  private readonly observers: InferenceObserver[];
  private readonly flushing = new Map<InferenceObserver, Promise<void>>();
  private readonly now: () => number;
  /** `GET /v2/models/{name}` version lists, cached for the alias TTL like routes. */
  private readonly versionLists = new Map<string, { versions: Promise<string[]>; expires: number }>();
  /**
   * Whether this core has served anything yet: the first invocation reports ColdStart. Per
   * instance rather than per module: the handler builds one core per container, so this is the
   * container's first invocation, and a core built afresh (tests, benchmarks) reports its own.
   */
  private coldStart = true;

  constructor(options: InferenceServiceOptions) {
    const env = inferenceSettingsFromEnv();
    this.settings = {
      ...env,
      ...options.settings,
      session: { ...env.session, ...options.settings?.session },
      materialize: { ...env.materialize, ...options.settings?.materialize },
      memory: { ...env.memory, ...options.settings?.memory },
    };
    this.registry = options.registry;
    this.metrics = options.metrics ?? new NoopRequestMetrics();
    this.logger = options.logger ?? silentLogger;
    this.observers = options.observers ?? [];
    this.now = options.now ?? Date.now;
    this.routes = new RouteResolver(this.registry, {
      ttlMs: this.settings.aliasTtlMs,
      ...(options.now ? { now: options.now } : {}),
      onStale: (name, ref, error) =>
        this.logger.warn('registry unreachable; serving the last known version', {
          model: name,
          ref,
          error: String(error),
        }),
    });
    this.sessions = new SessionCache({
      readModel: (version) => this.registry.readModel(version),
      ...(options.store ? { store: options.store } : {}),
      cacheDir: this.settings.modelCacheDir,
      budgetBytes: this.settings.sessionCacheBytes,
      session: this.settings.session,
      materialize: this.settings.materialize,
      memory: this.settings.memory,
      logger: this.logger,
      onIntegrityFailure: (v) => this.metrics.add(PREDICT_METRICS.integrityFailures, 'Count', 1, dims(v)),
    });
  }

  /** `GET /v2`. */
  serverMetadata(): { name: string; version: string; extensions: string[] } {
    return { name: SERVER_NAME, version: SERVER_VERSION, extensions: [...SERVER_EXTENSIONS] };
  }

  /** `GET /v2/models/{name}[/versions/{ref}]`: the signature of the version a request would get. */
  async modelMetadata(name: string, ref?: string): Promise<ModelMetadata> {
    const route = await this.routes.resolve(name, ref);
    const versions = ref === undefined ? await this.servableVersions(name) : [String(route.primary.version)];
    return {
      name,
      versions,
      platform: PLATFORM,
      inputs: route.primary.onnx.inputs.map(tensorMetadata),
      outputs: route.primary.onnx.outputs.map(tensorMetadata),
    };
  }

  /**
   * `GET …/ready`: resolves the version and loads its session, so a readiness probe also warms
   * the container. Throws the same errors an inference request would.
   */
  async modelReady(name: string, ref?: string): Promise<{ name: string; version: string; ready: boolean }> {
    const route = await this.routes.resolve(name, ref);
    const versions = [route.primary, ...(route.canary ? [route.canary.version] : [])];
    try {
      await Promise.all(versions.map(async (v) => (await this.acquire(v)).release()));
    } finally {
      this.metrics.flush();
    }
    return { name, version: String(route.primary.version), ready: true };
  }

  /** `POST …/infer`: decodes, validates, runs and encodes one request (`body`: bytes, or JSON text). */
  async infer(
    name: string,
    ref: string | undefined,
    body: Uint8Array | string,
    options: DecodeOptions = {},
  ): Promise<InferResult> {
    const started = performance.now();
    let route: ModelRoute | undefined;
    let version: ModelVersion | undefined;
    let request: InferRequest | undefined;
    let inferenceMs = 0;
    // Cold start overlap: without a canary the version is known once the route is, so its
    // session starts loading (files downloading) while the request is decoded and checked.
    let early: Promise<SessionLease> | undefined;
    let earlyUsed = false;
    try {
      route = await this.routes.resolve(name, ref);
      version = route.primary;
      if (!route.canary) {
        early = this.acquire(route.primary);
        early.catch(() => undefined);
      }
      request = decodeInferRequest(body, options);
      version = chooseVersion(route, request.id, Math.random, this.settings.canarySecret);
      const plan = checkRequest(request, version.onnx);
      const feeds: Record<string, ort.Tensor> = {};
      for (const input of request.inputs) {
        feeds[input.name] = new ort.Tensor(ortTypeFromOip(input.datatype), input.data, input.shape);
      }
      earlyUsed = early !== undefined && version === route.primary;
      const lease = await (earlyUsed && early ? early : this.acquire(version));
      let results: ort.InferenceSession.OnnxValueMapType;
      try {
        const t0 = performance.now();
        results = await lease.run(feeds, plan.names).catch((e: unknown) => {
          // The request passed signature checks, so what is left are input-dependent conflicts
          // (e.g. dynamic dims that do not fit together): the request cannot be processed.
          throw new UnprocessableError(
            `onnxruntime could not run the model on this input: ${(e as Error).message}`,
          );
        });
        inferenceMs = performance.now() - t0;
      } finally {
        lease.release();
      }
      const outputs: InferOutput[] = plan.names.map((outputName, i) => {
        const tensor = results[outputName] as ort.Tensor;
        const datatype = oipFromOrtType(tensor.type);
        if (!datatype)
          throw new MaasError(
            'internal',
            `output '${outputName}' has type ${tensor.type}, which the Open Inference Protocol cannot carry`,
          );
        return {
          name: outputName,
          datatype,
          shape: tensor.dims,
          data: tensor.data as InferOutput['data'],
          binary: plan.binary[i] ?? false,
        };
      });
      const encoded = encodeInferResponse(
        {
          modelName: name,
          modelVersion: String(version.version),
          ...(request.id !== undefined ? { id: request.id } : {}),
        },
        outputs,
      );
      const latencyMs = performance.now() - started;
      // One memory sample per invocation, for its metrics and its observers alike.
      const resources = this.resourcesOf(version);
      this.record(version, 200, latencyMs, inferenceMs, request, resources);
      await this.observe(route, version, request, 200, latencyMs, inferenceMs, outputs, resources);
      return { ...encoded, model: name, version: version.version };
    } catch (e) {
      if (early && !earlyUsed)
        early.then(
          (l) => l.release(),
          () => undefined,
        );
      const status = httpStatusOf(e);
      const latencyMs = performance.now() - started;
      const resources = version ? this.resourcesOf(version) : undefined;
      this.record(version, status, latencyMs, inferenceMs, request, resources);
      if (route && version && resources)
        await this.observe(route, version, request, status, latencyMs, inferenceMs, [], resources);
      throw e;
    } finally {
      this.metrics.flush();
    }
  }

  /** Adds an observer (e.g. monitoring's data capture) that sees every later request. */
  addObserver(observer: InferenceObserver): void {
    this.observers.push(observer);
  }

  /** Releases all sessions and forgets cached resolutions (tests, shutdown). */
  async close(): Promise<void> {
    this.routes.clear();
    this.versionLists.clear();
    await this.sessions.clear();
  }

  /** A session lease; a request that loaded the model reports how long that took. */
  private async acquire(version: ModelVersion): Promise<SessionLease> {
    const lease = await this.sessions.acquire(version);
    if (lease.loadMs > 0)
      this.metrics.add(PREDICT_METRICS.modelLoadTime, 'Milliseconds', lease.loadMs, dims(version));
    return lease;
  }

  private record(
    version: ModelVersion | undefined,
    status: number,
    latencyMs: number,
    inferenceMs: number,
    request: InferRequest | undefined,
    resources: ResourceUsage | undefined,
  ): void {
    // Requests that never resolved to a version are counted without model dimensions: their
    // names come from clients and would make dimension cardinality unbounded.
    const d = version ? dims(version) : {};
    const m = this.metrics;
    if (this.coldStart) {
      this.coldStart = false;
      m.add(PREDICT_METRICS.coldStart, 'Count', 1, d);
    }
    m.add(PREDICT_METRICS.invocations, 'Count', 1, d);
    m.add(PREDICT_METRICS.latency, 'Milliseconds', latencyMs, d);
    if (resources) {
      m.add(PREDICT_METRICS.sessionMemory, 'Bytes', resources.sessionBytes, d);
      m.add(PREDICT_METRICS.sessionCacheMemory, 'Bytes', resources.sessionCacheBytes, d);
      m.add(PREDICT_METRICS.containerRss, 'Bytes', resources.rssBytes, d);
    }
    if (status < 400) {
      m.add(PREDICT_METRICS.inferenceTime, 'Milliseconds', inferenceMs, d);
      m.add(PREDICT_METRICS.batchSize, 'Count', batchSizeOf(request), d);
    } else if (status < 500) {
      m.add(PREDICT_METRICS.clientErrors, 'Count', 1, d);
    } else {
      m.add(PREDICT_METRICS.serverErrors, 'Count', 1, d);
    }
  }

  private async observe(
    route: ModelRoute,
    version: ModelVersion,
    request: InferRequest | undefined,
    status: number,
    latencyMs: number,
    inferenceMs: number,
    outputs: InferOutput[],
    resources: ResourceUsage,
  ): Promise<void> {
    if (this.observers.length === 0) return;
    const observation: InferenceObservation = {
      model: route.name,
      version: version.version,
      ...(request?.id !== undefined ? { requestId: request.id } : {}),
      ...(route.alias ? { alias: route.alias } : {}),
      latencyMs,
      inferenceMs,
      batchSize: batchSizeOf(request),
      status,
      inputs: status < 400 ? (request?.inputs.map(observed) ?? []) : [],
      outputs: outputs.map(observed),
      resources,
    };
    const due: Promise<void>[] = [];
    for (const observer of this.observers) {
      try {
        observer.observe(observation);
        if (observer.flushDue && !this.flushing.has(observer)) {
          const flush = observer
            .flush()
            .catch((e: unknown) => this.logger.warn('observer flush failed', { error: String(e) }))
            .finally(() => this.flushing.delete(observer));
          this.flushing.set(observer, flush);
          due.push(flush);
        }
      } catch (e) {
        // An observer must never fail a request.
        this.logger.warn('observer failed', { error: String(e) });
      }
    }
    if (due.length === 0) return;
    // Wait at most the budget; a slower flush continues in the background (on Lambda, during
    // the next invocation, since the runtime freezes between invocations).
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(due),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, this.settings.observerFlushBudgetMs);
      }),
    ]);
    clearTimeout(timer);
  }

  /** Memory held now: process RSS (cheap: no heap walk) and what the session cache counts. */
  private resourcesOf(version: ModelVersion): ResourceUsage {
    return {
      rssBytes: process.memoryUsage.rss(),
      sessionBytes: this.sessions.bytesOf(version.sha256),
      sessionCacheBytes: this.sessions.bytes,
    };
  }

  /** Version numbers that are not rejected, ascending; cached for the alias TTL. */
  private servableVersions(name: string): Promise<string[]> {
    const now = this.now();
    const cached = this.versionLists.get(name);
    if (cached && cached.expires > now) return cached.versions;
    const versions = listServableVersions(this.registry, name);
    const entry = { versions, expires: now + this.settings.aliasTtlMs };
    this.versionLists.delete(name);
    this.versionLists.set(name, entry);
    // Only names that resolved reach here, but keep the map bounded all the same (oldest first).
    for (const key of this.versionLists.keys()) {
      if (this.versionLists.size <= DEFAULT_MAX_ROUTES) break;
      this.versionLists.delete(key);
    }
    versions.catch(() => {
      if (this.versionLists.get(name) === entry) this.versionLists.delete(name);
    });
    return versions;
  }
}

/** Version numbers of a model that are not rejected (no manifest reads: see versionStatuses). */
async function listServableVersions(registry: ModelRegistry, name: string): Promise<string[]> {
  return (await registry.versionStatuses(name))
    .filter((v) => v.status !== 'rejected')
    .map((v) => String(v.version));
}

function dims(version: ModelVersion): MetricDimensions {
  return { model: version.name, version: String(version.version) };
}

function batchSizeOf(request: InferRequest | undefined): number {
  const first = request?.inputs[0];
  return first && first.shape.length > 0 ? (first.shape[0] ?? 1) : 1;
}

function observed(t: {
  name: string;
  datatype: ObservedTensor['datatype'];
  shape: readonly number[];
  data: ObservedTensor['data'];
}): ObservedTensor {
  return { name: t.name, datatype: t.datatype, shape: [...t.shape], data: t.data };
}

function tensorMetadata(spec: TensorSpec): TensorMetadata {
  return { name: spec.name, datatype: spec.datatype, shape: [...spec.shape] };
}
