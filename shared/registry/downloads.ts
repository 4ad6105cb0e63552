/**
 * Downloads of bundle versions (a graph plus its data and companion files):
 * - S3 store: one presigned GET per file ({@link createBundleLinks}), so gigabytes go straight
 *   from S3 to the client, in parallel, never through Lambda; the listing carries each file's
 *   sha256 and size from the manifest, and the client verifies them (`maas download` does). The
 *   links are not re-hashed server-side first: a 10 GB bundle cannot be hashed within an HTTP
 *   request's 30 s, and the manifest, not the blob, is what the client checks against.
 * - file store (local): a tar archive of the files ({@link bundleTar}), each hashed while it
 *   streams into the archive and refused ({@link IntegrityError}) if it no longer matches.
 *
 * Knows nothing of Lambda or HTTP: the catalog handler adapts these to responses.
 */
import { PassThrough, type Readable } from 'node:stream';
import { pack as tarPack } from 'tar-stream';
import { IntegrityError } from '../errors';
import { FileObjectStore, type ObjectStore, S3ObjectStore } from '../store';
import { verifiedFileStream, versionFiles } from './bundle';
import { type LocalLinkSigner, type SignedLink, signLocalDownload } from './local-links';
import type { BundleFile, ModelVersion } from './types';

/** One file of a bundle listing: what to fetch and what it must hash to. */
export interface BundleFileLink {
  name: string;
  size: number;
  sha256: string;
  role: BundleFile['role'];
  /** Presigned GET of the file's blob. */
  url: string;
  expiresAt: string;
}

/** The JSON answer to a bundle download on S3. */
export interface BundleListing {
  name: string;
  version: number;
  /** The bundle digest (`bundleDigest` of the files). */
  sha256: string;
  size: number;
  files: BundleFileLink[];
}

/** Options of the download-link functions. */
export interface DownloadLinkOptions {
  expiresInSeconds?: number;
  now?: () => Date;
  /** The file store's signer (`npm start`): links to the local upload server instead of S3. */
  local?: LocalLinkSigner | undefined;
}

/** Whether links can be made: S3 presigns; the file store only with a local signer. */
function canPresign(store: ObjectStore, options: DownloadLinkOptions): boolean {
  return store instanceof S3ObjectStore || (store instanceof FileObjectStore && options.local !== undefined);
}

/**
 * A GET link to one blob offered as `fileName`: presigned on S3, signed for the local upload
 * server on the file store (with `options.local`), else undefined.
 * @example
 * const link = await presignBlobGet(store, version.blobKey, 'iris-v3.onnx', 300, { local });
 */
export async function presignBlobGet(
  store: ObjectStore,
  blobKey: string,
  fileName: string,
  expiresInSeconds: number,
  options: DownloadLinkOptions = {},
): Promise<SignedLink | undefined> {
  const now = (options.now ?? (() => new Date()))();
  if (store instanceof FileObjectStore && options.local)
    return signLocalDownload(options.local, blobKey, fileName, expiresInSeconds, now);
  if (!(store instanceof S3ObjectStore)) return undefined;
  const url = await store.presignGet(blobKey, {
    expiresIn: expiresInSeconds,
    contentDisposition: `attachment; filename="${fileName.replace(/["\\]/g, '_')}"`,
    contentType: 'application/octet-stream',
  });
  return { url, expiresAt: new Date(now.getTime() + expiresInSeconds * 1000).toISOString() };
}

/**
 * Presigned GETs for every file of a version, or `undefined` when the store cannot presign.
 *
 * @example
 * ```ts
 * const listing = await createBundleLinks(store, version, { expiresInSeconds: 900 });
 * for (const f of listing?.files ?? []) await fetchVerified(f.url, f.sha256);
 * ```
 */
export async function createBundleLinks(
  store: ObjectStore,
  version: ModelVersion,
  options: DownloadLinkOptions = {},
): Promise<BundleListing | undefined> {
  if (!canPresign(store, options)) return undefined;
  // Long enough for gigabytes over a slow link; presigning is local (no request per file).
  const expiresIn = options.expiresInSeconds ?? 3600;
  const files = await Promise.all(
    versionFiles(version).map(async (f) => ({
      name: f.name,
      size: f.size,
      sha256: f.sha256,
      role: f.role,
      ...((await presignBlobGet(store, f.blobKey, f.name, expiresIn, options)) as SignedLink),
    })),
  );
  return { name: version.name, version: version.version, sha256: version.sha256, size: version.size, files };
}

/**
 * A tar archive of a version's files (bundle or single file), named as in the manifest. Each
 * file is verified while it streams: a mismatch destroys the archive stream with
 * {@link IntegrityError}, so a consumer that reads to the end never gets tampered bytes.
 *
 * @example
 * ```ts
 * await pipeline(bundleTar(store, version), createWriteStream('llm-v3.tar'));
 * ```
 */
export function bundleTar(store: ObjectStore, version: ModelVersion): Readable {
  const archive = tarPack();
  const out = new PassThrough();
  // Failures reach the consumer through `out`; the archive's own error event would be unhandled.
  archive.on('error', () => undefined);
  archive.pipe(out);
  void (async () => {
    for (const file of versionFiles(version)) {
      const source = await verifiedFileStream(store, version, file);
      await new Promise<void>((resolve, reject) => {
        const header = { name: file.name, size: file.size, mode: 0o644, mtime: new Date(0) };
        const entry = archive.entry(header, (e?: Error | null) => (e ? reject(e) : resolve()));
        entry.on('error', () => undefined);
        // tar-stream's entries are streamx streams: fed by hand, with backpressure.
        void (async () => {
          for await (const chunk of source as AsyncIterable<Buffer>)
            if (!entry.write(chunk))
              await new Promise<void>((drained) => entry.once('drain', () => drained()));
          entry.end(undefined);
        })().catch((e: unknown) => {
          entry.destroy(e as Error);
          reject(e);
        });
      });
    }
    archive.finalize();
  })().catch((e: unknown) => {
    archive.destroy();
    out.destroy(e as Error);
  });
  return out;
}
