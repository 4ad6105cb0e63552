import { isBundle, type ModelRegistry, type ModelVersion } from '../../shared/registry';
import { bundleTar, createBundleLinks } from '../../shared/registry/downloads';
import { localLinkSignerFromEnv } from '../../shared/registry/local-links';
import { createDownloadLink, downloadFileName } from '../../shared/registry/uploads';
import { getNumberFromEnv } from '../../shared/settings';
import type { ObjectStore } from '../../shared/store';
import { type HttpResult, json } from '../lib/http';

/**
 * Largest model returned inline (`MAAS_DOWNLOAD_INLINE_MAX_BYTES`, default 4 MiB): base64 grows
 * it by 4/3 and Lambda's response limit is 6 MB.
 */
const inlineMax = (): number =>
  getNumberFromEnv({
    key: 'MAAS_DOWNLOAD_INLINE_MAX_BYTES',
    defaultValue: 4 * 1024 * 1024,
    min: 0,
    integer: true,
  });

/**
 * The answer to `…/download`: the verified bytes inline, or for large models on S3 a 302 to a
 * presigned GET (after the registry verified the blob by streaming it through sha256); on the file
 * store under `npm start` a signed link to the local upload server stands in for it (without one,
 * every size is inline). A blob that fails its check is an
 * IntegrityError (500 `integrity_error`), never handed out. A bundle answers with its file
 * listing and a presigned GET per file on S3 (`x-maas-bundle: links`; the client verifies each
 * sha256) and under `npm start` a signed link per file to the local upload server; a file store
 * without that server gets a tar of the verified files (`x-maas-bundle: tar`).
 *
 * @example
 * ```ts
 * return downloadResponse(registry, store, await registry.resolveVersion('iris', '3'));
 * ```
 */
export async function downloadResponse(
  registry: ModelRegistry,
  store: ObjectStore,
  version: ModelVersion,
): Promise<HttpResult> {
  const headers = { 'x-maas-sha256': version.sha256, 'x-maas-version': String(version.version) };
  if (isBundle(version)) return bundleResponse(store, version, headers);
  if (version.size > inlineMax()) {
    await registry.verifyModel(version);
    const link = await createDownloadLink(store, version, { local: localLinkSignerFromEnv() });
    if (link)
      return json(
        302,
        { ...link, sha256: version.sha256, size: version.size },
        { ...headers, location: link.url },
      );
  }
  const bytes = await registry.readModel(version);
  return {
    statusCode: 200,
    isBase64Encoded: true,
    body: bytes.toString('base64'),
    headers: {
      ...headers,
      'content-type': 'application/octet-stream',
      'content-disposition': `attachment; filename="${downloadFileName(version)}"`,
      etag: `"${version.sha256}"`,
    },
  };
}

/** A bundle: presigned links per file (S3, or the local upload server), else a tar of the verified files. */
async function bundleResponse(
  store: ObjectStore,
  version: ModelVersion,
  headers: Record<string, string>,
): Promise<HttpResult> {
  const listing = await createBundleLinks(store, version, { local: localLinkSignerFromEnv() });
  if (listing) return json(200, listing, { ...headers, 'x-maas-bundle': 'links' });
  // Buffered (a Lambda response cannot stream here): only a file store without the local upload
  // server (npm start always runs one) gets here.
  const chunks: Buffer[] = [];
  for await (const chunk of bundleTar(store, version)) chunks.push(chunk as Buffer);
  return {
    statusCode: 200,
    isBase64Encoded: true,
    body: Buffer.concat(chunks).toString('base64'),
    headers: {
      ...headers,
      'x-maas-bundle': 'tar',
      'content-type': 'application/x-tar',
      'content-disposition': `attachment; filename="${version.name}-v${version.version}.tar"`,
      etag: `"${version.sha256}"`,
    },
  };
}
