import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PreconditionFailedError } from '../../shared/errors';
import type { ObjectStore } from '../../shared/store';
import {
  createJson,
  DocumentConflictError,
  KEEP,
  RETRY,
  readJson,
  updateJson,
} from '../../shared/store/documents';
import { createTestStore, storeKinds, type TestStore } from '../support/stores';

describe.each(storeKinds)('document layer: %s', (kind) => {
  let t: TestStore;
  let store: ObjectStore;
  beforeAll(async () => {
    t = await createTestStore(kind, 'documents');
    store = t.store;
  });
  afterAll(() => t.cleanup());

  it('reads a missing document as undefined and a present one with its etag', async () => {
    expect(await readJson(store, 'docs/missing.json')).toBeUndefined();
    const created = await createJson(store, 'docs/a.json', { n: 1 });
    expect(created.created).toBe(true);
    const found = await readJson<{ n: number }>(store, 'docs/a.json');
    expect(found?.doc).toEqual({ n: 1 });
    expect(created.created && found?.etag).toBe(created.created ? created.etag : 'unreachable');
  });

  it('createJson never overwrites and hands back what is there', async () => {
    await createJson(store, 'docs/b.json', { owner: 'first' });
    const second = await createJson(store, 'docs/b.json', { owner: 'second' });
    expect(second.created).toBe(false);
    expect(!second.created && second.existing?.doc).toEqual({ owner: 'first' });
    expect((await readJson(store, 'docs/b.json'))?.doc).toEqual({ owner: 'first' });
  });

  it('updateJson applies 16 concurrent increments exactly once each', async () => {
    const key = 'docs/counter.json';
    const results = await Promise.all(
      Array.from({ length: 16 }, () =>
        updateJson<{ n: number }>(store, key, (current) => ({ n: (current?.doc.n ?? 0) + 1 }), {
          attempts: 200,
          baseMs: 2,
          maxMs: 50,
        }),
      ),
    );
    expect((await readJson<{ n: number }>(store, key))?.doc.n).toBe(16);
    expect(results.every((r) => r.written)).toBe(true);
    // Each writer saw a distinct predecessor: no two increments were computed from the same state.
    expect(new Set(results.map((r) => r.previous?.doc.n ?? 0)).size).toBe(16);
  });

  it('KEEP stops without writing; a thrown error aborts with that error', async () => {
    const key = 'docs/keep.json';
    await createJson(store, key, { v: 1 });
    const before = await readJson(store, key);
    const kept = await updateJson<{ v: number }>(store, key, () => KEEP);
    expect(kept).toMatchObject({ written: false, doc: { v: 1 }, etag: before?.etag });
    const failure = new PreconditionFailedError('etag mismatch');
    await expect(
      updateJson(store, key, () => {
        throw failure;
      }),
    ).rejects.toBe(failure);
    expect((await readJson(store, key))?.etag).toBe(before?.etag);
  });

  it('gives up with a typed conflict that carries the last document seen', async () => {
    const key = 'docs/busy.json';
    await createJson(store, key, { holder: 'someone' });
    let calls = 0;
    const error = await updateJson(
      store,
      key,
      () => {
        calls++;
        return RETRY;
      },
      { attempts: 3, baseMs: 1 },
    ).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DocumentConflictError);
    expect((error as DocumentConflictError).existing?.doc).toEqual({ holder: 'someone' });
    expect(calls).toBe(3);
  });

  it('a writer that loses the race recomputes from the winner', async () => {
    const key = 'docs/race.json';
    await createJson(store, key, { items: [] as string[] });
    let interfered = false;
    const result = await updateJson<{ items: string[] }>(store, key, async (current) => {
      if (!interfered) {
        interfered = true; // another writer lands between our read and our write
        await store.put(key, JSON.stringify({ items: ['other'] }));
      }
      return { items: [...(current?.doc.items ?? []), 'mine'] };
    });
    expect(result.written).toBe(true);
    expect((await readJson(store, key))?.doc).toEqual({ items: ['other', 'mine'] });
  });

  it('starts from a document the caller already read, and re-reads when that one is stale', async () => {
    const key = 'docs/known.json';
    await createJson(store, key, { n: 1 });
    const known = (await readJson<{ n: number }>(store, key))!;
    const seen: number[] = [];
    const first = await updateJson<{ n: number }>(
      store,
      key,
      (current) => {
        seen.push(current!.doc.n);
        return { n: current!.doc.n + 1 };
      },
      { known },
    );
    expect(first.written).toBe(true);
    expect(seen).toEqual([1]);
    // `known` is stale now (n is 2): its write loses, the retry reads the real document.
    seen.length = 0;
    await updateJson<{ n: number }>(
      store,
      key,
      (current) => {
        seen.push(current?.doc.n ?? 0);
        return { n: (current?.doc.n ?? 0) + 10 };
      },
      { known },
    );
    expect(seen).toEqual([1, 2]);
    expect((await readJson<{ n: number }>(store, key))?.doc).toEqual({ n: 12 });
    // `null`: the caller read nothing; the key exists, so the create-only write loses and re-reads.
    seen.length = 0;
    await updateJson<{ n: number }>(
      store,
      key,
      (current) => {
        seen.push(current?.doc.n ?? 0);
        return { n: (current?.doc.n ?? 0) + 1 };
      },
      { known: null },
    );
    expect(seen).toEqual([0, 12]);
  });
});
