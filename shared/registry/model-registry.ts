import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { PassThrough, Readable } from 'node:stream';
import {
  ConflictError,
  IntegrityError,
  InvalidArgumentError,
  NotFoundError,
  PayloadTooLargeError,
  PreconditionFailedError,
  UnprocessableError,
} from '../errors';
// Static on purpose: a lazy import() of a TS module fails under tsx's CJS require hook (npm start).
import { DEFAULT_MAX_MODEL_BYTES, inspectModelStructure } from '../onnx/inspect';
import { type ModelStructure, StructureScanner } from '../onnx/structure';
import { listAll, ObjectNotFoundError, type ObjectStore, readWithSha256, StoreError } from '../store';
import {
  createJson,
  DocumentConflictError,
  KEEP,
  putJson,
  RETRY,
  readJson,
  type StoredDocument,
  updateJson,
} from '../store/documents';
import {
  assertBundleFileName,
  bundleBlobKey,
  bundleDigest,
  bundleFileRole,
  COMPANION_MAX_BYTES,
  verifiedFileStream,
  versionFiles,
} from './bundle';
import { layout, versionOfKey } from './layout';
import { assertAliasName, assertModelName, parseVersionNumber } from './names';
import { describeTextModel } from './text-kind';
import type {
  AliasRecord,
  Attribution,
  BundleFile,
  BundleFileRole,
  CanarySplit,
  HistoryEvent,
  ModelSummary,
  ModelVersion,
  Page,
  PageOptions,
  RegisterOptions,
  RegisterResult,
  RollbackOptions,
  SetAliasOptions,
  VersionStatus,
} from './types';
import { VERSION_STATUSES } from './types';

/**
 * One file offered to {@link ModelRegistry.registerBundle}: its name in the bundle and its bytes,
 * as a body (API body, tar entry, local file stream) or as an object already in the store (an
 * upload), which is read (hashed, inspected) and then copied store-side.
 */
export interface BundleSource {
  /** Plain file name in the bundle (see `assertBundleFileName`). */
  name: string;
  body?: Uint8Array | Readable;
  /** Key of an object in this registry's store holding the bytes; the caller keeps (and deletes) it. */
  storeKey?: string;
  /** The size when known: checked against the bytes, and against the limit before reading. */
  size?: number;
}

export interface ModelRegistryOptions {
  /** Largest model accepted (a bundle: all its files together), in bytes (default 512 MiB). */
  maxModelBytes?: number;
  /**
   * Bodies up to this size are held in memory while they are hashed; larger ones stream into a
   * staging object as they are hashed and are then copied store-side to their content address.
   * Default 8 MiB.
   */
  inMemoryBytes?: number;
  /** Most bytes of graph structure (everything but tensor payloads) inspected in memory (default 64 MiB). */
  maxStructureBytes?: number;
  /** How long a registration may hold its dedupe claim before others may take it over. */
  claimLeaseMs?: number;
  /** How many earlier versions an alias remembers for rollback. */
  aliasMemory?: number;
  /** Clock, for tests. */
  now?: () => Date;
  /**
   * Called after every history entry is stored (event publication, shared/events). Awaited, but
   * its failure never fails the change: the entry is already committed and stays the outbox.
   */
  onEvent?: (name: string, event: HistoryEvent) => Promise<void>;
}

const defaults: Required<Omit<ModelRegistryOptions, 'onEvent'>> = {
  maxModelBytes: 512 * 1024 * 1024,
  inMemoryBytes: 8 * 1024 * 1024,
  maxStructureBytes: 64 * 1024 * 1024,
  claimLeaseMs: 60_000,
  aliasMemory: 20,
  now: () => new Date(),
};

const TAG_LIMIT = 50;
const TEXT_LIMIT = 1000;

interface HeadDoc {
  latestVersion: number;
}
interface ShaIndexDoc {
  sha256: string;
  version?: number;
  claimedAt: string;
  claimant: string;
  /**
   * The head when this content was first claimed (kept by every takeover): any version an
   * earlier claimant committed is numbered above it, so a registration taking the claim over
   * looks for these bytes from here instead of trusting a head that may have moved past them.
   */
  after?: number;
}

/** `claimedAt` of a claim its registration gave up: free at once, its `after` still honoured. */
const RELEASED = new Date(0).toISOString();
interface StatusDoc {
  status: VersionStatus;
  reason?: string;
  updatedAt: string;
  actor: string;
}
type StoredVersion = Omit<ModelVersion, 'status' | 'statusReason'>;

/** A file read during registration: its facts, and where its bytes wait to be stored. */
interface Ingested {
  name: string;
  role: BundleFileRole;
  size: number;
  sha256: string;
  /** Small bodies: the bytes themselves. */
  bytes?: Uint8Array;
  /** Large bodies: the staging object this registration wrote (deleted when it ends). */
  stagingKey?: string;
  /** `storeKey` sources: the caller's object (copied, never deleted here). */
  sourceKey?: string;
  /** Its etag when it was read: the copy is refused if it changed since. */
  sourceEtag?: string;
}
type StoredAlias = Omit<AliasRecord, 'etag'>;

/**
 * The versioned model registry: immutable numbered versions with content-addressed bytes,
 * movable aliases, lifecycle status and an append-only history, kept in an {@link ObjectStore}
 * and safe under concurrent writers through conditional writes alone (no database).
 *
 * - A version becomes visible in one step: the create-only put of its manifest. Two writers
 *   can never commit the same number; a loser moves on to the next one.
 * - Registering bytes the model already has returns that version (S3 events arrive at least
 *   once); a create-only claim on the content hash makes concurrent duplicates wait for one winner.
 * - Aliases move by compare-and-swap; every successful move appends one history event.
 * - The number of store requests per registration does not depend on how many versions exist.
 *
 * @example
 * ```ts
 * const registry = new ModelRegistry(createObjectStore('file://./.maas'));
 * const { version } = await registry.registerVersion('iris', bytes, { description: 'first cut' });
 * await registry.setAlias('iris', 'production', version.version, { reason: 'launch', actor: 'ci' });
 * ```
 */
export class ModelRegistry {
  /** Private: model bytes are read through {@link readModel} (verified), never straight from the store. */
  private readonly store: ObjectStore;
  private readonly options: Required<Omit<ModelRegistryOptions, 'onEvent'>> &
    Pick<ModelRegistryOptions, 'onEvent'>;

  constructor(store: ObjectStore, options: ModelRegistryOptions = {}) {
    this.store = store;
    this.options = { ...defaults, ...options };
  }

  get maxModelBytes(): number {
    return this.options.maxModelBytes;
  }

  /**
   * The verified read of a version's bytes, the one way maas reads a model: streams the blob,
   * hashing while it arrives, and throws {@link IntegrityError} unless the bytes match the
   * manifest's sha256 and size. Predict, downloads and optimize all read models here.
   *
   * @example
   * ```ts
   * const bytes = await registry.readModel(await registry.getVersion('iris', 3));
   * ```
   */
  async readModel(version: ModelVersion): Promise<Buffer> {
    const graph = versionFiles(version)[0] as BundleFile;
    const read = await readWithSha256(this.store, graph.blobKey);
    assertFileIntact(version, graph, read);
    return read.body;
  }

  /**
   * {@link readModel} without keeping the bytes (constant memory), for every file of the version:
   * checks large blobs before links to them are handed out.
   *
   * @example
   * ```ts
   * await registry.verifyModel(version); // IntegrityError (500) when a blob no longer matches
   * ```
   */
  async verifyModel(version: ModelVersion): Promise<void> {
    for (const file of versionFiles(version))
      assertFileIntact(version, file, await readWithSha256(this.store, file.blobKey, { keepBody: false }));
  }

  /**
   * Streams one file of a version (see `versionFiles`), hashing as it goes: the stream fails with
   * {@link IntegrityError} at its end (before it ends cleanly) unless the bytes match the
   * manifest, so a consumer that waits for `end`/`finish` never accepts tampered bytes.
   *
   * @example
   * ```ts
   * for (const file of versionFiles(version))
   *   await pipeline(await registry.openFile(version, file), createWriteStream(path.join(dir, file.name)));
   * ```
   */
  async openFile(version: ModelVersion, file: BundleFile): Promise<Readable> {
    const known = versionFiles(version).find((f) => f.name === file.name && f.blobKey === file.blobKey);
    if (!known)
      throw new NotFoundError(`version ${version.version} of ${version.name} has no file ${file.name}`);
    return verifiedFileStream(this.store, version, known);
  }

  /**
   * Validates an ONNX model and stores it as the model's next version. A stream is hashed,
   * inspected (payloads skipped) and stored as it arrives, so memory does not follow the size.
   * Nothing is written unless the bytes are a valid self-contained ONNX model within the limit.
   *
   * @example
   * ```ts
   * const { version } = await registry.registerVersion('iris', createReadStream('iris.onnx'));
   * ```
   */
  async registerVersion(
    name: string,
    body: Uint8Array | Readable,
    options: RegisterOptions = {},
  ): Promise<RegisterResult> {
    return this.register(name, [{ name: 'model.onnx', body }], options, true);
  }

  /**
   * Registers a bundle: an ONNX graph (the one `*.onnx` file) plus the external data files it
   * references and allowlisted companions (`COMPANION_FILES`). Sources are consumed one after the
   * other (each body is read to its end before the next is pulled: tar entries), each hashed
   * while it streams into the store, so memory stays bounded whatever the sizes.
   *
   * Refused, with nothing stored: bad or duplicate file names (400), no or several graphs (400),
   * a total over `maxModelBytes` (413), a companion over 64 MiB (413), an invalid graph or an
   * external-data reference that is not a plain file of the bundle, or lies outside it (422),
   * and files the graph does not reference that are no companions (422). The version's `sha256`
   * is `bundleDigest(files)`; registering the same files again returns that version. A bundle of
   * the graph alone registers exactly like {@link registerVersion}.
   *
   * @example
   * ```ts
   * await registry.registerBundle('llm', [
   *   { name: 'model.onnx', body: createReadStream('model.onnx') },
   *   { name: 'model.onnx.data', body: createReadStream('model.onnx.data') },
   * ]);
   * ```
   */
  async registerBundle(
    name: string,
    sources: Iterable<BundleSource> | AsyncIterable<BundleSource>,
    options: RegisterOptions = {},
  ): Promise<RegisterResult> {
    return this.register(name, sources, options, false);
  }

  private async register(
    name: string,
    sources: Iterable<BundleSource> | AsyncIterable<BundleSource>,
    options: RegisterOptions,
    singleFile: boolean,
  ): Promise<RegisterResult> {
    const ingested: Ingested[] = [];
    try {
      try {
        assertModelName(name);
        validateRegisterOptions(options);
      } catch (e) {
        // The caller opened the streams (often S3 sockets): close them, they will never be read.
        if (Symbol.iterator in sources)
          for (const s of sources as Iterable<BundleSource>) if (s.body instanceof Readable) s.body.destroy();
        throw e;
      }
      let graph: ModelStructure | undefined;
      let total = 0;
      const seen = new Map<string, string>();
      for await (const source of sources) {
        const closeBody = (): void => {
          if (source.body instanceof Readable) source.body.destroy();
        };
        try {
          if (!singleFile) assertBundleFileName(source.name);
          const folded = source.name.normalize('NFC').toLowerCase();
          const earlier = seen.get(folded);
          if (earlier !== undefined)
            throw new InvalidArgumentError(
              earlier === source.name
                ? `bundle file name ${JSON.stringify(source.name)} appears twice`
                : `bundle file names ${JSON.stringify(earlier)} and ${JSON.stringify(source.name)} differ only in case`,
              { field: 'files', file: source.name },
            );
          seen.set(folded, source.name);
        } catch (e) {
          closeBody();
          throw e;
        }
        const role = bundleFileRole(source.name);
        if (role === 'graph' && graph !== undefined) {
          closeBody();
          throw new InvalidArgumentError(
            `a bundle has exactly one .onnx graph file; ${JSON.stringify(source.name)} is a second one`,
            { field: 'files', file: source.name },
          );
        }
        const limit = Math.min(
          this.options.maxModelBytes - total,
          role === 'companion' ? COMPANION_MAX_BYTES : Number.POSITIVE_INFINITY,
          role === 'graph' ? DEFAULT_MAX_MODEL_BYTES : Number.POSITIVE_INFINITY,
        );
        const scanner =
          role === 'graph'
            ? new StructureScanner({
                maxStructureBytes: this.options.maxStructureBytes,
                ...(source.size !== undefined ? { size: source.size } : {}),
              })
            : undefined;
        const file = await this.ingest(source, role, limit, scanner, total, ingested);
        total += file.size;
        if (scanner) graph = scanner.end();
      }
      if (graph === undefined)
        throw new InvalidArgumentError('a bundle needs one .onnx graph file', { field: 'files' });

      const others = ingested.filter((f) => f.role !== 'graph');
      const { info: onnx, referencedFiles } = inspectModelStructure(graph, {
        maxBytes: DEFAULT_MAX_MODEL_BYTES,
        ...(others.length > 0 ? { bundleFiles: new Map(others.map((f) => [f.name, f.size])) } : {}),
      });
      for (const f of others) {
        const referenced = referencedFiles.has(f.name);
        if (f.role === 'companion' && referenced)
          throw new UnprocessableError(
            `file ${JSON.stringify(f.name)} is a companion file (${f.name}); the graph may not read tensor data from it`,
            { file: f.name },
          );
        if (f.role === 'data' && !referenced)
          throw new UnprocessableError(
            `file ${JSON.stringify(f.name)} is not referenced by the graph's external data and is not a known companion file`,
            { file: f.name },
          );
      }
      // A decoder graph with its tokenizer is recorded as a text-generation model; an unusable
      // one is refused here, before any blob or manifest is written.
      const textGeneration = await describeTextModel(
        onnx,
        ingested.map((f) => f.name),
        (file) => this.readIngestedText(ingested.find((f) => f.name === file) as Ingested),
      );
      if (options.parentVersion !== undefined) await this.getVersion(name, options.parentVersion);
      if (options.alias !== undefined) assertAliasName(options.alias);

      const graphFile = ingested.find((f) => f.role === 'graph') as Ingested;
      const files: BundleFile[] | undefined =
        others.length === 0
          ? undefined
          : [
              graphFile,
              ...[...others].sort((a, b) => Buffer.compare(Buffer.from(a.name), Buffer.from(b.name))),
            ].map((f) => ({
              name: f.name,
              size: f.size,
              sha256: f.sha256,
              blobKey: bundleBlobKey(f.sha256, f.role),
              role: f.role,
            }));
      const contents = {
        sha256: files ? bundleDigest(files) : graphFile.sha256,
        size: total,
        blobKey: bundleBlobKey(graphFile.sha256, 'graph'),
        ...(files ? { files } : {}),
        onnx,
        ...(textGeneration ? { textGeneration } : {}),
      };
      const result = await this.commitContents(name, contents, options, () => this.storeBlobs(ingested));
      // Also on a retry that found its version: a lost marker write is mended by registering again.
      if (result.version.textGeneration) await this.markTextModel(name);
      return result;
    } finally {
      // Staging objects only ever carry bytes on their way in: never leave one behind.
      await Promise.all(
        ingested.flatMap((f) =>
          f.stagingKey ? [this.store.delete(f.stagingKey).catch(() => undefined)] : [],
        ),
      );
    }
  }

  /**
   * Reads one source to its end: hashes it, feeds the graph scanner, enforces `limit`, and keeps
   * the bytes in memory (small bodies), streams them into a staging object (large bodies), or
   * leaves them where they are (`storeKey`). Pushes the result to `into` before the staging
   * upload starts, so a failure still finds (and deletes) what it began.
   */
  private async ingest(
    source: BundleSource,
    role: BundleFileRole,
    limit: number,
    scanner: StructureScanner | undefined,
    before: number,
    into: Ingested[],
  ): Promise<Ingested> {
    const tooLarge = (size?: number): PayloadTooLargeError =>
      role === 'companion' && limit === COMPANION_MAX_BYTES
        ? new PayloadTooLargeError(
            `companion file ${JSON.stringify(source.name)} is larger than ${COMPANION_MAX_BYTES} bytes`,
            { file: source.name, limit: COMPANION_MAX_BYTES, ...(size !== undefined ? { size } : {}) },
          )
        : role === 'graph' && limit === DEFAULT_MAX_MODEL_BYTES
          ? new PayloadTooLargeError(
              `${JSON.stringify(source.name)} is larger than an ONNX file can be (2 GiB, the protobuf limit): save the weights as external data and register the bundle`,
              { file: source.name, limit, ...(size !== undefined ? { size } : {}) },
            )
          : new PayloadTooLargeError(
              `model is larger than the limit of ${this.options.maxModelBytes} bytes`,
              {
                limit: this.options.maxModelBytes,
                ...(size !== undefined ? { size: before + size } : {}),
              },
            );
    const file: Ingested = { name: source.name, role, size: 0, sha256: '' };
    if ((source.body === undefined) === (source.storeKey === undefined)) {
      if (source.body instanceof Readable) source.body.destroy();
      throw new InvalidArgumentError(
        `bundle file ${JSON.stringify(source.name)} needs either a body or a store key`,
      );
    }
    if (source.size !== undefined && source.size > limit) {
      if (source.body instanceof Readable) source.body.destroy();
      throw tooLarge(source.size);
    }
    const hash = createHash('sha256');
    // A malformed graph is reported once the body is read (at most `limit` bytes), so a body
    // that is both too large and not ONNX gets the 413 that the size alone would earn.
    let scanError: unknown;
    const take = (chunk: Uint8Array): void => {
      file.size += chunk.length;
      if (file.size > limit) throw tooLarge();
      hash.update(chunk);
      if (scanner === undefined || scanError !== undefined) return;
      try {
        scanner.write(chunk);
      } catch (e) {
        scanError = e;
      }
    };
    const finish = (): Ingested => {
      if (scanError !== undefined) throw scanError;
      if (source.size !== undefined && source.size !== file.size)
        throw new InvalidArgumentError(
          `bundle file ${JSON.stringify(source.name)} has ${file.size} bytes, not the ${source.size} announced`,
          { file: source.name },
        );
      file.sha256 = hash.digest('hex');
      return file;
    };

    if (source.body instanceof Uint8Array) {
      take(source.body);
      file.bytes = source.body;
      into.push(file);
      return finish();
    }
    if (source.storeKey !== undefined) {
      const { body, etag } = await this.store.getStream(source.storeKey);
      file.sourceEtag = etag;
      try {
        for await (const chunk of body as AsyncIterable<Buffer>) take(chunk);
      } finally {
        body.destroy();
      }
      file.sourceKey = source.storeKey;
      into.push(file);
      return finish();
    }
    const body = source.body as Readable;
    const held: Buffer[] = [];
    let heldBytes = 0;
    let pass: PassThrough | undefined;
    let upload: Promise<unknown> | undefined;
    let uploadError: unknown;
    into.push(file);
    try {
      for await (const raw of body) {
        const chunk = typeof raw === 'string' ? Buffer.from(raw) : (raw as Buffer);
        take(chunk);
        if (pass === undefined) {
          held.push(chunk);
          heldBytes += chunk.length;
          if (heldBytes <= this.options.inMemoryBytes) continue;
          // Past the in-memory size: stream into a staging object, hashing on the way.
          file.stagingKey = layout.staging(randomBytes(16).toString('hex'));
          const stream = new PassThrough({ highWaterMark: 1024 * 1024 });
          // Destroyed with the refusal's error to abort the upload; the upload reports it.
          stream.on('error', () => undefined);
          pass = stream;
          upload = this.store
            .put(file.stagingKey, stream, { contentType: 'application/octet-stream' })
            .catch((e: unknown) => {
              uploadError = e;
              stream.destroy();
            });
          for (const h of held.splice(0)) stream.write(h);
          heldBytes = 0;
        } else if (!pass.write(chunk)) {
          await Promise.race([once(pass, 'drain'), upload]);
        }
        if (uploadError !== undefined) throw uploadError;
      }
      if (pass) {
        pass.end();
        await upload;
        if (uploadError !== undefined) throw uploadError;
      } else {
        file.bytes = Buffer.concat(held, heldBytes);
      }
      return finish();
    } catch (e) {
      body.destroy();
      // Abort the upload (S3: the multipart upload is aborted; the file store drops its temp file).
      pass?.destroy(e instanceof Error ? e : new Error(String(e)));
      await upload;
      throw e;
    }
  }

  /**
   * The text of a small companion read during registration: its bytes when they were held in
   * memory, else its staging object or the caller's object (the etag read while hashing).
   */
  private async readIngestedText(f: Ingested): Promise<string> {
    if (f.bytes !== undefined) return Buffer.from(f.bytes).toString('utf8');
    const key = (f.stagingKey ?? f.sourceKey) as string;
    const { body } = await this.store.getStream(key, f.sourceEtag ? { ifMatch: f.sourceEtag } : {});
    const chunks: Buffer[] = [];
    for await (const c of body as AsyncIterable<Buffer>) chunks.push(c);
    return Buffer.concat(chunks).toString('utf8');
  }

  /** Writes every ingested file under its content address (unless that blob exists already). */
  private async storeBlobs(ingested: readonly Ingested[]): Promise<void> {
    for (const f of ingested) {
      const blobKey = bundleBlobKey(f.sha256, f.role);
      if (await this.exists(blobKey)) continue;
      const target = { contentType: 'application/octet-stream', metadata: { sha256: f.sha256 } };
      if (f.bytes !== undefined) await this.store.put(blobKey, f.bytes, target);
      else if (f.stagingKey !== undefined) await this.store.copy(f.stagingKey, blobKey, target);
      else {
        // The caller's object must still hold the bytes that were hashed and inspected.
        const from = f.sourceKey as string;
        await this.store
          .copy(from, blobKey, { ...target, sourceEtag: f.sourceEtag as string })
          .catch((e: unknown) => {
            if (!(e instanceof PreconditionFailedError)) throw e;
            throw new ConflictError(`${from} changed while it was being registered; register it again`, {
              key: from,
            });
          });
      }
    }
  }

  /**
   * Commits a version whose files are known (hashed, inspected): claims the content digest (or
   * finds the version that already holds it), stores the blobs, and writes the manifest.
   */
  private async commitContents(
    name: string,
    contents: Pick<StoredVersion, 'sha256' | 'size' | 'blobKey' | 'files' | 'onnx' | 'textGeneration'>,
    options: RegisterOptions,
    storeBlobs: () => Promise<void>,
  ): Promise<RegisterResult> {
    const { sha256 } = contents;
    const head = (await readJson<HeadDoc>(this.store, layout.head(name))) ?? null;
    const headVersion = head?.doc.latestVersion ?? 0;

    let claim: { etag: string; doc: ShaIndexDoc } | undefined;
    if (!options.force) {
      const outcome = await this.claimContent(name, sha256, headVersion);
      if ('existing' in outcome) {
        await this.ensureAlias(name, options, outcome.existing.version);
        return { version: outcome.existing, created: false };
      }
      claim = outcome.claim;
    }
    let commit: { manifest: StoredVersion; created: boolean };
    try {
      await storeBlobs();
      const base = {
        name,
        ...contents,
        createdAt: this.options.now().toISOString(),
        actor: options.actor ?? 'unknown',
        description: options.description ?? '',
        tags: options.tags ?? {},
        source: options.source ?? 'api',
        metadata: options.metadata ?? {},
        ...(options.parentVersion !== undefined ? { parentVersion: options.parentVersion } : {}),
        ...(options.optimization ? { optimization: options.optimization } : {}),
      };
      commit = await this.commitVersion(name, base, {
        head,
        // A takeover looks for these bytes from where the first claimant started numbering.
        from: claim ? Math.min(claim.doc.after ?? headVersion, headVersion) : headVersion,
        dedupe: claim !== undefined,
      });
    } catch (e) {
      // The manifest may have landed unseen (a lost reply): the released claim keeps `after`,
      // so the client's retry finds that version instead of committing the bytes again.
      if (claim) await this.releaseClaim(name, claim).catch(() => undefined);
      throw e;
    }
    // The version exists from here on: nothing below undoes it. A lost index update costs a
    // later duplicate one claim lease of waiting, then its takeover finds the version (`after`).
    const { manifest } = commit;
    if (claim) await this.settleClaim(name, claim, manifest.version).catch(() => undefined);
    if (!commit.created) {
      // An earlier attempt of this registration committed it; its reply or a later step was lost.
      const existing = await this.getVersion(name, manifest.version);
      await this.ensureAlias(name, options, existing.version);
      return { version: existing, created: false };
    }
    await this.appendEvent(name, {
      type: options.optimization ? 'optimized' : 'registered',
      time: manifest.createdAt,
      actor: manifest.actor,
      version: manifest.version,
      ...(options.reason ? { reason: options.reason } : {}),
      details: {
        sha256,
        size: manifest.size,
        source: manifest.source,
        ...(manifest.files ? { files: manifest.files.length } : {}),
        ...(options.parentVersion !== undefined ? { parentVersion: options.parentVersion } : {}),
        ...(options.optimization ? { technique: options.optimization.technique } : {}),
      },
    });
    await this.ensureAlias(name, options, manifest.version);
    return { version: { ...manifest, status: 'active' }, created: true };
  }

  /** Points `options.alias` (if any) at `version` unless it already does. */
  private async ensureAlias(name: string, options: RegisterOptions, version: number): Promise<void> {
    if (!options.alias) return;
    const current = await this.getAlias(name, options.alias).catch(ignoreMissing);
    if (current?.version === version) return;
    await this.setAlias(name, options.alias, version, {
      actor: options.actor ?? 'unknown',
      reason: options.reason ?? `registered version ${version}`,
    });
  }

  /** One version's manifest and status. */
  async getVersion(name: string, version: number): Promise<ModelVersion> {
    assertModelName(name);
    const n = parseVersionNumber(version);
    const [manifest, status] = await Promise.all([
      readJson<StoredVersion>(this.store, layout.version(name, n)),
      readJson<StatusDoc>(this.store, layout.status(name, n)).catch(ignoreMissing),
    ]);
    if (!manifest) throw new NotFoundError(`model ${name} has no version ${n}`, { name, version: n });
    return withStatus(manifest.doc, status?.doc);
  }

  /**
   * The highest version number, whatever its status, or 0 when the model has none: for
   * numbering and existence checks, not for choosing what to serve (that is
   * {@link getLatestActiveVersion}, what the URL word `latest` means). Two requests in the
   * common case.
   *
   * @example
   * ```ts
   * if ((await registry.getLatestVersionNumber('iris')) === 0) throw new NotFoundError('no such model');
   * ```
   */
  async getLatestVersionNumber(name: string): Promise<number> {
    assertModelName(name);
    let latest = await this.readHead(name);
    // The head is a hint that may lag a crashed writer: probe forward to the real end.
    while (await this.exists(layout.version(name, latest + 1))) latest++;
    return latest;
  }

  /**
   * The newest version whose status is `active` (what `latest` names), or undefined.
   *
   * @example
   * ```ts
   * const serving = await registry.getLatestActiveVersion('iris'); // skips rejected and archived
   * ```
   */
  async getLatestActiveVersion(name: string): Promise<ModelVersion | undefined> {
    for (let n = await this.getLatestVersionNumber(name); n >= 1; n--) {
      const v = await this.getVersion(name, n).catch(ignoreMissing);
      if (v?.status === 'active') return v;
    }
    return undefined;
  }

  /** Versions in ascending order, paginated. */
  async listVersions(name: string, page: PageOptions = {}): Promise<Page<ModelVersion>> {
    assertModelName(name);
    const limit = pageLimit(page.limit);
    const listed = await this.store.list({
      prefix: layout.versionsPrefix(name),
      maxKeys: limit,
      ...(page.cursor ? { startAfter: decodeCursor(page.cursor, layout.versionsPrefix(name)) } : {}),
    });
    const [manifests, statuses] = await Promise.all([
      Promise.all(listed.objects.map((o) => readJson<StoredVersion>(this.store, o.key))),
      this.readStatuses(name),
    ]);
    const items = manifests.flatMap((m) => (m ? [withStatus(m.doc, statuses.get(m.doc.version))] : []));
    const last = listed.objects.at(-1);
    return listed.nextToken && last ? { items, nextCursor: encodeCursor(last.key) } : { items };
  }

  /**
   * Every version number with its status, in ascending order, from key listings alone: one
   * listing per 1000 versions plus one read per version whose status was ever changed, and no
   * manifest reads (what serving metadata needs on a hot path).
   */
  async versionStatuses(name: string): Promise<{ version: number; status: VersionStatus }[]> {
    assertModelName(name);
    const [listed, statuses] = await Promise.all([
      listAll(this.store, { prefix: layout.versionsPrefix(name) }),
      this.readStatuses(name),
    ]);
    return listed.objects
      .map((o) => versionOfKey(o.key))
      .filter((n) => Number.isSafeInteger(n) && n > 0)
      .map((version) => ({ version, status: statuses.get(version)?.status ?? 'active' }));
  }

  /** Model names in ascending order with their latest version and aliases, paginated. */
  async listModels(page: PageOptions = {}): Promise<Page<ModelSummary>> {
    const limit = pageLimit(page.limit);
    const listed = await this.store.list({
      prefix: layout.modelsPrefix,
      delimiter: '/',
      maxKeys: limit,
      ...(page.cursor ? { startAfter: decodeCursor(page.cursor, layout.modelsPrefix) } : {}),
    });
    const names = listed.commonPrefixes.map((p) => p.slice(layout.modelsPrefix.length, -1));
    const items = await Promise.all(names.map((name) => this.getModelSummary(name)));
    const last = listed.commonPrefixes.at(-1);
    return listed.nextToken && last ? { items, nextCursor: encodeCursor(last) } : { items };
  }

  /**
   * Models with at least one text-generation version, in name order, from their index markers
   * (one list request per 1,000 models, no manifest reads): what `GET /v1/models` lists.
   * `createdAt` is when the model's first text version was registered.
   *
   * @example
   * ```ts
   * const { items, nextCursor } = await registry.listTextModels({ limit: 1000 });
   * ```
   */
  async listTextModels(
    page: { limit?: number; cursor?: string } = {},
  ): Promise<Page<{ name: string; createdAt: string }>> {
    const limit = Math.min(Math.max(1, page.limit ?? 1000), 1000);
    const listed = await this.store.list({
      prefix: layout.textModelsPrefix,
      maxKeys: limit,
      ...(page.cursor ? { startAfter: decodeCursor(page.cursor, layout.textModelsPrefix) } : {}),
    });
    const items = listed.objects.map((o) => ({
      name: o.key.slice(layout.textModelsPrefix.length),
      createdAt: o.lastModified.toISOString(),
    }));
    const last = listed.objects.at(-1)?.key;
    return listed.nextToken && last ? { items, nextCursor: encodeCursor(last) } : { items };
  }

  /** Writes the model's text-generation index marker unless it exists (its time is the first text version's). */
  private async markTextModel(name: string): Promise<void> {
    const key = layout.textModel(name);
    if (await this.exists(key)) return;
    await this.store.put(key, new Uint8Array(0), { contentType: 'application/octet-stream' });
  }

  /** Latest version and alias targets of one model. */
  async getModelSummary(name: string): Promise<ModelSummary> {
    assertModelName(name);
    const [latestVersion, aliases] = await Promise.all([
      this.getLatestVersionNumber(name),
      this.listAliases(name),
    ]);
    if (latestVersion === 0) throw new NotFoundError(`model ${name} does not exist`, { name });
    return { name, latestVersion, aliases: Object.fromEntries(aliases.map((a) => [a.alias, a.version])) };
  }

  /**
   * The version a caller's reference names: a number (any status), an alias (its primary
   * version), or `latest`: the newest **active** version, the same one predict serves for
   * `latest`. NotFoundError for an unknown model, version or alias; ConflictError when the model
   * has versions but none is active.
   *
   * @example
   * ```ts
   * const version = await registry.resolveVersion('iris', 'latest'); // skips rejected/archived versions
   * ```
   */
  async resolveVersion(name: string, ref: string | number): Promise<ModelVersion> {
    assertModelName(name);
    if (typeof ref === 'number' || /^[0-9]+$/.test(ref))
      return this.getVersion(name, parseVersionNumber(ref));
    if (ref === 'latest') return this.resolveLatest(name);
    return this.getVersion(name, (await this.getAlias(name, ref)).version);
  }

  /**
   * `latest`: the newest active version, or why there is none (NotFoundError: no such model;
   * ConflictError: no active version). Catalog, optimize and predict all resolve `latest` here.
   *
   * @example
   * ```ts
   * const { version } = await registry.resolveLatest('iris');
   * ```
   */
  async resolveLatest(name: string): Promise<ModelVersion> {
    const latest = await this.getLatestActiveVersion(name);
    if (latest) return latest;
    if ((await this.getLatestVersionNumber(name)) === 0)
      throw new NotFoundError(`model ${name} does not exist`, { name });
    throw new ConflictError(`model ${name} has no active version`, { name });
  }

  async getAlias(name: string, alias: string): Promise<AliasRecord> {
    assertModelName(name);
    assertAliasName(alias);
    const found = await readJson<StoredAlias>(this.store, layout.alias(name, alias));
    if (!found) throw new NotFoundError(`model ${name} has no alias ${alias}`, { name, alias });
    return { ...found.doc, etag: found.etag };
  }

  async listAliases(name: string): Promise<AliasRecord[]> {
    assertModelName(name);
    const listed = await this.store.list({ prefix: layout.aliasesPrefix(name) });
    const records = await Promise.all(listed.objects.map((o) => readJson<StoredAlias>(this.store, o.key)));
    return records.flatMap((r) => (r ? [{ ...r.doc, etag: r.etag }] : []));
  }

  /**
   * Points an alias at a version by compare-and-swap. With `ifMatch`, fails with a
   * PreconditionFailedError when the alias changed since the caller read it; without, retries
   * internally until its move lands. Versions that are not `active` are refused.
   */
  async setAlias(
    name: string,
    alias: string,
    version: number,
    options: SetAliasOptions = {},
  ): Promise<AliasRecord> {
    assertAliasName(alias);
    const target = await this.getVersion(name, version);
    assertPromotable(target);
    if (options.canary) {
      validateCanary(options.canary, target.version);
      assertPromotable(await this.getVersion(name, options.canary.version));
    }
    return this.moveAlias(name, alias, options, 'alias_moved', (current) => ({
      version: target.version,
      previous:
        current && current.version !== target.version
          ? [...current.previous, current.version]
          : (current?.previous ?? []),
      ...(options.canary ? { canary: options.canary } : {}),
    }));
  }

  /**
   * Moves an alias back: to `to`, or to the version it held before its latest promotion
   * (skipping versions since rejected or archived). Repeated rollbacks walk further back.
   */
  async rollback(name: string, alias = 'production', options: RollbackOptions = {}): Promise<AliasRecord> {
    assertAliasName(alias);
    const explicit = options.to === undefined ? undefined : await this.getVersion(name, options.to);
    if (explicit) assertPromotable(explicit);
    // Status of candidates is read before the CAS; a status change racing a rollback is benign.
    const statuses = await this.readStatuses(name);
    return this.moveAlias(name, alias, options, 'rolled_back', (current) => {
      if (!current) throw new NotFoundError(`model ${name} has no alias ${alias}`, { name, alias });
      if (explicit) {
        if (explicit.version === current.version)
          throw new ConflictError(`alias ${alias} already points at version ${explicit.version}`);
        return { version: explicit.version, previous: [...current.previous, current.version] };
      }
      const previous = [...current.previous];
      while (previous.length > 0) {
        const candidate = previous.pop()!;
        if (candidate !== current.version && (statuses.get(candidate)?.status ?? 'active') === 'active') {
          return { version: candidate, previous };
        }
      }
      throw new ConflictError(`alias ${alias} of ${name} has no earlier active version to roll back to`, {
        name,
        alias,
      });
    });
  }

  /** Removes an alias (recorded in history). */
  async deleteAlias(name: string, alias: string, options: Attribution = {}): Promise<void> {
    const current = await this.getAlias(name, alias);
    await this.store.delete(layout.alias(name, alias));
    await this.appendEvent(name, {
      type: 'alias_deleted',
      time: this.options.now().toISOString(),
      actor: options.actor ?? 'unknown',
      alias,
      from: current.version,
      ...(options.reason ? { reason: options.reason } : {}),
    });
  }

  /** Marks a version active, rejected or archived. Rejected and archived versions cannot be promoted or served through an alias. */
  async setStatus(
    name: string,
    version: number,
    status: VersionStatus,
    options: Attribution = {},
  ): Promise<ModelVersion> {
    if (!VERSION_STATUSES.includes(status)) {
      throw new InvalidArgumentError(
        `invalid status ${JSON.stringify(status)}: expected one of ${VERSION_STATUSES.join(', ')}`,
      );
    }
    const current = await this.getVersion(name, version);
    const time = this.options.now().toISOString();
    const doc: StatusDoc = {
      status,
      updatedAt: time,
      actor: options.actor ?? 'unknown',
      ...(options.reason ? { reason: options.reason } : {}),
    };
    // One writer per change, last writer wins: a status is a fact, not a compare-and-swap.
    await putJson(this.store, layout.status(name, current.version), doc);
    await this.appendEvent(name, {
      type: 'status_changed',
      time,
      actor: doc.actor,
      version: current.version,
      status,
      ...(options.reason ? { reason: options.reason } : {}),
    });
    return withStatus(current, doc);
  }

  /** The model's events, oldest first, paginated. */
  async history(name: string, page: PageOptions = {}): Promise<Page<HistoryEvent>> {
    assertModelName(name);
    const prefix = layout.historyPrefix(name);
    const listed = await this.store.list({
      prefix,
      maxKeys: pageLimit(page.limit, 1000),
      ...(page.cursor ? { startAfter: decodeCursor(page.cursor, prefix) } : {}),
    });
    const events = await Promise.all(listed.objects.map((o) => readJson<HistoryEvent>(this.store, o.key)));
    const items = events.flatMap((e) => (e ? [e.doc] : []));
    const last = listed.objects.at(-1);
    return listed.nextToken && last ? { items, nextCursor: encodeCursor(last.key) } : { items };
  }

  /** Appends one event to a model's history (create-only, so an event is never overwritten). */
  async appendEvent(
    name: string,
    event: Omit<HistoryEvent, 'id'>,
    /** An idempotent request's id: the event's id derives from it, and a second append is a no-op. */
    requestId?: string,
  ): Promise<HistoryEvent> {
    const id = `${event.type}-${event.revision ?? 0}-${requestId?.slice(0, 12) ?? randomBytes(6).toString('hex')}`;
    const full: HistoryEvent = { id, ...event };
    const { created } = await createJson(this.store, layout.historyEvent(name, event.time, id), full, {
      readExisting: false,
    });
    if (!created && requestId !== undefined) return full;
    // Ids carry 48 random bits: a collision is a bug somewhere, never a race to absorb.
    if (!created) throw new ConflictError(`history event ${id} of ${name} already exists`, { name, id });
    await this.options.onEvent?.(name, full).catch(() => undefined);
    return full;
  }

  // ---- internals ----

  /**
   * Claims the content hash for this registration, or finds the version that already holds
   * these bytes. Concurrent registrations of identical bytes wait (RETRY) for the first
   * claimant, for at most two claim leases; a claim older than one lease is taken over.
   */
  private async claimContent(
    name: string,
    sha256: string,
    head: number,
  ): Promise<{ existing: ModelVersion } | { claim: { etag: string; doc: ShaIndexDoc } }> {
    let existing: ModelVersion | undefined;
    const lease = this.options.claimLeaseMs;
    try {
      const result = await updateJson<ShaIndexDoc>(
        this.store,
        layout.shaIndex(name, sha256),
        async (found) => {
          existing = undefined;
          if (found?.doc.version !== undefined) {
            existing = await this.getVersion(name, found.doc.version).catch(ignoreMissing);
            if (existing) return KEEP;
          }
          // An index naming a version that no longer exists, or a claim past its lease, is free.
          const free =
            !found || found.doc.version !== undefined || Date.now() - Date.parse(found.doc.claimedAt) > lease;
          if (!free) return RETRY; // another registration of the same bytes is in flight
          return {
            sha256,
            claimedAt: this.options.now().toISOString(),
            claimant: randomBytes(8).toString('hex'),
            after: Math.min(head, found?.doc.after ?? head),
          };
        },
        { attempts: Number.POSITIVE_INFINITY, timeoutMs: 2 * lease, baseMs: 20, maxMs: 500 },
      );
      if (existing) return { existing };
      return { claim: { etag: result.etag as string, doc: result.doc as ShaIndexDoc } };
    } catch (e) {
      if (!(e instanceof DocumentConflictError)) throw e;
      throw new ConflictError(
        `a registration of the same bytes for ${name} is still in progress; retry later`,
        {
          name,
        },
      );
    }
  }

  /** Records the version a claim produced, if the claim is still ours (else someone took it over). */
  private async settleClaim(name: string, claim: { doc: ShaIndexDoc }, version: number): Promise<void> {
    await updateJson<ShaIndexDoc>(
      this.store,
      layout.shaIndex(name, claim.doc.sha256),
      (current) => (current?.doc.claimant === claim.doc.claimant ? { ...current.doc, version } : KEEP),
      { attempts: 3 },
    );
  }

  /** Frees a claim whose registration failed, if it is still ours, keeping its `after`. */
  private async releaseClaim(name: string, claim: { doc: ShaIndexDoc }): Promise<void> {
    await updateJson<ShaIndexDoc>(
      this.store,
      layout.shaIndex(name, claim.doc.sha256),
      (current) =>
        current?.doc.claimant === claim.doc.claimant ? { ...current.doc, claimedAt: RELEASED } : KEEP,
      { attempts: 3 },
    );
  }

  /**
   * Commits the manifest under the next free number above `from` (create-only), then advances
   * the head hint. With `dedupe`, a taken number is read back: a manifest of the same bytes is
   * this content's version, committed by an earlier attempt whose reply or later steps were lost,
   * and is returned (`created: false`) instead of committing the bytes a second time.
   */
  private async commitVersion(
    name: string,
    base: Omit<StoredVersion, 'version'>,
    options: { head: StoredDocument<HeadDoc> | null; from: number; dedupe: boolean },
  ): Promise<{ manifest: StoredVersion; created: boolean }> {
    for (let version = options.from + 1; ; version++) {
      const manifest: StoredVersion = { ...base, version } as StoredVersion;
      const result = await createJson<StoredVersion>(this.store, layout.version(name, version), manifest, {
        readExisting: options.dedupe,
      });
      if (!result.created && result.existing?.doc.sha256 !== base.sha256) continue; // another writer's
      const committed = result.created ? manifest : (result.existing?.doc as StoredVersion);
      await this.advanceHead(name, version, options.head);
      return { manifest: committed, created: result.created };
    }
  }

  /** Moves the head hint up to `version` (never down: KEEP when a concurrent writer is past us). */
  private async advanceHead(
    name: string,
    version: number,
    known: StoredDocument<HeadDoc> | null,
  ): Promise<void> {
    try {
      await updateJson<HeadDoc>(
        this.store,
        layout.head(name),
        (current) => (current && current.doc.latestVersion >= version ? KEEP : { latestVersion: version }),
        { known },
      );
    } catch (e) {
      // The head is only a hint (readers probe past it), so giving up here loses nothing, and
      // must not fail a registration whose version is already committed.
      if (!(e instanceof DocumentConflictError) && !(e instanceof StoreError)) throw e;
    }
  }

  private async readHead(name: string): Promise<number> {
    return (await readJson<HeadDoc>(this.store, layout.head(name)))?.doc.latestVersion ?? 0;
  }

  private async moveAlias(
    name: string,
    alias: string,
    options: SetAliasOptions,
    type: 'alias_moved' | 'rolled_back',
    next: (current: StoredAlias | undefined) => Pick<StoredAlias, 'version' | 'previous' | 'canary'>,
  ): Promise<AliasRecord> {
    assertModelName(name);
    const { doc, etag, previous, written } = await updateJson<StoredAlias>(
      this.store,
      layout.alias(name, alias),
      (found) => {
        // This request's own move landed already (the failure came after it): not again.
        if (options.requestId !== undefined && found?.doc.request?.id === options.requestId) return KEEP;
        // With ifMatch the caller's read must still be current: a lost race shows up here on the re-read.
        if (options.ifMatch !== undefined && (found?.etag ?? null) !== options.ifMatch) {
          throw new PreconditionFailedError(
            `alias ${alias} of ${name} changed since it was read (etag ${found?.etag ?? 'none'})`,
            { etag: found?.etag ?? null },
          );
        }
        const current = found?.doc;
        const move = next(current);
        // Strictly increasing per alias, so history keys sort in the order the moves landed.
        const nowMs = this.options.now().getTime();
        const time = new Date(Math.max(nowMs, current ? Date.parse(current.updatedAt) + 1 : 0)).toISOString();
        return {
          name,
          alias,
          version: move.version,
          previous: move.previous.slice(-this.options.aliasMemory),
          revision: (current?.revision ?? 0) + 1,
          updatedAt: time,
          actor: options.actor ?? 'unknown',
          ...(move.canary ? { canary: move.canary } : {}),
          ...(options.reason ? { reason: options.reason } : {}),
          ...(options.requestId !== undefined
            ? { request: { id: options.requestId, from: current?.version ?? null } }
            : {}),
        };
      },
      { baseMs: 10, maxMs: 200 },
    );
    const record = doc as StoredAlias;
    // A retry of an idempotent move finds its record already written: its history event gets the
    // same key as the first attempt's (time and id follow from the record), so it lands once.
    const from = written ? (previous?.doc.version ?? null) : (record.request?.from ?? null);
    await this.appendEvent(
      name,
      {
        type,
        time: record.updatedAt,
        actor: record.actor,
        alias,
        version: record.version,
        from,
        revision: record.revision,
        ...(record.reason ? { reason: record.reason } : {}),
        ...(record.canary ? { details: { canary: record.canary } } : {}),
      },
      record.request?.id,
    );
    return { ...record, etag: etag as string };
  }

  private async readStatuses(name: string): Promise<Map<number, StatusDoc>> {
    const listed = await listAll(this.store, { prefix: layout.statusPrefix(name) });
    const docs = await Promise.all(
      listed.objects.map(
        async (o) => [versionOfKey(o.key), await readJson<StatusDoc>(this.store, o.key)] as const,
      ),
    );
    return new Map(docs.flatMap(([v, d]) => (d ? [[v, d.doc] as const] : [])));
  }

  private async exists(key: string): Promise<boolean> {
    return this.store.head(key).then(
      () => true,
      (e: unknown) => {
        if (e instanceof ObjectNotFoundError) return false;
        throw e;
      },
    );
  }
}

/**
 * Whether bytes hashed elsewhere (e.g. a local copy of a model) are the version's: the one rule,
 * sha256 and size as the manifest recorded them, that {@link ModelRegistry.readModel} enforces.
 *
 * @example
 * ```ts
 * if (!matchesManifest(version, { sha256: sha256Hex(bytes), size: bytes.length })) await rm(file);
 * ```
 */
export function matchesManifest(
  version: Pick<ModelVersion, 'sha256' | 'size'>,
  read: { sha256: string; size: number },
): boolean {
  return read.sha256 === version.sha256 && read.size === version.size;
}

/**
 * Hex sha256 of bytes in memory (what a manifest records).
 *
 * @example
 * ```ts
 * sha256Hex(new Uint8Array()); // 'e3b0c442…'
 * ```
 */
export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function assertFileIntact(
  version: ModelVersion,
  file: BundleFile,
  read: { sha256: string; size: number },
): void {
  if (!matchesManifest(file, read))
    throw new IntegrityError(version.name, version.version, file.sha256, read.sha256);
}

function withStatus(manifest: StoredVersion, status: StatusDoc | undefined): ModelVersion {
  return {
    ...manifest,
    status: status?.status ?? 'active',
    ...(status?.reason ? { statusReason: status.reason } : {}),
  };
}

function assertPromotable(version: ModelVersion): void {
  if (version.status !== 'active') {
    throw new ConflictError(
      `version ${version.version} of ${version.name} is ${version.status} and cannot be promoted`,
      {
        version: version.version,
        status: version.status,
      },
    );
  }
}

function validateCanary(canary: CanarySplit, primary: number): void {
  parseVersionNumber(canary.version);
  if (!(typeof canary.weight === 'number' && canary.weight > 0 && canary.weight < 1)) {
    throw new InvalidArgumentError(
      `canary weight must be between 0 and 1 (exclusive), got ${String(canary.weight)}`,
    );
  }
  if (canary.version === primary)
    throw new InvalidArgumentError('canary version must differ from the alias version');
}

function validateRegisterOptions(o: RegisterOptions): void {
  if (
    o.description !== undefined &&
    (typeof o.description !== 'string' || o.description.length > TEXT_LIMIT)
  ) {
    throw new InvalidArgumentError(`description must be a string of at most ${TEXT_LIMIT} characters`, {
      field: 'description',
    });
  }
  if (o.tags !== undefined) {
    const entries =
      typeof o.tags === 'object' && o.tags !== null && !Array.isArray(o.tags)
        ? Object.entries(o.tags)
        : undefined;
    if (
      !entries ||
      entries.length > TAG_LIMIT ||
      entries.some(([k, v]) => !/^[A-Za-z0-9_.:/-]{1,64}$/.test(k) || typeof v !== 'string' || v.length > 256)
    ) {
      throw new InvalidArgumentError(
        `tags must be an object of at most ${TAG_LIMIT} string values (keys: 1-64 of A-Z a-z 0-9 _ . : / -; values ≤ 256 chars)`,
        {
          field: 'tags',
        },
      );
    }
  }
  if (
    o.metadata !== undefined &&
    (typeof o.metadata !== 'object' || o.metadata === null || Array.isArray(o.metadata))
  ) {
    throw new InvalidArgumentError('metadata must be an object', { field: 'metadata' });
  }
  if (o.parentVersion !== undefined) parseVersionNumber(o.parentVersion);
  for (const field of ['actor', 'reason', 'source'] as const) {
    const v = o[field];
    if (v !== undefined && (typeof v !== 'string' || v.length > TEXT_LIMIT)) {
      throw new InvalidArgumentError(`${field} must be a string of at most ${TEXT_LIMIT} characters`, {
        field,
      });
    }
  }
}

function pageLimit(limit: number | undefined, max = 100): number {
  if (limit === undefined) return Math.min(50, max);
  if (!Number.isInteger(limit) || limit < 1 || limit > max)
    throw new InvalidArgumentError(`limit must be an integer from 1 to ${max}`);
  return limit;
}

/** Cursors are the last key of the previous page, relative to the listing's prefix. */
function encodeCursor(key: string): string {
  return Buffer.from(key, 'utf8').toString('base64url');
}

function decodeCursor(cursor: string, prefix: string): string {
  const key = Buffer.from(cursor, 'base64url').toString('utf8');
  if (!key.startsWith(prefix)) throw new InvalidArgumentError('invalid cursor');
  return key;
}

function ignoreMissing(e: unknown): undefined {
  if (e instanceof NotFoundError) return undefined;
  throw e;
}
