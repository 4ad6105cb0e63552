import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ConflictError,
  InvalidArgumentError,
  NotFoundError,
  PayloadTooLargeError,
  PreconditionFailedError,
  UnprocessableError,
} from '../../shared/errors';
import { ModelRegistry } from '../../shared/registry';
import { listAll, type ObjectStore, type S3ObjectStore } from '../../shared/store';
import { countingStore } from '../support/counting-store';
import { tinyModel } from '../support/models';
import { createTestStore, storeKinds, type TestStore } from '../support/stores';

describe.each(storeKinds)('ModelRegistry on the %s store', (kind) => {
  let t: TestStore;
  let store: ObjectStore;
  let registry: ModelRegistry;
  beforeAll(async () => {
    t = await createTestStore(kind, 'registry');
    store = t.store;
    registry = new ModelRegistry(store);
  });
  afterAll(() => t.cleanup());

  it('registers a version with its ONNX facts and content-addressed bytes', async () => {
    const bytes = tinyModel(1);
    const { version, created } = await registry.registerVersion('iris', bytes, {
      description: 'first cut',
      tags: { team: 'ml' },
      actor: 'alice',
    });
    expect(created).toBe(true);
    expect(version).toMatchObject({
      name: 'iris',
      version: 1,
      size: bytes.length,
      status: 'active',
      actor: 'alice',
      tags: { team: 'ml' },
    });
    expect(version.sha256).toBe(createHash('sha256').update(bytes).digest('hex'));
    expect(version.onnx.inputs).toEqual([{ name: 'input', datatype: 'FP32', shape: [-1, 4] }]);
    expect(version.onnx.outputs).toEqual([{ name: 'output', datatype: 'FP32', shape: [-1, 2] }]);
    expect(version.onnx.opTypes).toEqual(expect.arrayContaining(['MatMul', 'Add', 'Relu']));
    expect((await store.get(version.blobKey)).body.equals(Buffer.from(bytes))).toBe(true);
    expect(await registry.getVersion('iris', 1)).toEqual(version);
    expect(await registry.getLatestVersionNumber('iris')).toBe(1);
    const history = await registry.history('iris');
    expect(history.items.map((e) => [e.type, e.version, e.actor])).toEqual([['registered', 1, 'alice']]);
  });

  it('accepts a stream body and re-registering identical bytes returns the existing version', async () => {
    const bytes = tinyModel(2);
    const first = await registry.registerVersion('dedupe', Readable.from([Buffer.from(bytes)]));
    const again = await registry.registerVersion('dedupe', bytes);
    expect(again.created).toBe(false);
    expect(again.version.version).toBe(first.version.version);
    const forced = await registry.registerVersion('dedupe', bytes, { force: true });
    expect(forced.created).toBe(true);
    expect(forced.version.version).toBe(2);
    expect(forced.version.blobKey).toBe(first.version.blobKey);
  });

  it('32 concurrent registrations of different bytes get versions exactly 1..32', async () => {
    const results = await Promise.all(
      Array.from({ length: 32 }, (_, i) => registry.registerVersion('race', tinyModel(100 + i))),
    );
    expect(results.every((r) => r.created)).toBe(true);
    expect(results.map((r) => r.version.version).sort((a, b) => a - b)).toEqual(
      Array.from({ length: 32 }, (_, i) => i + 1),
    );
    const listed = await registry.listVersions('race', { limit: 100 });
    expect(listed.items.map((v) => v.version)).toEqual(Array.from({ length: 32 }, (_, i) => i + 1));
    // each listed version holds the bytes of exactly one registration
    expect(new Set(listed.items.map((v) => v.sha256)).size).toBe(32);
    expect(await registry.getLatestVersionNumber('race')).toBe(32);
  });

  it('32 concurrent registrations of identical bytes create one version', async () => {
    const bytes = tinyModel(7);
    const results = await Promise.all(
      Array.from({ length: 32 }, () => registry.registerVersion('same', bytes)),
    );
    expect(results.filter((r) => r.created)).toHaveLength(1);
    expect(new Set(results.map((r) => r.version.version))).toEqual(new Set([1]));
    expect((await registry.listVersions('same')).items).toHaveLength(1);
  });

  it('paginates versions and models', async () => {
    for (let i = 0; i < 5; i++) await registry.registerVersion('paged', tinyModel(200 + i));
    const seen: number[] = [];
    let cursor: string | undefined;
    do {
      const page = await registry.listVersions('paged', { limit: 2, ...(cursor ? { cursor } : {}) });
      seen.push(...page.items.map((v) => v.version));
      cursor = page.nextCursor;
    } while (cursor);
    expect(seen).toEqual([1, 2, 3, 4, 5]);
    const models: string[] = [];
    cursor = undefined;
    do {
      const page = await registry.listModels({ limit: 2, ...(cursor ? { cursor } : {}) });
      models.push(...page.items.map((m) => m.name));
      cursor = page.nextCursor;
    } while (cursor);
    expect(models).toEqual([...models].sort());
    expect(models).toEqual(expect.arrayContaining(['iris', 'dedupe', 'race', 'same', 'paged']));
    await expect(registry.listVersions('paged', { cursor: 'bm9wZQ' })).rejects.toBeInstanceOf(
      InvalidArgumentError,
    );
  });

  it('moves aliases, refuses non-active versions, and rolls back step by step', async () => {
    for (let i = 0; i < 4; i++) await registry.registerVersion('roll', tinyModel(300 + i));
    await registry.setAlias('roll', 'production', 1, { reason: 'launch', actor: 'ci' });
    await registry.setAlias('roll', 'production', 2);
    await registry.setAlias('roll', 'production', 3);
    await registry.setStatus('roll', 4, 'rejected', { reason: 'bad accuracy' });
    await expect(registry.setAlias('roll', 'production', 4)).rejects.toBeInstanceOf(ConflictError);
    await expect(registry.setAlias('roll', 'production', 99)).rejects.toBeInstanceOf(NotFoundError);
    await expect(registry.setAlias('roll', 'latest', 1)).rejects.toBeInstanceOf(InvalidArgumentError);
    expect((await registry.rollback('roll', 'production', { reason: 'regression' })).version).toBe(2);
    await registry.setStatus('roll', 1, 'archived');
    // v1 is archived now: nothing active left to go back to
    await expect(registry.rollback('roll')).rejects.toBeInstanceOf(ConflictError);
    expect((await registry.rollback('roll', 'production', { to: 3 })).version).toBe(3);
    await expect(registry.rollback('roll', 'production', { to: 4 })).rejects.toBeInstanceOf(ConflictError);
    expect((await registry.resolveVersion('roll', 'production')).version).toBe(3);
    // v4 is rejected: `latest` is the newest *active* version; the highest number is another idea.
    expect((await registry.resolveVersion('roll', 'latest')).version).toBe(3);
    expect(await registry.getLatestVersionNumber('roll')).toBe(4);
    expect((await registry.getLatestActiveVersion('roll'))?.version).toBe(3);
    expect((await registry.resolveVersion('roll', 4)).status).toBe('rejected');
    await expect(registry.resolveVersion('roll', 'staging')).rejects.toBeInstanceOf(NotFoundError);
    const types = (await registry.history('roll')).items.map((e) => e.type);
    expect(types.filter((x) => x === 'registered')).toHaveLength(4);
    expect(types.filter((x) => x === 'rolled_back')).toHaveLength(2);
    expect(types.filter((x) => x === 'status_changed')).toHaveLength(2);
    const rollbackEvent = (await registry.history('roll')).items.find((e) => e.type === 'rolled_back');
    expect(rollbackEvent).toMatchObject({ alias: 'production', from: 3, version: 2, reason: 'regression' });
  });

  it('rollback honours ifMatch, and a refused registration closes the stream it was given', async () => {
    for (let i = 0; i < 3; i++) await registry.registerVersion('guarded', tinyModel(500 + i));
    const first = await registry.setAlias('guarded', 'production', 1);
    const second = await registry.setAlias('guarded', 'production', 2);
    await expect(registry.rollback('guarded', 'production', { ifMatch: first.etag })).rejects.toBeInstanceOf(
      PreconditionFailedError,
    );
    expect((await registry.getAlias('guarded', 'production')).version).toBe(2);
    expect((await registry.rollback('guarded', 'production', { ifMatch: second.etag })).version).toBe(1);

    const body = Readable.from([Buffer.from(tinyModel(503))]);
    await expect(registry.registerVersion('Bad Name', body)).rejects.toBeInstanceOf(InvalidArgumentError);
    expect(body.destroyed).toBe(true);
  });

  it('16 concurrent alias moves: the alias ends on one of them and history has every move in order', async () => {
    for (let i = 0; i < 16; i++) await registry.registerVersion('aliases', tinyModel(400 + i));
    const moves = await Promise.all(
      Array.from({ length: 16 }, (_, i) =>
        registry.setAlias('aliases', 'production', i + 1, { actor: `writer-${i}` }),
      ),
    );
    const final = await registry.getAlias('aliases', 'production');
    expect(final.revision).toBe(16);
    expect(moves.map((m) => m.revision).sort((a, b) => a - b)).toEqual(
      Array.from({ length: 16 }, (_, i) => i + 1),
    );
    const events = (await registry.history('aliases')).items.filter((e) => e.type === 'alias_moved');
    expect(events.map((e) => e.revision)).toEqual(Array.from({ length: 16 }, (_, i) => i + 1));
    // each move's "from" is the previous move's target: the log is a consistent chain
    events.forEach((e, i) => expect(e.from).toBe(i === 0 ? null : events[i - 1]!.version));
    expect(events.at(-1)!.version).toBe(final.version);

    // a stale compare-and-swap fails cleanly and changes nothing
    const staleEtag = moves.find((m) => m.revision === 1)!.etag;
    await expect(
      registry.setAlias('aliases', 'production', 1, { ifMatch: staleEtag }),
    ).rejects.toBeInstanceOf(PreconditionFailedError);
    await expect(registry.setAlias('aliases', 'staging', 1, { ifMatch: final.etag })).rejects.toBeInstanceOf(
      PreconditionFailedError,
    );
    expect((await registry.getAlias('aliases', 'production')).etag).toBe(final.etag);
    expect((await registry.history('aliases')).items.filter((e) => e.type === 'alias_moved')).toHaveLength(
      16,
    );
    // the fresh etag works; null means "must not exist yet"
    await registry.setAlias('aliases', 'production', 2, { ifMatch: final.etag });
    await registry.setAlias('aliases', 'staging', 3, { ifMatch: null });
  });

  it('store requests per registration do not grow with the number of versions', async () => {
    const counter = countingStore(store);
    const counted = new ModelRegistry(counter.store);
    await counted.registerVersion('many', tinyModel(1000));
    const atFirst = counter.count();
    for (let i = 1; i < 199; i++)
      await registry.registerVersion('many', tinyModel(1000 + i), { force: true });
    counter.reset();
    const { version } = await counted.registerVersion('many', tinyModel(2000));
    expect(version.version).toBe(200);
    expect(counter.count()).toBe(atFirst);
    expect(counter.calls.some((c) => c.startsWith('list'))).toBe(false);
  }, 120_000);

  describe('bad input leaves nothing behind', () => {
    let emptyStore: TestStore;
    let strict: ModelRegistry;
    beforeAll(async () => {
      emptyStore = await createTestStore(kind, 'badinput');
      strict = new ModelRegistry(emptyStore.store, { maxModelBytes: 4096 });
    });
    afterAll(() => emptyStore.cleanup());

    const valid = tinyModel(5);
    const cases: [string, () => Promise<unknown>, new (...a: never[]) => Error][] = [
      ['invalid model name', () => strict.registerVersion('Bad/Name', valid), InvalidArgumentError],
      ['name too long', () => strict.registerVersion('a'.repeat(65), valid), InvalidArgumentError],
      [
        'not ONNX',
        () => strict.registerVersion('m', Buffer.from('definitely not a model')),
        UnprocessableError,
      ],
      [
        'truncated',
        () => strict.registerVersion('m', valid.subarray(0, Math.floor(valid.length / 2))),
        UnprocessableError,
      ],
      ['empty', () => strict.registerVersion('m', new Uint8Array()), UnprocessableError],
      ['too large', () => strict.registerVersion('m', new Uint8Array(5000)), PayloadTooLargeError],
      [
        'too large stream',
        () => strict.registerVersion('m', Readable.from([Buffer.alloc(3000), Buffer.alloc(3000)])),
        PayloadTooLargeError,
      ],
      [
        'bad tags',
        () => strict.registerVersion('m', valid, { tags: { 'bad key!': 'x' } }),
        InvalidArgumentError,
      ],
      ['unknown parent', () => strict.registerVersion('m', valid, { parentVersion: 3 }), NotFoundError],
      ['bad alias', () => strict.registerVersion('m', valid, { alias: '1abc' }), InvalidArgumentError],
    ];
    it.each(cases)('%s', async (_label, call, type) => {
      const error = await call().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(type);
      expect((error as Error).message.length).toBeGreaterThan(10);
      const left = await listAll(emptyStore.store, {});
      expect(left.objects.map((o) => o.key)).toEqual([]);
    });
  });
});

describe('S3 request count on the wire', () => {
  it('counts HTTP requests the SDK sends for a registration at version 1 and at version 50', async () => {
    const t = await createTestStore('s3', 'wire');
    try {
      const s3 = t.store as S3ObjectStore;
      let requests = 0;
      s3.client.middlewareStack.add(
        (next) => (args) => {
          requests++;
          return next(args);
        },
        {
          step: 'finalizeRequest',
          name: 'countRequests',
        },
      );
      const registry = new ModelRegistry(s3);
      await registry.registerVersion('wire', tinyModel(1));
      const first = requests;
      for (let i = 2; i < 50; i++) await registry.registerVersion('wire', tinyModel(i));
      requests = 0;
      await registry.registerVersion('wire', tinyModel(50));
      expect(requests).toBe(first);
      expect(first).toBeLessThanOrEqual(12);
    } finally {
      await t.cleanup();
    }
  }, 120_000);
});
