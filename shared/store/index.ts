import * as path from 'node:path';
import { InvalidArgumentError } from '../errors';
import { FileObjectStore } from './file-store';
import type { ObjectStore } from './object-store';
import { S3ObjectStore } from './s3-store';

export { FileObjectStore } from './file-store';
export * from './object-store';
export { S3ObjectStore } from './s3-store';

/** The embedded default: a file store in `.maas/` under the working directory. */
export const DEFAULT_STORE_URL = 'file://./.maas';

/**
 * Builds the {@link ObjectStore} a `MAAS_STORE` URL names.
 *
 * - `s3://bucket[/prefix]`: S3. `S3_ENDPOINT` selects an S3-compatible server (path-style
 *   addressing is then used), `S3_ACCESS_KEY`/`S3_SECRET_KEY` explicit keys, `S3_REGION` or
 *   `AWS_REGION` the region; otherwise the AWS SDK's default credential chain applies.
 * - `file://path` (relative to the working directory, or absolute): the embedded file store.
 *
 * @example
 * ```ts
 * const store = createObjectStore(process.env.MAAS_STORE ?? DEFAULT_STORE_URL);
 * ```
 */
export function createObjectStore(url: string, env: NodeJS.ProcessEnv = process.env): ObjectStore {
  const match = /^([a-z0-9]+):\/\/(.*)$/.exec(url);
  if (match?.[1] === 'file') {
    const where = match[2] ?? '';
    if (!where) throw new InvalidArgumentError(`MAAS_STORE ${url} names no folder`);
    return new FileObjectStore(path.resolve(where));
  }
  if (match?.[1] === 's3') {
    const [bucket = '', ...rest] = (match[2] ?? '').split('/');
    if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket))
      throw new InvalidArgumentError(`MAAS_STORE ${url}: invalid bucket name`);
    const options: ConstructorParameters<typeof S3ObjectStore>[0] = { bucket, prefix: rest.join('/') };
    const region = env.S3_REGION ?? env.AWS_REGION;
    if (region) options.region = region;
    if (env.S3_ENDPOINT) {
      options.endpoint = env.S3_ENDPOINT;
      options.forcePathStyle = true;
    }
    if (env.S3_ACCESS_KEY && env.S3_SECRET_KEY) {
      options.credentials = { accessKeyId: env.S3_ACCESS_KEY, secretAccessKey: env.S3_SECRET_KEY };
    }
    if (env.S3_QUOTE_IF_MATCH === 'true') options.quoteIfMatch = true;
    return new S3ObjectStore(options);
  }
  throw new InvalidArgumentError(
    `MAAS_STORE must be s3://bucket[/prefix] or file://path, got ${JSON.stringify(url)}`,
  );
}
