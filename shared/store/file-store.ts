import { createHash, randomBytes } from 'node:crypto';
import type { Stats } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { MaasError } from '../errors';
import { sleep } from '../util/backoff';
import {
  assertValidKey,
  type CopyOptions,
  clampRange,
  type ListOptions,
  type ListPage,
  type ObjectInfo,
  type ObjectInfoSummary,
  ObjectNotFoundError,
  ObjectPreconditionError,
  type ObjectStore,
  type PutBody,
  type PutOptions,
  type PutResult,
  type ReadOptions,
  type StoredObject,
  type StoredObjectStream,
  StoreError,
} from './object-store';

/** Internal folder under the root: temp files, metadata sidecars and locks. Not a key space. */
const INTERNAL = '.store';

export interface FileObjectStoreOptions {
  /** How long a compare-and-swap lock may be held before another process may break it. */
  staleLockMs?: number;
}

const defaults: Required<FileObjectStoreOptions> = { staleLockMs: 10_000 };

interface Sidecar {
  contentType?: string;
  metadata: Record<string, string>;
}

/**
 * The embedded {@link ObjectStore}: each key is a plain file below `root`, so a file dropped
 * into `root/incoming/…` *is* an object (the local stand-in for an S3 upload).
 *
 * Writes go to a temp file and are renamed into place, so readers never see a partial object.
 * Create-only uses `link(2)`, which fails atomically when the target exists; compare-and-swap
 * takes a per-key lock file (`O_EXCL`), safe across processes on one machine. Etags derive
 * from inode, size and mtime, which change on every replacement.
 *
 * Limitation (documented): a key may not also be a "folder" of other keys (`a` and `a/b`).
 *
 * @example
 * ```ts
 * const store = new FileObjectStore('./.maas');
 * await store.put('models/x.json', '{}', { ifNoneMatch: '*' });
 * ```
 */
export class FileObjectStore implements ObjectStore {
  readonly root: string;
  readonly location: string;
  private readonly options: Required<FileObjectStoreOptions>;

  constructor(root: string, options: FileObjectStoreOptions = {}) {
    this.root = path.resolve(root);
    this.location = `file://${this.root}`;
    this.options = { ...defaults, ...options };
  }

  async get(key: string): Promise<StoredObject> {
    const file = this.pathOf(key);
    const handle = await fs.open(file, 'r').catch((e: unknown) => this.rethrow(e, key));
    try {
      const stats = await handle.stat();
      if (!stats.isFile()) throw new ObjectNotFoundError(key);
      const body = await handle.readFile();
      return { ...(await this.infoFrom(key, stats)), body };
    } finally {
      await handle.close();
    }
  }

  async getStream(key: string, options: ReadOptions = {}): Promise<StoredObjectStream> {
    noVersions(key, options);
    const handle = await fs.open(this.pathOf(key), 'r').catch((e: unknown) => this.rethrow(e, key));
    const stats = await handle.stat();
    if (!stats.isFile()) {
      await handle.close();
      throw new ObjectNotFoundError(key);
    }
    // Checked on the open descriptor: what is read below is exactly the object of this etag.
    if (options.ifMatch !== undefined && etagOf(stats) !== options.ifMatch) {
      await handle.close();
      throw new ObjectPreconditionError(key, 'if-match');
    }
    // The stream owns the descriptor: a concurrent replace (rename) cannot change what it reads.
    const body = handle.createReadStream({ autoClose: true });
    return { ...(await this.infoFrom(key, stats)), body };
  }

  async getRange(key: string, start: number, endInclusive: number): Promise<StoredObjectStream> {
    const handle = await fs.open(this.pathOf(key), 'r').catch((e: unknown) => this.rethrow(e, key));
    try {
      const stats = await handle.stat();
      if (!stats.isFile()) throw new ObjectNotFoundError(key);
      const end = clampRange(key, start, endInclusive, stats.size);
      const body = handle.createReadStream({ start, end, autoClose: true });
      return { ...(await this.infoFrom(key, stats)), body };
    } catch (e) {
      await handle.close();
      throw e;
    }
  }

  async head(key: string): Promise<ObjectInfo> {
    const stats = await fs.stat(this.pathOf(key)).catch((e: unknown) => this.rethrow(e, key));
    if (!stats.isFile()) throw new ObjectNotFoundError(key);
    return this.infoFrom(key, stats);
  }

  async put(key: string, body: PutBody, options: PutOptions = {}): Promise<PutResult> {
    const target = this.pathOf(key);
    const tmp = await this.writeTemp(body);
    // Held across the commit: the etag is read from this write's own inode, so a writer that
    // replaces the key right after cannot hand us its etag (reading the key back could).
    const own = await fs.open(tmp, 'r');
    try {
      await this.commit(key, target, tmp, options);
      // Dropping the temp name changes the inode's ctime (link count): read the etag after it.
      await fs.rm(tmp, { force: true });
      return { etag: etagOf(await own.stat()) };
    } finally {
      await own.close();
      await fs.rm(tmp, { force: true });
    }
  }

  async copy(fromKey: string, toKey: string, options: CopyOptions = {}): Promise<PutResult> {
    const source = this.pathOf(fromKey);
    const target = this.pathOf(toKey);
    const info = await this.head(fromKey);
    if (options.sourceEtag !== undefined && info.etag !== options.sourceEtag)
      throw new ObjectPreconditionError(fromKey, 'if-match');
    const tmp = await this.tempPath();
    try {
      // A reflink where the file system has them (instant), else a kernel-side copy: the bytes
      // never pass through this process.
      await fs
        .copyFile(source, tmp, fs.constants.COPYFILE_FICLONE)
        .catch((e: unknown) => this.rethrow(e, fromKey));
      const own = await fs.open(tmp, 'r+');
      try {
        await own.sync();
        const replace = options.contentType !== undefined || options.metadata !== undefined;
        const put: PutOptions = replace
          ? {
              ...(options.contentType !== undefined ? { contentType: options.contentType } : {}),
              ...(options.metadata !== undefined ? { metadata: options.metadata } : {}),
            }
          : { metadata: info.metadata };
        if (!replace && info.contentType) put.contentType = info.contentType;
        await this.commit(toKey, target, tmp, put);
        await fs.rm(tmp, { force: true });
        return { etag: etagOf(await own.stat()) };
      } finally {
        await own.close();
      }
    } finally {
      await fs.rm(tmp, { force: true });
    }
  }

  private async commit(key: string, target: string, tmp: string, options: PutOptions): Promise<void> {
    // A concurrent delete may prune the folder between mkdir and rename: retry that race.
    for (let attempt = 0; ; attempt++) {
      try {
        await fs.mkdir(path.dirname(target), { recursive: true });
        await this.commitOnce(key, target, tmp, options);
        return;
      } catch (e) {
        if (errno(e) !== 'ENOENT' || attempt >= 3) return this.rethrow(e, key);
      }
    }
  }

  private async commitOnce(key: string, target: string, tmp: string, options: PutOptions): Promise<void> {
    const sidecar: Sidecar = { metadata: lowerKeys(options.metadata ?? {}) };
    if (options.contentType) sidecar.contentType = options.contentType;
    if (options.ifNoneMatch === '*') {
      await fs.link(tmp, target).catch((e: unknown) => {
        throw errno(e) === 'EEXIST' ? new ObjectPreconditionError(key, 'if-none-match') : e;
      });
      await this.writeSidecar(key, sidecar);
    } else if (options.ifMatch !== undefined) {
      const expected = options.ifMatch;
      await this.withLock(key, async () => {
        const current = await this.head(key);
        if (current.etag !== expected) throw new ObjectPreconditionError(key, 'if-match');
        await this.writeSidecar(key, sidecar);
        await fs.rename(tmp, target);
      });
    } else {
      await this.writeSidecar(key, sidecar);
      await fs.rename(tmp, target);
    }
  }

  async delete(key: string, options: ReadOptions = {}): Promise<void> {
    noVersions(key, options);
    if (options.ifMatch !== undefined) {
      await this.deleteIfMatch(key, options.ifMatch);
      return;
    }
    await fs.rm(this.pathOf(key), { force: true }).catch((e: unknown) => this.rethrow(e, key));
    await fs.rm(this.sidecarPath(key), { force: true });
    await this.pruneEmptyDirs(path.dirname(this.pathOf(key)));
  }

  /**
   * Deletes `key` only while it is the object of etag `expected`. Files are also written by other
   * programs (a `cp` into `incoming/`), which take no lock, so the file is first renamed aside
   * (atomic): a replacement arriving after that lands under the key untouched. The file moved
   * aside is then checked to be the one whose etag was seen (same inode, size and mtime; the
   * rename itself changes its ctime) and put back when it is not.
   */
  private async deleteIfMatch(key: string, expected: string): Promise<void> {
    const target = this.pathOf(key);
    const before = await fs.stat(target).catch(() => undefined);
    if (!before?.isFile()) return;
    if (etagOf(before) !== expected) throw new ObjectPreconditionError(key, 'if-match');
    const dir = path.join(this.root, INTERNAL, 'tmp');
    await fs.mkdir(dir, { recursive: true });
    const aside = path.join(dir, `${process.pid}-${randomBytes(8).toString('hex')}.deleting`);
    try {
      await fs.rename(target, aside);
    } catch (e) {
      if (errno(e) === 'ENOENT') return;
      return this.rethrow(e, key);
    }
    const moved = await fs.stat(aside);
    const same = moved.ino === before.ino && moved.size === before.size && moved.mtimeMs === before.mtimeMs;
    if (!same) {
      // Replaced between the check and the rename: restore it unless a newer one took the key.
      await fs.link(aside, target).catch((e: unknown) => {
        if (errno(e) !== 'EEXIST') throw e;
      });
      await fs.rm(aside, { force: true });
      throw new ObjectPreconditionError(key, 'if-match');
    }
    await fs.rm(aside, { force: true });
    // The sidecar stays when a new object already took the key (its writer put its own there).
    if (!(await fs.stat(target).catch(() => undefined))) await fs.rm(this.sidecarPath(key), { force: true });
    await this.pruneEmptyDirs(path.dirname(target));
  }

  async list(options: ListOptions = {}): Promise<ListPage> {
    const prefix = options.prefix ?? '';
    const maxKeys = Math.min(Math.max(options.maxKeys ?? 1000, 1), 1000);
    const after = options.continuationToken
      ? Buffer.from(options.continuationToken, 'base64url').toString('utf8')
      : (options.startAfter ?? '');
    // Walk only the deepest folder the prefix names: listings stay proportional to that folder.
    const baseDir = prefix.includes('/') ? prefix.slice(0, prefix.lastIndexOf('/') + 1) : '';
    const keys = (await this.walk(baseDir)).filter((k) => k.startsWith(prefix)).sort(compareBytes);

    const objects: ObjectInfoSummary[] = [];
    const commonPrefixes: string[] = [];
    let last: string | undefined;
    let truncated = false;
    for (const key of keys) {
      let entry = key;
      const rest = key.slice(prefix.length);
      const cut = options.delimiter ? rest.indexOf(options.delimiter) : -1;
      if (cut >= 0) entry = prefix + rest.slice(0, cut + options.delimiter!.length);
      if (compareBytes(entry, after) <= 0 || entry === last) continue;
      if (objects.length + commonPrefixes.length >= maxKeys) {
        truncated = true;
        break;
      }
      if (cut >= 0) {
        commonPrefixes.push(entry);
      } else {
        const stats = await fs.stat(this.pathOf(key)).catch(() => undefined);
        if (!stats?.isFile()) continue; // deleted while listing
        objects.push({ key, etag: etagOf(stats), size: stats.size, lastModified: stats.mtime });
      }
      last = entry;
    }
    const page: ListPage = { objects, commonPrefixes };
    if (truncated && last !== undefined) page.nextToken = Buffer.from(last, 'utf8').toString('base64url');
    return page;
  }

  private pathOf(key: string): string {
    assertValidKey(key);
    if (key === INTERNAL || key.startsWith(`${INTERNAL}/`))
      throw new StoreError(`reserved key: ${key}`, false);
    return path.join(this.root, ...key.split('/'));
  }

  private sidecarPath(key: string): string {
    return path.join(this.root, INTERNAL, 'meta', `${sha1(key)}.json`);
  }

  private async infoFrom(key: string, stats: Stats): Promise<ObjectInfo> {
    const sidecar = await fs
      .readFile(this.sidecarPath(key), 'utf8')
      .then((t) => JSON.parse(t) as Sidecar)
      .catch(() => ({ metadata: {} }) as Sidecar);
    const info: ObjectInfo = {
      key,
      etag: etagOf(stats),
      size: stats.size,
      lastModified: stats.mtime,
      metadata: sidecar.metadata,
    };
    if (sidecar.contentType) info.contentType = sidecar.contentType;
    return info;
  }

  private async writeSidecar(key: string, sidecar: Sidecar): Promise<void> {
    const file = this.sidecarPath(key);
    if (!sidecar.contentType && Object.keys(sidecar.metadata).length === 0) {
      await fs.rm(file, { force: true });
      return;
    }
    const tmp = await this.writeTemp(JSON.stringify(sidecar));
    await fs.mkdir(path.dirname(file), { recursive: true });
    await fs.rename(tmp, file);
  }

  private async tempPath(): Promise<string> {
    const dir = path.join(this.root, INTERNAL, 'tmp');
    await fs.mkdir(dir, { recursive: true });
    return path.join(dir, `${process.pid}-${randomBytes(8).toString('hex')}`);
  }

  private async writeTemp(body: PutBody): Promise<string> {
    const tmp = await this.tempPath();
    try {
      const handle = await fs.open(tmp, 'wx');
      try {
        if (body instanceof Readable) {
          for await (const chunk of body)
            await handle.write(typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Uint8Array));
        } else {
          await handle.writeFile(body);
        }
        // Durable before the rename publishes it: a crash never leaves a published empty file.
        await handle.sync();
      } finally {
        await handle.close();
      }
      return tmp;
    } catch (e) {
      await fs.rm(tmp, { force: true });
      throw new StoreError(`writing temp file failed: ${(e as Error).message}`, false, { cause: e });
    }
  }

  /**
   * Serializes compare-and-swap on one key across processes with an O_EXCL lock file holding a
   * token unique to its holder. A live holder refreshes the file's mtime while it works, so only
   * a lock whose holder died goes stale; breaking a stale lock is itself exclusive (see
   * {@link breakStaleLock}), and a holder removes the lock only while it is still its own.
   */
  private async withLock<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const dir = path.join(this.root, INTERNAL, 'locks');
    await fs.mkdir(dir, { recursive: true });
    const lock = path.join(dir, sha1(key));
    const token = randomBytes(12).toString('hex');
    const deadline = Date.now() + 4 * this.options.staleLockMs;
    for (let attempt = 0; ; attempt++) {
      try {
        const handle = await fs.open(lock, 'wx');
        try {
          await handle.writeFile(token);
        } finally {
          await handle.close();
        }
        break;
      } catch (e) {
        if (errno(e) !== 'EEXIST') throw e;
        const held = await fs.stat(lock).catch(() => undefined);
        if (held && Date.now() - held.mtimeMs > this.options.staleLockMs) await breakStaleLock(lock, held);
        if (Date.now() > deadline) throw new StoreError(`lock on ${key} not acquired`, true);
        await sleep(Math.min(2 + attempt * 2, 25) * (0.5 + Math.random()));
      }
    }
    const now = (): Date => new Date();
    const heartbeat = setInterval(
      () => void fs.utimes(lock, now(), now()).catch(() => undefined),
      Math.max(1, Math.floor(this.options.staleLockMs / 3)),
    );
    heartbeat.unref();
    try {
      return await fn();
    } finally {
      clearInterval(heartbeat);
      const holder = await fs.readFile(lock, 'utf8').catch(() => undefined);
      if (holder === token) await fs.rm(lock, { force: true });
    }
  }

  private async walk(relDir: string): Promise<string[]> {
    const out: string[] = [];
    const visit = async (rel: string): Promise<void> => {
      const entries = await fs.readdir(path.join(this.root, rel), { withFileTypes: true }).catch(() => []);
      for (const entry of entries) {
        const key = rel + entry.name;
        if (key === INTERNAL) continue;
        if (entry.isDirectory()) await visit(`${key}/`);
        else if (entry.isFile()) out.push(key);
      }
    };
    await visit(relDir);
    return out;
  }

  private async pruneEmptyDirs(dir: string): Promise<void> {
    while (dir.startsWith(this.root + path.sep)) {
      try {
        await fs.rmdir(dir);
      } catch {
        return; // not empty (or gone): stop
      }
      dir = path.dirname(dir);
    }
  }

  private rethrow(e: unknown, key: string): never {
    const code = errno(e);
    if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR') throw new ObjectNotFoundError(key);
    if (e instanceof MaasError) throw e;
    throw new StoreError(
      `file store error on ${key}: ${(e as Error).message}`,
      code === 'EMFILE' || code === 'EAGAIN',
      { cause: e },
    );
  }
}

/**
 * Removes the stale lock `lock` last seen as `seen`, unless another waiter is already breaking
 * that same lock: the right to break one lock generation (its inode and mtime) is an O_EXCL
 * marker file, so of two waiters that saw the same dead holder only one removes the file, and
 * neither can remove the fresh lock the other then takes (it is checked to still be `seen`).
 */
async function breakStaleLock(lock: string, seen: Stats): Promise<void> {
  const marker = `${lock}.${seen.ino}-${Math.round(seen.mtimeMs * 1000)}.break`;
  const claim = await fs.open(marker, 'wx').catch(() => undefined);
  if (!claim) return; // another waiter breaks this one
  try {
    await claim.close();
    const now = await fs.stat(lock).catch(() => undefined);
    if (now && now.ino === seen.ino && now.mtimeMs === seen.mtimeMs) await fs.rm(lock, { force: true });
  } finally {
    await fs.rm(marker, { force: true });
  }
}

/** The file store keeps one object per key: a version id cannot name anything here. */
function noVersions(key: string, options: ReadOptions): void {
  if (options.versionId !== undefined)
    throw new StoreError(`the file store has no object versions (${key}@${options.versionId})`, false);
}

function etagOf(stats: Stats): string {
  return createHash('sha1')
    .update(`${stats.ino}:${stats.size}:${stats.mtimeMs}:${stats.ctimeMs}`)
    .digest('hex')
    .slice(0, 32);
}

function sha1(text: string): string {
  return createHash('sha1').update(text).digest('hex');
}

function lowerKeys(record: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(record).map(([k, v]) => [k.toLowerCase(), v]));
}

function errno(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException | undefined)?.code;
}

/** S3 orders keys by their UTF-8 bytes, not by UTF-16 code units. */
export function compareBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}
