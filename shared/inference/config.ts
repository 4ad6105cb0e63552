/**
 * Settings of the inference core, read once from the environment (`MAAS_*`), with defaults
 * suited to Lambda: models cached in `/tmp`, one inter-op thread, intra-op threads = the vCPUs
 * Lambda gives the function, full graph optimization.
 */
import { availableParallelism } from 'node:os';
import { MaasError } from '../errors';

export type GraphOptimizationLevel = 'disabled' | 'basic' | 'extended' | 'all';

/** Options of onnxruntime sessions. */
export interface SessionSettings {
  intraOpThreads: number;
  interOpThreads: number;
  graphOptimizationLevel: GraphOptimizationLevel;
}

export interface InferenceSettings {
  /** How long an alias resolution is reused before the registry is asked again. */
  aliasTtlMs: number;
  /** Folder for model bytes fetched from the store, keyed by sha256. */
  modelCacheDir: string;
  /** Memory budget of the session LRU, bytes (estimated from model sizes). */
  sessionCacheBytes: number;
  session: SessionSettings;
  /** Longest a response waits for observers' flush. */
  observerFlushBudgetMs: number;
}

/** Default alias TTL: short, so a rollback reaches warm containers within seconds. */
export const DEFAULT_ALIAS_TTL_MS = 5000;
export const DEFAULT_MODEL_CACHE_DIR = '/tmp/maas-models';

/**
 * Reads the settings from the environment.
 *
 * | variable | default |
 * | --- | --- |
 * | `MAAS_ALIAS_TTL_MS` | 5000 |
 * | `MAAS_MODEL_CACHE_DIR` | `/tmp/maas-models` |
 * | `MAAS_SESSION_CACHE_MB` | half the function memory (`AWS_LAMBDA_FUNCTION_MEMORY_SIZE`), else 1024 |
 * | `MAAS_ORT_INTRA_OP_THREADS` | vCPUs available |
 * | `MAAS_ORT_INTER_OP_THREADS` | 1 |
 * | `MAAS_ORT_GRAPH_OPTIMIZATION` | `all` (`disabled`, `basic`, `extended`, `all`) |
 * | `MAAS_OBSERVER_FLUSH_BUDGET_MS` | 50 |
 *
 * @example
 * ```ts
 * const settings = inferenceSettingsFromEnv({ MAAS_ALIAS_TTL_MS: '1000' });
 * ```
 */
export function inferenceSettingsFromEnv(env: NodeJS.ProcessEnv = process.env): InferenceSettings {
  const lambdaMb = Number(env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE);
  const level = env.MAAS_ORT_GRAPH_OPTIMIZATION ?? 'all';
  if (!['disabled', 'basic', 'extended', 'all'].includes(level)) {
    throw misconfigured(`MAAS_ORT_GRAPH_OPTIMIZATION must be disabled, basic, extended or all, got ${level}`);
  }
  return {
    aliasTtlMs: int(env, 'MAAS_ALIAS_TTL_MS', DEFAULT_ALIAS_TTL_MS, 0),
    modelCacheDir: env.MAAS_MODEL_CACHE_DIR || DEFAULT_MODEL_CACHE_DIR,
    sessionCacheBytes:
      int(env, 'MAAS_SESSION_CACHE_MB', lambdaMb > 0 ? Math.floor(lambdaMb / 2) : 1024, 1) * 1024 * 1024,
    session: {
      intraOpThreads: int(env, 'MAAS_ORT_INTRA_OP_THREADS', availableParallelism(), 0),
      interOpThreads: int(env, 'MAAS_ORT_INTER_OP_THREADS', 1, 0),
      graphOptimizationLevel: level as GraphOptimizationLevel,
    },
    observerFlushBudgetMs: int(env, 'MAAS_OBSERVER_FLUSH_BUDGET_MS', 50, 0),
  };
}

function int(env: NodeJS.ProcessEnv, name: string, fallback: number, min: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < min)
    throw misconfigured(`${name} must be an integer ≥ ${min}, got ${JSON.stringify(raw)}`);
  return n;
}

/** A bad setting is the operator's problem, not the client's: a server error (logged, not echoed). */
function misconfigured(message: string): MaasError {
  return new MaasError('internal', message);
}
