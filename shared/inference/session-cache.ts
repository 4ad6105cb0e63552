/**
 * onnxruntime sessions kept across warm invocations.
 *
 * - Model bytes come from the store once per container and are kept in a local folder keyed by
 *   sha256 (`/tmp` on Lambda), so re-creating an evicted session costs no store request.
 * - Bytes come from the registry's verified read (`ModelRegistry.readModel`) before any session
 *   is created: a tampered or corrupted blob is refused with an {@link IntegrityError}.
 * - Sessions live in an LRU bounded by a memory budget, estimated from model sizes; evicting a
 *   session that is still running releases it when its last run ends.
 * - Concurrent requests for a model that is loading share one load (single flight).
 */
import { randomBytes } from 'node:crypto';
import type { Stats } from 'node:fs';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { IntegrityError } from '../errors';
import { type ModelVersion, matchesManifest, sha256Hex } from '../registry';
import type { SessionSettings } from './config';
import type { InferenceLogger } from './logger';

/** A session lent to one request; call `release` when the run is over. */
export interface SessionLease {
  session: ort.InferenceSession;
  /** Milliseconds this request spent loading the model (0 on a cache hit or a shared load). */
  loadMs: number;
  release(): void;
}

export interface SessionCacheOptions {
  /** The verified read of a version's bytes (the registry's `readModel`). */
  readModel: (version: ModelVersion) => Promise<Uint8Array>;
  cacheDir: string;
  budgetBytes: number;
  session: SessionSettings;
  logger?: InferenceLogger;
  /** Called with the model and version whenever a blob fails its sha256 check. */
  onIntegrityFailure?: (version: ModelVersion) => void;
}

interface Entry {
  sha256: string;
  session: ort.InferenceSession;
  /** Estimated resident bytes. */
  weight: number;
  leases: number;
  evicted: boolean;
}

/**
 * Local copies this process wrote itself, after their bytes passed the sha256 check, with the
 * identity of the file it wrote (device, inode, size, mtime). Reloading such a file needs no
 * second hash pass over the model: the identity shows it is still the file written. A file
 * found on disk otherwise (left by an earlier container sharing /tmp, or replaced since) is
 * hashed as before. Module-level: it describes this container's disk, whatever cache wrote it.
 */
const writtenByThisProcess = new Map<string, string>();

function fileIdentity(stats: Stats): string {
  return `${stats.dev}:${stats.ino}:${stats.size}:${stats.mtimeMs}`;
}

/**
 * Resident size estimate: onnxruntime keeps initializers (≈ the file) plus arenas and prepacked
 * weights; 1.5× the file is a conservative middle for MLP/CNN models.
 */
const WEIGHT_FACTOR = 1.5;
/**
 * What a session holds whatever its model (measured: ~170 KB for a tiny MLP, single-threaded,
 * no arena; more with an arena or threads): without it, thousands of tiny models would all fit
 * the budget while their sessions grew the process without bound.
 */
export const SESSION_OVERHEAD_BYTES = 256 * 1024;

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
  private readonly options: SessionCacheOptions;
  private residentBytes = 0;

  constructor(options: SessionCacheOptions) {
    this.options = options;
  }

  /** Bytes currently attributed to cached sessions. */
  get bytes(): number {
    return this.residentBytes;
  }

  /** Estimated bytes of the cached session of a model content (0 when it is not cached). */
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
      release: () => {
        if (released) return;
        released = true;
        entry.leases--;
        if (entry.evicted && entry.leases === 0) void entry.session.release().catch(() => undefined);
      },
    };
  }

  private async load(version: ModelVersion): Promise<Entry> {
    const t0 = performance.now();
    const { bytes, source, hashed } = await this.verifiedBytes(version);
    const t1 = performance.now();
    const small = bytes.byteLength < this.options.session.smallModelBytes;
    const session = await ort.InferenceSession.create(bytes, {
      intraOpNumThreads: small ? 1 : this.options.session.intraOpThreads,
      interOpNumThreads: this.options.session.interOpThreads,
      graphOptimizationLevel: this.options.session.graphOptimizationLevel,
      executionMode: 'sequential',
      ...(small ? { enableCpuMemArena: false } : {}),
    });
    const entry: Entry = {
      sha256: version.sha256,
      session,
      weight: Math.ceil(bytes.byteLength * WEIGHT_FACTOR) + SESSION_OVERHEAD_BYTES,
      leases: 0,
      evicted: false,
    };
    this.entries.set(entry.sha256, entry);
    this.residentBytes += entry.weight;
    this.options.logger?.info('model loaded', {
      model: version.name,
      version: version.version,
      sha256: version.sha256,
      bytes: bytes.byteLength,
      source,
      hashed,
      fetchMs: Math.round(t1 - t0),
      sessionMs: Math.round(performance.now() - t1),
    });
    this.evict();
    return entry;
  }

  /** Least recently used first; the newest entry stays even if it alone exceeds the budget. */
  private evict(): void {
    for (const [key, entry] of this.entries) {
      if (this.residentBytes <= this.options.budgetBytes || this.entries.size <= 1) break;
      this.entries.delete(key);
      this.residentBytes -= entry.weight;
      entry.evicted = true;
      this.options.logger?.info('session evicted', {
        sha256: key,
        weight: entry.weight,
        residentBytes: this.residentBytes,
      });
      if (entry.leases === 0) void entry.session.release().catch(() => undefined);
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
      if (writtenByThisProcess.get(file) === local.identity)
        return { bytes: local.bytes, source: 'local', hashed: false };
      writtenByThisProcess.delete(file);
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
    void this.keepLocal(file, body);
    return { bytes: body, source: 'store', hashed: true };
  }

  /** Writes verified bytes to the local cache and remembers the file as verified. */
  private async keepLocal(file: string, bytes: Uint8Array): Promise<void> {
    // Write-then-rename: a concurrent reader never sees a partial file. A full /tmp only costs
    // a refetch later, so failures are logged, not thrown.
    const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
    try {
      await mkdir(path.dirname(file), { recursive: true });
      const handle = await open(tmp, 'wx');
      let identity: string;
      try {
        await handle.writeFile(bytes);
        // Rename keeps the inode and mtime, so the identity taken here is the final file's; it
        // is recorded before the file becomes visible, so no reader sees it unrecorded.
        identity = fileIdentity(await handle.stat());
      } finally {
        await handle.close();
      }
      writtenByThisProcess.set(file, identity);
      await rename(tmp, file);
    } catch (e) {
      writtenByThisProcess.delete(file);
      this.options.logger?.warn('could not keep a local copy of the model', { file, error: String(e) });
      await rm(tmp, { force: true }).catch(() => undefined);
    }
  }
}

/** A local file's bytes and identity, read through one handle (so both describe the same file). */
async function readLocal(file: string): Promise<{ bytes: Buffer; identity: string } | undefined> {
  const handle = await open(file, 'r').catch(() => undefined);
  if (!handle) return undefined;
  try {
    const stats = await handle.stat();
    const bytes = await handle.readFile();
    return { bytes, identity: fileIdentity(stats) };
  } catch {
    return undefined;
  } finally {
    await handle.close();
  }
}
