import type { ModelRegistry, ModelVersion } from '../../shared/registry';
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
 * presigned GET (after the registry verified the blob by streaming it through sha256). The file
 * store cannot presign, so locally every size is inline. A blob that fails its check is an
 * IntegrityError (500 `integrity_error`), never handed out.
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
  if (version.size > inlineMax()) {
    await registry.verifyModel(version);
    const link = await createDownloadLink(store, version);
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
