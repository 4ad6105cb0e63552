/**
 * The file store's stand-in for presigned GETs: download links served by the local upload server
 * (`npm start`), signed with a secret only the API and that server know (HMAC-SHA256 over the
 * blob key, the file name and the expiry). Like a presigned S3 URL the link is the permission,
 * it expires, and its bytes stream from disk: a 10 GB bundle never passes through a handler's
 * memory or serverless-offline's emulated API Gateway.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { NotFoundError } from '../errors';
import { getStringFromEnv } from '../settings';

/** Where local links point and what signs them. */
export interface LocalLinkSigner {
  /** The local upload server, `http://host:port` (`MAAS_LOCAL_UPLOAD_URL`). */
  baseUrl: string;
  /** `MAAS_LOCAL_LINK_SECRET`: random per `npm start`, shared with the upload server. */
  secret: string;
}

/** A signed link and when it stops working. */
export interface SignedLink {
  url: string;
  expiresAt: string;
}

const PATH = /^\/downloads\/([A-Za-z0-9_-]+)\/([^/]+)$/;

const signature = (secret: string, blobKey: string, fileName: string, expires: number): string =>
  createHmac('sha256', secret).update(`${blobKey}\n${fileName}\n${expires}`).digest('hex');

/**
 * The local signer when both settings are present (under `npm start`), else undefined.
 * @example
 * const local = localLinkSignerFromEnv();
 */
export function localLinkSignerFromEnv(env: NodeJS.ProcessEnv = process.env): LocalLinkSigner | undefined {
  const baseUrl = getStringFromEnv({ key: 'MAAS_LOCAL_UPLOAD_URL', defaultValue: undefined }, env);
  const secret = getStringFromEnv({ key: 'MAAS_LOCAL_LINK_SECRET', defaultValue: undefined }, env);
  return baseUrl && secret ? { baseUrl: baseUrl.replace(/\/+$/, ''), secret } : undefined;
}

/**
 * A link to GET one blob from the local upload server, offered to the client as `fileName`.
 * @example
 * const { url } = signLocalDownload(local, version.blobKey, 'iris-v3.onnx', 300);
 */
export function signLocalDownload(
  signer: LocalLinkSigner,
  blobKey: string,
  fileName: string,
  expiresInSeconds: number,
  now: Date = new Date(),
): SignedLink {
  const expires = Math.floor(now.getTime() / 1000) + expiresInSeconds;
  const sig = signature(signer.secret, blobKey, fileName, expires);
  const key = Buffer.from(blobKey, 'utf8').toString('base64url');
  return {
    url: `${signer.baseUrl}/downloads/${key}/${encodeURIComponent(fileName)}?expires=${expires}&sig=${sig}`,
    expiresAt: new Date(expires * 1000).toISOString(),
  };
}

/**
 * Whether a path is a local download link's (the upload server routes GETs on it here).
 * @example
 * if (isLocalDownloadPath(url.pathname)) await serveDownload(url);
 */
export function isLocalDownloadPath(pathname: string): boolean {
  return PATH.test(pathname);
}

/**
 * Checks a local download link: NotFoundError (404) when it is malformed, its signature does not
 * match, or it has expired. Returns the blob key and the offered file name.
 * @example
 * const { blobKey, fileName } = verifyLocalDownload(secret, new URL(request.url, 'http://x'));
 */
export function verifyLocalDownload(
  secret: string,
  url: URL,
  now: Date = new Date(),
): { blobKey: string; fileName: string } {
  const m = PATH.exec(url.pathname);
  const expires = Number(url.searchParams.get('expires'));
  const sig = url.searchParams.get('sig') ?? '';
  if (!m || !Number.isInteger(expires) || !/^[0-9a-f]{64}$/.test(sig))
    throw new NotFoundError('no such download link');
  const blobKey = Buffer.from(m[1]!, 'base64url').toString('utf8');
  const fileName = decodeURIComponent(m[2]!);
  // Only model bytes are ever linked: a valid signature over another key is not one we made.
  if (!blobKey.startsWith('blobs/')) throw new NotFoundError('no such download link');
  const expected = Buffer.from(signature(secret, blobKey, fileName, expires), 'hex');
  if (!timingSafeEqual(expected, Buffer.from(sig, 'hex'))) throw new NotFoundError('no such download link');
  if (expires * 1000 < now.getTime())
    throw new NotFoundError(`this download link expired at ${new Date(expires * 1000).toISOString()}`);
  return { blobKey, fileName };
}
