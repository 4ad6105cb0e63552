/**
 * `Idempotency-Key` on alias moves, rollbacks and registrations, through the real rollback handler over HTTP
 * (test gateway) on RGW: a retry gets the first answer and changes nothing more, a reused key with
 * another body is refused, a running request's key answers 409, expired records run anew; with
 * the fault proxy, a reply lost between client and API, and a store failure after the alias write
 * landed, both end with exactly one move and one history event.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resetRuntime } from '../../functions/lib/runtime';
import { type AliasRecord, type HistoryEvent, ModelRegistry } from '../../shared/registry';
import { Idempotency } from '../../shared/registry/idempotency';
import { listAll, S3ObjectStore } from '../../shared/store';
import { type FaultProxy, startFaultProxy } from '../support/fault-proxy';
import { type Gateway, loadRoutes, startGateway } from '../support/gateway';
import { tinyModel } from '../support/models';
import { createTestBucket, s3TestConfig, type TestBucket } from '../support/s3';

let bucket: TestBucket;
let direct: S3ObjectStore;
let auditor: ModelRegistry;
/** Between the functions and RGW. */
let storeProxy: FaultProxy;
/** Between the client and the API. */
let apiProxy: FaultProxy;
let gateway: Gateway;
const saved = { endpoint: process.env.S3_ENDPOINT, store: process.env.MAAS_STORE };

beforeAll(async () => {
  const cfg = s3TestConfig();
  bucket = await createTestBucket('idempotency');
  direct = new S3ObjectStore({ bucket: bucket.bucket, client: bucket.client, prefix: 'maas' });
  auditor = new ModelRegistry(direct);
  storeProxy = await startFaultProxy(cfg.endpoint);
  process.env.S3_ENDPOINT = storeProxy.endpoint;
  process.env.MAAS_STORE = `s3://${bucket.bucket}/maas`;
  resetRuntime();
  gateway = await startGateway(await loadRoutes(['rollback', 'register-version']));
  apiProxy = await startFaultProxy(gateway.url);
  for (const name of ['a', 'b', 'c', 'd', 'e'])
    for (const seed of [1, 2, 3]) {
      const { version } = await auditor.registerVersion(name, tinyModel(seed), { actor: 'setup' });
      await auditor.setAlias(name, 'production', version.version, { actor: 'setup' });
    }
}, 60_000);
afterAll(async () => {
  await apiProxy?.close();
  await gateway?.close();
  await storeProxy?.close();
  process.env.S3_ENDPOINT = saved.endpoint;
  process.env.MAAS_STORE = saved.store;
  resetRuntime();
  await bucket?.cleanup();
});

const call = async (
  method: string,
  path: string,
  body: unknown,
  headers: Record<string, string> = {},
  base = gateway.url,
): Promise<{ status: number; body: string; headers: Headers }> => {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: await res.text(), headers: res.headers };
};
const rollbacks = async (name: string): Promise<HistoryEvent[]> =>
  (await auditor.history(name)).items.filter((e) => e.type === 'rolled_back');
const moves = async (name: string): Promise<HistoryEvent[]> =>
  (await auditor.history(name)).items.filter((e) => e.type === 'alias_moved');

describe('Idempotency-Key on rollback and alias moves', () => {
  it('a retried rollback returns the first answer (status and body) and rolls back once', async () => {
    const key = { 'idempotency-key': 'rollback-a-1' };
    const first = await call('POST', '/models/a/rollback', { reason: 'bad' }, key);
    expect(first.status).toBe(200);
    expect(JSON.parse(first.body)).toMatchObject({ version: 2, request: { from: 3 } });
    expect(first.headers.get('idempotent-replayed')).toBeNull();
    const again = await call('POST', '/models/a/rollback', { reason: 'bad' }, key);
    expect(again.status).toBe(200);
    expect(again.body).toBe(first.body);
    expect(again.headers.get('etag')).toBe(first.headers.get('etag'));
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect((await auditor.getAlias('a', 'production')).version).toBe(2);
    expect(await rollbacks('a')).toHaveLength(1);
    // Without a key a second rollback is a new request: it walks further back.
    expect(JSON.parse((await call('POST', '/models/a/rollback', { reason: 'again' })).body).version).toBe(1);
  });

  it('the same key with a different body is 422, and changes nothing', async () => {
    const key = { 'idempotency-key': 'rollback-b-1' };
    expect((await call('POST', '/models/b/rollback', { reason: 'one' }, key)).status).toBe(200);
    const before = await auditor.getAlias('b', 'production');
    const history = (await auditor.history('b')).items.length;
    const reused = await call('POST', '/models/b/rollback', { reason: 'two' }, key);
    expect(reused.status).toBe(422);
    expect(JSON.parse(reused.body).error).toMatch(
      /Idempotency-Key was already used with a different request/,
    );
    expect(await auditor.getAlias('b', 'production')).toEqual(before);
    expect((await auditor.history('b')).items).toHaveLength(history);
    // A bad key is a 400 before anything runs.
    const bad = await call('POST', '/models/b/rollback', {}, { 'idempotency-key': 'x'.repeat(256) });
    expect(bad.status).toBe(400);
    expect(await auditor.getAlias('b', 'production')).toEqual(before);
  });

  it('a promotion with If-Match retried with its key gets its 200 again, not a 412', async () => {
    const current = await auditor.getAlias('c', 'production');
    const headers = { 'idempotency-key': 'promote-c-1', 'if-match': `"${current.etag}"` };
    const first = await call('PUT', '/models/c/aliases/production', { version: 1, reason: 'r' }, headers);
    expect(first.status).toBe(200);
    const again = await call('PUT', '/models/c/aliases/production', { version: 1, reason: 'r' }, headers);
    expect([again.status, again.body]).toEqual([200, first.body]);
    // The same If-Match without the key is stale now: the retry protection is the key's doing.
    expect(
      (await call('PUT', '/models/c/aliases/production', { version: 1 }, { 'if-match': headers['if-match'] }))
        .status,
    ).toBe(412);
    expect((await moves('c')).filter((e) => e.actor === 'local')).toHaveLength(1);
  });

  it('reply lost between client and API: the client retries and the alias moved once, one history event', async () => {
    apiProxy.inject({ method: 'POST', path: /\/models\/d\/rollback$/, action: 'reset-after' });
    const key = { 'idempotency-key': 'rollback-d-lost' };
    await expect(
      call('POST', '/models/d/rollback', { reason: 'lost' }, key, apiProxy.endpoint),
    ).rejects.toThrow();
    expect(apiProxy.faults()).toBe(1);
    const retried = await call('POST', '/models/d/rollback', { reason: 'lost' }, key, apiProxy.endpoint);
    expect(retried.status).toBe(200);
    expect(retried.headers.get('idempotent-replayed')).toBe('true');
    expect(JSON.parse(retried.body).version).toBe(2);
    expect((await auditor.getAlias('d', 'production')).version).toBe(2);
    expect(await rollbacks('d')).toHaveLength(1);
  });

  it('store fails after the alias write landed (history put lost): 5xx, the retry finds its own move; one event', async () => {
    // Every attempt of the history write fails (the SDK's and the store's own retries included):
    // the client sees a 5xx.
    storeProxy.inject({ method: 'PUT', path: /models\/e\/history\//, action: 'reset-before', times: 1000 });
    const key = { 'idempotency-key': 'rollback-e-1' };
    const failed = await call('POST', '/models/e/rollback', { reason: 'x' }, key);
    expect(failed.status).toBeGreaterThanOrEqual(500);
    storeProxy.calm();
    // The alias did move (the write landed before the failure) and nothing recorded it yet.
    expect((await auditor.getAlias('e', 'production')).version).toBe(2);
    expect(await rollbacks('e')).toHaveLength(0);
    const retried = await call('POST', '/models/e/rollback', { reason: 'x' }, key);
    expect(retried.status).toBe(200);
    const record = JSON.parse(retried.body) as AliasRecord;
    expect(record).toMatchObject({ version: 2, revision: 4 });
    expect((await auditor.getAlias('e', 'production')).version).toBe(2);
    const events = await rollbacks('e');
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ version: 2, from: 3, revision: 4 });
    // And a further retry replays the stored answer.
    expect((await call('POST', '/models/e/rollback', { reason: 'x' }, key)).body).toBe(retried.body);
    expect(await rollbacks('e')).toHaveLength(1);
  });
});

describe('Idempotency-Key on registration', () => {
  const register = (seed: number, key?: string) =>
    call(
      'POST',
      '/models/reg/versions',
      { modelBase64: Buffer.from(tinyModel(seed)).toString('base64'), force: true },
      key ? { 'idempotency-key': key } : {},
    );
  const count = async () => (await auditor.listVersions('reg')).items.length;

  it('a forced registration retried with its key gets its 201 again and registers once', async () => {
    const first = await register(7, 'register-1');
    expect(first.status).toBe(201);
    const before = await count();
    const again = await register(7, 'register-1');
    expect(again.status).toBe(201);
    expect(again.body).toBe(first.body);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(await count()).toBe(before);
    // Without a key the same forced request registers another version: the key is what prevents it.
    expect((await register(7)).status).toBe(201);
    expect(await count()).toBe(before + 1);
  });

  it('the key reused for other bytes is 422 and registers nothing', async () => {
    expect((await register(8, 'register-2')).status).toBe(201);
    const before = await count();
    const reused = await register(9, 'register-2');
    expect(reused.status).toBe(422);
    expect(await count()).toBe(before);
  });
});

describe('Idempotency records', () => {
  it('a key still running answers 409; once done it replays; after the TTL it runs again', async () => {
    let clock = Date.parse('2026-12-01T00:00:00Z');
    const idem = new Idempotency(direct, { ttlSeconds: 60, lockSeconds: 10 }, () => new Date(clock));
    let runs = 0;
    let release!: () => void;
    const held = new Promise<void>((r) => {
      release = r;
    });
    const respond = async () => ({ statusCode: 200, headers: {}, body: String(++runs) });
    const first = idem.run('scope', 'k', { a: 1 }, async () => {
      await held;
      return respond();
    });
    await new Promise((r) => setTimeout(r, 200));
    await expect(idem.run('scope', 'k', { a: 1 }, respond)).rejects.toMatchObject({ kind: 'conflict' });
    release();
    expect(await first).toMatchObject({ body: '1', replayed: false });
    // Key order does not make another payload.
    expect(await idem.run('scope', 'k', { a: 1 }, respond)).toMatchObject({ body: '1', replayed: true });
    await expect(idem.run('scope', 'k', { a: 2 }, respond)).rejects.toMatchObject({ kind: 'unprocessable' });
    // Another scope (caller or path) is another key.
    expect(await idem.run('other', 'k', { a: 2 }, respond)).toMatchObject({ body: '2', replayed: false });
    clock += 61_000;
    expect(await idem.run('scope', 'k', { a: 2 }, respond)).toMatchObject({ body: '3', replayed: false });
    expect(runs).toBe(3);
    // A failed run leaves no record: the retry runs.
    await expect(
      idem.run('scope', 'failing', {}, async () => {
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(await idem.run('scope', 'failing', {}, respond)).toMatchObject({ replayed: false });
    // Records are one object each, under idempotency/.
    expect(
      (await listAll(direct, { prefix: 'idempotency/' })).objects.every((o) =>
        /^idempotency\/[0-9a-f]{64}\.json$/.test(o.key),
      ),
    ).toBe(true);
  });

  it('a record left in progress by a run that died is taken over after its lock', async () => {
    let clock = Date.parse('2026-12-01T00:00:00Z');
    const idem = new Idempotency(direct, { ttlSeconds: 600, lockSeconds: 10 }, () => new Date(clock));
    // The first run "dies": its promise never settles within the test.
    void idem.run('scope', 'dead', {}, () => new Promise(() => undefined));
    await new Promise((r) => setTimeout(r, 200));
    await expect(
      idem.run('scope', 'dead', {}, async () => ({ statusCode: 200, headers: {}, body: 'x' })),
    ).rejects.toMatchObject({ kind: 'conflict' });
    clock += 11_000;
    expect(
      await idem.run('scope', 'dead', {}, async () => ({ statusCode: 201, headers: {}, body: 'y' })),
    ).toMatchObject({
      statusCode: 201,
      body: 'y',
      replayed: false,
    });
  });
});
