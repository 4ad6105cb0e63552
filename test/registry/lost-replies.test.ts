/**
 * Deterministic versions of what the fault proxy (test/faults/registry.test.ts) hits at random: a
 * registration whose manifest landed but whose reply was lost, or which failed in a step after
 * its manifest landed. The client retries the same bytes: it must get that version back, never a
 * second version of the same bytes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { httpStatusOf } from '../../shared/errors';
import { ModelRegistry, sha256Hex } from '../../shared/registry';
import { type ObjectStore, type PutOptions, StoreError } from '../../shared/store';
import { sleep } from '../../shared/util/backoff';
import { tinyModel } from '../support/models';
import { createTestStore, storeKinds, type TestStore } from '../support/stores';

/** When a put matches: `after` applies it and then fails as if its reply was lost; `before` fails first. */
interface PutFault {
  key: RegExp;
  when: 'before' | 'after';
  /** Extra test on the body written (default: any). */
  body?: (text: string) => boolean;
  times: number;
}

/** Wraps a real store so that chosen puts fail with the transient error a lost reply gives. */
function lossyStore(inner: ObjectStore): { store: ObjectStore; fail(fault: PutFault): void; left(): number } {
  const faults: PutFault[] = [];
  const store: ObjectStore = {
    location: inner.location,
    get: (k) => inner.get(k),
    getStream: (k) => inner.getStream(k),
    getRange: (k, s, e) => inner.getRange(k, s, e),
    copy: (f, t, o) => inner.copy(f, t, o),
    head: (k) => inner.head(k),
    delete: (k) => inner.delete(k),
    list: (o) => inner.list(o),
    async put(key, body, options?: PutOptions) {
      const text = typeof body === 'string' ? body : Buffer.isBuffer(body) ? body.toString('utf8') : '';
      const fault = faults.find((f) => f.times > 0 && f.key.test(key) && (f.body?.(text) ?? true));
      if (!fault) return inner.put(key, body, options);
      fault.times--;
      if (fault.when === 'after') await inner.put(key, body, options);
      throw new StoreError(`injected: reply to the put of ${key} lost`, true);
    },
  };
  return { store, fail: (f) => void faults.push(f), left: () => faults.reduce((n, f) => n + f.times, 0) };
}

const MANIFEST = /\/versions\/\d+\.json$/;

describe.each(storeKinds)('registration retried after a lost reply (%s store)', (kind) => {
  let t: TestStore;
  beforeAll(async () => {
    t = await createTestStore(kind, 'lost-replies');
  });
  afterAll(() => t.cleanup());

  async function versionsOf(registry: ModelRegistry, name: string): Promise<string[]> {
    return (await registry.listVersions(name)).items.map((v) => `${v.version}:${v.sha256.slice(0, 8)}`);
  }

  it('the manifest landed but its reply was lost: the retry gets that version, even after others registered', async () => {
    const lossy = lossyStore(t.store);
    const registry = new ModelRegistry(lossy.store);
    const bytes = tinyModel(1);
    lossy.fail({ key: MANIFEST, when: 'after', times: 1 });
    const error = await registry.registerVersion('a', bytes).catch((e: unknown) => e);
    expect(httpStatusOf(error)).toBe(503);
    expect(lossy.left()).toBe(0);
    // Another client's registration moves the head past the unacknowledged version 1.
    expect((await registry.registerVersion('a', tinyModel(2))).version.version).toBe(2);

    const retried = await registry.registerVersion('a', bytes);
    expect(retried.created).toBe(false);
    expect(retried.version).toMatchObject({ version: 1, sha256: sha256Hex(bytes), status: 'active' });
    expect(await versionsOf(registry, 'a')).toEqual([
      `1:${sha256Hex(bytes).slice(0, 8)}`,
      `2:${sha256Hex(tinyModel(2)).slice(0, 8)}`,
    ]);
    // The dedupe index now names version 1: a later duplicate is answered from it.
    expect((await registry.registerVersion('a', bytes)).version.version).toBe(1);
  });

  it('the head update after the manifest fails: the registration still succeeds, once', async () => {
    const lossy = lossyStore(t.store);
    const registry = new ModelRegistry(lossy.store);
    lossy.fail({ key: /\/head\.json$/, when: 'before', times: 1 });
    const first = await registry.registerVersion('b', tinyModel(3));
    expect(lossy.left()).toBe(0);
    expect(first).toMatchObject({ created: true, version: { version: 1 } });
    expect((await registry.registerVersion('b', tinyModel(3))).created).toBe(false);
    expect(await registry.getLatestVersionNumber('b')).toBe(1);
    expect((await registry.listVersions('b')).items).toHaveLength(1);
  });

  it('the index update and the history event after the manifest fail: the retry takes the claim over and finds the version', async () => {
    const lossy = lossyStore(t.store);
    const registry = new ModelRegistry(lossy.store, { claimLeaseMs: 50 });
    const bytes = tinyModel(4);
    // The settle (the index write naming the version) and the history event both fail.
    lossy.fail({
      key: /\/sha256\/[0-9a-f]+\.json$/,
      when: 'before',
      body: (b) => b.includes('"version"'),
      times: 1,
    });
    lossy.fail({ key: /\/history\//, when: 'before', times: 1 });
    const error = await registry.registerVersion('c', bytes).catch((e: unknown) => e);
    expect(httpStatusOf(error)).toBe(503);
    expect(lossy.left()).toBe(0);
    await registry.registerVersion('c', tinyModel(5)); // the head moves past version 1
    await sleep(60); // the abandoned claim's lease runs out

    const retried = await registry.registerVersion('c', bytes);
    expect(retried).toMatchObject({ created: false, version: { version: 1, sha256: sha256Hex(bytes) } });
    expect(await versionsOf(registry, 'c')).toEqual([
      `1:${sha256Hex(bytes).slice(0, 8)}`,
      `2:${sha256Hex(tinyModel(5)).slice(0, 8)}`,
    ]);
  });

  it('force still commits the same bytes again (no dedupe asked for)', async () => {
    const registry = new ModelRegistry(t.store);
    const bytes = tinyModel(6);
    await registry.registerVersion('d', bytes);
    const forced = await registry.registerVersion('d', bytes, { force: true });
    expect(forced).toMatchObject({ created: true, version: { version: 2 } });
  });
});
