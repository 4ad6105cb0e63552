import { createHash } from 'node:crypto';
import { mkdtemp, rm, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import type { Context } from 'aws-lambda';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { resetRuntime } from '../../functions/lib/runtime';
import { handler, type MonitorEvent } from '../../functions/monitor/handler';
import {
  claimRetentionRun,
  collectOrphanBlobs,
  expireOptimizeJobs,
  expirePrefixes,
  prefixRules,
  type RetentionResult,
  readRetentionSettings,
} from '../../shared/monitor/retention';
import { ModelRegistry } from '../../shared/registry';
import { layout } from '../../shared/registry/layout';
import { readSettings } from '../../shared/settings';
import { FileObjectStore, type ObjectStore } from '../../shared/store';
import { tinyModel } from '../support/models';
import { createTestStore, storeKinds, type TestStore } from '../support/stores';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const settings = readSettings((r) => readRetentionSettings(r), {});
const sha = (bytes: Uint8Array | string): string => createHash('sha256').update(bytes).digest('hex');
/** A clock `ms` ahead: S3 cannot backdate an object, so the sweeps are run in the future instead. */
const ahead = (ms: number) => () => new Date(Date.now() + ms);

const keysUnder = async (store: ObjectStore, prefix: string): Promise<string[]> => {
  const out: string[] = [];
  let token: string | undefined;
  do {
    const page = await store.list({ prefix, ...(token ? { continuationToken: token } : {}) });
    out.push(...page.objects.map((o) => o.key));
    token = page.nextToken;
  } while (token);
  return out;
};

describe.each(storeKinds)('retention on the %s store', (kind) => {
  let t: TestStore | undefined;
  afterEach(async () => t?.cleanup());

  it('expires each prefix after its own days, and idempotency records after their TTL', async () => {
    t = await createTestStore(kind, 'retention');
    const { store } = t;
    const keys = [
      'monitoring/captures/iris/0000000000001-c-000001.json',
      'monitoring/predictions/iris/abc.json',
      'monitoring/feedback/iris/0000000000001-x.json',
      'monitoring/reports/iris/latest.json',
      'async/requests/r1.json',
      'uploads/iris/u1',
      'staging/0123-abandoned',
      'rejected/iris/bad.onnx',
      'idempotency/rollback/k1.json',
      'monitoring/state/iris.json', // not expired: the monitor's watermark
      'models/iris/head.json', // never: the registry
    ];
    for (const key of keys) await store.put(key, '{}');
    const rules = prefixRules(settings);
    // Two days on: only the idempotency record (TTL one day) and a dead registration's staging
    // object (one day); abandoned uploads (2 days) not yet.
    const twoDays = await expirePrefixes(store, rules, { now: ahead(2 * DAY - HOUR) });
    expect(twoDays.complete).toBe(true);
    expect(twoDays.deleted['idempotency/']).toBe(1);
    expect(twoDays.deleted['staging/']).toBe(1);
    expect(Object.values(twoDays.deleted).reduce((a, b) => a + b)).toBe(2);
    // Nine days: predictions (8), uploads (2), async (7) too.
    const nine = await expirePrefixes(store, rules, { now: ahead(9 * DAY) });
    expect(nine.deleted).toMatchObject({ 'monitoring/predictions/': 1, 'uploads/': 1, 'async/': 1 });
    expect(await keysUnder(store, 'monitoring/captures/')).toHaveLength(1);
    // 31 days: captures and rejected files; 91: feedback and reports.
    await expirePrefixes(store, rules, { now: ahead(31 * DAY) });
    expect(await keysUnder(store, 'monitoring/captures/')).toEqual([]);
    expect(await keysUnder(store, 'rejected/')).toEqual([]);
    expect(await keysUnder(store, 'monitoring/feedback/')).toHaveLength(1);
    await expirePrefixes(store, rules, { now: ahead(91 * DAY) });
    expect([...(await keysUnder(store, '')).sort()]).toEqual([
      'models/iris/head.json',
      'monitoring/state/iris.json',
    ]);
  });

  it('expires finished optimize jobs with their inputs, never queued or running ones', async () => {
    t = await createTestStore(kind, 'retention');
    const { store } = t;
    const job = (id: string, status: string) =>
      store.put(`models/iris/optimizations/${id}.json`, JSON.stringify({ job: id, status }));
    await job('opt-aaaaaaaa-00000001', 'succeeded');
    await store.put('models/iris/optimizations/opt-aaaaaaaa-00000001.inputs.json', '{}');
    await job('opt-aaaaaaaa-00000002', 'rejected');
    await job('opt-aaaaaaaa-00000003', 'running');
    await job('opt-aaaaaaaa-00000004', 'queued');
    expect((await expireOptimizeJobs(store, 30 * DAY, { now: ahead(29 * DAY) })).deleted).toBe(0);
    expect(await expireOptimizeJobs(store, 30 * DAY, { now: ahead(31 * DAY) })).toEqual({
      deleted: 2,
      complete: true,
    });
    expect(await keysUnder(store, 'models/iris/optimizations/')).toEqual([
      'models/iris/optimizations/opt-aaaaaaaa-00000003.json',
      'models/iris/optimizations/opt-aaaaaaaa-00000004.json',
    ]);
  });

  it('collects blobs no manifest references, once older than the grace period; keeps referenced, fresh and claimed ones', async () => {
    t = await createTestStore(kind, 'retention');
    const { store } = t;
    const registry = new ModelRegistry(store);
    const v1 = (await registry.registerVersion('iris', tinyModel(1))).version;
    // A bundle's files are references too (ModelVersion.files).
    const dataHex = sha('weights');
    const dataKey = `blobs/sha256/${dataHex}.bin`;
    await store.put(dataKey, 'weights');
    const bundleManifest = layout.version('bundle', 1);
    await store.put(
      bundleManifest,
      JSON.stringify({
        ...v1,
        name: 'bundle',
        files: [
          { name: 'model.onnx', size: v1.size, sha256: v1.sha256, blobKey: v1.blobKey },
          { name: 'w.bin', size: 7, sha256: dataHex, blobKey: dataKey },
        ],
      }),
    );
    // A failed registration's blob (stored, manifest never committed)…
    const orphan = tinyModel(2);
    const orphanKey = layout.blob(sha(orphan));
    await store.put(orphanKey, orphan);
    // …and one whose registration is still in flight: its dedupe claim is unsettled.
    const inflight = tinyModel(3);
    const inflightKey = layout.blob(sha(inflight));
    await store.put(inflightKey, inflight);
    const grace = 24 * HOUR;
    const later = 2 * grace;
    await store.put(
      layout.shaIndex('iris', sha(inflight)),
      JSON.stringify({
        sha256: sha(inflight),
        claimedAt: ahead(later - HOUR)().toISOString(),
        claimant: 'x',
      }),
    );

    // Within the grace period nothing is a candidate: a registration may be about to commit.
    expect(await collectOrphanBlobs(store, { graceMs: grace })).toEqual({
      candidates: 0,
      deleted: [],
      claimed: 0,
      complete: true,
    });
    const swept = await collectOrphanBlobs(store, { graceMs: grace, now: ahead(later) });
    expect(swept).toMatchObject({ candidates: 4, deleted: [orphanKey], claimed: 1, complete: true });
    expect((await store.head(v1.blobKey)).size).toBe(v1.size);
    expect((await store.head(dataKey)).size).toBe(7);
    expect((await store.head(inflightKey)).size).toBe(inflight.length);
    await expect(store.head(orphanKey)).rejects.toThrow(/not found/);
    // Reads of both versions still verify.
    expect((await registry.readModel(await registry.getVersion('iris', 1))).byteLength).toBe(v1.size);
  });

  it('claims one sweep per period', async () => {
    t = await createTestStore(kind, 'retention');
    const { store } = t;
    expect(await claimRetentionRun(store, 60)).toBe(true);
    expect(await claimRetentionRun(store, 60)).toBe(false);
    expect(await claimRetentionRun(store, 60, ahead(61 * 60_000))).toBe(true);
  });
});

describe('the scheduled monitor run sweeps the local file store', () => {
  let dir: string;
  const saved = { ...process.env };
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'retention-fn-'));
    Object.assign(process.env, { MAAS_STORE: `file://${dir}/store`, MAAS_METRICS_DIR: `${dir}/metrics` });
    delete process.env.AWS_LAMBDA_FUNCTION_NAME;
    resetRuntime();
  });
  afterAll(async () => {
    process.env = saved;
    resetRuntime();
    await rm(dir, { recursive: true, force: true });
  });

  it('deletes expired captures, predictions, feedback, reports, idempotency records and optimize jobs', async () => {
    const store = new FileObjectStore(`${dir}/store`);
    const old = new Date(Date.now() - 100 * DAY);
    const expired = [
      'monitoring/captures/iris/0000000000001-c-000001.json',
      'monitoring/predictions/iris/abc.json',
      'monitoring/feedback/iris/0000000000001-x.json',
      'monitoring/reports/iris/2026-01-01-r.json',
      'idempotency/rollback/k1.json',
      'models/iris/optimizations/opt-aaaaaaaa-00000001.json',
    ];
    for (const key of expired) {
      await store.put(key, key.includes('optimizations') ? JSON.stringify({ status: 'failed' }) : '{}');
      await utimes(path.join(dir, 'store', ...key.split('/')), old, old);
    }
    await store.put('monitoring/captures/iris/9999999999999-c-000001.json', '{}'); // fresh: stays
    const context = { getRemainingTimeInMillis: () => 60_000 } as unknown as Context;
    const res = (await handler({} as MonitorEvent, context)) as { retention: RetentionResult };
    expect(res.retention.prefixes?.complete).toBe(true);
    expect(res.retention.optimizeJobs.deleted).toBe(1);
    for (const key of expired) await expect(store.head(key), key).rejects.toThrow(/not found/);
    expect(await keysUnder(store, 'monitoring/captures/')).toEqual([
      'monitoring/captures/iris/9999999999999-c-000001.json',
    ]);
    // The next run within the period does not list everything again.
    expect(((await handler({} as MonitorEvent, context)) as { retention: unknown }).retention).toEqual({
      skipped: 'swept less than 360 minutes ago',
    });
  });
});
