import type { OnnxModelInfo } from '../onnx/inspect';

/** Lifecycle of a version. Only `active` versions can be promoted or served through an alias. */
export type VersionStatus = 'active' | 'rejected' | 'archived';
export const VERSION_STATUSES: readonly VersionStatus[] = ['active', 'rejected', 'archived'];

/** How an optimized version came to be (see the optimize function). */
export interface OptimizationLineage {
  technique: string;
  parameters: Record<string, unknown>;
  report: Record<string, unknown>;
}

/**
 * What a file of a version bundle is: the ONNX `graph`; external tensor `data` the graph
 * references; a `companion` the runtime reads beside it (tokenizer.json, generation_config.json, …).
 */
export type BundleFileRole = 'graph' | 'data' | 'companion';

/** One file of a version bundle, stored content-addressed like a single-file model's blob. */
export interface BundleFile {
  /** Plain file name inside the bundle folder (no separators, what external-data `location`s name). */
  name: string;
  size: number;
  sha256: string;
  /** Store key of the file's bytes (`blobs/sha256/{hex}…`). */
  blobKey: string;
  role: BundleFileRole;
}

/**
 * What registration learned about a text-generation version (a decoder-only graph plus its
 * tokenizer files, see docs/api/generate.md): recorded so listings (`GET /v1/models`) tell text
 * models apart without opening bundles, and so the runtime's needs are visible before a load.
 */
export interface TextGenerationInfo {
  task: 'text-generation';
  /** How the graph is driven: KV cache in and out, the whole sequence each step, or cached with `use_cache_branch`. */
  kvCache: 'cached' | 'uncached' | 'merged';
  /** Decoder blocks with a KV cache (0 for uncached graphs). */
  layers: number;
  /** KV cache element type; absent for uncached graphs. */
  cacheDatatype?: 'FP32' | 'FP16';
  /** Context length (prompt plus completion) from config.json / tokenizer_config.json. */
  contextLength: number;
  /** Vocabulary size when the graph fixes it (-1 otherwise). */
  vocabSize: number;
  /** Whether the tokenizer_config.json holds a chat template (or chat_template.jinja is present): `/v1/chat/completions` works. */
  chatTemplate: boolean;
}

/** The immutable manifest of one version, plus its (mutable) status. */
export interface ModelVersion {
  name: string;
  version: number;
  /**
   * The version's digest: the model file's sha256 for a single-file version; for a bundle, the
   * sha256 of its file list (`bundleDigest`: sorted `name\tsize\tsha256\n` lines).
   */
  sha256: string;
  /** Total bytes of every file of the version. */
  size: number;
  /** Store key of the ONNX graph's bytes. */
  blobKey: string;
  /**
   * Every file of a bundle (graph first); absent for a single-file version, whose one file is
   * the graph at `blobKey` with sha256 `sha256`.
   */
  files?: BundleFile[];
  createdAt: string;
  actor: string;
  description: string;
  tags: Record<string, string>;
  /** Where the bytes came from: `api`, `s3://…/incoming/…`, `optimize`, … */
  source: string;
  parentVersion?: number;
  optimization?: OptimizationLineage;
  metadata: Record<string, unknown>;
  onnx: OnnxModelInfo;
  /** Present when the version is a text-generation model (detected at registration). */
  textGeneration?: TextGenerationInfo;
  status: VersionStatus;
  statusReason?: string;
}

/** A weighted second version behind an alias (canary release). */
export interface CanarySplit {
  version: number;
  /** Share of requests routed to the canary, 0 < weight < 1. */
  weight: number;
}

export interface AliasRecord {
  name: string;
  alias: string;
  version: number;
  canary?: CanarySplit;
  /** Versions the alias held before, most recent last (what rollback returns to). */
  previous: number[];
  /** Incremented by every move; history events carry it. */
  revision: number;
  updatedAt: string;
  actor: string;
  reason?: string;
  /**
   * The idempotent request (`Idempotency-Key`) whose move wrote this record, if any, and the
   * version the alias held before it (what the move's history event says it came from).
   */
  request?: { id: string; from: number | null };
  /** Store etag: pass it back as `ifMatch` for optimistic concurrency. */
  etag: string;
}

export type HistoryEventType =
  | 'registered'
  | 'optimized'
  | 'alias_moved'
  | 'rolled_back'
  | 'alias_deleted'
  | 'status_changed'
  /** Written by the monitor for every window in which a served version breached its policy. */
  | 'monitor_breach'
  /** Written by optimize when a run ends, whatever its outcome (registered versions also get `optimized`). */
  | 'optimization_finished';

export interface HistoryEvent {
  id: string;
  type: HistoryEventType;
  time: string;
  actor: string;
  reason?: string;
  version?: number;
  alias?: string;
  /** Alias moves: the version held before, or null for a new alias. */
  from?: number | null;
  /** Alias moves: the alias record revision this move produced. */
  revision?: number;
  status?: VersionStatus;
  details?: Record<string, unknown>;
}

export interface ModelSummary {
  name: string;
  latestVersion: number;
  aliases: Record<string, number>;
}

export interface Page<T> {
  items: T[];
  /** Pass as `cursor` to get the next page; absent on the last page. */
  nextCursor?: string;
}

export interface PageOptions {
  /** 1..100, default 50. */
  limit?: number;
  cursor?: string;
}

/** Who did something and why: recorded in history. */
export interface Attribution {
  actor?: string;
  reason?: string;
}

export interface RegisterOptions extends Attribution {
  description?: string;
  tags?: Record<string, string>;
  source?: string;
  parentVersion?: number;
  optimization?: OptimizationLineage;
  metadata?: Record<string, unknown>;
  /** Register even if this model already has a version with identical bytes. */
  force?: boolean;
  /** Point this alias at the new version once registered. */
  alias?: string;
}

export interface RegisterResult {
  version: ModelVersion;
  /** False when identical bytes were already registered and that version is returned. */
  created: boolean;
}

export interface SetAliasOptions extends Attribution {
  /** Optimistic concurrency: the alias etag the caller last saw (`null`: the alias must not exist yet). */
  ifMatch?: string | null;
  /** Route a share of the alias's traffic to another version. */
  canary?: CanarySplit;
  /**
   * Id of an idempotent request (shared/registry/idempotency.ts): when the alias's latest move
   * already carries it, that move is this request's own (retried after a failure that followed
   * the write) and is returned as it is, not made again.
   */
  requestId?: string;
}

export interface RollbackOptions extends Attribution {
  /** Explicit target; otherwise the version the alias held before its last promotion. */
  to?: number;
  /** Optimistic concurrency: roll back only if the alias still has this etag (else 412). */
  ifMatch?: string;
  /** As {@link SetAliasOptions.requestId}: a retried rollback never rolls back twice. */
  requestId?: string;
}
