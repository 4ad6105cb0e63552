/**
 * Lays a version's files out in the local model cache, so onnxruntime can create the session
 * from the graph's path and find the external data files beside it.
 *
 * - A bundle gets a private folder `{cacheDir}/{digest}.bundle/` holding exactly its files under
 *   their manifest names: an external-data `location` can only reach files of its own bundle. A
 *   big single-file model becomes `{cacheDir}/{sha256}.onnx` (the same path small models' copies
 *   use).
 * - Files download with parallel ranged GETs (`partBytes` each, `concurrency` in flight per
 *   container, shared by every download); each part is written at its offset as soon as it
 *   arrives and hashed in order (big files in a worker thread, off the event loop), so a file's
 *   sha256 is known when its last part lands, and memory stays at `concurrency × partBytes`
 *   whatever the model size.
 * - A file is written under a temp name and renamed once its sha256 and size match the manifest;
 *   a tampered or truncated blob raises {@link IntegrityError} and leaves nothing behind.
 * - A copy found on disk is used only if this process wrote (or verified) that very file
 *   (device, inode, size, mtime), else it is hashed again first.
 * - Copies are evicted least recently used first when the disk (or `diskBytes`) runs short, never
 *   those being written or run from right now; idle sessions created from an evicted copy are
 *   released with it (onnxruntime maps parts of data files: the space returns only then).
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, type Stats } from 'node:fs';
import { type FileHandle, mkdir, open, readdir, rename, rm, stat, statfs } from 'node:fs/promises';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { Worker } from 'node:worker_threads';
import { IntegrityError, MaasError, PayloadTooLargeError } from '../errors';
import {
  type BundleFile,
  bundleFileNameProblem,
  isBundle,
  type ModelVersion,
  versionFiles,
} from '../registry';
import { StoreError } from '../store';
import type { MaterializeSettings } from './config';
import type { InferenceLogger } from './logger';

/** The store reads a download needs: ranged GETs (`end` inclusive, as HTTP Range). */
export interface RangeReader {
  getRange(key: string, start: number, end: number): Promise<{ body: Readable }>;
}

/** A version's files on local disk. */
export interface MaterializedModel {
  /** The graph's path: create the session from it. */
  graphPath: string;
  /** The cache entry (file or bundle folder) holding the files. */
  entry: string;
  /** Total bytes of the version's files. */
  bytes: number;
  /** Bytes fetched from the store by this call (0: everything was on disk already). */
  downloadedBytes: number;
  /** Files this call hashed (downloaded, or found on disk without this process's record). */
  hashedFiles: number;
}

export interface ModelMaterializerOptions {
  store: RangeReader;
  cacheDir: string;
  settings: MaterializeSettings;
  logger?: InferenceLogger;
  /** Cache entries sessions are running from right now: never evicted to make room. */
  inUse?: () => Iterable<string>;
  /**
   * Called for each entry evicted from disk: idle sessions created from it must go too, since
   * onnxruntime maps parts of data files and the space only comes back once they are released.
   */
  onEvict?: (entry: string) => void;
  /** Called whenever a downloaded file fails its sha256 check. */
  onIntegrityFailure?: (version: ModelVersion) => void;
}

/**
 * Local copies this process wrote or verified, with the identity of the file at that moment.
 * Module-level: it describes this container's disk, whatever cache wrote it.
 */
const verifiedCopies = new Map<string, string>();
/** Entries being written now (never evicted); module-level for the same reason. */
const writing = new Set<string>();
/** When each entry was last used by this process (eviction order; unknown entries go first). */
const lastUsed = new Map<string, number>();

function fileIdentity(stats: Stats): string {
  return `${stats.dev}:${stats.ino}:${stats.size}:${stats.mtimeMs}`;
}

/**
 * Records a local copy whose bytes this process has just checked.
 * @example
 * rememberVerifiedCopy(file, await handle.stat());
 */
export function rememberVerifiedCopy(file: string, stats: Stats): void {
  verifiedCopies.set(file, fileIdentity(stats));
}

/**
 * Whether `file` (with these stats) is a copy this process wrote or verified, unchanged since.
 * @example
 * if (!isVerifiedCopy(file, stats)) await hashFile(file);
 */
export function isVerifiedCopy(file: string, stats: Stats): boolean {
  return verifiedCopies.get(file) === fileIdentity(stats);
}

/**
 * Forgets local copies (one, or all): the next use hashes them again, as a new process would.
 * @example
 * forgetVerifiedCopies(); // tests: behave like a fresh container sharing /tmp
 */
export function forgetVerifiedCopies(file?: string): void {
  if (file === undefined) verifiedCopies.clear();
  else verifiedCopies.delete(file);
}

/**
 * Where a version's files live in the cache: a bundle's folder, or a single file.
 * @example
 * cacheEntryOf('/tmp/maas-models', version); // '/tmp/maas-models/3f…a1.onnx'
 */
export function cacheEntryOf(cacheDir: string, version: ModelVersion): string {
  return path.resolve(cacheDir, isBundle(version) ? `${version.sha256}.bundle` : `${version.sha256}.onnx`);
}

/** Manifest names are checked at registration; checked again here, as they become paths. */
function assertPlainName(name: string): void {
  const problem = bundleFileNameProblem(name);
  if (problem) throw new MaasError('internal', `bundle file ${JSON.stringify(name)}: ${problem}`);
}

/** FIFO slots: ranged GETs in flight (FIFO keeps each file's parts in order, see runPart). */
class Slots {
  private free: number;
  private readonly waiting: (() => void)[] = [];
  constructor(count: number) {
    this.free = count;
  }
  async acquire(): Promise<void> {
    if (this.free > 0) {
      this.free--;
      return;
    }
    await new Promise<void>((resolve) => this.waiting.push(resolve));
  }
  release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.free++;
  }
}

interface Gate {
  promise: Promise<void>;
  open: () => void;
}
function gate(): Gate {
  let open = (): void => undefined;
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

interface Abort {
  error?: unknown;
}

/** A sha256 fed part by part, in order. */
interface PartHasher {
  /** Resolves once the bytes are hashed (they may be detached from `bytes` by then). */
  update(bytes: Buffer): Promise<void>;
  digest(): Promise<string>;
  /** Forgets an unfinished hash (a failed download). */
  dispose(): void;
}

function mainThreadHasher(): PartHasher {
  const hash = createHash('sha256');
  return {
    update: async (bytes) => {
      hash.update(bytes);
    },
    digest: async () => hash.digest('hex'),
    dispose: () => undefined,
  };
}

/**
 * Hashing off the event loop: sha256 costs ~1.5 ms per MB of CPU, which on the main thread
 * delays the sockets of the other parts; a worker hashes on another core while they keep
 * arriving. Parts are transferred (not copied) and hashed in the order they are posted.
 */
const HASH_WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const hashes = new Map();
parentPort.on('message', (m) => {
  if (m.op === 'update') {
    let h = hashes.get(m.id);
    if (!h) { h = createHash('sha256'); hashes.set(m.id, h); }
    h.update(new Uint8Array(m.buffer, m.offset, m.length));
    parentPort.postMessage({ id: m.id, seq: m.seq });
  } else if (m.op === 'digest') {
    const h = hashes.get(m.id) || createHash('sha256');
    hashes.delete(m.id);
    parentPort.postMessage({ id: m.id, seq: m.seq, hex: h.digest('hex') });
  } else if (m.op === 'drop') {
    hashes.delete(m.id);
  }
});
`;

class HashWorker {
  private readonly worker: Worker;
  private readonly waiting = new Map<string, (hex?: string) => void>();
  private nextId = 0;
  private nextSeq = 0;
  private broken: Error | undefined;

  constructor() {
    this.worker = new Worker(HASH_WORKER_SOURCE, { eval: true });
    // Never keeps a process alive on its own.
    this.worker.unref();
    this.worker.on('message', (m: { id: number; seq: number; hex?: string }) => {
      const key = `${m.id}:${m.seq}`;
      const resolve = this.waiting.get(key);
      this.waiting.delete(key);
      resolve?.(m.hex);
    });
    const fail = (e: Error): void => {
      this.broken ??= e;
      for (const resolve of this.waiting.values()) resolve(undefined);
      this.waiting.clear();
    };
    this.worker.on('error', fail);
    this.worker.on('exit', (code) => fail(new Error(`the hash worker exited (code ${code})`)));
  }

  get usable(): boolean {
    return this.broken === undefined;
  }

  hasher(): PartHasher {
    const id = this.nextId++;
    const call = (
      message: Record<string, unknown>,
      transfer: ArrayBuffer[] = [],
    ): Promise<string | undefined> => {
      if (this.broken) return Promise.reject(this.broken);
      const seq = this.nextSeq++;
      const done = new Promise<string | undefined>((resolve) => this.waiting.set(`${id}:${seq}`, resolve));
      this.worker.postMessage({ ...message, id, seq }, transfer);
      return done.then((hex) => {
        if (this.broken) throw this.broken;
        return hex;
      });
    };
    return {
      update: async (bytes) => {
        // A buffer that owns its whole ArrayBuffer moves to the worker; any other is copied.
        const own = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength;
        const buffer = own ? (bytes.buffer as ArrayBuffer) : new Uint8Array(bytes).buffer;
        await call({ op: 'update', buffer, offset: 0, length: bytes.byteLength }, [buffer]);
      },
      digest: async () => (await call({ op: 'digest' })) ?? '',
      dispose: () => {
        if (!this.broken) this.worker.postMessage({ op: 'drop', id });
      },
    };
  }
}

/** Files from this size are hashed in the worker (below, its start-up would cost more). */
const WORKER_HASH_MIN_BYTES = 32 * 1024 * 1024;
let hashWorker: HashWorker | undefined;

function hasherFor(size: number): PartHasher {
  if (size < WORKER_HASH_MIN_BYTES) return mainThreadHasher();
  try {
    if (!hashWorker?.usable) hashWorker = new HashWorker();
    return hashWorker.hasher();
  } catch {
    return mainThreadHasher();
  }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Downloads and verifies versions' files into the local model cache (see the module comment).
 * @example
 * ```ts
 * const materializer = new ModelMaterializer({ store, cacheDir: '/tmp/maas-models', settings: settings.materialize });
 * const { graphPath } = await materializer.materialize(version);
 * const session = await ort.InferenceSession.create(graphPath);
 * ```
 */
export class ModelMaterializer {
  private readonly options: ModelMaterializerOptions;
  private readonly slots: Slots;

  constructor(options: ModelMaterializerOptions) {
    this.options = options;
    this.slots = new Slots(Math.max(1, options.settings.concurrency));
  }

  /** Marks an entry as just used (disk eviction is least recently used first). */
  touch(entry: string): void {
    lastUsed.set(entry, Date.now());
  }

  /**
   * The version's files on disk, verified: reuses the copies that check out, downloads the rest.
   * Throws {@link IntegrityError} for a blob that does not match its manifest (nothing is kept),
   * PayloadTooLargeError when the files cannot fit the cache's disk at all.
   */
  async materialize(version: ModelVersion): Promise<MaterializedModel> {
    const files = versionFiles(version);
    const entry = cacheEntryOf(this.options.cacheDir, version);
    const bundle = entry.endsWith('.bundle');
    for (const f of files) assertPlainName(f.name);
    if (new Set(files.map((f) => f.name)).size !== files.length)
      throw new MaasError(
        'internal',
        `model ${version.name} version ${version.version} lists a file name twice`,
      );
    const graph = files.find((f) => f.role === 'graph') ?? files[0];
    if (!graph)
      throw new MaasError('internal', `model ${version.name} version ${version.version} has no files`);
    const pathOf = (f: BundleFile): string => (bundle ? path.join(entry, f.name) : entry);
    writing.add(entry);
    try {
      await mkdir(bundle ? entry : path.dirname(entry), { recursive: true });
      let hashedFiles = 0;
      const missing: BundleFile[] = [];
      for (const f of files) {
        const found = await this.checkLocal(pathOf(f), f);
        if (found === 'missing') missing.push(f);
        else if (found === 'hashed') hashedFiles++;
      }
      const needed = missing.reduce((n, f) => n + f.size, 0);
      if (missing.length > 0) {
        await this.ensureDisk(needed, entry);
        const abort: Abort = {};
        const results = await Promise.allSettled(
          missing.map((f) => this.download(version, f, pathOf(f), abort)),
        );
        const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
        if (failed) {
          const error = abort.error ?? failed.reason;
          if (error instanceof IntegrityError) this.options.onIntegrityFailure?.(version);
          throw error;
        }
        hashedFiles += missing.length;
      }
      this.touch(entry);
      return {
        graphPath: pathOf(graph),
        entry,
        bytes: files.reduce((n, f) => n + f.size, 0),
        downloadedBytes: needed,
        hashedFiles,
      };
    } finally {
      writing.delete(entry);
    }
  }

  /**
   * Makes room for `bytes` more in the cache: refuses (413) what can never fit, evicts least
   * recently used copies (not `keep`, not being written, not in use) while short, and fails
   * with 503 when the space is held by copies in use.
   */
  async ensureDisk(bytes: number, keep?: string): Promise<void> {
    const { settings, cacheDir } = this.options;
    await mkdir(cacheDir, { recursive: true });
    const fs = await statfs(cacheDir);
    let free = fs.bavail * fs.bsize;
    const total = fs.blocks * fs.bsize;
    const cap = settings.diskBytes > 0 ? Math.min(settings.diskBytes, total) : total;
    if (bytes > cap - settings.diskReserveBytes)
      throw new PayloadTooLargeError(
        `the model's files take ${formatMiB(bytes)}, more than this function's local disk can hold (${formatMiB(cap)}, ${formatMiB(settings.diskReserveBytes)} of it kept free); deploy predict with more ephemeral storage (stack param predictEphemeralStorageMb, up to 10240)`,
        { neededBytes: bytes, diskBytes: cap },
      );
    const entries = await this.listEntries();
    let used = entries.reduce((n, e) => n + e.bytes, 0);
    const short = (): boolean =>
      free - bytes < settings.diskReserveBytes ||
      (settings.diskBytes > 0 && used + bytes > settings.diskBytes);
    if (!short()) return;
    const busy = new Set([...(this.options.inUse?.() ?? []), ...writing]);
    if (keep) busy.add(keep);
    const candidates = entries
      .filter((e) => !busy.has(e.path))
      .sort((a, b) => (lastUsed.get(a.path) ?? a.mtimeMs) - (lastUsed.get(b.path) ?? b.mtimeMs));
    for (const e of candidates) {
      if (!short()) break;
      await rm(e.path, { recursive: true, force: true });
      forgetEntry(e.path);
      this.options.onEvict?.(e.path);
      used -= e.bytes;
      free += e.bytes;
      this.options.logger?.info('local model copy evicted', {
        entry: e.path,
        bytes: e.bytes,
        neededBytes: bytes,
      });
    }
    if (short())
      throw new MaasError(
        'unavailable',
        `not enough local disk for the model's files (${formatMiB(bytes)}): the space is held by models in use; retry later`,
        { neededBytes: bytes, freeBytes: free },
      );
  }

  /** Cache entries (`*.onnx` copies, `*.bundle` folders, stale temp files) with their sizes. */
  private async listEntries(): Promise<{ path: string; bytes: number; mtimeMs: number }[]> {
    const dir = this.options.cacheDir;
    const names = await readdir(dir).catch(() => [] as string[]);
    const out: { path: string; bytes: number; mtimeMs: number }[] = [];
    for (const name of names) {
      const full = path.resolve(dir, name);
      const stats = await stat(full).catch(() => undefined);
      if (!stats) continue;
      if (name.endsWith('.tmp')) {
        // Another writer's temp file, or one a crash left behind: only the latter (old) is fair game.
        if (Date.now() - stats.mtimeMs > 10 * 60_000) out.push({ path: full, bytes: stats.size, mtimeMs: 0 });
      } else if (stats.isDirectory() && name.endsWith('.bundle')) {
        let bytes = 0;
        for (const inner of await readdir(full).catch(() => [] as string[]))
          bytes += (await stat(path.join(full, inner)).catch(() => undefined))?.size ?? 0;
        out.push({ path: full, bytes, mtimeMs: stats.mtimeMs });
      } else if (stats.isFile() && name.endsWith('.onnx')) {
        out.push({ path: full, bytes: stats.size, mtimeMs: stats.mtimeMs });
      }
    }
    return out;
  }

  /** 'trusted' (this process's own copy), 'hashed' (checked now) or 'missing' (absent or bad: removed). */
  private async checkLocal(file: string, expected: BundleFile): Promise<'trusted' | 'hashed' | 'missing'> {
    const stats = await stat(file).catch(() => undefined);
    if (!stats?.isFile()) return 'missing';
    if (isVerifiedCopy(file, stats)) return 'trusted';
    forgetVerifiedCopies(file);
    if (stats.size === expected.size) {
      const hash = createHash('sha256');
      for await (const chunk of createReadStream(file, {
        highWaterMark: 1024 * 1024,
      }) as AsyncIterable<Buffer>)
        hash.update(chunk);
      if (hash.digest('hex') === expected.sha256) {
        rememberVerifiedCopy(file, stats);
        return 'hashed';
      }
    }
    // A damaged local copy is not the store's fault: drop it and fetch again.
    this.options.logger?.warn('local model copy failed its sha256 check; fetching it again', {
      file,
      sha256: expected.sha256,
    });
    await rm(file, { force: true });
    return 'missing';
  }

  /** One file: parallel ranged GETs written at their offsets, hashed in order, renamed when verified. */
  private async download(
    version: ModelVersion,
    file: BundleFile,
    target: string,
    abort: Abort,
  ): Promise<void> {
    const tmp = `${target}.${randomBytes(6).toString('hex')}.tmp`;
    const handle = await open(tmp, 'wx');
    const hash = hasherFor(file.size);
    const partBytes = this.options.settings.partBytes;
    const count = Math.ceil(file.size / partBytes);
    const gates = Array.from({ length: count + 1 }, gate);
    gates[0]?.open();
    let closed = false;
    try {
      const parts: Promise<void>[] = [];
      for (let i = 0; i < count; i++) parts.push(this.runPart(version, file, handle, hash, i, gates, abort));
      const settled = await Promise.allSettled(parts);
      const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw abort.error ?? failed.reason;
      if (abort.error) throw abort.error;
      const actual = await hash.digest();
      if (actual !== file.sha256) {
        const error = new IntegrityError(version.name, version.version, file.sha256, actual);
        abort.error ??= error;
        this.options.logger?.error('model file failed its integrity check', {
          model: version.name,
          version: version.version,
          file: file.name,
          expected: file.sha256,
          actual,
        });
        throw error;
      }
      const stats = await handle.stat();
      await handle.close();
      closed = true;
      // Rename keeps inode and mtime: the identity recorded now is the final file's, recorded
      // before the file becomes visible.
      rememberVerifiedCopy(target, stats);
      await rename(tmp, target);
    } catch (e) {
      forgetVerifiedCopies(target);
      hash.dispose();
      throw e;
    } finally {
      if (!closed) await handle.close().catch(() => undefined);
      await rm(tmp, { force: true }).catch(() => undefined);
    }
  }

  /**
   * Part `i` of a file: holds a slot from its GET to its hash, so memory is bounded by the slot
   * count. Slots are FIFO and parts are queued in order, so the part a holder waits for already
   * holds a slot (or is done): no deadlock.
   */
  private async runPart(
    version: ModelVersion,
    file: BundleFile,
    handle: FileHandle,
    hash: PartHasher,
    i: number,
    gates: Gate[],
    abort: Abort,
  ): Promise<void> {
    await this.slots.acquire();
    try {
      if (abort.error) return;
      const start = i * this.options.settings.partBytes;
      const end = Math.min(file.size, start + this.options.settings.partBytes) - 1;
      const bytes = await this.fetchPart(version, file, start, end, abort);
      if (abort.error) return;
      await handle.write(bytes, 0, bytes.length, start);
      await gates[i]?.promise;
      if (abort.error) return;
      // Posted in order: the next part may post as soon as this one has (the worker keeps the
      // order); the slot is held until these bytes are hashed, which bounds memory.
      const hashed = hash.update(bytes);
      gates[i + 1]?.open();
      await hashed;
    } catch (e) {
      abort.error ??= e;
      throw e;
    } finally {
      gates[i + 1]?.open();
      this.slots.release();
    }
  }

  /** One ranged GET into a buffer, retried on transient failures (a reset socket mid-body). */
  private async fetchPart(
    version: ModelVersion,
    file: BundleFile,
    start: number,
    end: number,
    abort: Abort,
  ): Promise<Buffer> {
    const length = end - start + 1;
    for (let attempt = 1; ; attempt++) {
      try {
        const { body } = await this.options.store.getRange(file.blobKey, start, end);
        const out = Buffer.allocUnsafe(length);
        let offset = 0;
        for await (const chunk of body as AsyncIterable<Buffer>) {
          if (offset + chunk.length > length || abort.error) {
            body.destroy();
            break;
          }
          chunk.copy(out, offset);
          offset += chunk.length;
        }
        if (abort.error) return out;
        if (offset !== length)
          throw new IntegrityError(
            version.name,
            version.version,
            file.sha256,
            `${file.size}-byte file cut short`,
          );
        return out;
      } catch (e) {
        // A range past the end: the stored object is shorter than the manifest says.
        if (e instanceof StoreError && !e.transient && /past the end/.test(e.message))
          throw new IntegrityError(
            version.name,
            version.version,
            file.sha256,
            `${file.size}-byte file cut short`,
          );
        const permanent =
          e instanceof IntegrityError ||
          (e instanceof MaasError && !(e instanceof StoreError && e.transient));
        if (permanent || attempt >= 3 || abort.error) throw e;
        await sleep(50 * 2 ** attempt);
      }
    }
  }
}

function forgetEntry(entry: string): void {
  lastUsed.delete(entry);
  for (const file of verifiedCopies.keys())
    if (file === entry || file.startsWith(`${entry}${path.sep}`)) verifiedCopies.delete(file);
}

function formatMiB(bytes: number): string {
  return bytes >= 1024 ** 3 ? `${(bytes / 1024 ** 3).toFixed(1)} GiB` : `${Math.ceil(bytes / 1024 ** 2)} MiB`;
}
