/**
 * onnxruntime sessions kept across warm invocations.
 *
 * - Small single-file models (under `MAAS_MODEL_FILE_MIN_MB`) come from the store in one verified
 *   read (`ModelRegistry.readModel`) and the session is created from the bytes; a copy is kept in
 *   a local folder keyed by sha256 (`/tmp` on Lambda), so re-creating an evicted session costs no
 *   store request.
 * - Bundles and big single files are laid out on disk by {@link ModelMaterializer} (parallel
 *   ranged GETs, each file verified while it streams) and the session is created from the
 *   graph's path, so onnxruntime finds the external data files beside it.
 * - A tampered or corrupted blob is refused with an {@link IntegrityError} before any session is
 *   created from it.
 * - Sessions live in an LRU bounded by a memory budget, estimated from the initializer bytes the
 *   manifest records (else the model size), plus what a CPU arena kept once runs show it
 *   (`MAAS_ORT_CPU_ARENA`); a model whose estimate exceeds what the function's
 *   memory can hold is refused (413) before onnxruntime is asked, instead of crashing the
 *   container. Evicting a session that is still running releases it when its last run ends.
 * - Concurrent requests for a model that is loading share one load (single flight).
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { IntegrityError, MaasError, PayloadTooLargeError } from '../errors';
import { type ModelVersion, matchesManifest, sha256Hex } from '../registry';
import {
  type MaterializeSettings,
  type MemorySettings,
  ortSessionOptions,
  type SessionSettings,
} from './config';
import type { InferenceLogger } from './logger';
import {
  forgetVerifiedCopies,
  isVerifiedCopy,
  ModelMaterializer,
  type RangeReader,
  rememberVerifiedCopy,
} from './materialize';

/** A session lent to one request; call `release` when the run is over. */
export interface SessionLease {
  session: ort.InferenceSession;
  /** Milliseconds this request spent loading the model (0 on a cache hit or a shared load). */
  loadMs: number;
  /**
   * Runs the session; a session with onnxruntime's CPU arena is charged what the run left the
   * process larger by (the arena keeps it), so the budget sees its activations.
   */
  run(
    feeds: ort.InferenceSession.FeedsType,
    fetches: readonly string[],
  ): Promise<ort.InferenceSession.ReturnType>;
  release(): void;
}

export interface SessionCacheOptions {
  /** The verified read of a version's bytes (the registry's `readModel`). */
  readModel: (version: ModelVersion) => Promise<Uint8Array>;
  /**
   * Ranged reads of the registry's store: bundles and big single files download through it
   * (without it, single files are read whole through `readModel` and bundles cannot be served).
   */
  store?: RangeReader;
  cacheDir: string;
  budgetBytes: number;
  session: SessionSettings;
  materialize: MaterializeSettings;
  memory: MemorySettings;
  logger?: InferenceLogger;
  /** Called with the model and version whenever a blob fails its sha256 check. */
  onIntegrityFailure?: (version: ModelVersion) => void;
}

interface Entry {
  sha256: string;
  session: ort.InferenceSession;
  /** Resident bytes counted against the budget: `estimate`, plus what an arena kept. */
  weight: number;
  /** {@link estimateSessionBytes} of the version. */
  estimate: number;
  /** What this session's runs grew the process by (arena sessions only). */
  charged: number;
  leases: number;
  evicted: boolean;
  /** The cache entry the session was created from, if created from a path. */
  localEntry?: string;
  /** Created with onnxruntime's CPU arena: what its runs keep is charged to `weight`. */
  arena: boolean;
}

/**
 * Resident size estimate of small models: onnxruntime keeps initializers (≈ the file) plus
 * prepacked weights; 1.5× the file is a conservative middle for MLP/CNN models.
 */
const WEIGHT_FACTOR = 1.5;
/**
 * Of models from `smallModelBytes` on, per initializer byte: measured 1.0× (no arena) to 1.18×
 * (CPU arena) for a 151 MB bundle MLP created from its path (onnxruntime 1.30); 1.25 leaves room.
 */
const INITIALIZER_FACTOR = 1.25;
/**
 * What a session holds whatever its model (measured: ~170 KB for a tiny MLP, single-threaded,
 * no arena; more with an arena or threads): without it, thousands of tiny models would all fit
 * the budget while their sessions grew the process without bound.
 */
export const SESSION_OVERHEAD_BYTES = 256 * 1024;
/**
 * What a session holds per node of the model beside its tensors (kernels, graph structures),
 * single-threaded, no arena: measured ~2.8 KiB a node for chains of 100 and 1,000 Relu nodes and
 * ~2.9 KiB for the 0.55 MiB PaddleOCR classifier (471 nodes, 2.4 MiB a session, beyond 1.5× its
 * file); 4 KiB leaves room, as the other factors do.
 */
export const NODE_BYTES = 4 * 1024;
/**
 * Growth of the process over one run, beyond its outputs, from which a session with the CPU
 * arena is charged for it: the arena grows in chunks of at least this much, and smaller changes
 * are the JS heap's noise (growth below it is not charged, even when runs add up to more). The
 * delta is the session's own where one request runs at a time (a Lambda container); with
 * concurrent runs (a local server) a session may be charged another's growth, kept in its weight
 * until it is evicted, or miss its own when another's memory is freed meanwhile.
 */
const ARENA_GROWTH_MIN_BYTES = 1024 * 1024;

/**
 * The memory a version's session is expected to take: from the initializer bytes its manifest
 * records (`onnx.initializerBytes`), else its size; small models as 1.5× their size; plus what
 * onnxruntime's folding of constant Casts adds (`onnx.castWideningBytes`: int8 weights kept as
 * Cast→Mul are float32 in memory) and {@link NODE_BYTES} per node (`onnx.nodeCount`, when
 * recorded).
 * @example
 * estimateSessionBytes(version, settings.session); // 1.25 × initializerBytes + graph + widening + 4 KiB × nodes + 256 KiB
 */
export function estimateSessionBytes(
  version: ModelVersion,
  session: Pick<SessionSettings, 'smallModelBytes'>,
): number {
  const fixed =
    (version.onnx.castWideningBytes ?? 0) +
    (version.onnx.nodeCount ?? 0) * NODE_BYTES +
    SESSION_OVERHEAD_BYTES;
  if (version.size < session.smallModelBytes) return Math.ceil(version.size * WEIGHT_FACTOR) + fixed;
  const recorded = version.onnx.initializerBytes;
  const initializers =
    typeof recorded === 'number' && recorded >= 0 ? Math.min(recorded, version.size) : version.size;
  // The rest (graph structure, companions) is at most the remaining bytes.
  return Math.ceil(initializers * INITIALIZER_FACTOR) + (version.size - initializers) + fixed;
}

/** Arena charges remembered per model content: enough for every model a container serves. */
const REMEMBERED_ARENAS = 4096;

function rememberArena(arenas: Map<string, number>, sha256: string, bytes: number): void {
  arenas.delete(sha256);
  arenas.set(sha256, bytes);
  for (const key of arenas.keys()) {
    if (arenas.size <= REMEMBERED_ARENAS) break;
    arenas.delete(key);
  }
}

/**
 * LRU of sessions by model content (sha256).
 * @example
 * ```ts
 * const cache = new SessionCache({ store, cacheDir: '/tmp/maas-models', budgetBytes: 512 << 20, session: settings.session });
 * const lease = await cache.acquire(version);
 * try { await lease.session.run(feeds); } finally { lease.release(); }
 * ```
 */
export class SessionCache {
  private readonly entries = new Map<string, Entry>();
  private readonly loading = new Map<string, Promise<Entry>>();
  /** Evicted sessions still running (released when their last lease ends). */
  private readonly draining = new Set<Entry>();
  /** Local copies being written (not awaited by the request that fetched them). */
  private readonly writes = new Set<Promise<void>>();
  private readonly options: SessionCacheOptions;
  private readonly materializer: ModelMaterializer | undefined;
  private residentBytes = 0;
  /** What arena sessions were charged, by sha256, kept past eviction (bounded, oldest dropped). */
  private readonly arenaBytes = new Map<string, number>();

  constructor(options: SessionCacheOptions) {
    this.options = options;
    this.materializer = options.store
      ? new ModelMaterializer({
          store: options.store,
          cacheDir: options.cacheDir,
          settings: options.materialize,
          ...(options.logger ? { logger: options.logger } : {}),
          inUse: () => this.entriesInUse(),
          onEvict: (entry) => this.dropSessionsOf(entry),
          ...(options.onIntegrityFailure ? { onIntegrityFailure: options.onIntegrityFailure } : {}),
        })
      : undefined;
  }

  /** Local copies sessions are running from right now (cached or evicted but still leased). */
  private *entriesInUse(): Iterable<string> {
    for (const e of this.entries.values()) if (e.localEntry && e.leases > 0) yield e.localEntry;
    for (const e of this.draining) if (e.localEntry) yield e.localEntry;
  }

  /** Drops the cached sessions created from a local copy that is being deleted. */
  private dropSessionsOf(localEntry: string): void {
    for (const [key, e] of this.entries) if (e.localEntry === localEntry) this.drop(key, e);
  }

  /** Bytes currently attributed to cached sessions. */
  get bytes(): number {
    return this.residentBytes;
  }

  /** Bytes counted for the cached session of a model content (0 when it is not cached). */
  bytesOf(sha256: string): number {
    return this.entries.get(sha256)?.weight ?? 0;
  }

  /** sha256 of the cached sessions, least recently used first. */
  keys(): string[] {
    return [...this.entries.keys()];
  }

  /** Lends the session of a version, loading it first if needed. */
  async acquire(version: ModelVersion): Promise<SessionLease> {
    const hit = this.entries.get(version.sha256);
    if (hit) {
      // Re-insert: Map iteration order is the LRU order.
      this.entries.delete(version.sha256);
      this.entries.set(version.sha256, hit);
      return this.lease(hit, 0);
    }
    let pending = this.loading.get(version.sha256);
    const owner = !pending;
    const started = performance.now();
    if (!pending) {
      pending = this.load(version).finally(() => this.loading.delete(version.sha256));
      this.loading.set(version.sha256, pending);
    }
    const entry = await pending;
    return this.lease(entry, owner ? performance.now() - started : 0);
  }

  /** Releases every session (tests, shutdown). */
  async clear(): Promise<void> {
    const all = [...this.entries.values()];
    this.entries.clear();
    this.residentBytes = 0;
    await Promise.all(
      all.map((e) => {
        e.evicted = true;
        if (e.leases > 0) this.draining.add(e);
        return e.leases === 0 ? e.session.release() : undefined;
      }),
    );
  }

  private lease(entry: Entry, loadMs: number): SessionLease {
    entry.leases++;
    let released = false;
    return {
      session: entry.session,
      loadMs,
      run: async (feeds, fetches) => {
        if (!entry.arena) return entry.session.run(feeds, fetches);
        const before = process.memoryUsage.rss();
        let outputBytes = 0;
        try {
          const results = await entry.session.run(feeds, fetches);
          for (const v of Object.values(results))
            outputBytes += ArrayBuffer.isView(v.data) ? v.data.byteLength : 0;
          return results;
        } finally {
          // A failed run may have grown the arena too (nodes before the failing one ran).
          const grown = process.memoryUsage.rss() - before - outputBytes;
          if (grown >= ARENA_GROWTH_MIN_BYTES) this.charge(entry, grown);
        }
      },
      release: () => {
        if (released) return;
        released = true;
        entry.leases--;
        if (entry.evicted && entry.leases === 0) {
          this.draining.delete(entry);
          void entry.session.release().catch(() => undefined);
        }
      },
    };
  }

  private async load(version: ModelVersion): Promise<Entry> {
    const t0 = performance.now();
    // Decided before any byte is fetched or onnxruntime is asked: a model the function cannot
    // hold would otherwise kill the container on every request that reaches it.
    const estimate = estimateSessionBytes(version, this.options.session);
    this.assertFits(version, estimate);
    const small = version.size < this.options.session.smallModelBytes;
    const arena = !small && this.options.session.cpuArena;
    // A session reloaded with the arena will grow it again as far as it did before.
    const weight = estimate + (arena ? (this.arenaBytes.get(version.sha256) ?? 0) : 0);
    const bundle = version.files !== undefined && version.files.length > 0;
    const fromFile =
      this.materializer !== undefined && (bundle || version.size >= this.options.materialize.fileMinBytes);
    let input: string | Uint8Array;
    let details: Record<string, unknown>;
    let localEntry: string | undefined;
    // Room first: two big sessions side by side is how a container runs out of memory (and
    // the copies of evicted sessions become free to evict from disk for this one's files).
    this.makeRoom(weight);
    if (fromFile && this.materializer) {
      const local = await this.materializer.materialize(version);
      input = local.graphPath;
      localEntry = local.entry;
      details = {
        source: local.downloadedBytes > 0 ? 'store' : 'local',
        downloadedBytes: local.downloadedBytes,
        hashedFiles: local.hashedFiles,
      };
    } else if (bundle) {
      throw new MaasError(
        'internal',
        'this inference core has no store to read bundles from (SessionCacheOptions.store)',
      );
    } else {
      const { bytes, source, hashed } = await this.verifiedBytes(version);
      input = bytes;
      details = { source, hashed };
    }
    const t1 = performance.now();
    const options: ort.InferenceSession.SessionOptions = {
      ...ortSessionOptions(this.options.session),
      ...(small ? { intraOpNumThreads: 1 } : {}),
      enableCpuMemArena: arena,
    };
    const session =
      typeof input === 'string'
        ? await ort.InferenceSession.create(input, options)
        : await ort.InferenceSession.create(input, options);
    const entry: Entry = {
      sha256: version.sha256,
      session,
      weight,
      estimate,
      charged: 0,
      leases: 0,
      evicted: false,
      ...(localEntry ? { localEntry } : {}),
      arena,
    };
    this.entries.set(entry.sha256, entry);
    this.residentBytes += entry.weight;
    this.options.logger?.info('model loaded', {
      model: version.name,
      version: version.version,
      sha256: version.sha256,
      bytes: version.size,
      estimatedBytes: weight,
      ...details,
      fetchMs: Math.round(t1 - t0),
      sessionMs: Math.round(performance.now() - t1),
    });
    this.evict();
    return entry;
  }

  /** 413 when the session alone would not fit the function's memory. */
  private assertFits(version: ModelVersion, weight: number): void {
    const { limitBytes, reservedBytes } = this.options.memory;
    const available = limitBytes - reservedBytes;
    if (weight <= available) return;
    const mib = (n: number): number => Math.ceil(n / (1024 * 1024));
    throw new PayloadTooLargeError(
      `model ${version.name} version ${version.version} needs about ${mib(weight)} MiB of memory to serve, ` +
        `more than this function can hold (${mib(available)} MiB: ${mib(limitBytes)} MiB memory, ` +
        `${mib(reservedBytes)} MiB of it for the runtime); deploy predict with at least ` +
        `${mib(weight + reservedBytes)} MB of memory (stack param predictMemoryMb, up to 10240) or serve a smaller version (e.g. int8-optimized)`,
      {
        model: version.name,
        version: version.version,
        neededBytes: weight,
        availableBytes: available,
        memoryBytes: limitBytes,
      },
    );
  }

  /**
   * Adds what a session's arena kept to its weight, evicting older sessions past the budget. The
   * total is remembered past eviction, so that a reload makes room for the arena it will grow.
   */
  private charge(entry: Entry, bytes: number): void {
    if (entry.evicted) return;
    entry.charged += bytes;
    const weight = entry.estimate + Math.max(entry.charged, this.arenaBytes.get(entry.sha256) ?? 0);
    this.residentBytes += weight - entry.weight;
    entry.weight = weight;
    rememberArena(this.arenaBytes, entry.sha256, weight - entry.estimate);
    this.options.logger?.info('session arena grew', {
      sha256: entry.sha256,
      grownBytes: bytes,
      weight: entry.weight,
      residentBytes: this.residentBytes,
    });
    this.evict();
  }

  /** Evicts least recently used sessions until `weight` more fits the budget (or none is left). */
  private makeRoom(weight: number): void {
    for (const [key, entry] of this.entries) {
      if (this.residentBytes + weight <= this.options.budgetBytes) break;
      this.drop(key, entry);
    }
  }

  private drop(key: string, entry: Entry): void {
    this.entries.delete(key);
    this.residentBytes -= entry.weight;
    entry.evicted = true;
    this.options.logger?.info('session evicted', {
      sha256: key,
      weight: entry.weight,
      residentBytes: this.residentBytes,
    });
    if (entry.leases === 0) void entry.session.release().catch(() => undefined);
    else this.draining.add(entry);
  }

  /** Least recently used first; the newest entry stays even if it alone exceeds the budget. */
  private evict(): void {
    for (const [key, entry] of this.entries) {
      if (this.residentBytes <= this.options.budgetBytes || this.entries.size <= 1) break;
      this.drop(key, entry);
    }
  }

  /**
   * Local copy if it verifies, else the store's bytes once they verify (then cached locally).
   * `hashed` says whether this call hashed the bytes (false for a local copy this process
   * wrote and verified itself).
   */
  private async verifiedBytes(
    version: ModelVersion,
  ): Promise<{ bytes: Uint8Array; source: 'local' | 'store'; hashed: boolean }> {
    const file = path.resolve(this.options.cacheDir, `${version.sha256}.onnx`);
    const local = await readLocal(file);
    if (local) {
      if (local.trusted) return { bytes: local.bytes, source: 'local', hashed: false };
      forgetVerifiedCopies(file);
      if (matchesManifest(version, { sha256: sha256Hex(local.bytes), size: local.bytes.length }))
        return { bytes: local.bytes, source: 'local', hashed: true };
      // A damaged local copy is not the store's fault: drop it and fetch again.
      this.options.logger?.warn('local model copy failed its sha256 check; fetching it again', {
        file,
        sha256: version.sha256,
      });
      await rm(file, { force: true });
    }
    let body: Uint8Array;
    try {
      body = await this.options.readModel(version);
    } catch (e) {
      if (e instanceof IntegrityError) {
        this.options.onIntegrityFailure?.(version);
        this.options.logger?.error('model blob failed its integrity check', {
          model: version.name,
          version: version.version,
          expected: e.expected,
          actual: e.actual,
        });
      }
      throw e;
    }
    // Not awaited: the local copy only matters for a later reload, so writing it must not
    // delay the first response (write-then-rename keeps readers from seeing a partial file).
    const write = this.keepLocal(file, body);
    this.writes.add(write);
    void write.finally(() => this.writes.delete(write));
    return { bytes: body, source: 'store', hashed: true };
  }

  /**
   * Resolves once the local copies being written are on disk (or given up on): a reload after
   * that reads them instead of the store.
   * @example
   * await cache.localCopiesWritten();
   */
  async localCopiesWritten(): Promise<void> {
    await Promise.all([...this.writes]);
  }

  /** Writes verified bytes to the local cache and remembers the file as verified. */
  private async keepLocal(file: string, bytes: Uint8Array): Promise<void> {
    // Write-then-rename: a concurrent reader never sees a partial file. A full /tmp only costs
    // a refetch later, so failures are logged, not thrown.
    const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
    try {
      await mkdir(path.dirname(file), { recursive: true });
      // Old copies make room (only when a store was given: that is what can refetch them).
      await this.materializer?.ensureDisk(bytes.byteLength, file);
      const handle = await open(tmp, 'wx');
      try {
        await handle.writeFile(bytes);
        // Rename keeps the inode and mtime, so the identity taken here is the final file's; it
        // is recorded before the file becomes visible, so no reader sees it unrecorded.
        rememberVerifiedCopy(file, await handle.stat());
      } finally {
        await handle.close();
      }
      await rename(tmp, file);
      this.materializer?.touch(file);
    } catch (e) {
      forgetVerifiedCopies(file);
      this.options.logger?.warn('could not keep a local copy of the model', { file, error: String(e) });
      await rm(tmp, { force: true }).catch(() => undefined);
    }
  }
}

/**
 * A local file's bytes and whether this process wrote or verified that very file, read through
 * one handle (so both describe the same file).
 */
async function readLocal(file: string): Promise<{ bytes: Buffer; trusted: boolean } | undefined> {
  const handle = await open(file, 'r').catch(() => undefined);
  if (!handle) return undefined;
  try {
    const stats = await handle.stat();
    const bytes = await handle.readFile();
    return { bytes, trusted: isVerifiedCopy(file, stats) };
  } catch {
    return undefined;
  } finally {
    await handle.close();
  }
}
