import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { resetRuntime } from '../../functions/lib/runtime';
import {
  type GatewayRequest,
  type GatewayResponse,
  type GatewayRoute,
  invoke,
  loadRoutes,
} from '../support/gateway';
import { createTestBucket, type TestBucket } from '../support/s3';

export const STORE_PREFIX = 'maas';

export interface TestApi {
  call(method: string, path: string, request?: GatewayRequest): Promise<GatewayResponse>;
  /** S3: the test bucket (store under `maas/`); file: undefined. */
  bucket?: TestBucket;
  /** File store: its folder. */
  dir?: string;
  /** Re-reads MAAS_* settings (the handlers cache their store and registry). */
  reset(env?: Record<string, string | undefined>): void;
  cleanup(): Promise<void>;
}

/**
 * Points the functions' runtime at a fresh store (an RGW bucket, or a temp folder) and returns a
 * caller that goes through the real handlers with API Gateway events.
 */
export async function useTestApi(kind: 's3' | 'file', label: string): Promise<TestApi> {
  const routes: GatewayRoute[] = await loadRoutes(['register-version', 'rollback', 'catalog']);
  let bucket: TestBucket | undefined;
  let dir: string | undefined;
  if (kind === 's3') {
    bucket = await createTestBucket(label);
    process.env.MAAS_STORE = `s3://${bucket.bucket}/${STORE_PREFIX}`;
  } else {
    dir = await mkdtemp(path.join(tmpdir(), `${label}-`));
    process.env.MAAS_STORE = `file://${dir}`;
  }
  resetRuntime();
  const touched = new Set<string>();
  return {
    call: (method, p, request) => invoke(routes, method, p, request),
    ...(bucket ? { bucket } : {}),
    ...(dir ? { dir } : {}),
    reset(env = {}) {
      for (const [k, v] of Object.entries(env)) {
        touched.add(k);
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
      resetRuntime();
    },
    async cleanup() {
      for (const k of touched) delete process.env[k];
      resetRuntime();
      await bucket?.cleanup();
      if (dir) await rm(dir, { recursive: true, force: true });
    },
  };
}

export const octet = { 'content-type': 'application/octet-stream' };
