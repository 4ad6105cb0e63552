/**
 * Settings of the inference core, read once from the environment (`MAAS_*`), with defaults
 * suited to Lambda: models cached in `/tmp`, one inter-op thread, intra-op threads = the vCPUs
 * Lambda gives the function, full graph optimization.
 */
import { availableParallelism, totalmem } from 'node:os';
import type * as ort from 'onnxruntime-node';
import { cpuSaturatesInt8, exactInt8SessionOptions } from '../onnx/int8-precision';
import { readSettings, type SettingsReader } from '../settings';

export type GraphOptimizationLevel = 'disabled' | 'basic' | 'extended' | 'all';

/** Options of onnxruntime sessions. */
export interface SessionSettings {
  /** Intra-op threads of sessions of models of at least `smallModelBytes`. */
  intraOpThreads: number;
  interOpThreads: number;
  /**
   * Models smaller than this get a session with one intra-op thread and no CPU memory arena:
   * each extra intra-op thread is an OS thread per session (hundreds of small models meant
   * hundreds of threads) and its start-up made every first inference ~15 ms slower, for no
   * speed-up on models this small.
   */
  smallModelBytes: number;
  graphOptimizationLevel: GraphOptimizationLevel;
  /**
   * Exact int8 kernels ({@link exactInt8SessionOptions}): on x86 CPUs without VNNI onnxruntime's
   * fast u8·s8 kernels saturate and int8 models lose accuracy the optimize gate never saw.
   */
  exactInt8: boolean;
  /**
   * onnxruntime's CPU memory arena for predict's sessions (small models never get it). Off by
   * default: the arena keeps the most a session ever needed for its activations until the
   * session is released (measured: a PaddleOCR detector session held 71 MiB after one 640×640
   * request, on a 4.7 MB file), so fewer sessions fit the cache's budget; on, runs are 1.1–1.4×
   * faster on conv nets and the cache charges each session what its runs kept (`SessionLease.run`).
   */
  cpuArena: boolean;
}

/** How model files reach the local model cache (shared/inference/materialize.ts). */
export interface MaterializeSettings {
  /** Bytes per ranged GET of a file download. */
  partBytes: number;
  /** Ranged GETs in flight per container (also bounds download memory: parts × partBytes). */
  concurrency: number;
  /**
   * Single-file models at least this big are downloaded to disk with parallel ranged GETs and
   * loaded from the file; smaller ones are read in one GET into memory (fewer requests, faster).
   */
  fileMinBytes: number;
  /** Most bytes the local copies may take on disk (0: as much as the disk has). */
  diskBytes: number;
  /** Free disk space kept when writing copies (older copies are evicted to keep it). */
  diskReserveBytes: number;
}

/** What the function's memory allows (the refusal of models it cannot hold). */
export interface MemorySettings {
  /** Memory of the function (Lambda's memorySize), bytes. */
  limitBytes: number;
  /** Held by the runtime itself (Node, onnxruntime, SDK, request buffers): not for sessions. */
  reservedBytes: number;
}

export interface InferenceSettings {
  /** How long an alias resolution is reused before the registry is asked again. */
  aliasTtlMs: number;
  /** Folder for model bytes fetched from the store, keyed by sha256. */
  modelCacheDir: string;
  /** Memory budget of the session LRU, bytes (estimated from model sizes). */
  sessionCacheBytes: number;
  session: SessionSettings;
  materialize: MaterializeSettings;
  memory: MemorySettings;
  /** Longest a response waits for observers' flush. */
  observerFlushBudgetMs: number;
  /**
   * Key of the canary split hash (HMAC-SHA256 of the request id): without it, anyone who knows
   * the hash can pick request ids that land on the canary. Empty: an unkeyed hash.
   */
  canarySecret: string;
}

/** Overrides of {@link InferenceSettings} (nested groups may be partial). */
export type InferenceSettingsOverrides = Partial<
  Omit<InferenceSettings, 'session' | 'materialize' | 'memory'>
> & {
  session?: Partial<SessionSettings>;
  materialize?: Partial<MaterializeSettings>;
  memory?: Partial<MemorySettings>;
};

/** Default alias TTL: short, so a rollback reaches warm containers within seconds. */
export const DEFAULT_ALIAS_TTL_MS = 5000;
export const DEFAULT_MODEL_CACHE_DIR = '/tmp/maas-models';

/**
 * Reads the settings from the environment; an invalid one throws `MisconfiguredError`
 * (`shared/settings.ts`), a server error naming the setting.
 *
 * | variable | default |
 * | --- | --- |
 * | `MAAS_ALIAS_TTL_MS` | 5000 |
 * | `MAAS_MODEL_CACHE_DIR` | `/tmp/maas-models` |
 * | `MAAS_SESSION_CACHE_MB` | half the function memory (`AWS_LAMBDA_FUNCTION_MEMORY_SIZE`), else 1024 |
 * | `MAAS_ORT_INTRA_OP_THREADS` | vCPUs available |
 * | `MAAS_ORT_INTER_OP_THREADS` | 1 |
 * | `MAAS_ORT_SMALL_MODEL_MB` | 4 (smaller models: one thread, no CPU arena) |
 * | `MAAS_ORT_GRAPH_OPTIMIZATION` | `all` (`disabled`, `basic`, `extended`, `all`) |
 * | `MAAS_ORT_EXACT_INT8` | true on x86 CPUs without VNNI, else false |
 * | `MAAS_ORT_CPU_ARENA` | false (activations are freed after each run; true: kept per session, and charged to it) |
 * | `MAAS_DOWNLOAD_PART_MB` | 8 |
 * | `MAAS_DOWNLOAD_CONCURRENCY` | 8 |
 * | `MAAS_MODEL_FILE_MIN_MB` | 64 (single-file models from this size load from a local file) |
 * | `MAAS_MODEL_CACHE_DISK_MB` | 0 (the whole disk) |
 * | `MAAS_MODEL_CACHE_DISK_RESERVE_MB` | 64 |
 * | `MAAS_PREDICT_MEMORY_MB` | `AWS_LAMBDA_FUNCTION_MEMORY_SIZE`, else the machine's memory |
 * | `MAAS_PREDICT_RESERVED_MB` | 384 |
 * | `MAAS_OBSERVER_FLUSH_BUDGET_MS` | 50 |
 * | `MAAS_CANARY_SECRET` | empty (serverless.yml passes one per stack) |
 *
 * @example
 * ```ts
 * const settings = inferenceSettingsFromEnv({ MAAS_ALIAS_TTL_MS: '1000' });
 * ```
 */
export function inferenceSettingsFromEnv(env: NodeJS.ProcessEnv = process.env): InferenceSettings {
  return readSettings((settings) => readInferenceSettings(settings), env);
}

const MIB = 1024 * 1024;

/**
 * The onnxruntime options of a session under `settings`: predict's and the optimize evaluation's
 * sessions alike, so that what optimize measures is what traffic gets (text-generation models:
 * {@link textGenerationSessionOptions}).
 * @example
 * const session = await ort.InferenceSession.create(bytes, ortSessionOptions(inferenceSettingsFromEnv().session));
 */
export function ortSessionOptions(settings: SessionSettings): ort.InferenceSession.SessionOptions {
  return {
    intraOpNumThreads: settings.intraOpThreads,
    interOpNumThreads: settings.interOpThreads,
    graphOptimizationLevel: settings.graphOptimizationLevel,
    executionMode: 'sequential',
    enableCpuMemArena: settings.cpuArena,
    ...exactInt8SessionOptions(settings.exactInt8),
  };
}

/**
 * The options of a text-generation session (generate's, and optimize's evaluation of text
 * models): {@link ortSessionOptions} with the CPU arena whatever `MAAS_ORT_CPU_ARENA` says (that
 * setting is for predict's many sessions). Each decode step allocates the KV cache again, one
 * step longer, and the arena reuses those buffers where the allocator would page in fresh ones
 * every step; what it holds is bounded by the longest context of the few text models a
 * container keeps.
 * @example
 * const generator = await loadTextGenerator(dir, { sessionOptions: textGenerationSessionOptions(settings.session) });
 */
export function textGenerationSessionOptions(settings: SessionSettings): ort.InferenceSession.SessionOptions {
  return { ...ortSessionOptions(settings), enableCpuMemArena: true };
}

const GRAPH_OPTIMIZATION_LEVELS: readonly GraphOptimizationLevel[] = ['disabled', 'basic', 'extended', 'all'];

/**
 * The inference settings read through a caller's {@link SettingsReader}, so that a function
 * reading several groups reports every invalid setting at once.
 * @example
 * const reader = new SettingsReader(process.env);
 * const inference = readInferenceSettings(reader);
 * reader.check();
 */
export function readInferenceSettings(env: SettingsReader): InferenceSettings {
  const lambdaMb = env.getNumberFromEnv({ key: 'AWS_LAMBDA_FUNCTION_MEMORY_SIZE', defaultValue: 0, min: 0 });
  const int = (key: string, defaultValue: number, min: number): number =>
    env.getNumberFromEnv({ key, defaultValue, min, integer: true });
  return {
    aliasTtlMs: int('MAAS_ALIAS_TTL_MS', DEFAULT_ALIAS_TTL_MS, 0),
    modelCacheDir: env.getStringFromEnv({
      key: 'MAAS_MODEL_CACHE_DIR',
      defaultValue: DEFAULT_MODEL_CACHE_DIR,
    }),
    sessionCacheBytes:
      int('MAAS_SESSION_CACHE_MB', lambdaMb > 0 ? Math.floor(lambdaMb / 2) : 1024, 1) * 1024 * 1024,
    session: {
      intraOpThreads: int('MAAS_ORT_INTRA_OP_THREADS', availableParallelism(), 0),
      interOpThreads: int('MAAS_ORT_INTER_OP_THREADS', 1, 0),
      smallModelBytes:
        env.getNumberFromEnv({ key: 'MAAS_ORT_SMALL_MODEL_MB', defaultValue: 4, min: 0 }) * 1024 * 1024,
      graphOptimizationLevel: env.getEnumFromEnv({
        key: 'MAAS_ORT_GRAPH_OPTIMIZATION',
        values: GRAPH_OPTIMIZATION_LEVELS,
        defaultValue: 'all',
      }),
      exactInt8: env.getBooleanFromEnv({ key: 'MAAS_ORT_EXACT_INT8', defaultValue: cpuSaturatesInt8() }),
      cpuArena: env.getBooleanFromEnv({ key: 'MAAS_ORT_CPU_ARENA', defaultValue: false }),
    },
    materialize: {
      partBytes: int('MAAS_DOWNLOAD_PART_MB', 8, 1) * MIB,
      concurrency: int('MAAS_DOWNLOAD_CONCURRENCY', 8, 1),
      fileMinBytes: env.getNumberFromEnv({ key: 'MAAS_MODEL_FILE_MIN_MB', defaultValue: 64, min: 0 }) * MIB,
      diskBytes: int('MAAS_MODEL_CACHE_DISK_MB', 0, 0) * MIB,
      diskReserveBytes: int('MAAS_MODEL_CACHE_DISK_RESERVE_MB', 64, 0) * MIB,
    },
    memory: {
      // Lambda's memorySize is a hard limit (the sandbox is killed past it); elsewhere the
      // machine's memory is the honest bound.
      limitBytes:
        env.getNumberFromEnv({
          key: 'MAAS_PREDICT_MEMORY_MB',
          defaultValue: lambdaMb > 0 ? lambdaMb : Math.floor(totalmem() / MIB),
          min: 1,
        }) * MIB,
      reservedBytes: int('MAAS_PREDICT_RESERVED_MB', 384, 0) * MIB,
    },
    observerFlushBudgetMs: int('MAAS_OBSERVER_FLUSH_BUDGET_MS', 50, 0),
    canarySecret: env.getStringFromEnv({ key: 'MAAS_CANARY_SECRET', defaultValue: '' }),
  };
}
