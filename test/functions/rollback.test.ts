import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AliasRecord, HistoryEvent, ModelVersion } from '../../shared/registry';
import { tinyModel } from '../support/models';
import { octet, type TestApi, useTestApi } from './runtime';

describe('rollback function (aliases, rollback, status) on S3 (RGW)', () => {
  let api: TestApi;
  beforeAll(async () => {
    api = await useTestApi('s3', 'fn-rollback');
    for (const seed of [1, 2, 3, 4])
      expect(
        (await api.call('POST', '/models/iris/versions', { headers: octet, body: tinyModel(seed) })).status,
      ).toBe(201);
  });
  afterAll(async () => api?.cleanup());

  const put = (alias: string, body: object, headers: Record<string, string> = {}) =>
    api.call('PUT', `/models/iris/aliases/${alias}`, { body, headers });

  it('promotes with If-Match optimistic concurrency: 201 new, 200 moved, 412 stale, ETag on every answer', async () => {
    const created = await put('production', { version: 1, reason: 'launch' }, { 'if-none-match': '*' });
    expect(created.status).toBe(201);
    const first = created.json<AliasRecord>();
    expect(first).toMatchObject({
      alias: 'production',
      version: 1,
      revision: 1,
      reason: 'launch',
      actor: 'local',
    });
    expect(created.headers.etag).toBe(`"${first.etag}"`);

    expect((await put('production', { version: 2 }, { 'if-none-match': '*' })).status).toBe(412);
    const moved = await put(
      'production',
      { version: 2, reason: 'better' },
      { 'if-match': created.headers.etag! },
    );
    expect(moved.status).toBe(200);
    expect(moved.json<AliasRecord>()).toMatchObject({ version: 2, previous: [1], revision: 2 });

    const stale = await put('production', { version: 3 }, { 'if-match': created.headers.etag! });
    expect(stale.status).toBe(412);
    expect(stale.json()).toMatchObject({
      code: 'precondition_failed',
      details: { etag: moved.json<AliasRecord>().etag },
    });
    expect(
      (await api.call('GET', '/models/iris')).json<{ aliases: Record<string, AliasRecord> }>().aliases
        .production?.version,
    ).toBe(2);

    // Without If-Match the move simply lands.
    expect((await put('production', { version: 3 })).json<AliasRecord>()).toMatchObject({
      version: 3,
      previous: [1, 2],
    });
  });

  it('sets a canary split and refuses invalid promotions', async () => {
    const canary = await put('staging', { version: 3, canary: { version: 4, weight: 0.1 } });
    expect(canary.status).toBe(201);
    expect(canary.json<AliasRecord>().canary).toEqual({ version: 4, weight: 0.1 });
    const cases: [string, object, number][] = [
      ['staging', { version: 99 }, 404],
      ['staging', { version: 'x' }, 400],
      ['staging', {}, 400],
      ['latest', { version: 1 }, 400],
      ['Bad', { version: 1 }, 400],
      ['staging', { version: 3, canary: { version: 4, weight: 2 } }, 400],
      ['staging', { version: 3, canary: 'x' }, 400],
      ['staging', { version: 1, reason: 5 }, 400],
    ];
    for (const [alias, body, status] of cases)
      expect({ alias, body, status: (await put(alias, body)).status }).toEqual({ alias, body, status });
    expect(
      (
        await api.call('PUT', '/models/iris/aliases/staging', {
          headers: { 'content-type': 'text/plain' },
          body: 'version=1',
        })
      ).status,
    ).toBe(415);
    expect((await api.call('PUT', '/models/nosuch/aliases/staging', { body: { version: 1 } })).status).toBe(
      404,
    );
  });

  it('rolls back to the previous version, to an explicit one, and refuses what it cannot do', async () => {
    const back = await api.call('POST', '/models/iris/rollback', { body: { reason: 'v3 regressed' } });
    expect(back.status).toBe(200);
    expect(back.json<AliasRecord>()).toMatchObject({
      alias: 'production',
      version: 2,
      reason: 'v3 regressed',
    });
    expect(back.headers.etag).toBe(`"${back.json<AliasRecord>().etag}"`);
    // If-Match: a stale etag is refused (412); the current one rolls back.
    const stale = await api.call('POST', '/models/iris/rollback', {
      body: {},
      headers: { 'if-match': '"not-the-current-etag"' },
    });
    expect(stale.status).toBe(412);
    // Still the etag of the first rollback: the refused call moved nothing.
    const to = await api.call('POST', '/models/iris/rollback', {
      body: { alias: 'production', to: 1 },
      headers: { 'if-match': back.headers.etag! },
    });
    expect(to.json<AliasRecord>().version).toBe(1);
    expect((await api.call('POST', '/models/iris/rollback', { body: { to: 1 } })).status).toBe(409);
    expect((await api.call('POST', '/models/iris/rollback', { body: { alias: 'nosuch' } })).status).toBe(404);
    expect((await api.call('POST', '/models/iris/rollback', { body: { to: 42 } })).status).toBe(404);
    expect((await api.call('POST', '/models/iris/rollback', { body: { to: 'one' } })).status).toBe(400);
    // A fresh alias has nothing to go back to.
    await put('fresh', { version: 1 });
    expect((await api.call('POST', '/models/iris/rollback', { body: { alias: 'fresh' } })).status).toBe(409);
  });

  it('marks versions rejected/archived, which then cannot be promoted or rolled back to', async () => {
    const rejected = await api.call('POST', '/models/iris/versions/2/status', {
      body: { status: 'rejected', reason: 'bias found' },
    });
    expect(rejected.status).toBe(200);
    expect(rejected.json<ModelVersion>()).toMatchObject({
      version: 2,
      status: 'rejected',
      statusReason: 'bias found',
    });
    const refused = await put('production', { version: 2 });
    expect(refused.status).toBe(409);
    expect(refused.json()).toMatchObject({ code: 'conflict', details: { status: 'rejected' } });
    expect((await api.call('POST', '/models/iris/rollback', { body: { to: 2 } })).status).toBe(409);
    expect(
      (
        await api.call('POST', '/models/iris/versions/4/status', { body: { status: 'archived' } })
      ).json<ModelVersion>().status,
    ).toBe('archived');
    expect(
      (await api.call('POST', '/models/iris/versions/4/status', { body: { status: 'deleted' } })).status,
    ).toBe(400);
    expect(
      (await api.call('POST', '/models/iris/versions/77/status', { body: { status: 'archived' } })).status,
    ).toBe(404);
    expect(
      (await api.call('POST', '/models/iris/versions/0/status', { body: { status: 'archived' } })).status,
    ).toBe(400);
    const back = await api.call('POST', '/models/iris/versions/2/status', {
      body: { status: 'active', reason: 'false alarm' },
    });
    expect(back.json<ModelVersion>().status).toBe('active');
    expect((await put('production', { version: 2 })).status).toBe(200);
  });

  it('deletes aliases (If-Match honoured) and records everything in history', async () => {
    const current = (await api.call('GET', '/models/iris')).json<{ aliases: Record<string, AliasRecord> }>()
      .aliases.fresh!;
    expect(
      (await api.call('DELETE', '/models/iris/aliases/fresh', { headers: { 'if-match': '"stale"' } })).status,
    ).toBe(412);
    const deleted = await api.call('DELETE', '/models/iris/aliases/fresh?reason=cleanup', {
      headers: { 'if-match': `"${current.etag}"` },
    });
    expect(deleted.status).toBe(200);
    expect(deleted.json()).toEqual({ deleted: true, name: 'iris', alias: 'fresh', version: 1 });
    expect((await api.call('DELETE', '/models/iris/aliases/fresh')).status).toBe(404);

    const history = (await api.call('GET', '/models/iris/history?limit=1000')).json<{
      items: HistoryEvent[];
    }>().items;
    const types = history.map((e) => e.type);
    expect(types.filter((t) => t === 'registered')).toHaveLength(4);
    expect(types).toContain('rolled_back');
    expect(types).toContain('status_changed');
    expect(history.at(-1)).toMatchObject({
      type: 'alias_deleted',
      alias: 'fresh',
      reason: 'cleanup',
      from: 1,
    });
  });

  it('answers unknown routes with a 404 in the common error shape', async () => {
    const res = await api.call('PUT', '/models/iris/aliases', { body: {} });
    expect(res.status).toBe(404);
  });
});
