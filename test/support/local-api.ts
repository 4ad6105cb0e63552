/**
 * The local API as `npm start` runs it, without serverless-offline: a fresh file store, the local
 * upload server (what file-store upload tickets and upload-session parts point to) and the
 * register-version and catalog handlers behind the test gateway. For CLI tests against the file store.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { resetRuntime } from '../../functions/lib/runtime';
import { startUploadServer, type UploadServer } from '../../scripts/local-dev/upload-server';
import { type Gateway, loadRoutes, startGateway } from './gateway';

export interface LocalApi {
  gateway: Gateway;
  uploads: UploadServer;
  /** The file store's folder. */
  storeDir: string;
  /** Stops both servers, restores the environment and deletes the store. */
  close(): Promise<void>;
}

/**
 * Starts the local API; `env` is set for the handlers until {@link LocalApi.close}.
 *
 * @example
 * ```ts
 * const api = await startLocalApi({ MAAS_MAX_MODEL_BYTES: String(64 * MB) });
 * await maas(['register', 'big', 'big.onnx'], { MAAS_ENDPOINT: api.gateway.url });
 * await api.close();
 * ```
 */
export async function startLocalApi(env: Record<string, string> = {}): Promise<LocalApi> {
  const storeDir = await mkdtemp(path.join(tmpdir(), 'maas-local-api-'));
  const set = { MAAS_STORE: `file://${storeDir}`, ...env };
  const saved = Object.fromEntries(
    [...Object.keys(set), 'MAAS_API_KEY', 'MAAS_LOCAL_UPLOAD_URL', 'MAAS_LOCAL_LINK_SECRET'].map((k) => [
      k,
      process.env[k],
    ]),
  );
  Object.assign(process.env, set);
  delete process.env.MAAS_API_KEY;
  const linkSecret = randomBytes(32).toString('hex');
  const uploads = await startUploadServer({
    storeUrl: set.MAAS_STORE,
    host: '127.0.0.1',
    port: 0,
    linkSecret,
  });
  process.env.MAAS_LOCAL_UPLOAD_URL = uploads.url;
  process.env.MAAS_LOCAL_LINK_SECRET = linkSecret;
  resetRuntime();
  const gateway = await startGateway(await loadRoutes(['register-version', 'catalog']));
  return {
    gateway,
    uploads,
    storeDir,
    async close() {
      await gateway.close();
      await uploads.close();
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
      resetRuntime();
      await rm(storeDir, { recursive: true, force: true });
    },
  };
}
