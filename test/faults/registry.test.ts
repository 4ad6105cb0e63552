/**
 * The registry (through its public API) on an S3 store whose traffic to RGW goes through the
 * fault proxy: seeded 503 SlowDown replies, connection resets before S3 sees a request, after it
 * applied one (a lost reply) and in the middle of a response body. Afterwards an auditor with a
 * clean connection checks that registrations left no half-written or doubled version, that no
 * acknowledged alias move was lost, and that reads never returned wrong data: every failure the
 * caller saw was a typed 5xx.
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConflictError, httpStatusOf, MaasError } from '../../shared/errors';
import { ModelRegistry, type ModelVersion } from '../../shared/registry';
import { S3ObjectStore } from '../../shared/store';
import { sleep } from '../../shared/util/backoff';
import { type FaultProxy, startFaultProxy } from '../support/fault-proxy';
import { tinyModel } from '../support/models';
import { createTestBucket, s3TestConfig, type TestBucket } from '../support/s3';

let bucket: TestBucket;
let proxy: FaultProxy;
let direct: S3ObjectStore;
/** The registry under test: every S3 request it makes passes the proxy. */
let registry: ModelRegistry;
/** Reads the truth over a clean connection. */
let auditor: ModelRegistry;

beforeAll(async () => {
  const cfg = s3TestConfig();
  bucket = await createTestBucket('faults-registry');
  proxy = await startFaultProxy(cfg.endpoint);
  const faulty = new S3ObjectStore({
    bucket: bucket.bucket,
    endpoint: proxy.endpoint,
    region: cfg.region,
    forcePathStyle: true,
    credentials: { accessKeyId: cfg.accessKeyId, secretAccessKey: cfg.secretAccessKey },
    // One attempt per request: every fault reaches the registry's own recovery (and the S3
    // adapter's own 5xx retry of conditional puts), not only the SDK's retries.
    maxAttempts: 1,
  });
  direct = new S3ObjectStore({ bucket: bucket.bucket, client: bucket.client });
  // A registration that fails after claiming its content may be unable to release the claim (the
  // delete meets a fault too): retries of the same bytes wait for the claim's lease. A short lease
  // keeps that wait (60 s by default) within the test.
  registry = new ModelRegistry(faulty, { claimLeaseMs: 500 });
  auditor = new ModelRegistry(direct);
});
afterAll(async () => {
  await proxy?.close();
  await bucket?.cleanup();
});

/** Every failure a caller sees must be a typed server-side error (503 unavailable, or 500). */
function expectTyped5xx(e: unknown): void {
  expect(e).toBeInstanceOf(MaasError);
  expect(httpStatusOf(e)).toBeGreaterThanOrEqual(500);
  expect((e as MaasError).message.length).toBeGreaterThan(10);
}

/**
 * Calls `fn` until it succeeds, as a client retrying what the API says to retry: a typed 5xx, or
 * the 409 "registration of the same bytes is still in progress; retry later".
 */
async function untilDone<T>(fn: () => Promise<T>, failures: unknown[]): Promise<T> {
  for (let attempt = 0; attempt < 60; attempt++) {
    try {
      return await fn();
    } catch (e) {
      if (e instanceof ConflictError) await sleep(100);
      else expectTyped5xx(e);
      failures.push(e);
    }
  }
  throw new Error(`still failing after 60 attempts; last: ${String(failures.at(-1))}`);
}

async function allVersions(name: string): Promise<ModelVersion[]> {
  return (await auditor.listVersions(name, { limit: 100 })).items;
}

const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

describe('registry under S3 faults', () => {
  const models = Array.from({ length: 8 }, (_, i) => tinyModel(100 + i));

  it('registrations retried by the client leave one complete version per model: none half-written, none doubled', async () => {
    const failures: unknown[] = [];
    proxy.chaos({ seed: 11, rate: 0.1 });
    const registered: number[] = [];
    for (const bytes of models) {
      const result = await untilDone(
        () => registry.registerVersion('m', bytes, { actor: 'faults' }),
        failures,
      );
      registered.push(result.version.version);
    }
    proxy.calm();
    expect(proxy.faults()).toBeGreaterThan(0); // the run did meet faults

    const versions = await allVersions('m');
    // One version per distinct model, each the one its registration reported.
    expect(versions.map((v) => v.sha256).sort()).toEqual(models.map(sha256).sort());
    expect(new Set(registered).size).toBe(models.length);
    for (const [i, bytes] of models.entries()) {
      const v = versions.find((x) => x.version === registered[i]);
      expect(v?.sha256).toBe(sha256(bytes));
    }
    // Complete: every listed version's blob is stored with its bytes.
    for (const v of versions) expect(sha256((await direct.get(v.blobKey)).body)).toBe(v.sha256);
    // No manifest the listing does not account for.
    const manifests = (await direct.list({ prefix: 'models/m/versions/' })).objects.map((o) => o.key);
    expect(manifests).toHaveLength(versions.length);
  });

  it('alias moves: the alias ends where the last acknowledged move put it (or a later unacknowledged one)', async () => {
    const versions = (await allVersions('m')).map((v) => v.version);
    await auditor.setAlias('m', 'production', versions[0]!, { actor: 'setup' });
    const targets = Array.from({ length: 16 }, (_, i) => versions[(i * 3 + 1) % versions.length]!);
    const outcomes: boolean[] = [];
    proxy.chaos({ seed: 12, rate: 0.2 });
    for (const target of targets) {
      outcomes.push(
        await registry.setAlias('m', 'production', target, { actor: 'faults' }).then(
          () => true,
          (e: unknown) => {
            expectTyped5xx(e);
            return false;
          },
        ),
      );
    }
    proxy.calm();
    const lastOk = outcomes.lastIndexOf(true);
    expect(lastOk).toBeGreaterThanOrEqual(0);
    const allowed = new Set([targets[lastOk], ...targets.slice(lastOk + 1)]);
    const final = await auditor.getAlias('m', 'production');
    expect(allowed).toContain(final.version);
  });

  it('concurrent alias moves from two clients under faults: each acknowledged move is applied exactly once', async () => {
    const versions = (await allVersions('m')).map((v) => v.version);
    proxy.chaos({ seed: 13, rate: 0.15 });
    const acknowledged: number[] = [];
    const failures: unknown[] = [];
    await Promise.all(
      [0, 1].map(async (client) => {
        for (let i = 0; i < 6; i++) {
          const target = versions[(client * 4 + i) % versions.length]!;
          await untilDone(() => registry.setAlias('m', 'staging', target, { actor: `c${client}` }), failures);
          acknowledged.push(target);
        }
      }),
    );
    proxy.calm();
    const final = await auditor.getAlias('m', 'staging');
    expect(acknowledged).toContain(final.version);
    // The alias's record of earlier targets holds only versions someone asked for.
    for (const v of final.previous) expect(versions).toContain(v);
  });

  it('reads under faults (including resets mid-body) return the stored data or a typed 5xx, never wrong data', async () => {
    const truth = await allVersions('m');
    proxy.chaos({ seed: 14, rate: 0.35 });
    let served = 0;
    let failed = 0;
    for (let round = 0; round < 3; round++) {
      for (const v of truth) {
        await registry.getVersion('m', v.version).then(
          (got) => {
            expect(got.sha256).toBe(v.sha256);
            served++;
          },
          (e: unknown) => {
            expectTyped5xx(e);
            failed++;
          },
        );
      }
    }
    proxy.calm();
    expect(served).toBeGreaterThan(0);
    expect(served + failed).toBe(3 * truth.length);
    expect(proxy.log.some((r) => r.action === 'reset-mid-body' && r.method === 'GET')).toBe(true);
  });
});
